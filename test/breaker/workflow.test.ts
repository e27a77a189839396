/**
 * The `circuitBreaker` entity workflow on the shared dev server: lazy start,
 * the durable OPEN -> HALF_OPEN timer (across a worker restart), permits under
 * concurrency, the search attribute, operator commands through the client
 * facade, and continue-as-new under a stream of messages with none lost.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { Registry as PromRegistry } from 'prom-client';
import { createAlertActivities, type AlertWebhook } from '../../src/activities/alerts';
import { createBreakerActivities } from '../../src/activities/breaker';
import { requestPermit } from '../../src/activities/breaker-gate';
import { registerBreakerMetrics } from '../../src/activities/breaker-metrics';
import { NoWorkerError } from '../../src/client/connect';
import { BreakerQueryTimeoutError, configureBreaker, disable, forceOpen, getBreaker, listBreakers, reconfigureBreakers, reset } from '../../src/client/breakers';
import { resolveBreakerOptions, type BreakerOptions } from '../../src/domain/breaker';
import type { Registry } from '../../src/domain/registry';
import type { BreakerTransition } from '../../src/domain/breaker';
import { workflowIds } from '../../src/domain/constants';
import {
  acquirePermitUpdate,
  BREAKER_STATE_KEY,
  breakerStateQuery,
  circuitBreaker,
  configureUpdate,
  recordOutcomesSignal,
  type BreakerWorkflowInput,
} from '../../src/workflows/breaker';
import { breakerLifecycle, failures, fast, record, waitFor } from './scenario';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker, workflowSource } from '../helpers/temporal';

const afterAllClose: Array<() => Promise<void>> = [];
afterAll(async () => {
  await closeTestClient();
  for (const close of afterAllClose) await close();
});

function serviceId(): string {
  return `svc-${randomUUID().slice(0, 8)}`;
}

function activities(transitions: BreakerTransition[], webhooks: AlertWebhook[] = []) {
  return {
    ...createBreakerActivities({ metrics: registerBreakerMetrics(new PromRegistry()), onTransition: async (t) => void transitions.push(t) }),
    ...createAlertActivities({ webhooks }),
  };
}

/** A real alert receiver on loopback: collects every POSTed body. */
async function alertReceiver(): Promise<{ url: string; alerts: Array<Record<string, unknown>>; close: () => Promise<void> }> {
  const alerts: Array<Record<string, unknown>> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      alerts.push(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/alerts`, alerts, close: () => new Promise((r) => server.close(() => r())) };
}

test('trips on signalled failures, upserts BreakerState, alerts, and reaches HALF_OPEN on a durable timer across a worker restart', async () => {
  const client = await testClient();
  const receiver = await alertReceiver();
  afterAllClose.push(receiver.close);
  const webhooks = [{ name: 'ops', url: receiver.url }];
  const taskQueue = uniqueTaskQueue('breaker');
  const id = serviceId();
  const transitions: BreakerTransition[] = [];
  const handle = client.workflow.getHandle(workflowIds.breaker(id));

  const open = await withTestWorker({ taskQueue, activities: activities(transitions, webhooks) }, async () => {
    await record(client, taskQueue, { serviceId: id, options: fast }, failures(2));
    await record(client, taskQueue, { serviceId: id, options: fast }, failures(2), 'other-worker');
    const view = await waitFor('OPEN', async () => {
      const v = await handle.query(breakerStateQuery);
      return v.state === 'OPEN' ? v : undefined;
    });
    expect(view.generation).toBe(1);
    expect(view.transitions).toEqual([expect.objectContaining({ from: 'CLOSED', to: 'OPEN', reason: 'failure_rate', calls: 4, failureRate: 100 })]);
    await waitFor('search attribute', async () => ((await handle.describe()).typedSearchAttributes.get(BREAKER_STATE_KEY) === 'open' ? true : undefined));
    await waitFor('transition reported', async () => (transitions.length === 1 ? true : undefined));
    expect(transitions[0]).toMatchObject({ serviceId: id, to: 'OPEN', generation: 1 });
    // The alerting path: the health area's deliverAlert posts it to the webhook.
    const alert = await waitFor('alert delivered', async () => receiver.alerts.find((a) => a.serviceId === id));
    expect(alert).toMatchObject({
      schema: 'integration-agent.alert/v1',
      id: `breaker/${id}#1`,
      kind: 'TRIGGERED',
      source: 'breaker',
      summary: `circuit breaker of ${id} opened: failure rate 100% of 4 calls`,
    });
    return view;
  });

  // No worker runs while the wait elapses; the server's timer wakes the next one.
  await new Promise((r) => setTimeout(r, Math.max(0, open.openUntilMs! - Date.now() + 200)));
  await withTestWorker({ taskQueue, activities: activities(transitions, webhooks) }, async () => {
    const half = await waitFor('HALF_OPEN', async () => {
      const v = await handle.query(breakerStateQuery);
      return v.state === 'HALF_OPEN' ? v : undefined;
    });
    const t = half.transitions.at(-1)!;
    expect(t).toMatchObject({ from: 'OPEN', to: 'HALF_OPEN', reason: 'wait_elapsed', generation: 2 });
    expect(t.atMs).toBeGreaterThanOrEqual(open.openUntilMs!);
    await waitFor('search attribute', async () => ((await handle.describe()).typedSearchAttributes.get(BREAKER_STATE_KEY) === 'half_open' ? true : undefined));
    await waitFor('alert', async () => (transitions.some((x) => x.to === 'HALF_OPEN') ? true : undefined));
  });
  // The transition came from a timer, not from a message.
  const history = await handle.fetchHistory();
  const types = history.events!.map((e) => e.eventType);
  expect(types.filter((x) => x === 6 /* TIMER_STARTED */ || x === 17 /* TIMER_FIRED */).length).toBeGreaterThanOrEqual(2);
  await handle.terminate('test done');
});

test('HALF_OPEN grants exactly the permitted number of trials to concurrent requests; a malformed request is rejected by the validator', async () => {
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('breaker');
  const id = serviceId();
  await withTestWorker({ taskQueue, activities: activities([]) }, async () => {
    const handle = await record(client, taskQueue, { serviceId: id, options: { ...fast, waitDurationInOpenStateMs: 200 } }, failures(4));
    await waitFor('HALF_OPEN', async () => ((await handle.query(breakerStateQuery)).state === 'HALF_OPEN' ? true : undefined));
    const decisions = await Promise.all(
      Array.from({ length: 12 }, (_, i) => handle.executeUpdate(acquirePermitUpdate, { args: [{ permitId: `trial-${i}`, reporter: `w${i % 4}` }] })),
    );
    const granted = decisions.filter((d) => d.granted);
    expect(granted).toHaveLength(3);
    for (const d of decisions.filter((x) => !x.granted)) expect(d).toMatchObject({ state: 'HALF_OPEN', retryAfterMs: expect.any(Number) });
    await expect(handle.executeUpdate(acquirePermitUpdate, { args: [{ permitId: '', reporter: 'w1' }] })).rejects.toThrow(WorkflowUpdateFailedError);
    // The three trials succeed: CLOSED, a fresh window.
    const gen = granted[0]!.generation;
    await handle.signal(recordOutcomesSignal, {
      reporter: 'w1',
      outcomes: granted.map((d) => ({ ok: true, status: 200, latencyMs: 3, startedAt: Date.now(), generation: gen, permitId: d.granted ? d.permitId : undefined })),
    });
    const closed = await waitFor('CLOSED', async () => {
      const v = await handle.query(breakerStateQuery);
      return v.state === 'CLOSED' ? v : undefined;
    });
    expect(closed.transitions.at(-1)).toMatchObject({ from: 'HALF_OPEN', to: 'CLOSED', reason: 'trials_succeeded' });
    expect(closed.counters.permitsGranted).toBe(3);
    await handle.terminate('test done');
  });
});

test('an aborted trial frees the one half-open slot at once: the next call is admitted, not refused for 60 s', async () => {
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('breaker');
  const id = serviceId();
  const input: BreakerWorkflowInput = { serviceId: id, options: { ...fast, waitDurationInOpenStateMs: 200, permittedNumberOfCallsInHalfOpenState: 1, maxWaitDurationInHalfOpenStateMs: 60_000 } };
  await withTestWorker({ taskQueue, activities: activities([]) }, async () => {
    const handle = await record(client, taskQueue, input, failures(4));
    await waitFor('HALF_OPEN', async () => ((await handle.query(breakerStateQuery)).state === 'HALF_OPEN' ? true : undefined));
    const ask = (permitId: string) => requestPermit(client, { taskQueue, input, permitId, reporter: 'w1' });
    const trial = await ask('trial-1');
    expect(trial).toMatchObject({ granted: true, state: 'HALF_OPEN', permitId: 'trial-1' });
    // The one slot is held: another caller is refused.
    expect(await ask('trial-2')).toMatchObject({ granted: false, state: 'HALF_OPEN' });
    // The trial's caller cancels (activity cancelled): reported aborted, as the gate's permit does.
    await handle.signal(recordOutcomesSignal, {
      reporter: 'w1',
      outcomes: [{ ok: false, failureKind: 'aborted', latencyMs: 40, startedAt: Date.now(), generation: trial.generation, permitId: 'trial-1' }],
    });
    const next = await ask('trial-3');
    expect(next).toMatchObject({ granted: true, state: 'HALF_OPEN', generation: trial.generation, permitId: 'trial-3' });
    const view = await handle.query(breakerStateQuery);
    // Nothing decided by the aborted trial: still HALF_OPEN, no success, nothing given up.
    expect(view).toMatchObject({ state: 'HALF_OPEN', generation: trial.generation, halfOpen: { successes: 0, abandoned: 0 } });
    expect(view.halfOpen!.permits.map((p) => p.permitId)).toEqual(['trial-3']);
    await handle.terminate('test done');
  });
});

test('getBreaker refuses at once a breaker no worker polls for (NoWorkerError naming its queue), and gives up within its deadline on one whose worker just stopped', async () => {
  const client = await testClient();
  const id = serviceId();
  // Started on a task queue nobody polls: the query can never be answered.
  const unpolled = uniqueTaskQueue('unpolled');
  const handle = await record(client, unpolled, { serviceId: id, options: fast }, failures(1));
  // A queue whose only worker stopped a moment ago: Temporal still lists its poller, so the query is tried.
  const stoppedQueue = uniqueTaskQueue('stopped');
  await withTestWorker({ taskQueue: stoppedQueue, activities: {} }, () => new Promise((r) => setTimeout(r, 500)));
  const stoppedId = serviceId();
  const stopped = await record(client, stoppedQueue, { serviceId: stoppedId, options: fast }, failures(1));
  try {
    const none = await getBreaker(client, id, { timeoutMs: 500 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(none).toBeInstanceOf(NoWorkerError);
    expect(none).toMatchObject({ workflowId: `breaker/${id}`, taskQueue: unpolled, namespace: 'default' });
    expect(String((none as Error).message)).toContain(`TEMPORAL_TASK_QUEUE=${unpolled} integration-agent worker`);

    const started = Date.now();
    const err = await getBreaker(client, stoppedId, { timeoutMs: 500 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(err).toBeInstanceOf(BreakerQueryTimeoutError);
    expect(err).toMatchObject({ workflowId: `breaker/${stoppedId}`, timeoutMs: 500 });
    expect(String((err as Error).message)).toContain(`breaker workflow breaker/${stoppedId} did not answer its state query within 500ms: its task queue "${stoppedQueue}" in namespace default last saw worker`);
    expect(String((err as Error).message)).toContain(`TEMPORAL_TASK_QUEUE=${stoppedQueue} integration-agent worker`);
    await expect(getBreaker(client, id, { timeoutMs: 0 })).rejects.toThrow(new RangeError('getBreaker option timeoutMs must be an integer in 1..600000 (ms), got 0'));
  } finally {
    await handle.terminate('test done');
    await stopped.terminate('test done');
  }
}, 30_000);

test('operator commands through the client facade start the breaker lazily and are listed', async () => {
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('breaker');
  const id = serviceId();
  await withTestWorker({ taskQueue, activities: activities([]) }, async () => {
    const before = await getBreaker(client, id);
    expect(before).toMatchObject({ running: false, state: 'CLOSED', generation: 0 });
    const forced = await forceOpen(client, id, { taskQueue, note: 'vendor maintenance' });
    expect(forced.state).toBe('FORCED_OPEN');
    expect(forced.transitions.at(-1)).toMatchObject({ reason: 'forced_open', note: 'vendor maintenance' });
    expect(await getBreaker(client, id)).toMatchObject({ running: true, state: 'FORCED_OPEN', generation: 1 });
    const listed = await waitFor('listed', async () => (await listBreakers(client)).find((b) => b.serviceId === id && b.state === 'FORCED_OPEN'));
    expect(listed).toMatchObject({ workflowId: `breaker/${id}`, generation: 1 });
    expect((await disable(client, id, { taskQueue })).state).toBe('DISABLED');
    const configured = await configureBreaker(client, id, { failureRateThreshold: 10, waitDurationInOpenStateMs: 5000 }, { taskQueue });
    expect(configured).toMatchObject({ state: 'DISABLED', generation: 2, options: { failureRateThreshold: 10, waitDurationInOpenStateMs: 5000 } });
    // The validator refuses bad options before they reach history.
    await expect(
      client.workflow.getHandle(workflowIds.breaker(id)).executeUpdate(configureUpdate, { args: [{ options: { failureRateThreshold: 0 } }] }),
    ).rejects.toThrow(WorkflowUpdateFailedError);
    await expect(configureBreaker(client, id, { failureRateThreshold: 0 })).rejects.toThrow('circuit breaker option failureRateThreshold must be a percent in (0, 100], got 0');
    expect((await reset(client, id, { taskQueue })).state).toBe('CLOSED');
    // A registry reload reconfigures running breakers whose options changed, and only those.
    const svc = (sid: string, circuitBreaker?: Partial<BreakerOptions>) => ({ id: sid, circuitBreaker }) as unknown as Registry['services'][number];
    const idle = serviceId();
    const reconfigured = await reconfigureBreakers(
      client,
      { services: [svc(id, resolveBreakerOptions({ failureRateThreshold: 10, waitDurationInOpenStateMs: 5000 })), svc(idle)] },
      { services: [svc(id, resolveBreakerOptions({ failureRateThreshold: 35 })), svc(idle, resolveBreakerOptions({ failureRateThreshold: 90 }))] },
    );
    expect(reconfigured).toEqual([id]);
    expect((await getBreaker(client, id)).options).toMatchObject({ failureRateThreshold: 35, waitDurationInOpenStateMs: 30_000 });
    expect((await getBreaker(client, idle)).running).toBe(false);
    await expect(getBreaker(client, 'Not An Id')).rejects.toThrow(/invalid service id "Not An Id"/);
    await client.workflow.getHandle(workflowIds.breaker(id)).terminate('test done');
  });
});

test('continue-as-new under a stream of signals and updates loses none of them', async () => {
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('breaker');
  const id = serviceId();
  const input: BreakerWorkflowInput = {
    serviceId: id,
    options: { slidingWindowSize: 1000, minimumNumberOfCalls: 1000 },
    maxHistoryEvents: 60,
  };
  const signals = 300;
  const updates = 60;
  await withTestWorker({ taskQueue, activities: activities([]) }, async () => {
    const workflowId = workflowIds.breaker(id);
    const first = await record(client, taskQueue, input, [{ ok: true, status: 200, latencyMs: 1, startedAt: Date.now(), generation: 0 }]);
    const firstRunId = first.signaledRunId;
    let sent = 1;
    const answers: unknown[] = [];
    // 10 concurrent streams, each alternating signals and updates.
    await Promise.all(
      Array.from({ length: 10 }, async (_, lane) => {
        for (let i = 0; i < (signals - 1) / 10 + 1 && sent < signals; i++) {
          sent++;
          await record(client, taskQueue, input, [{ ok: i % 2 === 0, status: i % 2 === 0 ? 200 : 404, latencyMs: 1, startedAt: Date.now(), generation: 0 }], `lane-${lane}`);
          if (i % 5 === 0 && answers.length < updates) {
            answers.push(await requestPermit(client, { taskQueue, input, permitId: `u-${lane}-${i}`, reporter: `lane-${lane}` }));
          }
        }
      }),
    );
    const handle = client.workflow.getHandle(workflowId);
    const view = await handle.query(breakerStateQuery);
    expect(view.counters.recorded).toBe(signals);
    expect(view.window.totalCalls).toBe(signals);
    expect(view.state).toBe('CLOSED');
    expect(answers.length).toBeGreaterThan(0);
    for (const a of answers) expect(a).toMatchObject({ granted: true, state: 'CLOSED' });
    const desc = await handle.describe();
    expect(desc.runId).not.toBe(firstRunId);
    const runs: string[] = [];
    for await (const wf of client.workflow.list({ query: `WorkflowId = "${workflowId}"` })) runs.push(wf.runId);
    expect(runs.length).toBeGreaterThan(2);
    await handle.terminate('test done');
  });
});

test('a breaker history (trip, timer, trial, close, force open, continue-as-new) replays against the current workflow code', async () => {
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('breaker');
  const id = serviceId();
  const { history } = await withTestWorker({ taskQueue, activities: activities([]) }, () => breakerLifecycle(client, taskQueue, id));
  const types = history.events!.map((e) => e.eventType);
  expect(types.at(-1)).toBe(temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW);
  await Worker.runReplayHistory(workflowSource(), history, workflowIds.breaker(id));
});

test('a breaker started with invalid options fails visibly, naming the option', async () => {
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('breaker');
  const id = serviceId();
  await withTestWorker({ taskQueue, activities: activities([]) }, async () => {
    const handle = await client.workflow.start(circuitBreaker, { taskQueue, workflowId: workflowIds.breaker(id), args: [{ serviceId: id, options: { permittedNumberOfCallsInHalfOpenState: 0 } }] });
    const err = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause).toMatchObject({
      type: 'InvalidBreakerOptions',
      message: `breaker/${id}: circuit breaker option permittedNumberOfCallsInHalfOpenState must be an integer in 1..1000, got 0`,
    });
  });
});
