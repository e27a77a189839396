/**
 * The breaker commands as an operator runs them: a real CLI process against
 * the dev server and a worker with the same payload codec.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AesGcmCodec } from '../../src/codec/aes-gcm-codec';
import { loadCodecKeys } from '../../src/codec/keys';
import { createAlertActivities } from '../../src/activities/alerts';
import { createBreakerActivities } from '../../src/activities/breaker';
import { closeTestClient, testAddress, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';

afterAll(closeTestClient);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(env: Record<string, string>, args: string[]): Promise<Run> {
  const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), join(__dirname, '..', 'helpers', 'cli-entry.ts'), ...args], {
    env: { ...process.env, TEMPORAL_ADDRESS: testAddress(), LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

test('breaker open/show/close/reset and breakers, in text and --json; registry options apply; bad ids are one-line errors', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'ia-breaker-cli-'));
  const taskQueue = uniqueTaskQueue('breaker-cli');
  const id = `cli-${randomUUID().slice(0, 8)}`;
  const registryPath = join(dataDir, 'services.yaml');
  writeFileSync(
    registryPath,
    ['services:', `  - id: ${id}`, '    type: api', '    endpoints: [{ url: "http://127.0.0.1:9/" }]', '    circuitBreaker: { failureRateThreshold: 25, waitDurationInOpenState: 45s }', ''].join('\n'),
  );
  const env = { TEMPORAL_TASK_QUEUE: taskQueue, INTEGRATION_AGENT_DATA_DIR: dataDir, INTEGRATION_AGENT_REGISTRY: registryPath };
  await withTestWorker({ taskQueue, activities: { ...createBreakerActivities(), ...createAlertActivities({ webhooks: [] }) }, dataConverter: { payloadCodecs: [new AesGcmCodec(loadCodecKeys(dataDir))] } }, async () => {
    const opened = await cli(env, ['breaker', 'open', id, '--note', 'vendor maintenance', '--json']);
    expect(opened.stderr).toBe('');
    expect(opened.code).toBe(0);
    const view = JSON.parse(opened.stdout);
    expect(view).toMatchObject({ serviceId: id, state: 'FORCED_OPEN', generation: 1, options: { failureRateThreshold: 25, waitDurationInOpenStateMs: 45_000 } });
    expect(view.transitions[0]).toMatchObject({ from: 'CLOSED', to: 'FORCED_OPEN', reason: 'forced_open', note: 'vendor maintenance' });

    const shown = await cli(env, ['breaker', 'show', id]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`breaker ${id}: FORCED_OPEN (generation 1`);
    expect(shown.stdout).toMatch(/failure rate 0% \(opens at 25%\)/);
    expect(shown.stdout).toMatch(/CLOSED\s+FORCED_OPEN\s+forced_open\s+1\s+vendor maintenance/);

    const list = await cli(env, ['breakers', '--json']);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ serviceId: id, state: 'FORCED_OPEN', generation: 1 })]));
    const table = await cli(env, ['breakers']);
    expect(table.stdout).toMatch(/^SERVICE\s+STATE\s+GEN\s+CALLS\s+FAILURES\s+SLOW\s+NEXT TRIAL\s+LAST TRANSITION$/m);
    expect(table.stdout).toMatch(new RegExp(`^${id}\\s+FORCED_OPEN\\s+1\\s+0\\s+0%\\s+0%\\s+-\\s+CLOSED->FORCED_OPEN \\(forced_open\\)`, 'm'));

    const closed = await cli(env, ['breaker', 'close', id, '--json']);
    expect(JSON.parse(closed.stdout)).toMatchObject({ state: 'CLOSED', generation: 2 });
    const reset = await cli(env, ['breaker', 'reset', id]);
    expect(reset.code).toBe(0);
    expect(reset.stdout).toContain(`breaker ${id}: CLOSED (generation 2`);

    const bad = await cli(env, ['breaker', 'show', 'Bad_Id']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('integration-agent: invalid service id "Bad_Id": use the id from the registry (lowercase letters, digits and "-")\n');
  });
});
