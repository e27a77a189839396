/**
 * healthSweep end to end: a real dev server, a real worker, real loopback
 * services failing in each way; the sweep returns one result per service.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createActivities } from '../../src/activities';
import { openState } from '../../src/state';
import { staticRegistry } from '../../src/activities/registry';
import { healthSweep, type HealthSweepResult } from '../../src/workflows/sweep';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { freePort, registryOf, startFleet, type Fleet } from './fleet';

let fleet: Fleet;
beforeAll(async () => {
  fleet = await startFleet();
});
afterAll(async () => {
  await fleet.close();
  await closeTestClient();
});

const svc = (id: string, url: string, extra: Record<string, unknown> = {}, dependsOn: string[] = []) => ({
  id,
  type: 'api',
  endpoints: [{ url }],
  dependsOn,
  healthCheck: { timeout: '500ms', ...extra },
});

async function sweep(services: unknown[], input: Record<string, unknown> = {}): Promise<HealthSweepResult> {
  const taskQueue = uniqueTaskQueue('sweep');
  const client = await testClient();
  const activities = createActivities({ registry: staticRegistry(registryOf(services)), state: await openState({ dataDir: mkdtempSync(join(tmpdir(), 'ia-sweep-')) }) });
  return withTestWorker({ taskQueue, activities }, () =>
    client.workflow.execute(healthSweep, { taskQueue, workflowId: `sweep/test-${taskQueue}`, args: [{ publish: false, ...input }] }),
  );
}

test('one result per service, each failure of its own kind, dependents impacted with the root cause named', async () => {
  const closed = await freePort();
  fleet.set('/ok', { status: 200, body: { status: 'up' } });
  fleet.set('/err', { status: 503 });
  fleet.set('/stall', { stall: true });
  fleet.set('/slow', { delayMs: 150 });
  fleet.set('/body', { body: { status: 'down' } });
  fleet.set('/warn', { body: { status: 'warn' }, contentType: 'application/health+json' });
  fleet.set('/gw', { status: 500 });
  const u = fleet.url;
  const result = await sweep([
    svc('ok', `${u}/ok`, { expect: { status: ['2xx'], body: [{ path: '$.status', equals: 'up' }] } }),
    svc('err', `${u}/err`),
    svc('stall', `${u}/stall`),
    svc('slow', `${u}/slow`, { expect: { maxResponseTime: '50ms' } }),
    svc('body', `${u}/body`, { expect: { body: [{ path: '$.status', equals: 'up' }] } }),
    svc('warn', `${u}/warn`),
    svc('refused', `http://127.0.0.1:${closed}/`),
    svc('dns', 'http://no-such-host.invalid/'),
    svc('tcp-ok', `tcp://127.0.0.1:${fleet.port}`),
    svc('tcp-refused', `tcp://127.0.0.1:${closed}`),
    svc('gw', `${u}/gw`),
    svc('app', `${u}/err`, {}, ['gw']),
    svc('web', `${u}/ok`, {}, ['app']),
  ]);
  const by = new Map(result.services.map((s) => [s.id, s]));
  expect(result.services).toHaveLength(13);
  expect(result.registryVersion).toMatch(/^[0-9a-f]{16}$/);
  expect(by.get('ok')).toMatchObject({ status: 'healthy', verdict: 'pass', httpStatus: 200 });
  expect(by.get('err')).toMatchObject({ status: 'unhealthy', failureKind: 'status', httpStatus: 503 });
  expect(by.get('stall')).toMatchObject({ status: 'unhealthy', failureKind: 'timeout' });
  expect(by.get('stall')!.latencyMs).toBeGreaterThanOrEqual(450);
  expect(by.get('slow')).toMatchObject({ status: 'unhealthy', failureKind: 'slow' });
  expect(by.get('body')).toMatchObject({ status: 'unhealthy', failureKind: 'body' });
  expect(by.get('warn')).toMatchObject({ status: 'degraded', verdict: 'warn' });
  expect(by.get('refused')).toMatchObject({ status: 'unhealthy', failureKind: 'connection_refused' });
  expect(by.get('dns')).toMatchObject({ status: 'unhealthy', failureKind: 'dns' });
  expect(by.get('tcp-ok')).toMatchObject({ status: 'healthy' });
  expect(by.get('tcp-refused')).toMatchObject({ status: 'unhealthy', failureKind: 'connection_refused' });
  expect(by.get('gw')).toMatchObject({ status: 'unhealthy', impacts: ['app', 'web'] });
  expect(by.get('app')).toMatchObject({ status: 'impacted', rootCause: 'gw' });
  expect(by.get('web')).toMatchObject({ status: 'impacted', rootCause: 'gw' });
  expect(result.counts.healthy + result.counts.unhealthy + result.counts.impacted + result.counts.degraded).toBe(13);
});

test('bad options are refused naming the option and the value', async () => {
  const err = await sweep([svc('ok', `${fleet.url}/ok`)], { concurrency: 0 }).catch((e: Error) => e);
  expect(String((err as { cause?: Error }).cause?.message)).toBe('healthSweep: option concurrency must be an integer in 1..1000, got 0');
});

test('a prober that fails for good leaves its services unknown, never healthy', async () => {
  fleet.set('/fine', { status: 200 });
  const taskQueue = uniqueTaskQueue('sweep');
  const client = await testClient();
  const real = createActivities({ registry: staticRegistry(registryOf([svc('fine', `${fleet.url}/fine`)])), state: await openState({ dataDir: mkdtempSync(join(tmpdir(), 'ia-sweep-')) }) });
  // The real activities, except that the prober crashes on every attempt.
  const crash = async () => Promise.reject(new Error('prober crashed'));
  const activities = { ...real, probeServices: crash, probeRegistryPage: crash };
  const result = await withTestWorker({ taskQueue, activities }, () =>
    client.workflow.execute(healthSweep, { taskQueue, workflowId: `sweep/test-${taskQueue}`, args: [{ publish: false }] }),
  );
  expect(result.services).toEqual([expect.objectContaining({ id: 'fine', status: 'unknown', verdict: 'inconclusive' })]);
  expect(result.services[0]!.detail).toContain('prober crashed');
});

test('a service inside its maintenance window reads maintenance, and its failure still explains its dependents', async () => {
  fleet.set('/maint', { status: 500 });
  const start = new Date(Date.now() - 3_600_000).toISOString().slice(0, 16); // UTC wall time, an hour ago
  const result = await sweep([
    { ...svc('maint', `${fleet.url}/maint`), maintenance: [{ start, duration: '2h', timezone: 'UTC' }] },
    svc('dependent', `${fleet.url}/err`, {}, ['maint']),
  ]);
  const by = new Map(result.services.map((s) => [s.id, s]));
  expect(by.get('maint')).toMatchObject({ status: 'maintenance', verdict: 'fail' });
  expect(by.get('dependent')).toMatchObject({ status: 'impacted', rootCause: 'maint' });
});
