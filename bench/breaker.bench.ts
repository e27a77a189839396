/**
 * Circuit breaker figures, on an in-memory dev server with one worker:
 *
 * 1. gate decision latency on the cached path (CLOSED), p50/p99 in µs,
 *    against awaiting an already-resolved promise (the floor of any async gate);
 * 2. outcomes per second one breaker entity absorbs with batching
 *    (maxBatchSize 500), against the same gate sending one signal per outcome;
 * 3. time from the threshold being crossed on one worker (the failing
 *    outcome handed to its gate) to every one of 4 gates, each with its own
 *    client connection, rejecting calls.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createAlertActivities } from '../src/activities/alerts';
import { createBreakerActivities } from '../src/activities/breaker';
import { BreakerGate, BreakerOpenError } from '../src/activities/breaker-gate';
import type { CallPermit } from '../src/activities/ports';
import { startDevServer } from '../src/dev/dev-server';
import { workflowIds } from '../src/domain/constants';
import type { CallOutcome } from '../src/domain/outcome';
import { breakerStateQuery } from '../src/workflows/breaker';
import { summarize, type Figure } from './harness';

const BENCH = 'breaker';

function outcome(serviceId: string, ok: boolean): CallOutcome {
  return { serviceId, endpoint: 'http://127.0.0.1:1', ok, status: ok ? 200 : 503, latencyMs: 2, startedAt: Date.now(), reporter: 'bench' };
}

async function cachedLatency(gate: BreakerGate): Promise<Figure[]> {
  const serviceId = `lat-${randomUUID().slice(0, 8)}`;
  await gate.admit(serviceId); // first look: a query (not started: CLOSED)
  const permit: CallPermit = await gate.admit(serviceId);
  const resolved = Promise.resolve(permit);
  const n = 200_000;
  const gateNs: number[] = new Array(n);
  const baseNs: number[] = new Array(n);
  for (let round = 0; round < 2; round++) {
    // Interleaved, so both see the same machine load; round 0 is warm-up.
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      await gate.admit(serviceId);
      const t1 = process.hrtime.bigint();
      await resolved;
      const t2 = process.hrtime.bigint();
      gateNs[i] = Number(t1 - t0);
      baseNs[i] = Number(t2 - t1);
    }
  }
  const g = summarize(gateNs);
  const b = summarize(baseNs);
  const us = (ns: number) => ns / 1000;
  return [
    { bench: BENCH, name: 'gate decision, cached CLOSED path, p50', value: us(g.p50), unit: 'µs', baseline: { name: 'await resolved promise p50', value: us(b.p50) }, ratio: g.p50 / b.p50 },
    {
      bench: BENCH,
      name: 'gate decision, cached CLOSED path, p99',
      value: us(g.p99),
      unit: 'µs',
      baseline: { name: 'await resolved promise p99', value: us(b.p99) },
      ratio: g.p99 / b.p99,
      target: 'p99 < 50 µs',
      met: us(g.p99) < 50,
    },
  ];
}

async function absorb(client: Client, taskQueue: string, total: number, maxBatchSize: number): Promise<number> {
  const serviceId = `tput-${randomUUID().slice(0, 8)}`;
  const gate = new BreakerGate({
    client,
    taskQueue,
    reporter: 'bench',
    maxBatchSize,
    flushIntervalMs: 20,
    maxBufferedOutcomes: Math.max(total, maxBatchSize),
    optionsFor: () => ({ slidingWindowSize: 1000, minimumNumberOfCalls: 1000 }),
  });
  const handle = client.workflow.getHandle(workflowIds.breaker(serviceId));
  try {
    const t0 = performance.now();
    // Spread over time as a busy worker would report them, in slices of 1000.
    for (let i = 0; i < total; i++) {
      gate.record(outcome(serviceId, true));
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
    }
    await gate.flush();
    for (;;) {
      const v = await handle.query(breakerStateQuery);
      if (v.counters.recorded >= total) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const seconds = (performance.now() - t0) / 1000;
    return total / seconds;
  } finally {
    await gate.close();
    await handle.terminate('bench done').catch(() => undefined);
  }
}

async function propagation(clients: Client[], taskQueue: string, trials: number): Promise<number[]> {
  const results: number[] = [];
  for (let t = 0; t < trials; t++) {
    const serviceId = `prop-${randomUUID().slice(0, 8)}`;
    const options = { slidingWindowSize: 20, minimumNumberOfCalls: 10, failureRateThreshold: 50, waitDurationInOpenStateMs: 60_000 };
    const gates = clients.map((client, i) => new BreakerGate({ client, taskQueue, reporter: `worker-${i}`, optionsFor: () => options }));
    try {
      // Every worker has used the service: all CLOSED, breaker running with some history.
      for (const g of gates) for (let i = 0; i < 5; i++) (await g.admit(serviceId)).report(outcome(serviceId, true));
      await Promise.all(gates.map((g) => g.flush()));
      await new Promise((r) => setTimeout(r, 1000));
      // Worker 0 sees the failures that cross 50%: the 10th is the crossing one.
      for (let i = 0; i < 9; i++) (await gates[0]!.admit(serviceId)).report(outcome(serviceId, false));
      await new Promise((r) => setTimeout(r, 300));
      const permit = await gates[0]!.admit(serviceId);
      const t0 = performance.now();
      permit.report(outcome(serviceId, false));
      const rejectedAt = await Promise.all(
        gates.map(async (g) => {
          for (;;) {
            try {
              await g.admit(serviceId);
            } catch (err) {
              if (err instanceof BreakerOpenError) return performance.now() - t0;
              throw err;
            }
            await new Promise((r) => setTimeout(r, 1));
          }
        }),
      );
      results.push(Math.max(...rejectedAt));
      await clients[0]!.workflow.getHandle(workflowIds.breaker(serviceId)).terminate('bench done');
    } finally {
      await Promise.all(gates.map((g) => g.close()));
    }
  }
  return results;
}

export default async function breakerBench(): Promise<Figure[]> {
  const server = await startDevServer({ uiPort: false });
  const native = await NativeConnection.connect({ address: server.address });
  const connections: Connection[] = [];
  const newClient = async () => {
    const c = await Connection.connect({ address: server.address });
    connections.push(c);
    return new Client({ connection: c });
  };
  const taskQueue = 'breaker-bench';
  const worker = await Worker.create({ connection: native, taskQueue, workflowsPath: require.resolve('../src/workflows'), activities: { ...createBreakerActivities(), ...createAlertActivities({ webhooks: [] }) } });
  const figures: Figure[] = [];
  try {
    await worker.runUntil(async () => {
      const client = await newClient();
      const gate = new BreakerGate({ client, taskQueue, reporter: 'bench' });
      try {
        figures.push(...(await cachedLatency(gate)));
      } finally {
        await gate.close();
      }

      const unbatched = await absorb(client, taskQueue, 1000, 1);
      const batched = await absorb(client, taskQueue, 50_000, 500);
      figures.push({
        bench: BENCH,
        name: 'outcomes absorbed by one breaker entity, batched (500/signal)',
        value: Math.round(batched),
        unit: 'outcomes/s',
        baseline: { name: 'one signal per outcome', value: Math.round(unbatched) },
        ratio: batched / unbatched,
        target: '>= 5000 outcomes/s',
        met: batched >= 5000,
      });

      const clients = [client, await newClient(), await newClient(), await newClient()];
      const times = await propagation(clients, taskQueue, 5);
      const s = summarize(times);
      figures.push(
        { bench: BENCH, name: 'threshold crossed on one worker -> all 4 gates reject, median of 5', value: Math.round(s.p50), unit: 'ms' },
        {
          bench: BENCH,
          name: 'threshold crossed on one worker -> all 4 gates reject, worst of 5',
          value: Math.round(Math.max(...times)),
          unit: 'ms',
          baseline: { name: 'target', value: 1000 },
          ratio: Math.max(...times) / 1000,
          target: '< 1000 ms',
          met: Math.max(...times) < 1000,
        },
      );
    });
  } finally {
    for (const c of connections) await c.close();
    await native.close();
    await server.stop();
  }
  return figures;
}
