/**
 * Secrets never leave the store in clear: after real rotations (completed,
 * rolled back, needs_attention) run by a worker in its own process, no secret
 * value appears in the fetched workflow histories (payloads decoded), the
 * worker's logs (DEBUG, with metadata), the results, the progress query, the
 * audit trail, or the database file itself (values are encrypted at rest).
 *
 * With IA_CAPTURE_ROTATION_HISTORIES=1 (or =<tag>) it also writes the completed
 * and the rolled-back histories to test/histories/ for the replay test.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { resolveTemporalCli } from '../../src/dev/temporal-cli';
import { getRotation, rotate } from '../../src/client/rotation';
import type { RotationResult } from '../../src/domain/rotation';
import { closeTestClient, testAddress, testClient } from '../helpers/temporal';
import { kill, startWorker, type ChildWorker } from './child-worker';
import { rotationFixture } from './support';

afterAll(closeTestClient);

/** History JSON plus every payload's data decoded from base64, so a secret inside a JSON payload would show. */
function searchableHistory(json: string): string {
  const decoded: string[] = [];
  for (const m of json.matchAll(/"data":\s*"([A-Za-z0-9+/=_-]+)"/g)) decoded.push(Buffer.from(m[1]!, 'base64').toString('utf8'));
  return json + '\n' + decoded.join('\n');
}

test('no secret value in histories, logs, results, queries, audit trail or the database file', async () => {
  const masterKey = randomBytes(32);
  const fx = await rotationFixture([{ id: 's1' }, { id: 's2', dependsOn: ['s1'], rotation: { verifyAttempts: 2 } }], { masterKey });
  const registryPath = join(fx.dataDir, 'registry.json');
  writeFileSync(registryPath, JSON.stringify(fx.registry));
  let worker: ChildWorker | undefined;
  try {
    worker = await startWorker({ ROT_TASK_QUEUE: fx.taskQueue, ROT_DATA_DIR: fx.dataDir, ROT_MASTER_KEY: masterKey.toString('base64'), ROT_REGISTRY: registryPath });
    const client = await testClient();
    const opts = { credentialId: fx.credentialId, taskQueue: fx.taskQueue };
    const seen: string[] = [];
    const histories: Array<{ status: string; workflowId: string; json: string }> = [];
    const runOnce = async (): Promise<RotationResult> => {
      const result = await rotate(client, opts, { onProgress: (p) => seen.push(JSON.stringify(p)), pollMs: 50 });
      seen.push(JSON.stringify(result), JSON.stringify(await getRotation(client, fx.credentialId)));
      // The history as an operator fetches it (`temporal workflow show --output json`), also the form replay accepts.
      const json = execFileSync(resolveTemporalCli(), ['workflow', 'show', '--workflow-id', result.workflowId, '--address', testAddress(), '--output', 'json'], {
        encoding: 'utf8',
        maxBuffer: 64 * 1024 * 1024,
      });
      histories.push({ status: result.status, workflowId: result.workflowId, json });
      return result;
    };

    const completed = await runOnce();
    expect(completed.status).toBe('completed');
    fx.server.behaviour('s2').acceptOnly = new Set([completed.versionId!]);
    const rolledBack = await runOnce();
    expect(rolledBack.status).toBe('rolled_back');
    fx.server.behaviour('s2').acceptOnly = undefined;
    fx.server.behaviour('issuer').failRevoke = true;
    const attention = await runOnce();
    expect(attention.status).toBe('needs_attention');

    const secrets = [fx.initialSecret, ...fx.server.secrets()];
    expect(new Set(secrets).size).toBeGreaterThanOrEqual(4);
    const audit = JSON.stringify(await fx.store.auditTrail({ credentialId: fx.credentialId }));
    const dbBytes = readdirSync(fx.dataDir)
      .filter((f) => f.startsWith('integration-agent.db'))
      .map((f) => readFileSync(join(fx.dataDir, f)).toString('latin1'))
      .join('\n');
    const logs = worker.logs();
    expect(logs).toContain('installVersion'); // the logs are real: activity failures were logged
    const places: Record<string, string> = {
      histories: histories.map((h) => searchableHistory(h.json)).join('\n'),
      'worker logs': logs,
      'results and queries': seen.join('\n'),
      'audit trail': audit,
      'database file': dbBytes,
    };
    for (const [where, text] of Object.entries(places)) {
      for (const s of secrets) {
        if (text.includes(s)) throw new Error(`a secret value appears in the ${where}`);
      }
    }
    // The version ids (references) do appear: the search itself works.
    expect(places.histories).toContain(completed.versionId!);

    const capture = process.env.IA_CAPTURE_ROTATION_HISTORIES;
    if (capture) {
      // `1`: rotation-<status>.json; any other value tags the files (rotation-<status>-<tag>.json), so
      // histories of a new workflow path sit beside the older ones, which must keep replaying too.
      const dir = join(__dirname, '..', 'histories');
      for (const h of histories.filter((x) => x.status !== 'needs_attention')) {
        const file = `rotation-${h.status.replace('_', '-')}${capture === '1' ? '' : `-${capture}`}.json`;
        writeFileSync(join(dir, file), JSON.stringify({ workflowId: h.workflowId, history: JSON.parse(h.json) }, null, 1) + '\n');
      }
    }
  } finally {
    if (worker) await kill(worker);
    await fx.close();
  }
});
