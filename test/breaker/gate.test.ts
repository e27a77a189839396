/**
 * The per-process gate against real breaker workflows on the shared dev
 * server: two gates, each with its own client connection, stand for two
 * worker processes sharing one breaker.
 */
import { randomUUID } from 'node:crypto';
import { InterceptingCall, status as grpcStatus, type Interceptor } from '@grpc/grpc-js';
import { Client, Connection, defaultGrpcRetryOptions, makeGrpcRetryInterceptor } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { Registry as PromRegistry } from 'prom-client';
import { createAlertActivities } from '../../src/activities/alerts';
import { createBreakerActivities } from '../../src/activities/breaker';
import { BreakerGate, BreakerOpenError } from '../../src/activities/breaker-gate';
import { registerBreakerMetrics } from '../../src/activities/breaker-metrics';
import type { CallPermit } from '../../src/activities/ports';
import { resolveBreakerOptions, type BreakerOptions } from '../../src/domain/breaker';
import { forceOpen } from '../../src/client/breakers';
import { workflowIds } from '../../src/domain/constants';
import type { CallOutcome } from '../../src/domain/outcome';
import { breakerStateQuery } from '../../src/workflows/breaker';
import { waitFor } from './scenario';
import { closeTestClient, testAddress, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';

const options: Partial<BreakerOptions> = {
  slidingWindowSize: 20,
  minimumNumberOfCalls: 5,
  failureRateThreshold: 50,
  waitDurationInOpenStateMs: 3000,
  permittedNumberOfCallsInHalfOpenState: 2,
};

const connections: Connection[] = [];
async function ownClient(): Promise<Client> {
  const connection = await Connection.connect({ address: testAddress() });
  connections.push(connection);
  return new Client({ connection });
}

afterAll(async () => {
  await closeTestClient();
  for (const c of connections) await c.close();
});

function outcome(serviceId: string, ok: boolean, reporter: string): CallOutcome {
  return { serviceId, endpoint: 'http://127.0.0.1:1', ok, status: ok ? 200 : 503, statusClass: ok ? '2xx' : '5xx', latencyMs: 3, startedAt: Date.now(), reporter };
}

async function rejection(p: Promise<CallPermit>): Promise<BreakerOpenError | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    if (err instanceof BreakerOpenError) return err;
    throw err;
  }
}

test('a trip seen by one gate reaches the other; HALF_OPEN trials go through the update; success closes for both', async () => {
  const taskQueue = uniqueTaskQueue('gate');
  const serviceId = `gate-${randomUUID().slice(0, 8)}`;
  const metricsRegistry = new PromRegistry();
  const metrics = registerBreakerMetrics(metricsRegistry);
  await withTestWorker({ taskQueue, activities: { ...createBreakerActivities({ metrics }), ...createAlertActivities({ webhooks: [] }) } }, async () => {
    const a = new BreakerGate({ client: await ownClient(), taskQueue, reporter: 'worker-a', optionsFor: () => options, metrics });
    const b = new BreakerGate({ client: await ownClient(), taskQueue, reporter: 'worker-b', optionsFor: () => options });
    try {
      // The synchronous fast path knows nothing before the first admit, and learns nothing by being asked.
      expect(a.admitNow(serviceId)).toBeUndefined();
      expect(a.cached(serviceId)).toBeUndefined();
      // Nothing started yet: both admit (CLOSED, generation 0), from the cache after the first look.
      const pa = await a.admit(serviceId);
      const pb = await b.admit(serviceId);
      expect([pa.generation, pb.generation]).toEqual([0, 0]);
      // Now the breaker is known CLOSED: admitNow hands out the same permit at once.
      expect(a.admitNow(serviceId)).toBe(pa);
      expect(b.admitNow(serviceId)).toBe(pb);
      expect(a.admitNow(`${serviceId}-never-seen`)).toBeUndefined();
      expect(b.cached(serviceId)).toMatchObject({ state: 'CLOSED', generation: 0 });
      // Worker A sees the service fail; its failures start the breaker lazily and trip it.
      for (let i = 0; i < 5; i++) (await a.admit(serviceId)).report(outcome(serviceId, false, 'worker-a'));
      const err = await waitFor('A rejects', async () => rejection(a.admit(serviceId)));
      expect(err).toMatchObject({ name: 'BreakerOpenError', serviceId, state: 'OPEN', generation: 1 });
      expect(err.retryAfterMs).toBeGreaterThan(0);
      expect(err.retryAfterMs).toBeLessThanOrEqual(3000);
      expect(a.admitNow(serviceId)).toBeUndefined();
      // Worker B never saw a failure; its periodic refresh brings the trip.
      const errB = await waitFor('B rejects', async () => rejection(b.admit(serviceId)));
      expect(errB.state).toBe('OPEN');
      expect(b.admitNow(serviceId)).toBeUndefined();
      // The rejection is the activity's next retry delay.
      const failure = errB.toApplicationFailure();
      expect(failure).toBeInstanceOf(ApplicationFailure);
      expect(failure).toMatchObject({ type: 'BreakerOpenError', nonRetryable: false });
      expect(Number(failure.nextRetryDelay)).toBe(Math.ceil(errB.retryAfterMs));

      // After the wait: HALF_OPEN admits exactly the permitted 2 of 8 concurrent callers across both gates.
      const handle = (await testClient()).workflow.getHandle(workflowIds.breaker(serviceId));
      await waitFor('HALF_OPEN', async () => ((await handle.query(breakerStateQuery)).state === 'HALF_OPEN' ? true : undefined));
      await Promise.all([a.refresh(serviceId), b.refresh(serviceId)]);
      // HALF_OPEN trials are the breaker's to grant: never from the fast path.
      expect(a.admitNow(serviceId)).toBeUndefined();
      expect(b.admitNow(serviceId)).toBeUndefined();
      const attempts = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).admit(serviceId)));
      const permits = attempts.filter((r): r is PromiseFulfilledResult<CallPermit> => r.status === 'fulfilled').map((r) => r.value);
      expect(permits).toHaveLength(2);
      for (const r of attempts.filter((x) => x.status === 'rejected')) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(BreakerOpenError);
      for (const p of permits) p.report(outcome(serviceId, true, 'trial'));
      await waitFor('A admits again', async () => ((await a.admit(serviceId).then(() => true, () => undefined)) ? true : undefined));
      await waitFor('B admits again', async () => ((await b.admit(serviceId).then(() => true, () => undefined)) ? true : undefined));
      expect(a.cached(serviceId)).toMatchObject({ state: 'CLOSED', generation: 3 });
      // CLOSED again: the fast path admits, under the new generation.
      expect(a.admitNow(serviceId)?.generation).toBe(3);
      expect(b.admitNow(serviceId)?.generation).toBe(3);
      const view = await handle.query(breakerStateQuery);
      expect(view.transitions.map((t) => `${t.from}>${t.to}`)).toEqual(['CLOSED>OPEN', 'OPEN>HALF_OPEN', 'HALF_OPEN>CLOSED']);

      const text = await metricsRegistry.metrics();
      expect(text).toContain(`integration_agent_breaker_state{service="${serviceId}"} 0`);
      expect(text).toMatch(new RegExp(`integration_agent_breaker_rejected_calls_total\\{service="${serviceId}",state="OPEN"\\} [1-9]`));
      await waitFor('transition counted', async () =>
        (await metricsRegistry.metrics()).includes(`integration_agent_breaker_transitions_total{service="${serviceId}",from="HALF_OPEN",to="CLOSED",reason="trials_succeeded"} 1`) ? true : undefined,
      );
      await handle.terminate('test done');
    } finally {
      await a.close();
      await b.close();
    }
  });
});

test('outcomes from the OutcomeSink are batched into few signals, none lost', async () => {
  const taskQueue = uniqueTaskQueue('gate');
  const serviceId = `sink-${randomUUID().slice(0, 8)}`;
  await withTestWorker({ taskQueue, activities: { ...createBreakerActivities(), ...createAlertActivities({ webhooks: [] }) } }, async () => {
    const gate = new BreakerGate({ client: await ownClient(), taskQueue, reporter: 'worker-s', optionsFor: () => ({ slidingWindowSize: 1000, minimumNumberOfCalls: 1000 }), maxBatchSize: 100, flushIntervalMs: 50 });
    try {
      for (let i = 0; i < 1000; i++) gate.record(outcome(serviceId, true, 'worker-s'));
      // Outcomes of gated calls (they carry a generation) are the permit's to report: the sink skips them.
      for (let i = 0; i < 10; i++) gate.record({ ...outcome(serviceId, false, 'worker-s'), generation: 0 });
      await gate.flush();
      const handle = (await testClient()).workflow.getHandle(workflowIds.breaker(serviceId));
      const view = await waitFor('all recorded', async () => {
        const v = await handle.query(breakerStateQuery);
        return v.counters.recorded === 1000 ? v : undefined;
      });
      expect(view.window.totalCalls).toBe(1000);
      const history = await handle.fetchHistory();
      const signals = history.events!.filter((e) => e.workflowExecutionSignaledEventAttributes).length;
      expect(signals).toBeLessThanOrEqual(12);
      await handle.terminate('test done');
    } finally {
      await gate.close();
    }
  });
});

test('a breaker terminated and started again (a new chain, generations from 0) is learned, not ignored as old', async () => {
  const taskQueue = uniqueTaskQueue('gate');
  const serviceId = `chain-${randomUUID().slice(0, 8)}`;
  await withTestWorker({ taskQueue, activities: { ...createBreakerActivities(), ...createAlertActivities({ webhooks: [] }) } }, async () => {
    const gate = new BreakerGate({ client: await ownClient(), taskQueue, reporter: 'worker-c', optionsFor: () => options });
    try {
      for (let i = 0; i < 5; i++) (await gate.admit(serviceId)).report(outcome(serviceId, false, 'worker-c'));
      await waitFor('OPEN', async () => rejection(gate.admit(serviceId)));
      expect(gate.admitNow(serviceId)).toBeUndefined();
      const handle = (await testClient()).workflow.getHandle(workflowIds.breaker(serviceId));
      const firstChain = (await handle.query(breakerStateQuery)).chainId;
      await handle.terminate('operator removed it');
      // Outcomes start a fresh breaker (generation 0, new chain); the gate follows it.
      gate.record(outcome(serviceId, true, 'worker-c'));
      await gate.flush();
      await waitFor('CLOSED again', async () => (gate.cached(serviceId)?.state === 'CLOSED' ? true : undefined));
      expect(gate.admitNow(serviceId)?.generation).toBe(0);
      await gate.admit(serviceId);
      const view = await handle.query(breakerStateQuery);
      expect(view.chainId).not.toBe(firstChain);
      expect(view.generation).toBe(0);
      await handle.terminate('test done');
    } finally {
      await gate.close();
    }
  });
});

/** Blocks the event loop, as a burst of synchronous work (a refresh of thousands of services, a GC pause) does. */
function busy(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until);
}

test('a burst of refreshes on a busy event loop: queries go a few at a time, a try that times out is tried again, none fails', async () => {
  const taskQueue = uniqueTaskQueue('gate');
  const serviceId = `gate-${randomUUID().slice(0, 8)}`;
  const metricsRegistry = new PromRegistry();
  const metrics = registerBreakerMetrics(metricsRegistry);
  await withTestWorker({ taskQueue, activities: { ...createBreakerActivities(), ...createAlertActivities({ webhooks: [] }) } }, async () => {
    const errors: unknown[] = [];
    const gate = new BreakerGate({ client: await ownClient(), taskQueue, reporter: 'worker-a', optionsFor: () => options, queryTimeoutMs: 500, metrics, onError: (e) => errors.push(e) });
    const client = await testClient();
    try {
      await forceOpen(client, serviceId, { taskQueue, options: resolveBreakerOptions(options) });
      // Many services refreshed in one tick (breakers never started answer "not found", which is an answer),
      // while other work holds the event loop for longer than a query's deadline.
      const others = Array.from({ length: 400 }, (_, i) => `${serviceId}-idle-${i}`);
      queueMicrotask(() => busy(800));
      await Promise.all([serviceId, ...others].map((id) => gate.refresh(id)));
      // Before: all 401 queries went out at once, the busy loop outlasted their deadlines, and each one failed (DEADLINE_EXCEEDED).
      expect(errors.map((e) => `${String(e)}: ${String((e as { cause?: unknown }).cause)}`)).toEqual([]);
      expect(gate.cached(serviceId)).toMatchObject({ state: 'FORCED_OPEN' });
      expect(gate.cached(others[399]!)).toMatchObject({ state: 'CLOSED', generation: 0 });
      expect(await metricsRegistry.getSingleMetricAsString('integration_agent_breaker_refresh_failures_total')).not.toMatch(/\} \d/);
    } finally {
      await client.workflow.getHandle(workflowIds.breaker(serviceId)).terminate('test done').catch(() => undefined);
      await gate.close();
    }
  });
});

/**
 * A frontend under load, as Temporal's answers a burst over its rate limit:
 * the first `n` queries are refused with RESOURCE_EXHAUSTED (retryable), as
 * a grpc interceptor below the connection's own retry interceptor.
 */
function throttleFirstQueries(n: number): Interceptor {
  const refused = new WeakSet<object>();
  let left = n;
  return (options, nextCall) => {
    const first = !refused.has(options);
    if (!options.method_definition.path.endsWith('/QueryWorkflow') || !first || left <= 0) return new InterceptingCall(nextCall(options));
    left--;
    refused.add(options);
    return new InterceptingCall(nextCall(options), {
      start: (metadata, _listener, next) =>
        next(metadata, {
          onReceiveStatus: (status, nextStatus) => nextStatus({ ...status, code: grpcStatus.RESOURCE_EXHAUSTED, details: 'namespace rate limit exceeded (test)' }),
        }),
    });
  };
}

test('a query the connection retries past its deadline ("Deadline exceeded after 0.000s") is tried again with a fresh deadline', async () => {
  const taskQueue = uniqueTaskQueue('gate');
  const serviceId = `gate-${randomUUID().slice(0, 8)}`;
  const metricsRegistry = new PromRegistry();
  const metrics = registerBreakerMetrics(metricsRegistry);
  await withTestWorker({ taskQueue, activities: { ...createBreakerActivities(), ...createAlertActivities({ webhooks: [] }) } }, async () => {
    const client = await testClient();
    await forceOpen(client, serviceId, { taskQueue, options: resolveBreakerOptions(options) });
    // Temporal's default interceptor retries RESOURCE_EXHAUSTED after about 1.7 s, keeping the call's first deadline (1 s here).
    const connection = await Connection.connect({ address: testAddress(), interceptors: [makeGrpcRetryInterceptor(defaultGrpcRetryOptions()), throttleFirstQueries(1)] });
    connections.push(connection);
    const errors: unknown[] = [];
    const gate = new BreakerGate({ client: new Client({ connection }), taskQueue, reporter: 'worker-a', queryTimeoutMs: 1000, metrics, onError: (e) => errors.push(e) });
    try {
      await gate.refresh(serviceId);
      // Before: one try, reported as `DEADLINE_EXCEEDED: Deadline exceeded after 0.000s, waiting for metadata filters`, state not learned.
      expect(errors.map((e) => `${String(e)}: ${String((e as { cause?: unknown }).cause)}`)).toEqual([]);
      expect(gate.cached(serviceId)).toMatchObject({ state: 'FORCED_OPEN' });
    } finally {
      await client.workflow.getHandle(workflowIds.breaker(serviceId)).terminate('test done').catch(() => undefined);
      await gate.close();
    }
  });
});

test('with Temporal unreachable the gate fails open and reports the error; failed refreshes are retried, then counted', async () => {
  const errors: unknown[] = [];
  const metricsRegistry = new PromRegistry();
  const metrics = registerBreakerMetrics(metricsRegistry);
  // Without the SDK's retry interceptor: the gate's own bounded retries are under test, and the interceptor's
  // backoff timers (UNAVAILABLE is retried up to 10 times) would outlive this test and fire on a closed channel
  // ("Channel has been shut down", thrown in whichever test file runs next).
  const client = new Client({ connection: Connection.lazy({ address: '127.0.0.1:1', connectTimeout: 200, interceptors: [] }) });
  const gate = new BreakerGate({ client, taskQueue: 'nowhere', queryTimeoutMs: 300, sendTimeoutMs: 300, metrics, onError: (e) => errors.push(e) });
  try {
    const permit = await gate.admit('unreachable-service');
    expect(permit.generation).toBe(0);
    expect(errors.length).toBeGreaterThan(0);
    // A refresh is tried a bounded number of times, then reported once and counted once.
    const reported = errors.length;
    const started = Date.now();
    await gate.refresh('unreachable-service');
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(errors.length).toBe(reported + 1);
    expect(await metricsRegistry.getSingleMetricAsString('integration_agent_breaker_refresh_failures_total')).toMatch(
      /integration_agent_breaker_refresh_failures_total\{service="unreachable-service"\} [2-9]/,
    );
    // Outcomes cannot be sent: the batch fails within its deadline and is kept, never thrown at the caller.
    const before = errors.length;
    permit.report(outcome('unreachable-service', false, 'nowhere'));
    await gate.flush();
    expect(errors.length).toBeGreaterThan(before);
  } finally {
    await gate.close().catch(() => undefined);
    await client.connection.close();
  }
});

test('bad gate options are refused with the option and the value', async () => {
  const client = await testClient();
  expect(() => new BreakerGate({ client, taskQueue: 'q', refreshIntervalMs: 5000 })).toThrow(new RangeError('BreakerGate option refreshIntervalMs must be an integer in 20..1000, got 5000'));
  expect(() => new BreakerGate({ client, taskQueue: '' })).toThrow(/taskQueue must be a non-empty string, got ""/);
});
