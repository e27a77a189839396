/**
 * The status page at fleet scale: first paint of 10,000 services in Debian's
 * headless Chromium (playwright-core), read against the same page with 100
 * services measured side by side. Target (issue 17): under 2 s on this machine.
 *
 * First paint: from the navigation's start to the frame after the page first
 * rendered the fleet (summary, graph collapsed by owner, searchable table),
 * as the page marks it (`performance.mark('fleet-painted')`). It includes
 * the page's own files, the libraries (dagre, uPlot) from node_modules, the
 * server-sent snapshot and the dagre layout. The fleet comes from a synthetic
 * {@link FleetSource} served by the real gatherer and server: what Temporal
 * takes to answer for 10,000 services is issue 16's figure (`npm run bench -- scale`),
 * not the page's.
 */
import type { BreakerSummary, ServiceHealthView } from '../src/client';
import type { HealthStatus } from '../src/domain/health';
import type { Registry } from '../src/domain/registry';
import { FleetGatherer } from '../src/dashboard/gatherer';
import { startDashboardServer } from '../src/dashboard/server';
import type { FleetSource } from '../src/dashboard/source';
import { launchChromium } from '../test/ui/chromium';
import { summarize, type Figure } from './harness';

const RUNS = 5;
const TARGET_MS = 2000;

/** mulberry32, so every run draws the same fleet. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` services owned by 50 teams, each depending on up to 3 earlier ones; 2% unhealthy, their dependants impacted. */
export function syntheticSource(n: number): FleetSource {
  const rnd = prng(n);
  const services = [];
  const views: ServiceHealthView[] = [];
  const status = new Map<string, HealthStatus>();
  const now = Date.now();
  for (let i = 0; i < n; i++) {
    const id = `svc-${String(i).padStart(5, '0')}`;
    const dependsOn = i === 0 ? [] : [...new Set(Array.from({ length: Math.floor(rnd() * 4) }, () => `svc-${String(Math.floor(rnd() * i)).padStart(5, '0')}`))];
    services.push({ id, owner: `team-${String(i % 50).padStart(2, '0')}`, tags: [`tier-${i % 3}`], dependsOn, sla: { availability: 99.5 } });
    const own: HealthStatus = rnd() < 0.02 ? 'unhealthy' : rnd() < 0.03 ? 'degraded' : 'healthy';
    const cause = dependsOn.find((d) => status.get(d) === 'unhealthy' || status.get(d) === 'impacted');
    const s: HealthStatus = own === 'healthy' && cause ? 'impacted' : own;
    status.set(id, s);
    const p50 = 20 + rnd() * 80;
    views.push({
      serviceId: id,
      workflowId: `service/${id}`,
      status: s,
      since: new Date(now - Math.floor(rnd() * 86_400_000)).toISOString(),
      rootCauses: cause ? [cause] : [],
      ...(cause ? { rootCause: cause } : {}),
      impacts: [],
      alertOpen: s === 'unhealthy',
      lastProbe: { sweepId: 'sweep/bench', at: now - 1000, verdict: s === 'unhealthy' ? 'fail' : 'pass', latencyMs: p50 },
      figures: { p50Ms: p50, p95Ms: p50 * 2, p99Ms: p50 * 3, availability: { '1h': 100, '24h': s === 'unhealthy' ? 97 : 99.9, '7d': 99.9, '30d': 99.95 }, slaAvailability: 99.5, computedAt: now },
    });
  }
  const registry = { services, credentials: [] } as unknown as Registry;
  const breakers: BreakerSummary[] = [];
  return {
    registry: () => registry,
    health: async () => views,
    serviceHealth: async (id) => views.find((v) => v.serviceId === id),
    breakers: async () => breakers,
    breaker: async () => {
      throw new Error('not in this bench');
    },
    credentials: async () => [],
    versionCreatedAt: async () => undefined,
    rotation: async () => undefined,
    rotationSchedule: async () => undefined,
    sweepSchedule: async () => ({ scheduleId: 'health-sweep', paused: false, intervalMs: 30_000, overlap: 'SKIP', catchupWindowMs: 60_000, nextRuns: [], recentRuns: [], runningWorkflows: [] }),
  };
}

/** First paint of the page over a fleet of `n`, ms, each run in a fresh page; also the snapshot's size. */
async function firstPaint(n: number, browser: Awaited<ReturnType<typeof launchChromium>>): Promise<{ samples: number[]; bytes: number }> {
  const gatherer = new FleetGatherer(syntheticSource(n), { namespace: 'bench', pollMs: 60_000 });
  gatherer.start();
  await gatherer.ready();
  const server = await startDashboardServer({ gatherer, host: '127.0.0.1', port: 0 });
  const samples: number[] = [];
  try {
    const bytes = Buffer.byteLength(JSON.stringify(gatherer.snapshot()));
    for (let i = 0; i < RUNS + 1; i++) {
      const page = await browser.context.newPage();
      await page.setViewportSize({ width: 1400, height: 1000 });
      await page.goto(server.url);
      const t = await page.waitForFunction(() => performance.getEntriesByName('fleet-painted')[0]?.startTime, undefined, { timeout: 60_000 });
      const rows = await page.locator('#services tbody tr').count();
      if (rows === 0) throw new Error(`the page over ${n} services rendered no table rows`);
      if (i > 0) samples.push((await t.jsonValue()) as number); // the first run warms the browser's caches
      await page.close();
    }
    return { samples, bytes };
  } finally {
    await server.close();
    await gatherer.stop();
  }
}

export default async function run(): Promise<Figure[]> {
  const browser = await launchChromium();
  try {
    const small = await firstPaint(100, browser);
    const large = await firstPaint(10_000, browser);
    const s = summarize(small.samples);
    const l = summarize(large.samples);
    return [
      { bench: 'dashboard', name: 'first paint, 100 services (p50)', value: Math.round(s.p50), unit: 'ms' },
      {
        bench: 'dashboard',
        name: `first paint, 10,000 services (p50 of ${RUNS}; worst ${Math.round(l.p99)} ms)`,
        value: Math.round(l.p50),
        unit: 'ms',
        baseline: { name: 'first paint, 100 services', value: Math.round(s.p50) },
        ratio: Number((l.p50 / s.p50).toFixed(2)),
        target: `< ${TARGET_MS} ms`,
        met: l.p99 < TARGET_MS,
      },
      { bench: 'dashboard', name: 'snapshot sent to a new page, 10,000 services', value: Math.round(large.bytes / 1024), unit: 'KiB', baseline: { name: '100 services', value: Math.round(small.bytes / 1024) } },
    ];
  } finally {
    await browser.close();
  }
}
