/**
 * The health history on both backends (a real SQLite file, a real
 * PostgreSQL database): availability over clock jumps and gaps,
 * percentiles, passive call outcomes, survival across reopen.
 */
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { createHealthOutcomeSink } from '../../src/activities/health-sink';
import { HealthHistoryStore } from '../../src/state/health';
import type { StateBackend } from '../../src/state/types';
import { freshLocation, openAt, STATE_BACKENDS, useStateBackends, type BackendKind, type StateLocation } from '../helpers/state';
import type { ProbeResult, ProbeVerdict } from '../../src/domain/health';
import type { CallOutcome } from '../../src/domain/outcome';

const T0 = Date.UTC(2026, 5, 1, 0, 0, 0);
const MIN = 60_000;
const H = 3_600_000;
const res = (serviceId: string, at: number, verdict: ProbeVerdict, latencyMs = 10, maintenance = false): ProbeResult => ({
  serviceId,
  at,
  startedAt: at,
  verdict,
  latencyMs,
  ...(maintenance ? { maintenance } : {}),
} as ProbeResult);

useStateBackends();
const masterKey = randomBytes(32);

describe.each(STATE_BACKENDS)('health history on %s', (kind: BackendKind) => {
  const opened: StateBackend[] = [];
  const open = async (loc: StateLocation) => {
    const st = await openAt(loc, { masterKey });
    opened.push(st);
    return st;
  };
  const store = async () => (await open(await freshLocation(kind))).health;
  afterAll(async () => {
    for (const st of opened) await st.close();
  });

  test('up/down time from 30s sweeps; a gap with no sweeps and maintenance count for neither', async () => {
    const s = await store();
    const v = () => 60_000; // each result stands for 2 x 30s
    // 30 min up, 10 min down, then no sweeps for 1h, then 20 min maintenance (failing), then 10 min up.
    let t = T0;
    const feed = async (mins: number, verdict: ProbeVerdict, maintenance = false) => {
      for (let i = 0; i < mins * 2; i++, t += 30_000) await s.recordProbes([res('a', t, verdict, 10, maintenance)], v);
    };
    await feed(30, 'pass');
    await feed(10, 'fail');
    t += H;
    await feed(20, 'fail', true);
    await feed(10, 'pass');
    const now = t;
    const f = await s.figures('a', now);
    // up: 30m (its tail is cut where the failures start) + the last 10m (clipped at now);
    // down: 10m + the half-minute tail of the last failure into the gap; the gap itself counts for nothing.
    const spans = await s.spans('a', 0, now + H);
    const total = (st: string) => spans.filter((x) => x.state === st).reduce((n, x) => n + Math.min(x.to, now) - x.from, 0);
    expect(total('up')).toBe(40 * MIN);
    expect(total('down')).toBe(10 * MIN + 30_000);
    expect(total('excluded')).toBe(20 * MIN);
    expect(f.availability['24h']).toBeCloseTo((100 * total('up')) / (total('up') + total('down')), 6);
    expect(f.availability['1h']).toBe(100); // the last hour saw only maintenance and up time
  });

  test('property: clock jumps back and forth and gaps keep every window in [0, 100]', async () => {
    const s = await store();
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            dt: fc.oneof(fc.integer({ min: 1_000, max: 60_000 }), fc.integer({ min: -2 * H, max: 0 }), fc.integer({ min: H, max: 10 * 24 * H })),
            verdict: fc.constantFrom<ProbeVerdict>('pass', 'warn', 'fail', 'inconclusive'),
            maintenance: fc.boolean(),
          }),
          { minLength: 1, maxLength: 60 },
        ),
        fc.integer({ min: -H, max: 40 * 24 * H }),
        async (steps, nowOffset) => {
          const id = `p${n++}`;
          let t = T0;
          let maxT = T0;
          for (const st of steps) {
            t += st.dt;
            maxT = Math.max(maxT, t);
            await s.recordProbes([res(id, t, st.verdict, 5, st.maintenance)], () => 60_000);
          }
          const now = maxT + nowOffset;
          const f = await s.figures(id, now);
          for (const v of Object.values(f.availability)) {
            expect(v).toBeGreaterThanOrEqual(0);
            expect(v).toBeLessThanOrEqual(100);
          }
          // Spans never overlap.
          const spans = (await s.spans(id, -8.64e15, 8.64e15)).sort((a, b) => a.from - b.from);
          for (let i = 1; i < spans.length; i++) expect(spans[i]!.from).toBeGreaterThanOrEqual(spans[i - 1]!.to);
        },
      ),
      { numRuns: kind === 'sqlite' ? 150 : 40 },
    );
  });

  test('p50/p95/p99 from HDR histograms (2 significant digits), probes and real calls together, surviving a reopen', async () => {
    const loc = await freshLocation(kind);
    const first = await open(loc);
    const s = first.health;
    const now = T0 + 5 * H + 10 * MIN;
    // 1..100 ms probes spread over the last 5 hours (several hour buckets).
    await s.recordProbes(
      Array.from({ length: 100 }, (_, i) => res('lat', T0 + 20 * MIN + i * 3 * MIN, 'pass', i + 1)),
      () => 6 * MIN,
    );
    const sink = createHealthOutcomeSink(s, { flushEveryMs: 10_000 });
    const call = (ok: boolean, latencyMs: number, failureKind?: CallOutcome['failureKind']): CallOutcome => ({
      serviceId: 'lat',
      endpoint: 'http://127.0.0.1:1',
      ok,
      latencyMs,
      startedAt: now - MIN,
      reporter: 'test',
      ...(failureKind ? { failureKind } : {}),
    });
    for (let i = 0; i < 100; i++) sink.record(call(true, 50));
    for (let i = 0; i < 25; i++) sink.record(call(false, 2000, 'timeout'));
    for (let i = 0; i < 1000; i++) sink.record(call(false, 0, 'breaker_open')); // never reached the service: not counted
    await sink.close();
    const f = await s.figures('lat', now, 99.9);
    expect(f.p50Ms).toBeGreaterThanOrEqual(49.5);
    expect(f.p50Ms).toBeLessThanOrEqual(51);
    expect(f.p99Ms).toBeGreaterThanOrEqual(98);
    expect(f.p99Ms).toBeLessThanOrEqual(101);
    expect(f.errorRate24h).toBeCloseTo(25 / 225, 6);
    expect(f.slaAvailability).toBe(99.9);
    // Reopen the database (a worker restart, which flushes first): the same figures come back.
    await first.close();
    const again = await (await open(loc)).health.figures('lat', now, 99.9);
    expect(again).toEqual(f);
  });

  test('history older than the retention is pruned; options are checked', async () => {
    const s = await store();
    await s.recordProbes([res('old', T0, 'pass')], () => MIN);
    await s.prune(T0 + 40 * 24 * H);
    expect(await s.spans('old', 0, 8.64e15)).toEqual([]);
    expect(() => new HealthHistoryStore(undefined as never, { retentionMs: 1000 })).toThrow('HealthStore: retentionMs must be >= 30 days (2592000000), got 1000');
    await expect(s.recordProbes([res('x', T0, 'pass')], () => 0)).rejects.toThrow('recordProbes: validityMs for x must be > 0, got 0');
  });
});
