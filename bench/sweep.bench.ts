/**
 * One health sweep over 1,000 services that each answer in 100 ms, at
 * concurrency 100, on the embedded dev server.
 *
 * - Wall time (client start -> result) against the ideal
 *   ceil(N / concurrency) x 100 ms measured side by side: target within 1.5x.
 *   Measured for both ways of mapping probes to activities: chunks of 25
 *   services per activity (heartbeat per result; the default) and one
 *   activity per service; and for a full sweep that also records history and
 *   signals the 1,000 per-service status workflows.
 * - History events per sweep (fetched from the server).
 * - Worker peak memory: the worker runs in a child process that samples its
 *   own RSS every 20 ms.
 * - Time to detection: with a real Schedule (interval 2 s, failureThreshold 2),
 *   how long from a service going down to its durable status reading
 *   `unhealthy`, and to the TRIGGERED alert reaching a webhook receiver.
 * - Mixed intervals (issue 15): 1,000 services at 1 s, 10 s and 60 s, 1% of
 *   them (60 s ones) never answering within their 30 s timeout. Continuous
 *   monitoring (the Schedule's default mode, 20 s windows) side by side with
 *   sweep mode on a 1 s Schedule: the 1 s services' probe gaps at the target
 *   against their interval (target p99 within 1.2x), time to detection of a
 *   1 s service going down against failureThreshold x interval + 1 s, and
 *   history written per probe (the dev server's `history_node` growth).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../src/activities';
import { openState } from '../src/state';
import { applySweepSchedule, getHealth } from '../src/client/health';
import { startDevServer } from '../src/dev/dev-server';
import { parseRegistry } from '../src/domain/registry-parse';
import type { HealthSweepInput, HealthSweepResult } from '../src/workflows/sweep';
import pLimit from 'p-limit';
import { request } from 'undici';
import { historyBytes, percentile, summarize, type Figure } from './harness';

const N = 1000;
const CONCURRENCY = 100;
const ANSWER_MS = 100;
const RUNS = 3;

/** The mixed-interval fleet: a third each at 1 s, 10 s and 60 s; these never answer (60 s, timeout 30 s). */
const MIXED_N = 1000;
const MIXED_STALLED = new Set(Array.from({ length: 10 }, (_, k) => `m-${3 * k * 33 + 2}`));
const mixedInterval = (i: number) => (i % 3 === 0 ? 1_000 : i % 3 === 1 ? 10_000 : 60_000);

function mixedRegistry(fleetUrl: string): string {
  const services = Array.from({ length: MIXED_N }, (_, i) => {
    const interval = mixedInterval(i);
    const timeout = interval === 1_000 ? '500ms' : interval === 10_000 ? '2s' : '30s';
    return { id: `m-${i}`, type: 'api', endpoints: [{ url: `${fleetUrl}/m-${i}` }], healthCheck: { interval: `${interval}ms`, timeout } };
  });
  return JSON.stringify({ services });
}

interface WorkerArgs {
  address: string;
  taskQueue: string;
  fleetUrl: string;
  receiverUrl: string;
  dataDir: string;
}

function fleetRegistry(fleetUrl: string): string {
  const services = Array.from({ length: N }, (_, i) => ({ id: `svc-${i}`, type: 'api', endpoints: [{ url: `${fleetUrl}/svc-${i}` }], healthCheck: { timeout: '2s' } }));
  return JSON.stringify({ services });
}

/** The registry of the time-to-detection runs: one service that will go down. */
function detectRegistry(fleetUrl: string): string {
  const check = { timeout: '500ms', failureThreshold: 2, successThreshold: 1 };
  return JSON.stringify({ services: [{ id: 'detect', type: 'api', endpoints: [{ url: `${fleetUrl}/detect` }], healthCheck: check }] });
}

/** Child process: one worker with the real activities; reports its peak RSS on request. */
async function workerMain(args: WorkerArgs): Promise<void> {
  const full = parseRegistry(fleetRegistry(args.fleetUrl), 'bench');
  const small = parseRegistry(detectRegistry(args.fleetUrl), 'bench-detect');
  const mixed = parseRegistry(mixedRegistry(args.fleetUrl), 'bench-mixed');
  if (!full.ok || !small.ok || !mixed.ok) throw new Error('bench registry did not parse');
  let registry = full.registry;
  const nc = await NativeConnection.connect({ address: args.address });
  const connection = await Connection.connect({ address: args.address });
  const client = new Client({ connection });
  const worker = await Worker.create({
    connection: nc,
    taskQueue: args.taskQueue,
    workflowsPath: require.resolve('../src/workflows'),
    maxConcurrentActivityTaskExecutions: 200,
    activities: createActivities({
      registry: { current: () => registry },
      state: await openState({ dataDir: args.dataDir }),
      health: { client, alertWebhooks: [{ url: args.receiverUrl }] },
    }),
  });
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'peak') {
      process.send!({ peak, rss: process.memoryUsage().rss });
      peak = process.memoryUsage().rss;
    } else if (m.cmd === 'small') {
      registry = small.registry;
      process.send!({ ok: true });
    } else if (m.cmd === 'mixed') {
      registry = mixed.registry;
      process.send!({ ok: true });
    } else if (m.cmd === 'stop') {
      clearInterval(timer);
      worker.shutdown();
    }
  });
  process.send!({ ready: true });
  await worker.run();
  await connection.close();
  await nc.close();
  process.exit(0);
}

function ask<T>(child: ChildProcess, cmd: string): Promise<T> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as T));
    child.send({ cmd });
  });
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export default async function run(): Promise<Figure[]> {
  const dbFile = join(mkdtempSync(join(tmpdir(), 'ia-bench-sweep-db-')), 'temporal.db');
  const server = await startDevServer({ uiPort: false, dbFilename: dbFile });
  let down = false;
  /** Arrival times of the mixed fleet's 1 s services, per path, while `recording`. */
  const arrivals = new Map<string, number[]>();
  let recording = false;
  const mixedDown = new Set<string>();
  const fleet = createServer((req, res) => {
    if (req.url === '/detect' && down) {
      res.writeHead(503).end('{}');
      return;
    }
    if (req.url?.startsWith('/m-')) {
      const id = req.url.slice(1);
      if (MIXED_STALLED.has(id)) return; // never answers (the probe's 30 s timeout ends it)
      if (recording && mixedInterval(Number(id.slice(2))) === 1_000) (arrivals.get(id) ?? arrivals.set(id, []).get(id)!).push(Date.now());
      if (mixedDown.has(id)) {
        res.writeHead(503).end('{}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"pass"}'), ANSWER_MS);
  });
  fleet.keepAliveTimeout = 5000;
  fleet.maxConnections = 10_000;
  const alertsAt: number[] = [];
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const alert = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { kind: string; serviceId: string };
      if (alert.serviceId === 'detect' && alert.kind === 'TRIGGERED') alertsAt.push(Date.now());
      res.writeHead(200).end();
    });
  });
  const fleetUrl = await listen(fleet);
  const receiverUrl = await listen(receiver);
  const taskQueue = 'bench-sweep';
  const child = fork(__filename, [], {
    execArgv: ['--import', 'tsx'],
    env: {
      ...process.env,
      BENCH_SWEEP_WORKER: JSON.stringify({ address: server.address, taskQueue, fleetUrl, receiverUrl, dataDir: mkdtempSync(join(tmpdir(), 'ia-bench-sweep-')) } satisfies WorkerArgs),
    },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  await new Promise<void>((r) => child.once('message', () => r()));
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const figures: Figure[] = [];
  const fig = (name: string, value: number, unit: string, extra: Partial<Figure> = {}): Figure => ({ bench: 'sweep', name, value, unit, ...extra });
  let n = 0;
  const sweep = async (input: HealthSweepInput): Promise<{ ms: number; events: number; result: HealthSweepResult }> => {
    const workflowId = `sweep/bench-${++n}`;
    const t0 = performance.now();
    const result = (await client.workflow.execute('healthSweep', { taskQueue, workflowId, args: [input] })) as HealthSweepResult;
    const ms = performance.now() - t0;
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    if (result.counts.healthy !== N) throw new Error(`bench sweep ${workflowId}: not every service healthy: ${JSON.stringify(result.counts)}`);
    return { ms, events: history.events?.length ?? 0, result };
  };
  try {
    // BENCH_SWEEP_PART=mixed: only the mixed-interval figures.
    if (process.env.BENCH_SWEEP_PART === 'mixed') return await mixedIntervals(client, child, taskQueue, dbFile, arrivals, mixedDown, (v) => (recording = v));
    // Ideal, measured side by side: ceil(N / concurrency) rounds of one 100 ms answer.
    const ideal = Math.ceil(N / CONCURRENCY) * ANSWER_MS;
    // Warm up (JIT, connections, workflow cache), then reset the memory peak.
    await sweep({ concurrency: CONCURRENCY, publish: false });
    await sweep({ concurrency: CONCURRENCY, chunkSize: 1, publish: false });
    const idle = await ask<{ peak: number; rss: number }>(child, 'peak');
    figures.push(fig('worker RSS after warm-up', idle.rss / 2 ** 20, 'MiB'));

    // A second baseline, side by side: the same 1,000 requests as a plain pooled undici loop at the same concurrency.
    const plain: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const limit = pLimit(CONCURRENCY);
      const t0 = performance.now();
      await Promise.all(Array.from({ length: N }, (_, k) => limit(async () => (await request(`${fleetUrl}/svc-${k}`)).body.dump())));
      plain.push(performance.now() - t0);
    }
    const plainMs = summarize(plain).p50;
    figures.push(fig(`plain pooled undici loop, ${N} requests at concurrency ${CONCURRENCY} (median of ${RUNS})`, plainMs, 'ms', { baseline: { name: 'ideal', value: ideal }, ratio: plainMs / ideal }));

    const modes: [string, HealthSweepInput][] = [
      ['default: 4 lanes x 25 probes, 250 services per activity, probes only', { concurrency: CONCURRENCY, publish: false }],
      ['one activity per service, probes only', { concurrency: CONCURRENCY, chunkSize: 1, publish: false }],
      ['default, full sweep, steady fleet (store + per-service status workflows)', { concurrency: CONCURRENCY }],
    ];
    for (const [label, input] of modes) {
      if (input.publish !== false) {
        // The first full sweep starts the 1,000 status workflows (once per fleet); the second signals
        // them all again (successThreshold 2 passes before the publisher treats them as steady).
        for (const [i, what] of ['first full sweep (signal-with-start of 1,000 new status workflows)', 'second full sweep (1,000 signals)'].entries()) {
          const r = await sweep(input);
          figures.push(fig(what, r.ms, 'ms', { baseline: { name: 'ideal', value: ideal }, ratio: r.ms / ideal }));
          if (i === 1) figures.push(fig('worker peak RSS while starting 1,000 status workflows', (await ask<{ peak: number }>(child, 'peak')).peak / 2 ** 20, 'MiB'));
        }
      }
      const walls: number[] = [];
      let events = 0;
      for (let i = 0; i < RUNS; i++) {
        const r = await sweep(input);
        walls.push(r.ms);
        events = r.events;
      }
      const s = summarize(walls);
      const mem = await ask<{ peak: number }>(child, 'peak');
      figures.push(
        fig(`wall time, ${label} (median of ${RUNS})`, s.p50, 'ms', {
          baseline: { name: `ideal ceil(${N}/${CONCURRENCY}) x ${ANSWER_MS} ms`, value: ideal },
          ratio: s.p50 / ideal,
          target: '<= 1.5x ideal',
          met: s.p50 / ideal <= 1.5,
        }),
        fig(`wall time vs the plain pooled loop, ${label}`, s.p50 / plainMs, 'x', { baseline: { name: 'plain pooled undici loop', value: plainMs }, ratio: s.p50 / plainMs }),
        fig(`history events per sweep, ${label}`, events, 'events'),
        fig(`worker peak RSS, ${label}`, mem.peak / 2 ** 20, 'MiB'),
      );
    }

    // Time to detection, on a small registry and a real 2 s Schedule.
    await ask(child, 'small');
    const interval = 2000;
    await applySweepSchedule(client, { scheduleId: 'bench-sweep', taskQueue, mode: 'sweep', intervalMs: interval, concurrency: CONCURRENCY });
    const toUnhealthy: number[] = [];
    const toAlert: number[] = [];
    for (let trial = 0; trial < 3; trial++) {
      down = false;
      for (let t = Date.now(); Date.now() - t < 20_000; ) {
        const h = await getHealth(client, 'detect');
        if (h?.status === 'healthy' && !h.alertOpen) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      // Break it at a random point of the interval.
      await new Promise((r) => setTimeout(r, Math.random() * interval));
      const before = alertsAt.length;
      const t0 = Date.now();
      down = true;
      for (;;) {
        const h = await getHealth(client, 'detect');
        if (h?.status === 'unhealthy') break;
        if (Date.now() - t0 > 30_000) throw new Error('detect: not unhealthy after 30 s');
        await new Promise((r) => setTimeout(r, 20));
      }
      toUnhealthy.push(Date.now() - t0);
      while (alertsAt.length === before) {
        if (Date.now() - t0 > 30_000) throw new Error('detect: no alert after 30 s');
        await new Promise((r) => setTimeout(r, 20));
      }
      toAlert.push(alertsAt[before]! - t0);
      down = false;
    }
    await client.schedule.getHandle('bench-sweep').delete();
    const u = summarize(toUnhealthy);
    const a = summarize(toAlert);
    const bound = 2 * interval; // failureThreshold x interval (+ one sweep)
    figures.push(
      fig(`time to detection: down -> status unhealthy (median of ${u.n}; Schedule every ${interval} ms, failureThreshold 2)`, u.p50, 'ms', {
        baseline: { name: 'failureThreshold x interval', value: bound },
        ratio: u.p50 / bound,
      }),
      fig(`time to detection: down -> TRIGGERED at the webhook (median of ${a.n})`, a.p50, 'ms', { baseline: { name: 'failureThreshold x interval', value: bound }, ratio: a.p50 / bound }),
    );

    figures.push(...(await mixedIntervals(client, child, taskQueue, dbFile, arrivals, mixedDown, (v) => (recording = v))));
    return figures;
  } finally {
    child.send({ cmd: 'stop' });
    await new Promise((r) => child.once('exit', r));
    await connection.close();
    fleet.closeAllConnections();
    fleet.close();
    receiver.close();
    await server.stop();
  }
}

/** Gaps between consecutive arrivals per path, ms. */
function gapsOf(arrivals: Map<string, number[]>, from: number, to: number): number[] {
  const out: number[] = [];
  for (const times of arrivals.values()) {
    const t = times.filter((x) => x >= from && x < to);
    for (let i = 1; i < t.length; i++) out.push(t[i]! - t[i - 1]!);
  }
  return out.sort((a, b) => a - b);
}

/**
 * Mixed intervals, continuous mode against sweep mode, side by side (see the module doc).
 * Each mode runs its own Schedule for `MEASURE_MS` on the same worker and fleet.
 */
async function mixedIntervals(
  client: Client,
  child: ChildProcess,
  taskQueue: string,
  dbFile: string,
  arrivals: Map<string, number[]>,
  mixedDown: Set<string>,
  setRecording: (v: boolean) => void,
): Promise<Figure[]> {
  const MEASURE_MS = 60_000;
  const figures: Figure[] = [];
  const fig = (name: string, value: number, unit: string, extra: Partial<Figure> = {}): Figure => ({ bench: 'sweep', name, value, unit, ...extra });
  await ask(child, 'mixed');
  const ones = Array.from({ length: MIXED_N }, (_, i) => i).filter((i) => mixedInterval(i) === 1_000);
  const probesPerSecond = ones.length + (MIXED_N - ones.length) / 2 / 10 + (MIXED_N - ones.length) / 2 / 60;
  for (const mode of ['continuous', 'sweep'] as const) {
    const scheduleId = `bench-mixed-${mode}`;
    arrivals.clear();
    await applySweepSchedule(client, { scheduleId, taskQueue, mode, intervalMs: mode === 'continuous' ? 20_000 : 1_000, concurrency: CONCURRENCY });
    // Settle: the first window (or sweep) begins, shards are created.
    await new Promise((r) => setTimeout(r, 25_000));
    const bytes0 = historyBytes(dbFile);
    setRecording(true);
    const from = Date.now();
    // Time to detection of 1 s services going down, at random points of the measurement.
    const detections: number[] = [];
    for (let trial = 0; trial < 3; trial++) {
      const id = `m-${ones[7 + trial * 50]!}`;
      await new Promise((r) => setTimeout(r, 3_000 + Math.random() * 1000));
      const t0 = Date.now();
      mixedDown.add(id);
      for (;;) {
        const h = await getHealth(client, id, { taskQueue });
        if (h?.status === 'unhealthy') break;
        if (Date.now() - t0 > 45_000) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      detections.push(Date.now() - t0);
      mixedDown.delete(id);
    }
    const left = MEASURE_MS - (Date.now() - from);
    if (left > 0) await new Promise((r) => setTimeout(r, left));
    const to = Date.now();
    setRecording(false);
    const bytes = historyBytes(dbFile) - bytes0;
    await client.schedule.getHandle(scheduleId).delete();
    // Let the last window drain (its stalled probes end within 30 s) before the next mode.
    await new Promise((r) => setTimeout(r, mode === 'continuous' ? 31_000 : 5_000));
    if (mode === 'continuous') {
      // The windows' own account (how late lanes began, how late probes started), for the log.
      for await (const wf of client.workflow.list({ query: `WorkflowType = "healthMonitor" AND ExecutionStatus = "Completed"` })) {
        const r = (await client.workflow.getHandle(wf.workflowId, wf.runId).result()) as { windowStart: string; lanes: unknown[] };
        const h = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
        const at = (e: { eventTime?: { seconds?: unknown; nanos?: number | null } | null }) => Number(e!.eventTime!.seconds) * 1000 + (e!.eventTime!.nanos ?? 0) / 1e6;
        const t0 = Date.parse(r.windowStart);
        const trace = h.events!.map((e) => `${Math.round(at(e) - t0)}:${String(e.eventType).replace('EVENT_TYPE_', '')}`).join(' ');
        process.stderr.write(`mixed: window ${r.windowStart}: ${JSON.stringify(r.lanes)}\n  ${trace}\n`);
      }
    }
    const gaps = gapsOf(arrivals, from, to);
    const s = { p50: percentile(gaps, 50), p99: percentile(gaps, 99), max: gaps.at(-1) ?? NaN };
    const d = summarize(detections);
    const bound = 3 * 1_000 + 1_000;
    const probes = (probesPerSecond * (to - from)) / 1000;
    const label = mode === 'continuous' ? 'continuous (20 s windows)' : 'sweep mode (Schedule every 1 s, overlap SKIP)';
    figures.push(
      fig(`mixed intervals, ${label}: 1 s services' probe gap p50`, s.p50, 'ms', { baseline: { name: 'interval', value: 1_000 }, ratio: s.p50 / 1_000 }),
      fig(`mixed intervals, ${label}: 1 s services' probe gap p99`, s.p99, 'ms', { baseline: { name: 'interval', value: 1_000 }, ratio: s.p99 / 1_000, target: '<= 1.2x interval', met: s.p99 <= 1_200 }),
      fig(`mixed intervals, ${label}: 1 s services' largest probe gap`, s.max, 'ms', { baseline: { name: 'interval', value: 1_000 }, ratio: s.max / 1_000 }),
      fig(`mixed intervals, ${label}: time to detection of a 1 s service (median of ${d.n})`, d.p50, 'ms', {
        baseline: { name: 'failureThreshold x interval + 1 s', value: bound },
        ratio: d.p50 / bound,
        target: '<= 1x',
        met: d.p50 <= bound,
      }),
      fig(`mixed intervals, ${label}: history written per probe the fleet is due`, bytes / probes, 'B', { baseline: { name: 'probes due', value: Math.round(probes) } }),
    );
  }
  return figures;
}

if (process.env.BENCH_SWEEP_WORKER) {
  workerMain(JSON.parse(process.env.BENCH_SWEEP_WORKER) as WorkerArgs).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
