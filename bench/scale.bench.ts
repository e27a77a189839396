/**
 * Issue 16's scale figures: the real `integration-agent worker` process
 * against the embedded dev server and a loopback fleet of N services (one
 * HTTP server answering every service in 50-100 ms), for each N of
 * `BENCH_SCALE_SIZES` (default `1000,3000,10000`):
 *
 * - sweep wall times, six sweeps in a row at the default concurrency (50):
 *   the first, and the steady one (median of sweeps 4-6) against the ideal
 *   ceil(N / 50) x 75 ms (the mean answer time), and first against steady;
 * - worker and dev-server peak RSS (/proc, sampled every 250 ms), the whole run;
 * - `integration-agent status --json`: wall time and how many rows carry figures;
 * - history written per service per steady sweep: the growth of the dev
 *   server's `history_node` table (its SQLite file) over sweeps 4-6, divided
 *   by N x 3 (every workflow's history: sweeps and status state);
 * - the largest payload in the sweeps' histories (and a sample of the status
 *   state's histories).
 *
 * - continuous monitoring (the Schedule's default mode; `BENCH_SCALE_MODE`
 *   = `both` (default), `sweep` or `continuous`): each service at its 30 s
 *   interval, windows of 60 s; the probing rate measured at the fleet server
 *   over two windows against the rate due (N / 30 s), the time until every
 *   service has its first result against one interval, how late probes start
 *   (the windows' lane results), and history per service per probe cycle.
 *
 * `npm run bench -- scale` (after `npm run build`: the worker and the CLI run
 * from lib/). One size: `BENCH_SCALE_SIZES=1000 npm run bench -- scale`.
 * Worker tuning variables (WORKER_*) given to the bench pass to the worker.
 * Each size gets a fresh dev server, data dir and worker. A sweep that fails
 * is reported with its cause and ends that size's run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { AesGcmCodec } from '../src/codec/aes-gcm-codec';
import { loadCodecKeys } from '../src/codec/keys';
import { startDevServer } from '../src/dev/dev-server';
import type { HealthSweepResult } from '../src/workflows/sweep';
import { applySweepSchedule, listHealth } from '../src/client/health';
import pLimit from 'p-limit';
import { request } from 'undici';
import { historyBytes, type Figure } from './harness';

const CONCURRENCY = 50;
/** Requests the fleet server has answered. */
const fleetCount = { requests: 0 };
const MODE = process.env.BENCH_SCALE_MODE ?? 'both';
const ANSWER_MIN_MS = 50;
const ANSWER_MAX_MS = 100;
const SWEEPS = 6;
const root = join(__dirname, '..');
const cliPath = join(root, 'bin', 'integration-agent.js');

function rssOf(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Largest payload (decoded bytes of `data`) in a history fetched as JSON. */
function largestPayload(history: unknown): number {
  let max = 0;
  const walk = (o: unknown): void => {
    if (Array.isArray(o)) return o.forEach(walk);
    if (!o || typeof o !== 'object') return;
    const rec = o as Record<string, unknown>;
    if (rec.metadata && rec.data !== undefined) {
      const d = rec.data as Uint8Array | string;
      max = Math.max(max, typeof d === 'string' ? Buffer.from(d, 'base64').length : d.length);
      return;
    }
    for (const v of Object.values(rec)) walk(v);
  };
  walk(history);
  return max;
}

function rootMessage(err: unknown): string {
  let e = err as (Error & { cause?: unknown }) | undefined;
  const parts: string[] = [];
  while (e) {
    parts.push(e.message.split('\n')[0]!);
    e = e.cause instanceof Error ? (e.cause as Error & { cause?: unknown }) : undefined;
  }
  return parts.join(' <- ');
}

async function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [cliPath, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(timer);
  return { code, stdout, stderr, ms: performance.now() - t0 };
}

async function runSize(n: number, fleetUrl: string): Promise<Figure[]> {
  const figures: Figure[] = [];
  const fig = (name: string, value: number, unit: string, extra: Partial<Figure> = {}): Figure => ({ bench: 'scale', name: `N=${n}: ${name}`, value, unit, ...extra });
  const work = mkdtempSync(join(tmpdir(), `ia-bench-scale-${n}-`));
  const dataDir = join(work, 'data');
  const dbFile = join(work, 'temporal.db');
  const registryFile = join(work, 'services.json');
  const services = Array.from({ length: n }, (_, i) => ({ id: `svc-${i}`, type: 'api', endpoints: [{ url: `${fleetUrl}/svc-${i}` }], healthCheck: { path: '/health', timeout: '5s' } }));
  writeFileSync(registryFile, JSON.stringify({ services }));

  const server = await startDevServer({ uiPort: false, dbFilename: dbFile });
  const env: NodeJS.ProcessEnv = { ...process.env, TEMPORAL_ADDRESS: server.address, INTEGRATION_AGENT_DATA_DIR: dataDir, INTEGRATION_AGENT_REGISTRY: registryFile, LOG_LEVEL: 'warn' };
  const logFile = join(work, 'worker.log');
  const logFd = openSync(logFile, 'a');
  let worker: ChildProcess | undefined;
  let peaks = { worker: 0, server: 0 };
  const sampler = setInterval(() => {
    peaks.worker = Math.max(peaks.worker, rssOf(worker?.pid));
    peaks.server = Math.max(peaks.server, rssOf(server.process.pid));
  }, 250);
  const connection = await Connection.connect({ address: server.address });
  try {
    worker = spawn(process.execPath, [cliPath, 'worker', '--registry', registryFile], { env, stdio: ['ignore', logFd, logFd] });
    const client = new Client({ connection, dataConverter: { payloadCodecs: [new AesGcmCodec(loadCodecKeys(dataDir))] } });
    // Ready when the worker polls its task queue.
    for (const t = Date.now(); ; ) {
      const tq = await connection.workflowService.describeTaskQueue({ namespace: 'default', taskQueue: { name: 'integration-agent' }, taskQueueType: 1 });
      if ((tq.pollers?.length ?? 0) > 0) break;
      if (worker.exitCode !== null) throw new Error(`worker exited with ${worker.exitCode}:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
      if (Date.now() - t > 120_000) throw new Error('worker did not poll within 2 minutes');
      await new Promise((r) => setTimeout(r, 250));
    }
    if (process.env.BENCH_SCALE_ONLY === 'breakers') {
      // Breaker workflows are per service by design: N of them in the worker's cache, RSS before and
      // after (settled: under 1 % growth over 6 s), per breaker.
      const before = rssOf(worker.pid);
      const limit = pLimit(50);
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: n }, (_, i) =>
          limit(() => client.workflow.start('circuitBreaker', { taskQueue: 'integration-agent', workflowId: `breaker/svc-${i}`, args: [{ serviceId: `svc-${i}` }] })),
        ),
      );
      // Every breaker has run its first workflow task once one queried last answers and RSS settles.
      await client.workflow.getHandle(`breaker/svc-${n - 1}`).query('breakerState').catch(() => undefined);
      let last = rssOf(worker.pid);
      for (let k = 0; k < 60; k++) {
        await new Promise((r) => setTimeout(r, 6000));
        const now = rssOf(worker.pid);
        if (now < last * 1.01) break;
        last = now;
      }
      const after = rssOf(worker.pid);
      figures.push(
        fig(`worker RSS with ${n} breaker workflows started (settled)`, after / 2 ** 20, 'MiB', { baseline: { name: 'before', value: before / 2 ** 20 } }),
        fig('worker RSS per breaker workflow', (after - before) / n / 1024, 'KiB'),
        fig('time to start them (50 at a time)', performance.now() - t0, 'ms'),
        fig('worker peak RSS', peaks.worker / 2 ** 20, 'MiB'),
      );
      return figures;
    }
    const ideal = Math.ceil(n / CONCURRENCY) * ((ANSWER_MIN_MS + ANSWER_MAX_MS) / 2);
    // Side by side: the same N requests as a plain pooled undici loop at the same concurrency
    // (what this shared machine allows right now).
    const limit = pLimit(CONCURRENCY);
    const p0 = performance.now();
    await Promise.all(Array.from({ length: n }, (_, k) => limit(async () => (await request(`${fleetUrl}/svc-${k}/health`)).body.dump())));
    const plainMs = performance.now() - p0;
    const walls: number[] = [];
    let bytesBefore = 0;
    let failed: string | undefined;
    let largest = 0;
    for (let i = 1; i <= (MODE === 'continuous' ? 0 : SWEEPS); i++) {
      if (i === 4) bytesBefore = historyBytes(dbFile);
      const workflowId = `sweep/bench-${i}`;
      const t0 = performance.now();
      try {
        const r = (await client.workflow.execute('healthSweep', { taskQueue: 'integration-agent', workflowId, args: [{}], workflowExecutionTimeout: 20 * 60_000 })) as HealthSweepResult;
        walls.push(performance.now() - t0);
        process.stderr.write(`scale N=${n}: sweep ${i}: ${Math.round(walls.at(-1)!)} ms, counts ${JSON.stringify(r.counts)}\n`);
      } catch (err) {
        failed = `sweep ${i} failed after ${Math.round(performance.now() - t0)} ms: ${rootMessage(err)}`;
        process.stderr.write(`scale N=${n}: ${failed}\n`);
      }
      try {
        const h = await client.workflow.getHandle(workflowId).fetchHistory();
        largest = Math.max(largest, largestPayload(h));
        if (process.env.BENCH_SCALE_TRACE) {
          // Where a sweep's time goes: each event's offset from the start, ms.
          const t0 = Number(h.events![0]!.eventTime!.seconds) * 1000 + (h.events![0]!.eventTime!.nanos ?? 0) / 1e6;
          const line = h.events!.map((e) => `${Math.round(Number(e.eventTime!.seconds) * 1000 + (e.eventTime!.nanos ?? 0) / 1e6 - t0)}:${String(e.eventType).replace('EVENT_TYPE_', '')}`).join(' ');
          process.stderr.write(`scale N=${n}: sweep ${i} events: ${line}\n`);
        }
      } catch {
        /* no history (not started) */
      }
      if (failed) break;
    }
    if (walls.length === SWEEPS) {
      const bytes = historyBytes(dbFile) - bytesBefore;
      const steady = [...walls.slice(3)].sort((a, b) => a - b)[1]!;
      figures.push(
        fig('first sweep', walls[0]!, 'ms', { baseline: { name: 'steady sweep', value: steady }, ratio: walls[0]! / steady, target: '<= 3x steady', met: walls[0]! / steady <= 3 }),
        fig('sweeps 2, 3', walls[1]!, 'ms', { baseline: { name: 'sweep 3', value: walls[2]! } }),
        fig('steady sweep (median of sweeps 4-6)', steady, 'ms', { baseline: { name: `ideal ceil(N/${CONCURRENCY}) x 75 ms`, value: ideal }, ratio: steady / ideal, target: '<= 1.5x ideal', met: steady / ideal <= 1.5 }),
        fig('plain pooled undici loop, same requests (side by side)', plainMs, 'ms', { baseline: { name: 'ideal', value: ideal }, ratio: plainMs / ideal }),
        fig('steady sweep vs the plain loop', steady / plainMs, 'x', { baseline: { name: 'plain pooled undici loop', value: plainMs }, ratio: steady / plainMs }),
        fig('history written per service per steady sweep', bytes / (n * 3), 'B', { target: '<= 100 B', met: bytes / (n * 3) <= 100 }),
      );
    } else if (MODE !== 'continuous') {
      figures.push(fig(`sweeps completed before a failure (${failed})`, walls.length, 'sweeps'));
    }
    if (MODE !== 'sweep') figures.push(...(await continuousPhase(n, client, dbFile, fig)));
    // Status workflows' histories: the largest payload of a sample (any run of them).
    for await (const wf of client.workflow.list({ query: 'WorkflowType != "healthSweep"', pageSize: 20 })) {
      try {
        largest = Math.max(largest, largestPayload(await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory()));
      } catch {
        /* gone */
      }
      if (--sampleLeft <= 0) break;
    }
    figures.push(fig('largest payload in the sampled histories', largest / 1024, 'KiB', { target: '<= 512 KiB', met: largest <= 512 * 1024 }));
    const status = await runCli(['status', '--json'], env, 600_000);
    let rows = 0;
    let withFigures = 0;
    try {
      const parsed = JSON.parse(status.stdout) as { figures?: unknown }[];
      rows = parsed.length;
      withFigures = parsed.filter((r) => r.figures !== undefined).length;
    } catch {
      process.stderr.write(`scale N=${n}: status --json exited ${status.code}: ${status.stderr.slice(-500)}\n`);
    }
    figures.push(
      fig('status --json wall time', status.ms, 'ms', { target: '< 5000 ms', met: status.ms < 5000 && withFigures === n }),
      fig('status --json rows with figures', withFigures, 'rows', { baseline: { name: 'services', value: n }, ratio: withFigures / n }),
    );
    if (rows !== withFigures) figures.push(fig('status --json rows without figures', rows - withFigures, 'rows'));
    figures.push(
      fig('worker peak RSS', peaks.worker / 2 ** 20, 'MiB', { target: '< 2048 MiB', met: peaks.worker < 2 ** 31 }),
      fig('dev server peak RSS', peaks.server / 2 ** 20, 'MiB'),
      fig('worker RSS at the end', rssOf(worker.pid) / 2 ** 20, 'MiB'),
    );
    return figures;
  } finally {
    clearInterval(sampler);
    if (worker && worker.exitCode === null) {
      const done = new Promise((r) => worker!.once('exit', r));
      worker.kill('SIGTERM');
      const t = setTimeout(() => worker!.kill('SIGKILL'), 15_000);
      await done;
      clearTimeout(t);
    }
    await connection.close();
    await server.stop();
    peaks = { worker: 0, server: 0 };
  }
}

let sampleLeft = 20;

/**
 * Continuous monitoring of the N services (30 s interval each) on a real
 * Schedule with 60 s windows: first results, probing rate over two windows,
 * lateness, history per service per probe cycle (see the module doc).
 */
async function continuousPhase(n: number, client: Client, dbFile: string, fig: (name: string, value: number, unit: string, extra?: Partial<Figure>) => Figure): Promise<Figure[]> {
  const INTERVAL = 30_000;
  const WINDOW = 60_000;
  const out: Figure[] = [];
  const scheduleId = 'bench-scale-continuous';
  const t0 = Date.now();
  await applySweepSchedule(client, { scheduleId, taskQueue: 'integration-agent', mode: 'continuous', intervalMs: WINDOW });
  // First results: every service has one in its shard (read as `status` reads, every 5 s).
  let firstAll = NaN;
  for (;;) {
    await new Promise((r) => setTimeout(r, 5_000));
    const rows = await listHealth(client, { taskQueue: 'integration-agent' }).catch(() => []);
    const fresh = rows.filter((r) => (r.lastProbe?.at ?? 0) >= t0).length;
    if (fresh >= n) {
      firstAll = Date.now() - (Math.ceil(t0 / WINDOW) * WINDOW + 15_000);
      break;
    }
    if (Date.now() - t0 > 5 * WINDOW) break;
  }
  // Measure over two whole windows, from the start of the third window after the first results
  // (the fleet's latency percentiles settle as samples accumulate: figures change less often).
  const nextWindow = Math.ceil(Date.now() / WINDOW) * WINDOW + 2 * WINDOW + 15_000;
  await new Promise((r) => setTimeout(r, nextWindow - Date.now()));
  const r0 = fleetCount.requests;
  const b0 = historyBytes(dbFile);
  const m0 = Date.now();
  await new Promise((r) => setTimeout(r, 2 * WINDOW));
  const requests = fleetCount.requests - r0;
  const bytes = historyBytes(dbFile) - b0;
  const ms = Date.now() - m0;
  await client.schedule.getHandle(scheduleId).delete();
  const due = (n * ms) / INTERVAL;
  const cycles = ms / INTERVAL;
  // How late probes started, from the windows that ended.
  let late = 0;
  let maxLate = 0;
  let probes = 0;
  let skipped = 0;
  let overdue = 0;
  let figuresSent = 0;
  let resultsSent = 0;
  let messages = 0;
  for await (const wf of client.workflow.list({ query: `WorkflowType = "healthMonitor" AND ExecutionStatus = "Completed"` })) {
    const r = (await client.workflow.getHandle(wf.workflowId, wf.runId).result()) as {
      windowStart: string;
      lanes: { probes: number; late: number; maxLateMs: number; skipped: number; overdue: number; figuresSent: number; resultsSent: number; messages: number }[];
    };
    process.stderr.write(`scale N=${n}: window ${r.windowStart}: ${JSON.stringify(r.lanes)}\n`);
    for (const l of r.lanes) {
      if (Date.parse(r.windowStart) >= m0 - 1000) {
        figuresSent += l.figuresSent ?? 0;
        resultsSent += l.resultsSent;
        messages += l.messages;
      }
      probes += l.probes;
      late += l.late;
      skipped += l.skipped;
      overdue += l.overdue;
      maxLate = Math.max(maxLate, l.maxLateMs);
    }
  }
  out.push(
    fig('continuous: time until every service has its first result in its shard (from the first window\'s start; read every 5 s)', firstAll, 'ms', { baseline: { name: 'interval', value: INTERVAL }, ratio: firstAll / INTERVAL, target: '<= 3x one probe cycle', met: firstAll <= 3 * INTERVAL }),
    fig('continuous: probes answered over two windows', requests, 'probes', { baseline: { name: `due (N / ${INTERVAL / 1000} s)`, value: Math.round(due) }, ratio: requests / due, target: 'the rate due, within 1.5x (>= 0.67)', met: requests / due >= 1 / 1.5 }),
    fig('continuous: probes that started late (> 10% of the interval) / probes, completed windows', probes ? late / probes : NaN, 'share', { baseline: { name: 'probes', value: probes } }),
    fig('continuous: latest probe start after its grid time', maxLate, 'ms'),
    fig('continuous: occurrences skipped / services reported overdue', skipped, 'skipped', { baseline: { name: 'overdue', value: overdue } }),
    fig('continuous: history written per service per probe cycle', bytes / (n * cycles), 'B', { target: '<= 100 B', met: bytes / (n * cycles) <= 100 }),
    fig('continuous: in the measured windows, messages to shards / results sent / figures sent', messages, 'messages', { baseline: { name: `results ${resultsSent}, figures`, value: figuresSent } }),
  );
  process.stderr.write(`scale N=${n}: continuous: ${requests} probes over ${ms} ms (due ${Math.round(due)}), history ${bytes} B\n`);
  return out;
}

export default async function run(): Promise<Figure[]> {
  if (!existsSync(join(root, 'lib', 'client', 'cli', 'main.js'))) throw new Error('scale bench: run `npm run build` first (the worker and the CLI run from lib/)');
  const sizes = (process.env.BENCH_SCALE_SIZES ?? '1000,3000,10000').split(',').map((s) => {
    const v = Number(s.trim());
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`BENCH_SCALE_SIZES: "${s}" is not a whole number of services (e.g. 1000,3000)`);
    return v;
  });
  // One loopback server answers every service, each request after 50-100 ms.
  const fleet = createServer((_req, res) => {
    fleetCount.requests++;
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"pass"}'), ANSWER_MIN_MS + Math.random() * (ANSWER_MAX_MS - ANSWER_MIN_MS));
  });
  fleet.keepAliveTimeout = 5000;
  fleet.maxConnections = 20_000;
  await new Promise<void>((r) => fleet.listen(0, '127.0.0.1', r));
  const fleetUrl = `http://127.0.0.1:${(fleet.address() as AddressInfo).port}`;
  const figures: Figure[] = [];
  try {
    for (const n of sizes) {
      sampleLeft = 20;
      figures.push(...(await runSize(n, fleetUrl)));
    }
  } finally {
    fleet.closeAllConnections();
    fleet.close();
  }
  return figures;
}
