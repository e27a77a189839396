/**
 * The status state (health shards), driven by real sweeps: hysteresis,
 * exactly one TRIGGERED and one RESOLVED per incident (across flapping,
 * stalls, worker restarts and continue-as-new), dependency-aware alerts.
 */
import { healthShard, healthShardQuery } from '../../src/workflows/health-shard';
import { healthShardWorkflowId, shardOf } from '../../src/domain/health-shard';
import type { ServiceHealthState } from '../../src/domain/health';
import { getHealth } from '../../src/client/health';
import { closeTestClient } from '../helpers/temporal';
import { startFleet, type Fleet } from './fleet';
import { eventually, healthBench, sleep, startReceiver, uniquePrefix, type Bench, type Receiver } from './harness';

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

const api = (id: string, dependsOn: string[] = [], thresholds = { failureThreshold: 3, successThreshold: 2 }) => ({
  id,
  type: 'api',
  endpoints: [{ url: `${fleet.url}/${id}` }],
  dependsOn,
  healthCheck: { timeout: '300ms', ...thresholds },
});

/** The service's state as its shard holds it. */
async function stateOf(b: Bench, id: string): Promise<ServiceHealthState> {
  const page = await b.client.workflow.getHandle(healthShardWorkflowId(b.taskQueue, shardOf(id))).query(healthShardQuery, { ids: [id] });
  if (!page.services[0]) throw new Error(`shard holds no ${id}`);
  return page.services[0];
}

const alertsFor = (id: string) => receiver.alerts.filter((a) => a.serviceId === id).map((a) => a.kind);

test('hysteresis: flapping never alerts; a real outage sends one TRIGGERED, recovery one RESOLVED', async () => {
  const id = `${uniquePrefix()}-api`;
  const b = await healthBench([api(id)], receiver.url);
  await b.run(async () => {
    const state = () => stateOf(b, id);
    fleet.set(`/${id}`, { status: 200 });
    await b.sweep();
    expect((await state()).status).toBe('healthy');
    // Flap: fail, fail, pass, fail, fail, pass: never 3 in a row.
    for (const st of [503, 503, 200, 503, 503, 200]) {
      fleet.set(`/${id}`, { status: st });
      await b.sweep();
    }
    expect((await state()).status).toBe('healthy');
    // Outage: five failing sweeps.
    fleet.set(`/${id}`, { status: 503 });
    const seen: string[] = [];
    for (let i = 0; i < 5; i++) {
      await b.sweep();
      seen.push((await state()).status);
    }
    expect(seen).toEqual(['healthy', 'healthy', 'unhealthy', 'unhealthy', 'unhealthy']);
    await eventually(() => alertsFor(id).length === 1, 'TRIGGERED delivered');
    // Recovery: successThreshold 2.
    fleet.set(`/${id}`, { status: 200 });
    await b.sweep();
    expect((await state()).status).toBe('unhealthy');
    await b.sweep();
    expect((await state()).status).toBe('healthy');
    await b.sweep();
    await eventually(() => alertsFor(id).length === 2, 'RESOLVED delivered');
    await sleep(300);
    expect(alertsFor(id)).toEqual(['TRIGGERED', 'RESOLVED']);
    const trig = receiver.alerts.find((a) => a.serviceId === id && a.kind === 'TRIGGERED')!;
    expect(trig).toMatchObject({ source: 'health', rootCause: id, failureKind: 'status' });
    const figures = (await state()).figures!;
    expect(figures.availability['1h']).toBeGreaterThan(0);
    expect(figures.availability['1h']).toBeLessThan(100);
    expect(figures.p50Ms).toBeGreaterThan(0);
  });
});

test('a gateway failing under many dependents raises one alert naming the root cause and the impacted services', async () => {
  const p = uniquePrefix();
  const gw = `${p}-gw`;
  const deps = Array.from({ length: 12 }, (_, i) => `${p}-svc${String(i).padStart(2, '0')}`);
  const b = await healthBench([api(gw), ...deps.map((d) => api(d, [gw], { failureThreshold: 2, successThreshold: 1 }))], receiver.url);
  await b.run(async () => {
    for (const id of [gw, ...deps]) fleet.set(`/${id}`, { status: 200 });
    await b.sweep();
    for (const id of [gw, ...deps]) fleet.set(`/${id}`, { status: 502 });
    for (let i = 0; i < 4; i++) {
      const r = await b.sweep();
      const by = new Map(r.services.map((s) => [s.id, s]));
      expect(by.get(gw)!.status).toBe('unhealthy');
      for (const d of deps) expect(by.get(d)).toMatchObject({ status: 'impacted', rootCause: gw });
    }
    await eventually(() => alertsFor(gw).length === 1, 'gateway TRIGGERED');
    await sleep(500);
    const mine = receiver.alerts.filter((a) => a.serviceId.startsWith(p));
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ kind: 'TRIGGERED', serviceId: gw, rootCause: gw, impacted: deps });
    const dep = await stateOf(b, deps[0]!);
    expect(dep).toMatchObject({ status: 'impacted', rootCauses: [gw] });
    for (const id of [gw, ...deps]) fleet.set(`/${id}`, { status: 200 });
    await b.sweep();
    await b.sweep();
    await eventually(() => alertsFor(gw).length === 2, 'gateway RESOLVED');
    await sleep(300);
    expect(receiver.alerts.filter((a) => a.serviceId.startsWith(p)).map((a) => `${a.serviceId}:${a.kind}`)).toEqual([`${gw}:TRIGGERED`, `${gw}:RESOLVED`]);
  });
});

test('headers stalled for several sweeps, then recovery: timeouts, one TRIGGERED, one RESOLVED', async () => {
  const id = `${uniquePrefix()}-stall`;
  const b = await healthBench([api(id)], receiver.url);
  await b.run(async () => {
    fleet.set(`/${id}`, { status: 200 });
    await b.sweep();
    fleet.set(`/${id}`, { stall: true });
    for (let i = 0; i < 4; i++) {
      const r = await b.sweep();
      expect(r.services[0]).toMatchObject({ status: 'unhealthy', failureKind: 'timeout' });
    }
    fleet.set(`/${id}`, { status: 200 });
    await b.sweep();
    await b.sweep();
    await eventually(() => alertsFor(id).length === 2, 'TRIGGERED and RESOLVED');
    await sleep(300);
    expect(alertsFor(id)).toEqual(['TRIGGERED', 'RESOLVED']);
    expect(receiver.alerts.find((a) => a.serviceId === id)!.failureKind).toBe('timeout');
  });
});

test('exactly once across worker restarts and continue-as-new; recovery while no sweep runs', async () => {
  const id = `${uniquePrefix()}-cas`;
  const b = await healthBench([api(id)], receiver.url);
  // Start the service's shard ourselves with a tiny run length so it continues-as-new every 2 sweeps.
  const shardId = healthShardWorkflowId(b.taskQueue, shardOf(id));
  await b.client.workflow.start(healthShard, {
    taskQueue: b.taskQueue,
    workflowId: shardId,
    args: [{ shard: shardOf(id), maxMessagesPerRun: 2 }],
  });
  fleet.set(`/${id}`, { status: 500 });
  // Worker 1: two failing sweeps.
  await b.run(async () => {
    await b.sweep();
    await b.sweep();
  });
  // Worker 2 (a restart): the third failure crosses the threshold.
  await b.run(async () => {
    await b.sweep();
    await b.sweep();
    await eventually(() => alertsFor(id).length === 1, 'TRIGGERED');
  });
  // The service recovers while no sweep runs, then sweeps resume on a third worker.
  fleet.set(`/${id}`, { status: 200 });
  await sleep(500);
  expect(alertsFor(id)).toEqual(['TRIGGERED']);
  await b.run(async () => {
    await b.sweep();
    await b.sweep();
    await b.sweep();
    await eventually(() => alertsFor(id).length === 2, 'RESOLVED');
    await sleep(300);
    const st = await stateOf(b, id);
    expect(st).toMatchObject({ status: 'healthy', alert: { open: false, seq: 2 } });
    // 7 sweeps, each applied once although runs continued-as-new in between.
    expect(st.observations).toBe(7);
  });
  expect(alertsFor(id)).toEqual(['TRIGGERED', 'RESOLVED']);
  // It did continue-as-new (at most 2 observations per run): several runs share the id.
  const runs = b.client.workflow.list({ query: `WorkflowId = '${shardId}'` });
  let count = 0;
  for await (const _ of runs) count++;
  expect(count).toBeGreaterThanOrEqual(3);
});

test('a service failing from its first sweep reads unhealthy at once (what `dev` printed)', async () => {
  const id = `${uniquePrefix()}-first`;
  const b = await healthBench([api(id)], receiver.url);
  await b.run(async () => {
    fleet.set(`/${id}`, { status: 503 });
    const r = await b.sweep();
    expect(r.services[0]).toMatchObject({ id, status: 'unhealthy' });
    await eventually(async () => (await getHealth(b.client, id, { taskQueue: b.taskQueue }))?.status === 'unhealthy', 'status unhealthy after one failing sweep', 5_000);
    // No alert yet: alerting still waits for failureThreshold (3) failures.
    await sleep(300);
    expect(alertsFor(id)).toEqual([]);
    await b.sweep();
    await b.sweep();
    await eventually(() => alertsFor(id).length === 1, 'TRIGGERED after the third failure');
  });
});
