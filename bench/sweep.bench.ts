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
import { summarize, type Figure } from './harness';

const N = 1000;
const CONCURRENCY = 100;
const ANSWER_MS = 100;
const RUNS = 3;

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
  if (!full.ok || !small.ok) throw new Error('bench registry did not parse');
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
  const server = await startDevServer({ uiPort: false });
  let down = false;
  const fleet = createServer((req, res) => {
    if (req.url === '/detect' && down) {
      res.writeHead(503).end('{}');
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
    await applySweepSchedule(client, { scheduleId: 'bench-sweep', taskQueue, intervalMs: interval, concurrency: CONCURRENCY });
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

if (process.env.BENCH_SWEEP_WORKER) {
  workerMain(JSON.parse(process.env.BENCH_SWEEP_WORKER) as WorkerArgs).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
