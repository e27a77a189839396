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
import { createRegistryActivities, staticRegistry } from '../../src/activities/registry';
import { parseRegistry } from '../../src/domain/registry-parse';
import { closeTestClient, testAddress, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';

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

/** Whether any workflow, of any status, has this id. */
async function exists(workflowId: string): Promise<boolean> {
  const client = await testClient();
  return (await client.workflow.count(`WorkflowId = "${workflowId}"`)).count > 0;
}

test('unknown service ids are refused with a did-you-mean and nothing is started: from INTEGRATION_AGENT_REGISTRY, else from the registry a worker follows', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'ia-breaker-unknown-'));
  const taskQueue = uniqueTaskQueue('breaker-unknown');
  const id = `billing-${randomUUID().slice(0, 8)}`;
  const typo = id.replace('billing', 'biling');
  const text = ['services:', `  - id: ${id}`, '    type: api', '    endpoints: [{ url: "http://127.0.0.1:9/" }]', '    circuitBreaker: { failureRateThreshold: 30 }', ''].join('\n');
  const registryPath = join(dataDir, 'services.yaml');
  writeFileSync(registryPath, text);
  const parsed = parseRegistry(text, registryPath);
  if (!parsed.ok) throw new Error('test registry invalid');
  const base = { TEMPORAL_TASK_QUEUE: taskQueue, INTEGRATION_AGENT_DATA_DIR: dataDir };
  const codec = { payloadCodecs: [new AesGcmCodec(loadCodecKeys(dataDir))] };

  // No worker and no registry file: nothing to check against, so nothing is done, and the message says what to set.
  const blind = await cli(base, ['breaker', 'open', typo]);
  expect(blind.code).toBe(1);
  expect(blind.stderr).toBe(
    `integration-agent: cannot check service id "${typo}": no worker polls task queue "${taskQueue}" to ask for its registry, and INTEGRATION_AGENT_REGISTRY is not set; ` +
      'start a worker (`integration-agent worker` or `integration-agent dev`), or set INTEGRATION_AGENT_REGISTRY to the registry file the workers use\n',
  );

  await withTestWorker(
    { taskQueue, activities: { ...createBreakerActivities(), ...createAlertActivities({ webhooks: [] }), ...createRegistryActivities(staticRegistry(parsed.registry)) }, dataConverter: codec },
    async () => {
      // The CLI has no registry file: the worker's registry answers (registryLookup workflow).
      for (const args of [['breaker', 'show', typo], ['breaker', 'open', typo], ['breaker', 'disable', typo, '--json']]) {
        const r = await cli(base, args);
        expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 1, stdout: '' });
        expect(r.stderr).toBe(`integration-agent: unknown service "${typo}" in the registry ${registryPath} (did you mean "${id}"?)\n`);
      }
      const far = await cli(base, ['breaker', 'show', 'nope']);
      expect(far.code).toBe(1);
      expect(far.stderr).toBe(`integration-agent: unknown service "nope" in the registry ${registryPath}\n`);
      expect(await exists(`breaker/${typo}`)).toBe(false);
      expect(await exists('breaker/nope')).toBe(false);

      // The same from the file, with a different file than the worker's: the file named counts.
      const other = join(dataDir, 'other.yaml');
      writeFileSync(other, text.replace(id, `${id}-x`));
      const fromFile = await cli({ ...base, INTEGRATION_AGENT_REGISTRY: other }, ['breaker', 'open', id]);
      expect(fromFile.code).toBe(1);
      expect(fromFile.stderr).toBe(`integration-agent: unknown service "${id}" in the registry ${other} (did you mean "${id}-x"?)\n`);
      expect(await exists(`breaker/${id}`)).toBe(false);

      // A known id: started with the registry's options, read from the worker.
      const opened = await cli(base, ['breaker', 'open', id, '--json']);
      expect(opened.stderr).toBe('');
      expect(JSON.parse(opened.stdout)).toMatchObject({ serviceId: id, state: 'FORCED_OPEN', options: { failureRateThreshold: 30 } });
      // Its BreakerState search attribute is lower_snake_case, like every search-attribute value.
      const client = await testClient();
      const query = `WorkflowId = "breaker/${id}" AND BreakerState IN ("open", "forced_open")`; // the README's example query
      const end = Date.now() + 10_000;
      while ((await client.workflow.count(query)).count !== 1) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${query}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const listed = await cli(base, ['breakers', '--json']);
      expect(JSON.parse(listed.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ serviceId: id, state: 'FORCED_OPEN' })]));

      // A running breaker stays operable after its service left the registry (the file now lacks it).
      const closed = await cli({ ...base, INTEGRATION_AGENT_REGISTRY: other }, ['breaker', 'reset', id, '--json']);
      expect(closed.stderr).toBe('');
      expect(JSON.parse(closed.stdout)).toMatchObject({ state: 'CLOSED' });
      const shown = await cli({ ...base, INTEGRATION_AGENT_REGISTRY: other }, ['breaker', 'show', id]);
      expect(shown.code).toBe(0);
    },
  );
});
