/**
 * The prober's own health on the probe path: `ProberHealth.judge` over a
 * 10,000-service fleet on 2,000 hosts, in pages of 250 as the sweep hands
 * them (three sweeps after a warm-up sweep that reads the registry's hosts).
 *
 * Baseline, side by side: the judgment every result already gets on the
 * probe path (`evaluateProbe` of the same observations against each
 * service's check). Targets: on a healthy fleet the prober's check costs at
 * most as much as that judgment (1x); with the whole fleet refused (the
 * prober offline, each page re-reading the 10,000-service window) it stays
 * under 1 s of CPU per sweep, in pages or one result at a time as lanes
 * judge them. Medians of 7 sweeps (3 one at a time) after a warm-up sweep.
 */
import { ProberHealth } from '../src/activities/prober-health';
import { effectiveHealthCheck, evaluateProbe, type ProbeResult } from '../src/domain/health';
import { parseRegistry } from '../src/domain/registry-parse';
import { summarize, type Figure } from './harness';

const N = 10_000;
const PAGE = 250;
const SWEEPS = 7;

export default async function run(): Promise<Figure[]> {
  const services = Array.from({ length: N }, (_, i) => ({ id: `s${i}`, type: 'api', endpoints: [{ url: `http://h${i % 2000}.fleet.internal:8080` }], dependsOn: i % 10 === 0 && i > 0 ? [`s${i - 1}`] : [] }));
  const parsed = parseRegistry(JSON.stringify({ services }), 'bench.json');
  if (!parsed.ok) throw new Error(parsed.problems.map((p) => p.message).join('; '));
  const registry = parsed.registry;
  const pages = (refused: boolean): ProbeResult[][] => {
    const at = Date.now();
    const out: ProbeResult[][] = [];
    for (let from = 0; from < N; from += PAGE)
      out.push(
        services.slice(from, from + PAGE).map((s) =>
          refused ? { serviceId: s.id, verdict: 'fail', failureKind: 'connection_refused', latencyMs: 0.4, startedAt: at, detail: 'connection refused (connect ECONNREFUSED)' } : { serviceId: s.id, verdict: 'pass', latencyMs: 12.3, startedAt: at, status: 200 },
        ),
      );
    return out;
  };
  const checks = new Map(registry.services.map((s) => [s.id, effectiveHealthCheck(s)]));
  const baseline = (sweep: ProbeResult[][]) => {
    let failed = 0;
    for (const page of sweep)
      for (const r of page) {
        const obs = r.failureKind ? { startedAt: r.startedAt, latencyMs: r.latencyMs, error: { kind: r.failureKind, message: r.detail! } } : { startedAt: r.startedAt, latencyMs: r.latencyMs, status: 200, contentType: 'application/json' };
        if (evaluateProbe(r.serviceId, checks.get(r.serviceId)!, obs, r.startedAt).verdict === 'fail') failed++;
      }
    return failed;
  };
  const measure = async (refused: boolean) => {
    const prober = new ProberHealth({ identity: 'bench:1', registry: { current: () => registry }, probe: async () => Promise.reject(new Error('no canaries in this bench')) });
    const warm = pages(refused);
    baseline(warm);
    for (const page of warm) await prober.judge(page); // warm-up: reads the registry's hosts once
    const judgeMs: number[] = [];
    const baseMs: number[] = [];
    for (let i = 0; i < SWEEPS; i++) {
      const sweep = pages(refused);
      let t0 = performance.now();
      baseline(sweep);
      baseMs.push(performance.now() - t0);
      t0 = performance.now();
      for (const page of sweep) await prober.judge(page);
      judgeMs.push(performance.now() - t0);
    }
    if (prober.mode !== (refused ? 'offline' : 'online')) throw new Error(`expected the prober ${refused ? 'offline' : 'online'}, it is ${prober.mode}`);
    return { judge: summarize(judgeMs).p50, base: summarize(baseMs).p50 };
  };
  const healthy = await measure(false);
  const offline = await measure(true);
  // Lanes judge results as they come: one at a time, the whole fleet refused.
  const lane = new ProberHealth({ identity: 'bench:2', registry: { current: () => registry }, probe: async () => Promise.reject(new Error('no canaries in this bench')) });
  for (const page of pages(true)) for (const r of page) await lane.judge([r]);
  const laneMs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const sweep = pages(true);
    const t0 = performance.now();
    for (const page of sweep) for (const r of page) await lane.judge([r]);
    laneMs.push(performance.now() - t0);
  }
  if (lane.mode !== 'offline') throw new Error(`expected the lane's prober offline, it is ${lane.mode}`);
  const baselineName = 'evaluateProbe of the same results (the judgment each already gets)';
  return [
    {
      bench: 'prober',
      name: 'judge a healthy 10,000-service sweep (pages of 250)',
      value: healthy.judge,
      unit: 'ms',
      baseline: { name: baselineName, value: healthy.base },
      ratio: healthy.judge / healthy.base,
      target: '<= 1x baseline',
      met: healthy.judge <= healthy.base,
    },
    {
      bench: 'prober',
      name: 'judge 10,000 results one at a time (lanes), all refused (prober offline)',
      value: summarize(laneMs).p50,
      unit: 'ms',
      target: '< 1000 ms per pass',
      met: summarize(laneMs).p50 < 1000,
    },
    { bench: 'prober', name: 'judge a 10,000-service sweep, all refused (prober offline)', value: offline.judge, unit: 'ms', baseline: { name: baselineName, value: offline.base }, ratio: offline.judge / offline.base, target: '< 1000 ms per sweep', met: offline.judge < 1000 },
  ];
}
