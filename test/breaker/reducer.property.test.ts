/**
 * Property tests of the breaker reducer (fast-check): whatever the order and
 * timing of outcomes, permit requests, ticks and operator commands, its
 * promises hold.
 */
import fc from 'fast-check';
import {
  initialBreakerState,
  openWaitMs,
  permitDecision,
  reduceBreaker,
  resolveBreakerOptions,
  type BreakerEvent,
  type BreakerOptions,
  type BreakerState,
  type ReportedOutcome,
} from '../../src/domain/breaker';

const T0 = 1_700_000_000_000;

const optionsArb: fc.Arbitrary<Partial<BreakerOptions>> = fc.record({
  slidingWindowType: fc.constantFrom('COUNT_BASED' as const, 'TIME_BASED' as const),
  slidingWindowSize: fc.integer({ min: 3, max: 20 }),
  slidingWindowDurationMs: fc.integer({ min: 1000, max: 20_000 }),
  minimumNumberOfCalls: fc.integer({ min: 1, max: 10 }),
  failureRateThreshold: fc.integer({ min: 1, max: 100 }),
  slowCallRateThreshold: fc.integer({ min: 1, max: 100 }),
  slowCallDurationThresholdMs: fc.constant(1000),
  waitDurationInOpenStateMs: fc.integer({ min: 1, max: 5000 }),
  waitDurationMultiplier: fc.constantFrom(1, 1.5, 2, 3),
  maxWaitDurationInOpenStateMs: fc.constant(20_000),
  permittedNumberOfCallsInHalfOpenState: fc.integer({ min: 1, max: 6 }),
  maxWaitDurationInHalfOpenStateMs: fc.integer({ min: 1, max: 5000 }),
  minimumNumberOfReporters: fc.integer({ min: 1, max: 3 }),
});

/** A step, materialized against the state it is applied to (so generations and permit ids can refer to it). */
type Step =
  | { kind: 'outcomes'; dtMs: number; reporter: string; calls: Array<{ ok: boolean; status: number; slow: boolean; genOffset: number | null; permit: number | null; aborted: boolean }> }
  | { kind: 'acquire'; dtMs: number; permit: number; reporter: string }
  | { kind: 'tick'; dtMs: number }
  | { kind: 'operator'; dtMs: number; op: 'forceOpen' | 'forceClose' | 'reset' | 'disable' };

const reporterArb = fc.constantFrom('w1', 'w2', 'w3');
const dtArb = fc.integer({ min: 0, max: 3000 });
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('outcomes' as const),
      dtMs: dtArb,
      reporter: reporterArb,
      calls: fc.array(
        fc.record({
          ok: fc.boolean(),
          status: fc.constantFrom(200, 404, 429, 503),
          slow: fc.boolean(),
          genOffset: fc.constantFrom(0, 0, 0, -1, -2, null),
          permit: fc.option(fc.integer({ min: 0, max: 9 })),
          aborted: fc.constantFrom(false, false, false, false, true),
        }),
        { minLength: 1, maxLength: 6 },
      ),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('acquire' as const), dtMs: dtArb, permit: fc.integer({ min: 0, max: 9 }), reporter: reporterArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('tick' as const), dtMs: dtArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('operator' as const), dtMs: dtArb, op: fc.constantFrom('forceOpen' as const, 'forceClose' as const, 'reset' as const, 'disable' as const) }) },
);

function materialize(s: BreakerState, step: Step, now: number): BreakerEvent {
  switch (step.kind) {
    case 'outcomes':
      return {
        type: 'outcomes',
        reporter: step.reporter,
        outcomes: step.calls.map(
          (c): ReportedOutcome => ({
            ok: c.ok,
            status: c.ok ? 200 : c.status,
            latencyMs: c.slow ? 1500 : 10,
            startedAt: now,
            ...(c.genOffset !== null && { generation: Math.max(0, s.generation + c.genOffset) }),
            ...(c.permit !== null && { permitId: `p${c.permit}` }),
            ...(c.aborted && { ok: false, status: undefined, failureKind: 'aborted' as const }),
          }),
        ),
      };
    case 'acquire':
      return { type: 'acquirePermit', permitId: `p${step.permit}`, reporter: step.reporter };
    case 'tick':
      return { type: 'tick' };
    case 'operator':
      return { type: step.op };
  }
}

function checkInvariants(prev: BreakerState, s: BreakerState, now: number): void {
  const o = s.options;
  // Generations: +1 per transition, transitions in order.
  const added = s.transitions.filter((t) => t.generation > prev.generation);
  expect(s.generation - prev.generation).toBe(added.length);
  for (let i = 1; i < s.transitions.length; i++) expect(s.transitions[i]!.generation).toBe(s.transitions[i - 1]!.generation + 1);
  // Half-open: never more trials than permitted, at once or in total.
  if (s.state === 'HALF_OPEN') {
    const h = s.halfOpen!;
    expect(h.permits.length + h.successes).toBeLessThanOrEqual(o.permittedNumberOfCallsInHalfOpenState);
    expect(new Set(h.permits.map((p) => p.permitId)).size).toBe(h.permits.length);
    for (const p of h.permits) expect(p.expiresAtMs).toBeGreaterThan(now);
  } else {
    expect(s.halfOpen).toBeUndefined();
  }
  // OPEN: a scheduled end, the grown and capped wait.
  if (s.state === 'OPEN') {
    expect(s.consecutiveTrips).toBeGreaterThanOrEqual(1);
    expect(s.openUntilMs! - s.sinceMs).toBe(openWaitMs(o, s.consecutiveTrips));
    expect(s.openUntilMs! - s.sinceMs).toBeLessThanOrEqual(o.maxWaitDurationInOpenStateMs);
    expect(s.openUntilMs!).toBeGreaterThan(now);
  } else {
    expect(s.openUntilMs).toBeUndefined();
  }
  // The window's totals are its contents.
  const w = s.window;
  if (o.slidingWindowType === 'COUNT_BASED') {
    expect(w.calls.length).toBeLessThanOrEqual(o.slidingWindowSize);
    expect(w.totalCalls).toBe(w.calls.length);
    expect(w.failures).toBe(w.calls.filter((c) => c.failed).length);
    expect(w.slowCalls).toBe(w.calls.filter((c) => c.slow).length);
  } else {
    expect(w.totalCalls).toBe(w.buckets.reduce((n, b) => n + b.calls, 0));
    expect(w.failures).toBe(w.buckets.reduce((n, b) => n + b.failures, 0));
  }
  for (const n of Object.values(w.badReporters)) expect(n).toBeGreaterThan(0);
  if (s.state !== 'CLOSED') expect(w.totalCalls).toBe(0);
}

function run(options: Partial<BreakerOptions>, steps: Step[], each?: (prev: BreakerState, next: BreakerState, now: number, event: BreakerEvent) => void): BreakerState {
  let s = initialBreakerState('svc', options, T0);
  let now = T0;
  for (const step of steps) {
    now += step.dtMs;
    const event = materialize(s, step, now);
    const next = reduceBreaker(s, event, now);
    each?.(s, next, now, event);
    s = next;
  }
  return s;
}

test('invariants hold after every event, for any options and any sequence', () => {
  fc.assert(
    fc.property(optionsArb, fc.array(stepArb, { maxLength: 80 }), (options, steps) => {
      run(options, steps, (prev, next, now) => checkInvariants(prev, next, now));
    }),
    { numRuns: 300 },
  );
});

test('late results from an earlier generation never move the state or the window', () => {
  fc.assert(
    fc.property(optionsArb, fc.array(stepArb, { maxLength: 60 }), fc.array(fc.boolean(), { minLength: 1, maxLength: 20 }), (options, steps, oks) => {
      const s = run(options, steps);
      fc.pre(s.generation > 0);
      const now = s.sinceMs; // no time passes: only the outcomes could change anything
      const late: ReportedOutcome[] = oks.map((ok, i) => ({ ok, status: ok ? 200 : 503, latencyMs: 5000, startedAt: T0, generation: i % s.generation, permitId: 'p0' }));
      const t = reduceBreaker(s, { type: 'outcomes', reporter: 'late', outcomes: late }, now);
      expect({ ...t, counters: undefined }).toEqual({ ...s, counters: undefined });
      expect(t.counters.stale).toBe(s.counters.stale + late.length);
    }),
    { numRuns: 300 },
  );
});

test('concurrency at half-open: however many ask at once, exactly the permitted number get a trial', () => {
  fc.assert(
    fc.property(optionsArb, fc.integer({ min: 1, max: 60 }), fc.array(reporterArb, { minLength: 60, maxLength: 60 }), (options, n, reporters) => {
      let s = initialBreakerState('svc', options, T0);
      // Reach HALF_OPEN through a real trip: enough failures from enough reporters.
      const o = s.options;
      const failures: ReportedOutcome[] = Array.from({ length: Math.max(o.minimumNumberOfCalls, o.minimumNumberOfReporters) }, () => ({ ok: false, status: 503, latencyMs: 1, startedAt: T0 }));
      for (const [i, f] of failures.entries()) s = reduceBreaker(s, { type: 'outcomes', reporter: `r${i}`, outcomes: [f] }, T0);
      expect(s.state).toBe('OPEN');
      let now = s.openUntilMs!;
      s = reduceBreaker(s, { type: 'tick' }, now);
      expect(s.state).toBe('HALF_OPEN');
      let granted = 0;
      for (let i = 0; i < n; i++) {
        s = reduceBreaker(s, { type: 'acquirePermit', permitId: `c${i}`, reporter: reporters[i]! }, now);
        if (permitDecision(s, `c${i}`, now).granted) granted++;
        // A retried request for a permit already held is the same permit, never a second one.
        s = reduceBreaker(s, { type: 'acquirePermit', permitId: `c${i}`, reporter: reporters[i]! }, now);
        now += 1;
        if (now >= s.halfOpen!.permits[0]?.expiresAtMs!) break;
      }
      expect(granted).toBeLessThanOrEqual(o.permittedNumberOfCallsInHalfOpenState);
      expect(s.halfOpen!.permits.length).toBe(granted);
      if (n >= o.permittedNumberOfCallsInHalfOpenState && o.maxWaitDurationInHalfOpenStateMs > n) expect(granted).toBe(o.permittedNumberOfCallsInHalfOpenState);
    }),
    { numRuns: 300 },
  );
});

test('a trial that never reports is given up: the breaker cannot wedge in HALF_OPEN', () => {
  fc.assert(
    fc.property(optionsArb, fc.array(stepArb, { maxLength: 60 }), (options, steps) => {
      const s = run(options, steps);
      fc.pre(s.state === 'HALF_OPEN' && s.halfOpen!.permits.length > 0);
      const latest = Math.max(...s.halfOpen!.permits.map((p) => p.expiresAtMs));
      const t = reduceBreaker(s, { type: 'tick' }, latest);
      expect(t.state).toBe('HALF_OPEN');
      expect(t.halfOpen!.permits).toHaveLength(0);
      expect(t.halfOpen!.abandoned).toBe(s.halfOpen!.abandoned + s.halfOpen!.permits.length);
      if (t.halfOpen!.successes < t.options.permittedNumberOfCallsInHalfOpenState) {
        const u = reduceBreaker(t, { type: 'acquirePermit', permitId: 'fresh', reporter: 'w9' }, latest);
        expect(permitDecision(u, 'fresh', latest).granted).toBe(true);
      }
    }),
    { numRuns: 500 },
  );
});

test('an aborted or ignored trial frees its slot at once and decides nothing', () => {
  fc.assert(
    fc.property(optionsArb, fc.array(stepArb, { maxLength: 60 }), fc.nat(), fc.constantFrom('aborted' as const, 'breaker_open' as const), (options, steps, pick, failureKind) => {
      const s = run(options, steps);
      fc.pre(s.state === 'HALF_OPEN' && s.halfOpen!.permits.length > 0);
      const now = s.halfOpen!.permits.reduce((m, p) => Math.min(m, p.expiresAtMs), Infinity) - 1;
      fc.pre(now >= s.sinceMs);
      const permit = s.halfOpen!.permits[pick % s.halfOpen!.permits.length]!;
      const t = reduceBreaker(s, { type: 'outcomes', reporter: 'w1', outcomes: [{ ok: false, latencyMs: 5000, startedAt: now, generation: s.generation, permitId: permit.permitId, failureKind }] }, now);
      // Nothing decided: same state and generation, no success or failure counted, no permit given up.
      expect(t).toMatchObject({ state: 'HALF_OPEN', generation: s.generation, consecutiveTrips: s.consecutiveTrips });
      expect(t.halfOpen!.successes).toBe(s.halfOpen!.successes);
      expect(t.halfOpen!.abandoned).toBe(s.halfOpen!.abandoned);
      expect(t.halfOpen!.permits.map((p) => p.permitId)).toEqual(s.halfOpen!.permits.filter((p) => p !== permit).map((p) => p.permitId));
      // The slot is free at once: the next caller gets a trial.
      const u = reduceBreaker(t, { type: 'acquirePermit', permitId: 'fresh', reporter: 'w9' }, now);
      expect(permitDecision(u, 'fresh', now).granted).toBe(true);
    }),
    { numRuns: 500 },
  );
});

test('repeated trips grow the wait, never past the cap', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 60_000 }),
      fc.double({ min: 1, max: 10, noNaN: true }),
      fc.integer({ min: 0, max: 600_000 }),
      fc.integer({ min: 1, max: 40 }),
      (base, multiplier, extra, trips) => {
        const o = resolveBreakerOptions({ waitDurationInOpenStateMs: base, waitDurationMultiplier: multiplier, maxWaitDurationInOpenStateMs: base + extra });
        let s = initialBreakerState('svc', { ...o, minimumNumberOfCalls: 1, permittedNumberOfCallsInHalfOpenState: 1 }, T0);
        s = reduceBreaker(s, { type: 'outcomes', reporter: 'w', outcomes: [{ ok: false, latencyMs: 1, startedAt: T0 }] }, T0);
        const waits = [s.openUntilMs! - s.sinceMs];
        for (let i = 1; i < trips; i++) {
          const now = s.openUntilMs!;
          s = reduceBreaker(s, { type: 'acquirePermit', permitId: `t${i}`, reporter: 'w' }, now);
          s = reduceBreaker(s, { type: 'outcomes', reporter: 'w', outcomes: [{ ok: false, latencyMs: 1, startedAt: now, generation: s.generation, permitId: `t${i}` }] }, now);
          expect(s.state).toBe('OPEN');
          waits.push(s.openUntilMs! - s.sinceMs);
        }
        expect(waits[0]).toBe(base);
        for (let i = 1; i < waits.length; i++) expect(waits[i]!).toBeGreaterThanOrEqual(waits[i - 1]!);
        for (const w of waits) expect(w).toBeLessThanOrEqual(base + extra);
        if (multiplier >= 2 && trips >= 40) expect(waits.at(-1)).toBe(base + extra);
      },
    ),
    { numRuns: 300 },
  );
});

test('quorum: failures from fewer distinct reporters than required never open the breaker', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 5 }),
      fc.array(fc.record({ reporter: fc.integer({ min: 0, max: 9 }), ok: fc.boolean(), dtMs: fc.integer({ min: 0, max: 500 }) }), { maxLength: 200 }),
      (quorum, calls) => {
        const allowed = quorum - 1;
        let s = initialBreakerState('svc', { minimumNumberOfCalls: 1, failureRateThreshold: 1, minimumNumberOfReporters: quorum, slidingWindowSize: 50 }, T0);
        let now = T0;
        const reporters = new Set<number>();
        for (const c of calls) {
          now += c.dtMs;
          // Only `allowed` distinct reporters ever fail; anyone may succeed.
          const failing = !c.ok && (reporters.has(c.reporter) || reporters.size < allowed);
          if (failing) reporters.add(c.reporter);
          s = reduceBreaker(s, { type: 'outcomes', reporter: `r${c.reporter}`, outcomes: [{ ok: !failing, status: failing ? 503 : 200, latencyMs: 1, startedAt: now }] }, now);
          expect(s.state).toBe('CLOSED');
        }
      },
    ),
    { numRuns: 300 },
  );
});
