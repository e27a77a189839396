/**
 * Alert delivery (generic JSON and Slack bodies, retries, idempotency keys,
 * a slow receiver never delaying sweeps), the sweep Schedule, and the
 * Prometheus metrics.
 */
import { Registry } from 'prom-client';
import { createAlertActivities, parseAlertWebhooks, slackAlertBody } from '../../src/activities/alerts';
import { openState } from '../../src/state';
import { registerHealthMetrics } from '../../src/activities/health-metrics';
import { createHealthPublishActivities } from '../../src/activities/health-publish';
import {
  applySweepSchedule,
  describeSweepSchedule,
  getHealth,
  listHealth,
  pauseSweepSchedule,
  resumeSweepSchedule,
  runSweep,
  triggerSweepSchedule,
} from '../../src/client/health';
import type { Alert } from '../../src/domain/health';
import { healthShardWorkflowId, shardOf } from '../../src/domain/health-shard';
import { closeTestClient, testClient } from '../helpers/temporal';
import { startFleet, type Fleet } from './fleet';
import { eventually, healthBench, sleep, startReceiver, uniquePrefix, type Receiver } from './harness';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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

const alert: Alert = {
  id: 'health/gw#1',
  kind: 'TRIGGERED',
  source: 'health',
  serviceId: 'gw',
  at: Date.UTC(2026, 5, 1),
  summary: 'gw is unhealthy (timeout); 2 dependent service(s) impacted',
  rootCause: 'gw',
  impacted: ['api', 'web'],
  failureKind: 'timeout',
};

test('webhooks: JSON and Slack bodies with the idempotency key; retryable vs refused; URLs never in errors', async () => {
  const slack = await startReceiver();
  try {
    const { deliverAlert } = createAlertActivities({
      webhooks: [
        { url: receiver.url, format: 'json' },
        { url: slack.url, format: 'slack' },
      ],
    });
    await expect(deliverAlert(alert)).resolves.toEqual({ delivered: 2, webhooks: 2 });
    const j = receiver.requests.at(-1)!;
    expect(j.key).toBe('health/gw#1');
    expect(j.body).toMatchObject({ schema: 'integration-agent.alert/v1', kind: 'TRIGGERED', rootCause: 'gw', impacted: ['api', 'web'] });
    const s = slack.requests.at(-1)!.body as { text: string; blocks: unknown[] };
    expect(s).toEqual(slackAlertBody(alert));
    expect(s.text).toContain('TRIGGERED: gw is unhealthy');
    expect(JSON.stringify(s.blocks)).toContain('`api`, `web`');
    slack.status = 503;
    const retryable = await deliverAlert(alert).catch((e: Error & { nonRetryable?: boolean }) => e);
    expect(retryable).toMatchObject({ nonRetryable: false, message: 'alert health/gw#1 not delivered to webhook-2: HTTP 503' });
    slack.status = 400;
    const refused = await deliverAlert(alert).catch((e: Error & { nonRetryable?: boolean }) => e);
    expect(refused).toMatchObject({ nonRetryable: true });
    expect(String((refused as Error).message)).not.toContain('127.0.0.1');
  } finally {
    await slack.close();
  }
  expect(parseAlertWebhooks('slack=https://hooks.example/T/B/x, https://ops.example/a')).toEqual([
    { name: 'webhook-1', url: 'https://hooks.example/T/B/x', format: 'slack' },
    { name: 'webhook-2', url: 'https://ops.example/a', format: 'json' },
  ]);
  expect(() => parseAlertWebhooks('slack=notaurl')).toThrow(
    'ALERT_WEBHOOKS receiver #1: expected [json=|slack=|discord=|teams=]http(s)://..., pagerduty=<key> or smtp=smtp://... (value not shown: webhook URLs are secrets)',
  );
});

test('a stalled alert receiver never delays sweeps; the alert arrives once, after it answers', async () => {
  const id = `${uniquePrefix()}-slowrx`;
  // A receiver that holds every request until released (the webhook timeout is 2 s, so attempts time out and retry).
  const { createServer } = await import('node:http');
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let calls = 0;
  const got = new Set<string>();
  const server = createServer((req, res) => {
    calls++;
    req.resume();
    void released.then(() => {
      got.add(String(req.headers['idempotency-key']));
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}/`;
  try {
    const b = await healthBench([{ id, type: 'api', endpoints: [{ url: `${fleet.url}/${id}` }], healthCheck: { timeout: '300ms', failureThreshold: 1 } }], url);
    fleet.set(`/${id}`, { status: 500 });
    await b.run(async () => {
      await b.sweep(); // crosses the threshold: TRIGGERED is decided and sent to the stalled receiver
      await eventually(() => calls >= 1, 'the alert reached the receiver');
      const t0 = Date.now();
      for (let i = 0; i < 4; i++) await b.sweep();
      const fourSweepsMs = Date.now() - t0;
      expect(got.size).toBe(0); // still stalled: the sweeps did not wait for it
      expect(fourSweepsMs).toBeLessThan(8000);
      release();
      await eventually(() => got.size === 1, 'alert delivered once the receiver answers', 20_000);
    });
    expect([...got]).toEqual([`health/${id}#1`]);
  } finally {
    release();
    server.closeAllConnections();
    server.close();
  }
});

test('schedule apply creates then updates; pause, resume, trigger and describe', async () => {
  const id = `${uniquePrefix()}-sched`;
  const client = await testClient();
  const b = await healthBench([{ id, type: 'api', endpoints: [{ url: `${fleet.url}/${id}` }] }], receiver.url);
  const scheduleId = `health-sweep-${id}`;
  try {
    expect(await applySweepSchedule(client, { scheduleId, taskQueue: b.taskQueue, mode: 'sweep', intervalMs: 3_600_000, paused: true })).toEqual({ scheduleId, result: 'created' });
    expect(await applySweepSchedule(client, { scheduleId, taskQueue: b.taskQueue, mode: 'sweep', intervalMs: 1_800_000, concurrency: 10 })).toEqual({ scheduleId, result: 'updated' });
    let d = await describeSweepSchedule(client, scheduleId);
    expect(d).toMatchObject({ scheduleId, paused: true, intervalMs: 1_800_000, concurrency: 10, taskQueue: b.taskQueue, catchupWindowMs: 60_000 });
    expect(d.overlap).toMatch(/SKIP/);
    await resumeSweepSchedule(client, scheduleId);
    expect((await describeSweepSchedule(client, scheduleId)).paused).toBe(false);
    await pauseSweepSchedule(client, scheduleId);
    expect((await describeSweepSchedule(client, scheduleId)).paused).toBe(true);
    fleet.set(`/${id}`, { status: 200 });
    await b.run(async () => {
      await triggerSweepSchedule(client, scheduleId);
      await eventually(async () => (await describeSweepSchedule(client, scheduleId)).recentRuns.length === 1, 'a triggered sweep');
      d = await describeSweepSchedule(client, scheduleId);
      expect(d.recentRuns[0]!.workflowId).toMatch(/^sweep-/);
      await client.workflow.getHandle(d.recentRuns[0]!.workflowId).result();
      await eventually(async () => (await getHealth(client, id, { taskQueue: b.taskQueue }))?.status === 'healthy', 'status recorded');
      const all = await listHealth(client, { queryTimeoutMs: 1000, taskQueue: b.taskQueue });
      expect(all.find((h) => h.serviceId === id)).toMatchObject({ status: 'healthy', workflowId: healthShardWorkflowId(b.taskQueue, shardOf(id)) });
    });
    await expect(applySweepSchedule(client, { scheduleId, intervalMs: 10 })).rejects.toThrow('intervalMs must be an integer in 1000..86400000, got 10');
    await expect(describeSweepSchedule(client, 'no-such-schedule')).rejects.toThrow('no schedule "no-such-schedule": create it with `integration-agent schedule apply`');
  } finally {
    await client.schedule.getHandle(scheduleId).delete().catch(() => undefined);
  }
});

test('runSweep from the client facade; getHealth of an unknown service is undefined', async () => {
  const id = `${uniquePrefix()}-run`;
  fleet.set(`/${id}`, { status: 200 });
  const client = await testClient();
  const b = await healthBench([{ id, type: 'api', endpoints: [{ url: `${fleet.url}/${id}` }] }], receiver.url);
  const r = await b.run(() => runSweep(client, { taskQueue: b.taskQueue, concurrency: 5 }));
  expect(r.workflowId).toMatch(/^sweep\/\d{4}-/);
  expect(r.services).toEqual([expect.objectContaining({ id, status: 'healthy' })]);
  expect(await getHealth(client, `${id}-nope`, { taskQueue: b.taskQueue })).toBeUndefined();
  await expect(runSweep(client, { concurrency: 0 })).rejects.toThrow('concurrency must be an integer in 1..1000, got 0');
});

test('metrics: status state set, probe latency histogram, availability', async () => {
  const reg = new Registry();
  const metrics = registerHealthMetrics(reg);
  expect(registerHealthMetrics(reg)).toBeDefined(); // a second registration reuses the metrics
  const { publishSweep } = createHealthPublishActivities({ history: (await openState({ dataDir: mkdtempSync(join(tmpdir(), 'ia-metrics-')) })).health, metrics, figuresEveryMs: 0 });
  const at = Date.now();
  await publishSweep({
    sweepId: 'sweep/m1',
    items: [
      { result: { serviceId: 'm-a', verdict: 'pass', latencyMs: 42, startedAt: at - 1000 }, status: 'healthy', failureThreshold: 3, successThreshold: 2, validityMs: 60_000 },
      { result: { serviceId: 'm-b', verdict: 'fail', latencyMs: 300, startedAt: at - 1000, failureKind: 'timeout' }, status: 'unhealthy', failureThreshold: 3, successThreshold: 2, validityMs: 60_000 },
    ],
  });
  const text = await reg.metrics();
  expect(text).toContain('integration_agent_service_health_status{service="m-a",status="healthy"} 1');
  expect(text).toContain('integration_agent_service_health_status{service="m-b",status="healthy"} 0');
  expect(text).toContain('integration_agent_service_health_status{service="m-b",status="unhealthy"} 1');
  expect(text).toContain('integration_agent_probe_duration_seconds_bucket{le="0.05",service="m-a",result="pass"} 1');
  expect(text).toContain('integration_agent_service_availability_percent{service="m-a",window="1h"} 100');
  expect(text).toContain('integration_agent_service_availability_percent{service="m-b",window="24h"} 0');
  await sleep(0);
});
