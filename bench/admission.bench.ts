/**
 * Cluster-wide admission (src/state/admission): what it costs and what it
 * holds, side by side in one run, on a real PostgreSQL and a real Redis
 * (started here on loopback, as the tests start them), against one
 * keep-alive HTTP server in its own process.
 *
 * 1. Requests per second through the coordinator for a limited service whose
 *    limit is high (perSecond 200_000), so the limiter's cost, not the limit,
 *    bounds the rate: the in-process limiter alone (baseline, one process),
 *    then the shared stage on each store, one process against three
 *    processes sharing the one limit. Every client is a process of its own
 *    (bench/admission-client.ts), each with CONCURRENCY callers; rounds are
 *    interleaved and the figures are medians of per-round values.
 * 2. A binding limit (perSecond 200), three processes: the long-run rate the
 *    server sees against the limit (the shared guard, 50 ms on a 1 s window,
 *    makes the ceiling 200 per 1.05 s), and the most requests the server saw
 *    in any 1 s window.
 * 3. Latency per call at concurrency 1 (p50, p99): the coordinator with the
 *    shared stage against the same coordinator with the in-process limiter
 *    alone, calls interleaved in rounds; the difference is the added cost.
 *
 * On this project's 2-core development machine the three processes, the
 * store and the server share two cores: three processes cannot be three
 * times one, and the figure says how close the store lets them come.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createCoordinator, type Coordinator } from '../src/activities/coordinator';
import { staticRegistry } from '../src/activities/registry';
import { registrySchema } from '../src/domain/registry';
import { openSharedAdmission, type SharedAdmission } from '../src/state/admission';
import { startPostgres } from '../test/helpers/postgres';
import { startRedis } from '../test/helpers/redis';
import { summarize, type Figure } from './harness';

const CONCURRENCY = Number(process.env.BENCH_ADMISSION_CONCURRENCY ?? 32);
const DURATION_MS = Number(process.env.BENCH_ADMISSION_MS ?? 2_000);
const ROUNDS = Number(process.env.BENCH_ADMISSION_ROUNDS ?? 3);
const HIGH = 200_000;
const BINDING = 200;
const BINDING_MS = 5_000;
const LATENCY_CALLS = Number(process.env.BENCH_ADMISSION_LATENCY_CALLS ?? 2_000);

const SERVER_SOURCE = `
const http = require('node:http');
const { performance } = require('node:perf_hooks');
let arrivals = [];
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/b/binding/')) arrivals.push(performance.now());
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
  res.end('ok');
});
server.keepAliveTimeout = 60000;
process.on('message', (m) => {
  if (m === 'arrivals') { process.send({ arrivals }); arrivals = []; }
});
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
`;

interface Server {
  child: ChildProcess;
  origin: string;
  arrivals(): Promise<number[]>;
}

async function startServerProcess(): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), 'ia-bench-adm-'));
  const file = join(dir, 'server.js');
  writeFileSync(file, SERVER_SOURCE);
  const child = fork(file, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: [] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`bench server exited early (code ${code})`)));
  });
  return {
    child,
    origin: `http://127.0.0.1:${port}`,
    arrivals: () =>
      new Promise((resolve) => {
        child.once('message', (m) => resolve((m as { arrivals: number[] }).arrivals));
        child.send('arrivals');
      }),
  };
}

interface Client {
  proc: ChildProcess;
  run(service: string, durationMs: number, concurrency: number): Promise<{ done: number; errors: number; firstError?: string }>;
}

/** Starts a client process (bench/admission-client.ts) and waits until it is warm. */
async function startClient(origin: string, storeUrl: string): Promise<Client> {
  const proc = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), join(__dirname, 'admission-client.ts')], {
    env: { ...process.env, ADM_BENCH_ORIGIN: origin, ADM_BENCH_STORE_URL: storeUrl, ADM_BENCH_HIGH: String(HIGH), ADM_BENCH_BINDING: String(BINDING) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout! });
  const pending: ((line: string) => void)[] = [];
  lines.on('line', (l) => pending.shift()?.(l));
  const next = () =>
    new Promise<string>((resolve, reject) => {
      pending.push(resolve);
      proc.once('exit', (code) => reject(new Error(`admission client exited (code ${code}); its error is above`)));
    });
  const ready = await next();
  if (ready !== 'ready') throw new Error(`admission client said ${ready}`);
  return {
    proc,
    async run(service, durationMs, concurrency) {
      const answer = next();
      proc.stdin!.write(`run ${service} ${durationMs} ${concurrency}\n`);
      return JSON.parse(await answer);
    },
  };
}

/** Runs the clients at once; returns the total completed calls per second. */
async function together(clients: Client[], service: string, durationMs: number): Promise<number> {
  const t0 = performance.now();
  const results = await Promise.all(clients.map((c) => c.run(service, durationMs, CONCURRENCY)));
  const seconds = (performance.now() - t0) / 1000;
  const failed = results.find((r) => r.errors > 0);
  if (failed) throw new Error(`${failed.errors} calls failed during the run: the figure would be meaningless; the first: ${failed.firstError}`);
  return results.reduce((n, r) => n + r.done, 0) / seconds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Largest number of arrivals in any half-open window [x, x + windowMs). */
function maxInAnyWindow(sorted: number[], windowMs: number): number {
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < sorted.length; hi++) {
    while (sorted[hi]! - sorted[lo]! >= windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

export default async function run(): Promise<Figure[]> {
  const server = await startServerProcess();
  const pg = await startPostgres();
  const redis = await startRedis();
  const stores = [
    { name: 'PostgreSQL', url: pg.url(pg.adminUser, pg.adminPassword) },
    { name: 'Redis', url: `redis://default:${encodeURIComponent(redis.adminPassword)}@127.0.0.1:${redis.port}` },
  ];
  const clients: Client[] = [];
  const local: { coordinator: Coordinator; shared?: SharedAdmission }[] = [];
  try {
    process.stderr.write('  starting client processes\n');
    const baseline = await startClient(server.origin, '');
    clients.push(baseline);
    const byStore = new Map<string, Client[]>();
    for (const s of stores) {
      const three = await Promise.all([0, 1, 2].map(() => startClient(server.origin, s.url)));
      clients.push(...three);
      byStore.set(s.name, three);
    }
    const figures: Figure[] = [];
    const fig = (name: string, value: number, unit: string, extra: Partial<Figure> = {}): Figure => ({ bench: 'admission', name, value: Number(value.toPrecision(4)), unit, ...extra });

    // 1. Throughput, limit high.
    const rates: Record<string, number[]> = { baseline: [] };
    for (const s of stores) {
      rates[`${s.name} 1`] = [];
      rates[`${s.name} 3`] = [];
    }
    process.stderr.write('  warming up\n');
    await together([baseline], 'limited', 1_000);
    for (const s of stores) await together(byStore.get(s.name)!, 'limited', 1_000);
    for (let round = 0; round < ROUNDS; round++) {
      rates.baseline!.push(await together([baseline], 'limited', DURATION_MS));
      for (const s of stores) {
        const three = byStore.get(s.name)!;
        rates[`${s.name} 1`]!.push(await together([three[0]!], 'limited', DURATION_MS));
        rates[`${s.name} 3`]!.push(await together(three, 'limited', DURATION_MS));
      }
      process.stderr.write(`  round ${round + 1}: ${Object.entries(rates).map(([k, v]) => `${k} ${Math.round(v[round]!)}`).join(', ')} req/s\n`);
    }
    const base = median(rates.baseline!);
    figures.push(fig(`in-process limiter only, 1 process (c=${CONCURRENCY}, perSecond ${HIGH}; baseline)`, base, 'req/s'));
    for (const s of stores) {
      const one = median(rates[`${s.name} 1`]!);
      const three = median(rates[`${s.name} 3`]!);
      figures.push(
        fig(`${s.name} shared admission, 1 process (c=${CONCURRENCY})`, one, 'req/s', {
          baseline: { name: 'in-process limiter only', value: Math.round(base) },
          ratio: Number((one / base).toPrecision(3)),
        }),
        fig(`${s.name} shared admission, 3 processes sharing one limit (c=${CONCURRENCY} each, total)`, three, 'req/s', {
          baseline: { name: `${s.name}, 1 process`, value: Math.round(one) },
          ratio: Number((three / one).toPrecision(3)),
        }),
      );
    }

    // 2. A binding limit: three processes, BINDING per second.
    for (const s of stores) {
      process.stderr.write(`  binding limit on ${s.name}\n`);
      await server.arrivals(); // drop earlier ones
      await together(byStore.get(s.name)!, 'binding', BINDING_MS);
      const arrivals = (await server.arrivals()).sort((a, b) => a - b);
      // Long-run rate: at a binding limit the starts come in bursts of up to the limit, one window apart,
      // so count what came after the first window's worth over the time from the first arrival to the last.
      const steady = (arrivals.length - BINDING) / ((arrivals[arrivals.length - 1]! - arrivals[0]!) / 1000);
      const most = maxInAnyWindow(arrivals, 1_000);
      figures.push(
        fig(`${s.name}, 3 processes at a binding limit of ${BINDING}/s: long-run rate at the server ((arrivals - ${BINDING}) / (last - first))`, steady, 'req/s', {
          baseline: { name: 'the limit', value: BINDING },
          ratio: Number((steady / BINDING).toPrecision(3)),
          target: `<= 1 (ceiling ${(1000 / 1050).toFixed(3)}: the 50 ms shared guard)`,
          met: steady <= BINDING,
        }),
        fig(`${s.name}, 3 processes at a binding limit of ${BINDING}/s: most requests in any 1 s window at the server`, most, 'requests', {
          target: `<= ${BINDING}`,
          met: most <= BINDING,
        }),
      );
    }

    // 3. Latency per call, concurrency 1, this process: in-process limiter alone, then with each store.
    const doc = registrySchema.parse({ services: [{ id: 'limited', type: 'api', endpoints: [{ url: server.origin }], rateLimit: { perSecond: HIGH } }] });
    const registry = staticRegistry({ ...doc, versionHash: 'bench', source: 'bench' });
    local.push({ coordinator: createCoordinator({ registry, reporterId: 'bench' }) });
    for (const s of stores) {
      const shared = await openSharedAdmission(s.name === 'Redis' ? { redisUrl: s.url } : { databaseUrl: s.url });
      local.push({ coordinator: createCoordinator({ registry, reporterId: 'bench', sharedAdmission: shared }), shared });
    }
    process.stderr.write('  latency per call\n');
    const samples: number[][] = local.map(() => []);
    let seq = 0;
    const per = 100;
    for (let i = 0; i < 200; i++) for (const l of local) await l.coordinator.request('limited', { path: `/l/${seq++}`, cache: false });
    for (let round = 0; round < LATENCY_CALLS / per; round++) {
      for (let k = 0; k < local.length; k++) {
        for (let i = 0; i < per; i++) {
          const t = performance.now();
          await local[k]!.coordinator.request('limited', { path: `/l/${seq++}`, cache: false });
          samples[k]!.push(performance.now() - t);
        }
      }
    }
    const baseLat = summarize(samples[0]!);
    figures.push(
      fig('latency per call, in-process limiter only (c=1; baseline) p50', baseLat.p50, 'ms'),
      fig('latency per call, in-process limiter only (c=1; baseline) p99', baseLat.p99, 'ms'),
    );
    stores.forEach((s, i) => {
      const lat = summarize(samples[i + 1]!);
      for (const p of ['p50', 'p99'] as const) {
        figures.push(
          fig(`latency per call with ${s.name} shared admission (c=1) ${p}`, lat[p], 'ms', { baseline: { name: `in-process only ${p}`, value: Number(baseLat[p].toPrecision(4)) }, ratio: Number((lat[p] / baseLat[p]).toPrecision(3)) }),
          fig(`added by ${s.name} shared admission per call (c=1) ${p}`, lat[p] - baseLat[p], 'ms'),
        );
      }
    });
    return figures;
  } finally {
    for (const l of local) {
      await l.coordinator.close(1_000);
      await l.shared?.close();
    }
    for (const c of clients) c.proc.stdin!.write('exit\n');
    await Promise.all(
      clients.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.proc.exitCode !== null) return resolve();
            const t = setTimeout(() => c.proc.kill('SIGKILL'), 10_000);
            c.proc.once('exit', () => (clearTimeout(t), resolve()));
          }),
      ),
    );
    server.child.kill();
    await redis.stop();
    await pg.stop();
  }
}
