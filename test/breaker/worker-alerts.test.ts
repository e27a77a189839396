/**
 * Breaker alerts from a real `integration-agent worker` process with
 * ALERT_WEBHOOKS set: each transition's alert reaches a receiver once (the
 * breaker workflow delivers it; the worker's transition hook used to send it
 * too, so every receiver got each breaker alert twice).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeTestClient, testAddress, testClient } from '../helpers/temporal';
import { requireBuiltLib, runCli, WorkerProcess } from '../cluster/harness';
import { eventually, sleep, startReceiver, type Receiver } from '../health/harness';

let receiver: Receiver;
let worker: WorkerProcess | undefined;
beforeAll(async () => {
  requireBuiltLib();
  receiver = await startReceiver();
});
afterAll(async () => {
  await worker?.kill();
  await receiver.close();
  await closeTestClient();
});

test('a forced-open then reset breaker sends one TRIGGERED and one RESOLVED to each receiver, not two', async () => {
  const id = `brk-${randomUUID().slice(0, 8)}`;
  const dir = mkdtempSync(join(tmpdir(), 'ia-breaker-alerts-'));
  const registry = join(dir, 'registry.json');
  writeFileSync(registry, JSON.stringify({ services: [{ id, type: 'api', endpoints: [{ url: 'http://127.0.0.1:9/' }] }] }));
  const env = {
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_TASK_QUEUE: `breaker-alerts-${id}`,
    INTEGRATION_AGENT_DATA_DIR: join(dir, 'data'),
    INTEGRATION_AGENT_REGISTRY: registry,
    ALERT_WEBHOOKS: `${receiver.url};name=ops`,
    LOG_LEVEL: 'info',
  };
  worker = new WorkerProcess('worker', env);
  await worker.start(await testClient());
  const cli = { ...env, LOG_LEVEL: 'warn' };
  expect((await runCli(['breaker', 'open', id, '--json'], cli)).code).toBe(0);
  const keys = () => receiver.requests.filter((r) => r.key.startsWith(`breaker/${id}#`)).map((r) => [r.key, (r.body as { kind: string }).kind]);
  await eventually(() => keys().length >= 1, 'TRIGGERED at the receiver');
  expect((await runCli(['breaker', 'reset', id, '--json'], cli)).code).toBe(0);
  await eventually(() => keys().some(([, kind]) => kind === 'RESOLVED'), 'RESOLVED at the receiver');
  await sleep(1_500); // a second delivery, if any, lands meanwhile
  expect(keys().map(([, kind]) => kind)).toEqual(['TRIGGERED', 'RESOLVED']);
  expect(new Set(keys().map(([key]) => key)).size).toBe(2);
}, 90_000);
