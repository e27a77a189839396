/**
 * Warning alerts, driven by real sweeps against loopback services: a
 * degraded service (health+json `warn`, slower than degradedResponseTime, a
 * certificate expiring) sends one WARNING and one RESOLVED with their own
 * incident, apart from the failure alert, exactly once across
 * continue-as-new and worker restarts; certificate expiry with a list of
 * thresholds notifies each threshold crossed once.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { healthShard, healthShardQuery } from '../../src/workflows/health-shard';
import { healthShardWorkflowId, shardOf } from '../../src/domain/health-shard';
import { closeTestClient } from '../helpers/temporal';
import { getHealth } from '../../src/client/health';
import { startFleet, type Fleet } from './fleet';
import { eventually, healthBench, sleep, startReceiver, uniquePrefix, type Receiver } from './harness';

let fleet: Fleet;
let receiver: Receiver;
beforeAll(async () => {
  fleet = await startFleet();
  receiver = await startReceiver();
});
afterAll(async () => {
  await fleet.close();
  await receiver.close();
  await closeTestClient();
});

/** Every alert request a service caused, in order: [id, kind, incidentId] (repeats of one id would show). */
const sent = (id: string) =>
  receiver.requests
    .map((r) => r.body as { id: string; kind: string; serviceId: string; incidentId?: string })
    .filter((a) => a.serviceId === id)
    .map((a) => [a.id, a.kind, a.incidentId]);

const HEALTH_JSON = 'application/health+json';

test('a degraded service sends one WARNING and one RESOLVED of its own, apart from the failure alert, across continue-as-new and worker restarts', async () => {
  const id = `${uniquePrefix()}-warn`;
  const slow = `${uniquePrefix()}-slow`;
  const b = await healthBench(
    [
      { id, type: 'api', endpoints: [{ url: `${fleet.url}/${id}` }], healthCheck: { timeout: '500ms', failureThreshold: 2, successThreshold: 2 } },
      { id: slow, type: 'api', endpoints: [{ url: `${fleet.url}/${slow}` }], healthCheck: { timeout: '2s', failureThreshold: 1, successThreshold: 1, expect: { degradedResponseTime: '200ms' } } },
    ],
    receiver.url,
  );
  // The service's shard continues-as-new every 2 sweeps.
  const shardId = healthShardWorkflowId(b.taskQueue, shardOf(id));
  await b.client.workflow.start(healthShard, { taskQueue: b.taskQueue, workflowId: shardId, args: [{ shard: shardOf(id), maxMessagesPerRun: 2 }] });
  const handle = b.client.workflow.getHandle(shardId);
  fleet.set(`/${id}`, { body: { status: 'warn' }, contentType: HEALTH_JSON });
  fleet.set(`/${slow}`, { delayMs: 400 });
  // Worker 1: one warn (below failureThreshold: no alert yet).
  await b.run(async () => {
    const r = await b.sweep();
    expect(r.services.find((s) => s.id === id)).toMatchObject({ status: 'degraded' });
    expect(r.services.find((s) => s.id === slow)).toMatchObject({ status: 'degraded', failureKind: 'slow' });
  });
  // Worker 2 (a restart): the second warn opens the warning; then the service fails outright.
  await b.run(async () => {
    await b.sweep();
    await eventually(() => sent(id).length === 1, 'WARNING');
    expect(await getHealth(b.client, id, { taskQueue: b.taskQueue })).toMatchObject({ status: 'degraded', alertOpen: false, warningOpen: true });
    fleet.set(`/${id}`, { status: 503 });
    await b.sweep();
    await b.sweep();
    await eventually(() => sent(id).length === 2, 'TRIGGERED');
  });
  expect(sent(id)).toEqual([
    [`health/${id}/warning#1`, 'WARNING', `health/${id}/warning#1`],
    [`health/${id}#1`, 'TRIGGERED', `health/${id}#1`],
  ]);
  expect(receiver.alerts.find((a) => a.id === `health/${id}/warning#1`)).toMatchObject({ severity: 'warning', summary: `${id} is degraded: health+json status "warn"` });
  // Worker 3: it answers again, still with a warning: the failure resolves, the warning stays open and is not repeated.
  fleet.set(`/${id}`, { body: { status: 'warn' }, contentType: HEALTH_JSON });
  await b.run(async () => {
    await b.sweep();
    await b.sweep();
    await b.sweep();
    await eventually(() => sent(id).length === 3, 'RESOLVED of the failure');
    await sleep(300);
    expect(sent(id)[2]).toEqual([`health/${id}#2`, 'RESOLVED', `health/${id}#1`]);
    expect(sent(id)).toHaveLength(3);
    // Healthy again: after successThreshold passes the warning resolves.
    fleet.set(`/${id}`, { body: { status: 'pass' }, contentType: HEALTH_JSON });
    await b.sweep();
    await b.sweep();
    await eventually(() => sent(id).length === 4, 'RESOLVED of the warning');
    expect((await getHealth(b.client, id, { taskQueue: b.taskQueue }))?.warningOpen).toBeUndefined();
    await b.sweep();
    await sleep(300);
    expect((await handle.query(healthShardQuery, { ids: [id] })).services[0]!.warning).toMatchObject({ open: false, seq: 2 });
  });
  expect(sent(id)).toEqual([
    [`health/${id}/warning#1`, 'WARNING', `health/${id}/warning#1`],
    [`health/${id}#1`, 'TRIGGERED', `health/${id}#1`],
    [`health/${id}#2`, 'RESOLVED', `health/${id}#1`],
    [`health/${id}/warning#2`, 'RESOLVED', `health/${id}/warning#1`],
  ]);
  expect(sent(slow)).toEqual([[`health/${slow}/warning#1`, 'WARNING', `health/${slow}/warning#1`]]);
  expect(receiver.alerts.find((a) => a.id === `health/${slow}/warning#1`)!.summary).toMatch(new RegExp(`^${slow} is degraded \\(slow\\): responded in \\d+ms, degraded above 200ms$`));
  let runs = 0;
  for await (const _ of b.client.workflow.list({ query: `WorkflowId = '${shardId}'` })) runs++;
  expect(runs).toBeGreaterThanOrEqual(3);
}, 60_000);

test('certificate expiry with thresholds [21d, 14d, 7d]: one notice per threshold crossed, never repeated; a renewed certificate resolves it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ia-certs-'));
  const cert = (days: number) => {
    const key = join(dir, `${days}.key`);
    const crt = join(dir, `${days}.crt`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', crt, '-days', String(days), '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    return { key: readFileSync(key, 'utf8'), cert: readFileSync(crt, 'utf8') };
  };
  const certs = { 20: cert(20), 10: cert(10), 5: cert(5), 90: cert(90) };
  const server = createHttpsServer(certs[20], (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  // Serve another certificate to every new connection (and drop the open ones, so the probe sees it).
  const serve = (days: keyof typeof certs) => {
    server.setSecureContext(certs[days]);
    server.closeAllConnections();
  };
  const id = `${uniquePrefix()}-cert`;
  try {
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/health`;
    const b = await healthBench(
      [{ id, type: 'api', endpoints: [{ url }], healthCheck: { failureThreshold: 1, successThreshold: 1, expect: { certificateExpiresAfter: ['21d', '14d', '7d'] } } }],
      receiver.url,
      { ca: Object.values(certs).map((c) => c.cert) },
    );
    await b.run(async () => {
      for (const days of [20, 20, 10, 10, 5, 5] as const) {
        serve(days);
        await b.sweep();
      }
      await eventually(() => sent(id).length === 3, 'three notices');
      serve(90);
      await b.sweep();
      await eventually(() => sent(id).length === 4, 'RESOLVED');
      await sleep(300);
    });
    const incident = `health/${id}/warning#1`;
    expect(sent(id)).toEqual([
      [`health/${id}/warning#1`, 'WARNING', incident],
      [`health/${id}/warning#2`, 'WARNING', incident],
      [`health/${id}/warning#3`, 'WARNING', incident],
      [`health/${id}/warning#4`, 'RESOLVED', incident],
    ]);
    const summaries = receiver.alerts.filter((a) => a.serviceId === id).map((a) => a.summary);
    expect(summaries.slice(0, 3)).toEqual([
      expect.stringMatching(new RegExp(`^${id} is degraded \\(tls\\): certificate expires in 19 day\\(s\\), under the 21-day threshold$`)),
      expect.stringMatching(/certificate expires in 9 day\(s\), under the 14-day threshold$/),
      expect.stringMatching(/certificate expires in 4 day\(s\), under the 7-day threshold$/),
    ]);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}, 60_000);
