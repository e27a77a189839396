/**
 * Continuous monitoring (issue 15, "Timing"): every service on its own
 * cadence, results published as they come, overdue services read `unknown`,
 * and the Schedule in `continuous` mode. Real dev server, real workers (two
 * of them, on separate data dirs, where it matters), real loopback servers.
 */
import { mkdtempSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createActivities } from '../../src/activities';
import { applySweepSchedule, describeSweepSchedule, getHealth, listHealth, triggerSweepSchedule } from '../../src/client/health';
import { openState } from '../../src/state';
import type { Registry } from '../../src/domain/registry';
import type { HealthMonitorInput, HealthMonitorResult } from '../../src/workflows/monitor';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { registryOf } from './fleet';
import { eventually, startReceiver, uniquePrefix, type Receiver } from './harness';

/** A loopback server that records when each path was requested and answers as told. */
async function startTargets() {
  const arrivals = new Map<string, number[]>();
  const status = new Map<string, number | 'stall'>();
  const stalled = new Set<ServerResponse>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    (arrivals.get(path) ?? arrivals.set(path, []).get(path)!).push(Date.now());
    const s = status.get(path) ?? 200;
    if (s === 'stall') {
      stalled.add(res);
      res.on('close', () => stalled.delete(res));
      return;
    }
    res.writeHead(s, { 'content-type': 'application/json' });
    res.end('{}');
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    arrivals,
    status,
    close: async () => {
      for (const r of stalled) r.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
type Targets = Awaited<ReturnType<typeof startTargets>>;

let targets: Targets;
let receiver: Receiver;
beforeAll(async () => {
  targets = await startTargets();
  receiver = await startReceiver();
});
afterAll(async () => {
  await targets.close();
  await receiver.close();
  await closeTestClient();
});

/** Workers (each its own data dir, like separate hosts) on one task queue with the real activities. */
async function withWorkers<T>(taskQueue: string, registry: { current: Registry }, count: number, fn: () => Promise<T>): Promise<T> {
  const client = await testClient();
  const states = await Promise.all(Array.from({ length: count }, () => openState({ dataDir: mkdtempSync(join(tmpdir(), 'ia-monitor-')) })));
  const run = (i: number): Promise<T> =>
    withTestWorker(
      {
        taskQueue,
        identity: `monitor-test-worker-${i}`,
        activities: createActivities({
          registry: { current: () => registry.current },
          state: states[i]!,
          health: { client, alertWebhooks: [{ name: 'ops', url: receiver.url, format: 'json', timeoutMs: 2000 }], figuresEveryMs: 0 },
        }),
      },
      () => (i === count - 1 ? fn() : run(i + 1)),
    );
  try {
    return await run(0);
  } finally {
    for (const s of states) await s.close();
  }
}

function gaps(times: number[]): number[] {
  return times.slice(1).map((t, i) => t - times[i]!);
}

test('each service is probed at its own interval, a stalled target holds up nobody, and a failure is published as it comes', async () => {
  const p = uniquePrefix();
  const taskQueue = uniqueTaskQueue('monitor');
  const svc = (id: string, interval: string, timeout: string) => ({ id: `${p}-${id}`, type: 'api', endpoints: [{ url: targets.url }], healthCheck: { path: `/${p}/${id}`, interval, timeout } });
  const registry = { current: registryOf([svc('fast', '1s', '500ms'), svc('mid', '3s', '1s'), svc('slow', '10s', '6s')]) };
  targets.status.set(`/${p}/slow`, 'stall');
  const client = await testClient();
  await withWorkers(taskQueue, registry, 1, async () => {
    // The window begins a few seconds after the lane has started, as a scheduled window does (healthMonitor's
    // lead): nothing may read overdue for the wait.
    const windowStart = Date.now() + 4000;
    const input: HealthMonitorInput = { windowStart, windowMs: 9_000, concurrency: 10 };
    const run = client.workflow.start('healthMonitor', { taskQueue, workflowId: `monitor/${p}`, args: [input] });
    const h = await run;
    // The fast service fails while the slow probe still stalls: the failure is published before any sweep could end.
    await eventually(async () => (targets.arrivals.get(`/${p}/fast`)?.length ?? 0) >= 3, 'fast probed three times', 10_000);
    targets.status.set(`/${p}/fast`, 500);
    await eventually(async () => (await getHealth(client, `${p}-fast`, { taskQueue }))?.status === 'unhealthy', 'fast reads unhealthy', 10_000);
    // Its TRIGGERED alert went out while the slow probe had not returned yet.
    await eventually(() => receiver.requests.some((r) => (r.body as { serviceId?: string; kind?: string }).serviceId === `${p}-fast` && (r.body as { kind?: string }).kind === 'TRIGGERED'), 'fast alerted', 10_000);
    const slowProbes = targets.arrivals.get(`/${p}/slow`)?.length ?? 0;
    expect(slowProbes).toBeLessThanOrEqual(1);
    targets.status.set(`/${p}/fast`, 200);
    const result = (await h.result()) as HealthMonitorResult;
    expect(result.once).toBe(false);
    expect(result.lanes).toHaveLength(1);
    // The lane kept up: nothing overdue, not even while it drained the stalled probe after the window's end
    // (from then on the services are the next window's).
    expect(result.lanes[0]!.overdue).toBe(0);
    const fast = targets.arrivals.get(`/${p}/fast`)!.filter((t) => t >= windowStart && t < windowStart + 9_000);
    const mid = targets.arrivals.get(`/${p}/mid`)!.filter((t) => t >= windowStart && t < windowStart + 9_000);
    // Each at its own cadence: ~9 probes of the 1 s service and ~3 of the 3 s one in a 9 s window.
    expect(fast.length).toBeGreaterThanOrEqual(7);
    expect(fast.length).toBeLessThanOrEqual(10);
    expect(mid.length).toBeGreaterThanOrEqual(2);
    expect(mid.length).toBeLessThanOrEqual(4);
    // Never two probes of one service closer than half its interval (no double probing).
    expect(Math.min(...gaps(fast))).toBeGreaterThan(500);
    // The slow service was probed once (its grid time is once per 10 s) and timed out: unhealthy or not yet judged, never healthy.
    const slow = await getHealth(client, `${p}-slow`, { taskQueue });
    expect(slow?.status).not.toBe('healthy');
    // The fast one recovered after the window's last probes (or is still recovering): its history is in the store either way.
    // The slow service's grid (every 10 s, phase from its id) may fall outside the 9 s window: listed once probed.
    const probedSlow = (targets.arrivals.get(`/${p}/slow`)?.length ?? 0) > 0;
    const expected = [`${p}-fast`, `${p}-mid`, ...(probedSlow ? [`${p}-slow`] : [])];
    await eventually(async () => JSON.stringify((await listHealth(client, { taskQueue })).map((r) => r.serviceId).sort()) === JSON.stringify(expected), `the shards hold ${expected.join(', ')}`);
  });
}, 60_000);

test('a service whose probe cannot run in time reads unknown ("no result for N s"), then recovers', async () => {
  const p = uniquePrefix();
  const taskQueue = uniqueTaskQueue('monitor');
  // One probe at a time: the stalled service holds the only slot for its 4 s timeout.
  const registry = {
    current: registryOf([
      { id: `${p}-fast`, type: 'api', endpoints: [{ url: targets.url }], healthCheck: { path: `/${p}/fast`, interval: '1s', timeout: '300ms' } },
      { id: `${p}-stuck`, type: 'api', endpoints: [{ url: targets.url }], healthCheck: { path: `/${p}/stuck`, interval: '5s', timeout: '4s' } },
    ]),
  };
  targets.status.set(`/${p}/stuck`, 'stall');
  const client = await testClient();
  await withWorkers(taskQueue, registry, 1, async () => {
    const h = await client.workflow.start('healthMonitor', { taskQueue, workflowId: `monitor/${p}`, args: [{ windowStart: Date.now() + 1000, windowMs: 12_000, concurrency: 1 } satisfies HealthMonitorInput] });
    await eventually(async () => (await getHealth(client, `${p}-fast`, { taskQueue }))?.status === 'unknown', 'fast reads unknown while the lane is saturated', 15_000);
    const view = await getHealth(client, `${p}-fast`, { taskQueue });
    expect(view?.lastProbe?.detail).toMatch(/^no result for \d+(\.\d)? s \(interval 1 s, timeout 0.3 s\): the prober is behind$/);
    await eventually(async () => (await getHealth(client, `${p}-fast`, { taskQueue }))?.status === 'healthy', 'fast healthy again once the stalled probe timed out', 15_000);
    const r = (await h.result()) as HealthMonitorResult;
    expect(r.lanes[0]!.overdue).toBeGreaterThanOrEqual(1);
  });
}, 60_000);

test('two workers on separate data dirs, two lanes: every service monitored, and a dependent of a failing service in the other lane reads impacted', async () => {
  const p = uniquePrefix();
  const taskQueue = uniqueTaskQueue('monitor');
  // Enough services that both lanes (shards k mod 2) hold some.
  const ids = Array.from({ length: 12 }, (_, i) => `${p}-s${i}`);
  const registry = {
    current: registryOf([
      ...ids.map((id) => ({ id, type: 'api', endpoints: [{ url: targets.url }], healthCheck: { path: `/${id}`, interval: '1s', timeout: '500ms' } })),
      { id: `${p}-db`, type: 'api', endpoints: [{ url: targets.url }], healthCheck: { path: `/${p}-db`, interval: '1s', timeout: '500ms' } },
      // Each depends on the database; in whichever lane, its status follows the database's failure.
      ...ids.slice(0, 4).map((id) => ({ id: `${id}-app`, type: 'api', endpoints: [{ url: targets.url }], dependsOn: [`${p}-db`], healthCheck: { path: `/${id}-app`, interval: '1s', timeout: '500ms' } })),
    ]),
  };
  const client = await testClient();
  await withWorkers(taskQueue, registry, 2, async () => {
    const h = await client.workflow.start('healthMonitor', { taskQueue, workflowId: `monitor/${p}`, args: [{ windowStart: Date.now() + 1000, windowMs: 14_000, lanes: 2 } satisfies HealthMonitorInput] });
    await eventually(async () => (await listHealth(client, { taskQueue })).filter((r) => r.status === 'healthy').length === 17, 'all 17 healthy', 15_000);
    targets.status.set(`/${p}-db`, 503);
    await eventually(
      async () => {
        const rows = await listHealth(client, { taskQueue });
        const apps = rows.filter((r) => r.serviceId.endsWith('-app'));
        return apps.length === 4 && apps.every((a) => a.status === 'impacted' && a.rootCause === `${p}-db`) && rows.find((r) => r.serviceId === `${p}-db`)?.status === 'unhealthy';
      },
      'the database unhealthy, every app impacted by it',
      15_000,
    );
    targets.status.set(`/${p}-db`, 200);
    const r = (await h.result()) as HealthMonitorResult;
    expect(r.lanes.map((l) => l.lane).sort()).toEqual([0, 1]);
    expect(r.lanes.reduce((n, l) => n + l.services, 0)).toBe(17);
    // One alert for the incident, naming its root cause; none for the impacted apps.
    const triggered = receiver.requests.filter((q) => (q.body as { kind?: string; serviceId?: string }).kind === 'TRIGGERED' && String((q.body as { serviceId?: string }).serviceId).startsWith(p));
    expect(triggered.map((q) => (q.body as { serviceId: string }).serviceId)).toEqual([`${p}-db`]);
  });
}, 60_000);

test('schedule apply --mode continuous runs healthMonitor windows; a trigger probes every service once, now', async () => {
  const p = uniquePrefix();
  const taskQueue = uniqueTaskQueue('monitor');
  const registry = {
    current: registryOf([
      { id: `${p}-a`, type: 'api', endpoints: [{ url: targets.url }], healthCheck: { path: `/${p}/a`, interval: '1h', timeout: '1s' } },
      // Never answers: the triggered run lasts its 3 s timeout, long enough to be seen running.
      { id: `${p}-b`, type: 'api', endpoints: [{ url: targets.url }], healthCheck: { path: `/${p}/b`, interval: '1h', timeout: '3s' } },
    ]),
  };
  targets.status.set(`/${p}/b`, 'stall');
  const client = await testClient();
  const scheduleId = `monitor-${p}`;
  try {
    await withWorkers(taskQueue, registry, 1, async () => {
      await applySweepSchedule(client, { scheduleId, taskQueue, intervalMs: 3_600_000, paused: true });
      const d = await describeSweepSchedule(client, scheduleId);
      expect(d).toMatchObject({ mode: 'continuous', intervalMs: 3_600_000, overlap: expect.stringMatching(/ALLOW_ALL/) });
      await triggerSweepSchedule(client, scheduleId);
      // describe names the running window (overlap ALLOW_ALL: read from visibility).
      await eventually(async () => (await describeSweepSchedule(client, scheduleId)).runningWorkflows.length === 1, 'describe shows the triggered run running', 10_000);
      // A 1 h interval: only the triggered one-pass run probes it now.
      await eventually(async () => (await getHealth(client, `${p}-a`, { taskQueue }))?.status !== undefined, 'the triggered run published a result', 15_000);
      await eventually(async () => (await describeSweepSchedule(client, scheduleId)).recentRuns.length === 1, 'one run');
      const wf = (await describeSweepSchedule(client, scheduleId)).recentRuns[0]!.workflowId;
      const r = (await client.workflow.getHandle(wf).result()) as HealthMonitorResult;
      expect(r.once).toBe(true);
      expect(r.lanes[0]!.probes).toBe(2);
      expect(targets.arrivals.get(`/${p}/a`)).toHaveLength(1);
    });
  } finally {
    await client.schedule.getHandle(scheduleId).delete().catch(() => undefined);
  }
}, 60_000);


test('a later window writes nothing for services already steady in their shard (no first results, no passes)', async () => {
  const p = uniquePrefix();
  const taskQueue = uniqueTaskQueue('monitor');
  const ids = Array.from({ length: 6 }, (_, i) => `${p}-q${i}`);
  const registry = { current: registryOf(ids.map((id) => ({ id, type: 'api', endpoints: [{ url: targets.url }], healthCheck: { path: `/${id}`, interval: '1s', timeout: '500ms' } }))) };
  const client = await testClient();
  await withWorkers(taskQueue, registry, 1, async () => {
    const start = Date.now() + 1000;
    const first = (await client.workflow.execute('healthMonitor', { taskQueue, workflowId: `monitor/${p}-1`, args: [{ windowStart: start, windowMs: 4_000 } satisfies HealthMonitorInput] })) as HealthMonitorResult;
    // Each service: its first result and successThreshold (2) passes in a row, then steady.
    expect(first.lanes[0]!.resultsSent).toBe(2 * ids.length);
    await eventually(async () => (await listHealth(client, { taskQueue })).filter((r) => r.status === 'healthy').length === ids.length, 'all healthy');
    const second = (await client.workflow.execute('healthMonitor', { taskQueue, workflowId: `monitor/${p}-2`, args: [{ windowStart: Date.now() + 1000, windowMs: 4_000 } satisfies HealthMonitorInput] })) as HealthMonitorResult;
    expect(second.lanes[0]!.probes).toBeGreaterThanOrEqual(3 * ids.length);
    expect(second.lanes[0]!.resultsSent).toBe(0);
    // A change is still news: one service fails in a third window and its results go out.
    targets.status.set(`/${ids[0]}`, 500);
    const third = (await client.workflow.execute('healthMonitor', { taskQueue, workflowId: `monitor/${p}-3`, args: [{ windowStart: Date.now() + 1000, windowMs: 4_000 } satisfies HealthMonitorInput] })) as HealthMonitorResult;
    expect(third.lanes[0]!.resultsSent).toBeGreaterThanOrEqual(3);
    expect((await getHealth(client, ids[0]!, { taskQueue }))?.status).toBe('unhealthy');
  });
}, 60_000);
