/**
 * The breaker reducer as scenarios: how a service's breaker opens, waits,
 * tries again and closes, plus the options' validation.
 */
import {
  breakerAlert,
  breakerView,
  breakerOptionsSchema,
  initialBreakerState,
  newTransitions,
  nextDeadlineMs,
  openWaitMs,
  permitDecision,
  reduceBreaker,
  resolveBreakerOptions,
  retryAfterMs,
  type BreakerEvent,
  type BreakerOptions,
  type BreakerState,
  type ReportedOutcome,
} from '../../src/domain/breaker';
import { parseRegistry } from '../../src/domain/registry-parse';

const T0 = 1_700_000_000_000;

const small: Partial<BreakerOptions> = {
  slidingWindowSize: 10,
  minimumNumberOfCalls: 4,
  failureRateThreshold: 50,
  waitDurationInOpenStateMs: 1000,
  waitDurationMultiplier: 2,
  maxWaitDurationInOpenStateMs: 8000,
  permittedNumberOfCallsInHalfOpenState: 2,
  maxWaitDurationInHalfOpenStateMs: 5000,
  slowCallDurationThresholdMs: 1000,
};

const ok = (extra: Partial<ReportedOutcome> = {}): ReportedOutcome => ({ ok: true, status: 200, latencyMs: 10, startedAt: T0, ...extra });
const fail = (extra: Partial<ReportedOutcome> = {}): ReportedOutcome => ({ ok: false, status: 503, latencyMs: 10, startedAt: T0, ...extra });

function outcomes(list: ReportedOutcome[], reporter = 'w1'): BreakerEvent {
  return { type: 'outcomes', reporter, outcomes: list };
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

function tripped(opts: Partial<BreakerOptions> = small): BreakerState {
  const s = initialBreakerState('billing', opts, T0);
  return reduceBreaker(s, outcomes([fail(), fail(), fail(), fail()]), T0 + 10);
}

describe('CLOSED', () => {
  test('does not judge the rate before the minimum number of calls', () => {
    const s = reduceBreaker(initialBreakerState('billing', small, T0), outcomes([fail(), fail(), fail()]), T0);
    expect(s.state).toBe('CLOSED');
    expect(s.window.failures).toBe(3);
  });

  test('opens when the failure rate reaches the threshold, recording why and until when', () => {
    const s0 = initialBreakerState('billing', small, T0);
    const s = reduceBreaker(s0, outcomes([ok(), ok(), fail(), fail()]), T0 + 5);
    expect(s.state).toBe('OPEN');
    expect(s.generation).toBe(1);
    expect(s.openUntilMs).toBe(T0 + 5 + 1000);
    expect(newTransitions(s0, s)).toEqual([
      expect.objectContaining({ serviceId: 'billing', from: 'CLOSED', to: 'OPEN', reason: 'failure_rate', failureRate: 50, calls: 4, generation: 1 }),
    ]);
  });

  test('counts 5xx, 408, 429 and connection failures; 404 counts as a success; aborted calls do not count', () => {
    let s = initialBreakerState('billing', { ...small, minimumNumberOfCalls: 100, slidingWindowSize: 100 }, T0);
    s = reduceBreaker(
      s,
      outcomes([
        fail({ status: 404 }),
        fail({ status: 422 }),
        fail({ status: 408 }),
        fail({ status: 429 }),
        fail({ status: 502 }),
        fail({ status: undefined, failureKind: 'connection_refused' }),
        fail({ status: undefined, failureKind: 'aborted' }),
        fail({ status: undefined, failureKind: 'breaker_open' }),
      ]),
      T0,
    );
    expect(s.window.totalCalls).toBe(6);
    expect(s.window.failures).toBe(4);
    expect(s.counters.ignored).toBe(2);
  });

  test('the count-based window forgets the oldest call', () => {
    let s = initialBreakerState('billing', { ...small, slidingWindowSize: 4, minimumNumberOfCalls: 4, failureRateThreshold: 75 }, T0);
    s = reduceBreaker(s, outcomes([fail(), fail(), ok(), ok(), ok()]), T0);
    expect(s.window.totalCalls).toBe(4);
    expect(s.window.failures).toBe(1);
    expect(s.state).toBe('CLOSED');
  });

  test('opens on the slow-call rate', () => {
    const s = reduceBreaker(
      initialBreakerState('billing', { ...small, slowCallRateThreshold: 75 }, T0),
      outcomes([ok({ latencyMs: 1500 }), ok({ latencyMs: 1000 }), ok({ latencyMs: 2000 }), ok()]),
      T0,
    );
    expect(s.state).toBe('OPEN');
    expect(s.transitions[0]!.reason).toBe('slow_call_rate');
  });

  test('the time-based window forgets calls older than its duration', () => {
    const opts = { ...small, slidingWindowType: 'TIME_BASED' as const, slidingWindowDurationMs: 10_000, minimumNumberOfCalls: 4 };
    let s = initialBreakerState('billing', opts, T0);
    s = reduceBreaker(s, outcomes([fail(), fail(), fail()]), T0);
    s = reduceBreaker(s, outcomes([ok({ startedAt: T0 + 20_000 })]), T0 + 20_000);
    expect(s.window.totalCalls).toBe(1);
    expect(s.state).toBe('CLOSED');
    s = reduceBreaker(s, outcomes([fail({ startedAt: T0 + 20_000 }), fail({ startedAt: T0 + 20_000 }), fail({ startedAt: T0 + 21_000 })]), T0 + 21_000);
    expect(s.state).toBe('OPEN');
  });

  test('quorum: failures seen by one reporter do not open a breaker that needs two', () => {
    let s = initialBreakerState('billing', { ...small, minimumNumberOfReporters: 2 }, T0);
    s = reduceBreaker(s, outcomes([fail(), fail(), fail(), fail(), fail()], 'badly-connected'), T0);
    expect(s.state).toBe('CLOSED');
    s = reduceBreaker(s, outcomes([fail()], 'w2'), T0);
    expect(s.state).toBe('OPEN');
  });
});

describe('OPEN and HALF_OPEN', () => {
  test('OPEN lasts exactly the wait duration, then admits trials', () => {
    const s = tripped();
    expect(nextDeadlineMs(s)).toBe(T0 + 10 + 1000);
    expect(reduceBreaker(s, { type: 'tick' }, T0 + 1009).state).toBe('OPEN');
    expect(retryAfterMs(s, T0 + 510)).toBe(500);
    const h = reduceBreaker(s, { type: 'tick' }, T0 + 1010);
    expect(h.state).toBe('HALF_OPEN');
    expect(h.generation).toBe(2);
  });

  test('HALF_OPEN admits the permitted number of trials, no more, and closes when they all succeed', () => {
    let s = reduceBreaker(tripped(), { type: 'tick' }, T0 + 2000);
    for (const id of ['a', 'b', 'c']) s = reduceBreaker(s, { type: 'acquirePermit', permitId: id, reporter: 'w1' }, T0 + 2000);
    expect(permitDecision(s, 'a', T0 + 2000).granted).toBe(true);
    expect(permitDecision(s, 'b', T0 + 2000).granted).toBe(true);
    expect(permitDecision(s, 'c', T0 + 2000)).toMatchObject({ granted: false, state: 'HALF_OPEN' });
    const g = s.generation;
    s = reduceBreaker(s, outcomes([ok({ generation: g, permitId: 'a' })]), T0 + 2100);
    // The slot of a finished trial is not given again: the trials decide.
    s = reduceBreaker(s, { type: 'acquirePermit', permitId: 'd', reporter: 'w1' }, T0 + 2100);
    expect(permitDecision(s, 'd', T0 + 2100).granted).toBe(false);
    s = reduceBreaker(s, outcomes([ok({ generation: g, permitId: 'b' })]), T0 + 2200);
    expect(s.state).toBe('CLOSED');
    expect(s.consecutiveTrips).toBe(0);
    expect(s.transitions.at(-1)).toMatchObject({ from: 'HALF_OPEN', to: 'CLOSED', reason: 'trials_succeeded' });
  });

  test('a failed trial re-opens at once with a longer wait', () => {
    let s = reduceBreaker(tripped(), { type: 'tick' }, T0 + 2000);
    s = reduceBreaker(s, { type: 'acquirePermit', permitId: 'a', reporter: 'w1' }, T0 + 2000);
    s = reduceBreaker(s, outcomes([fail({ generation: s.generation, permitId: 'a' })]), T0 + 2050);
    expect(s.state).toBe('OPEN');
    expect(s.consecutiveTrips).toBe(2);
    expect(s.openUntilMs).toBe(T0 + 2050 + 2000);
    expect(s.transitions.at(-1)!.reason).toBe('trial_failed');
  });

  test('a trial that never reports is given up after the maximum half-open wait, freeing its slot', () => {
    let s = reduceBreaker(tripped(), { type: 'tick' }, T0 + 2000);
    s = reduceBreaker(s, { type: 'acquirePermit', permitId: 'a', reporter: 'w1' }, T0 + 2000);
    s = reduceBreaker(s, { type: 'acquirePermit', permitId: 'b', reporter: 'w2' }, T0 + 2000);
    expect(nextDeadlineMs(s)).toBe(T0 + 7000);
    s = reduceBreaker(s, { type: 'tick' }, T0 + 7000);
    expect(s.halfOpen!.permits).toHaveLength(0);
    expect(s.halfOpen!.abandoned).toBe(2);
    // A late report of a given-up trial does not count.
    const late = reduceBreaker(s, outcomes([fail({ generation: s.generation, permitId: 'a' })]), T0 + 7100);
    expect(late.state).toBe('HALF_OPEN');
    expect(late.counters.stale).toBe(1);
    s = reduceBreaker(s, { type: 'acquirePermit', permitId: 'c', reporter: 'w3' }, T0 + 7100);
    expect(permitDecision(s, 'c', T0 + 7100).granted).toBe(true);
  });

  test('an aborted trial gives its slot back at once and decides nothing', () => {
    let s = reduceBreaker(tripped({ ...small, permittedNumberOfCallsInHalfOpenState: 1 }), { type: 'tick' }, T0 + 2000);
    s = reduceBreaker(s, { type: 'acquirePermit', permitId: 'a', reporter: 'w1' }, T0 + 2000);
    expect(permitDecision(s, 'a', T0 + 2000).granted).toBe(true);
    const g = s.generation;
    // The one slot is held: the next caller is refused.
    s = reduceBreaker(s, { type: 'acquirePermit', permitId: 'b', reporter: 'w2' }, T0 + 2010);
    expect(permitDecision(s, 'b', T0 + 2010).granted).toBe(false);
    // The trial's caller gave up: no verdict on the service, but the slot is free now, not at T0 + 7000.
    s = reduceBreaker(s, outcomes([fail({ generation: g, permitId: 'a', status: undefined, failureKind: 'aborted' })]), T0 + 2020);
    expect(s).toMatchObject({ state: 'HALF_OPEN', generation: g, halfOpen: { permits: [], successes: 0, abandoned: 0 } });
    expect(s.counters.ignored).toBe(1);
    expect(nextDeadlineMs(s)).toBeUndefined();
    s = reduceBreaker(s, { type: 'acquirePermit', permitId: 'c', reporter: 'w2' }, T0 + 2030);
    expect(permitDecision(s, 'c', T0 + 2030).granted).toBe(true);
    // A call the breaker itself turned away is ignored the same way.
    s = reduceBreaker(s, outcomes([fail({ generation: g, permitId: 'c', status: undefined, failureKind: 'breaker_open' })]), T0 + 2040);
    expect(s.halfOpen!.permits).toHaveLength(0);
    // Recorded histories replay with the old rule: the slot stays held until the permit expires.
    const legacy = reduceBreaker(
      reduceBreaker(reduceBreaker(tripped(), { type: 'tick' }, T0 + 2000), { type: 'acquirePermit', permitId: 'a', reporter: 'w1' }, T0 + 2000),
      outcomes([fail({ generation: g, permitId: 'a', failureKind: 'aborted' })]),
      T0 + 2020,
      { abortedTrialKeepsSlot: true },
    );
    expect(legacy.halfOpen!.permits.map((p) => p.permitId)).toEqual(['a']);
  });

  test('outcomes of calls admitted under an earlier generation do not move the state', () => {
    const s = tripped();
    let c = reduceBreaker(reduceBreaker(s, { type: 'tick' }, T0 + 2000), { type: 'acquirePermit', permitId: 'a', reporter: 'w1' }, T0 + 2000);
    c = reduceBreaker(c, outcomes([ok({ generation: c.generation, permitId: 'a' })]), T0 + 2000);
    c = reduceBreaker(reduceBreaker(c, { type: 'acquirePermit', permitId: 'b', reporter: 'w1' }, T0 + 2000), outcomes([ok({ generation: c.generation, permitId: 'b' })]), T0 + 2000);
    expect(c.state).toBe('CLOSED');
    const after = reduceBreaker(c, outcomes([fail({ generation: 0 }), fail({ generation: 1 }), fail({ generation: 2 }), fail({ generation: 0 })]), T0 + 2100);
    expect(after.state).toBe('CLOSED');
    expect(after.window.totalCalls).toBe(0);
    expect(after.counters.stale).toBe(4);
    // Without a generation, the start time decides.
    const byTime = reduceBreaker(c, outcomes([fail({ startedAt: T0 }), fail({ startedAt: T0 + 1 })]), T0 + 2100);
    expect(byTime.counters.stale).toBe(2);
  });

  test('repeated trips grow the wait up to the cap', () => {
    const o = resolveBreakerOptions(small);
    expect([1, 2, 3, 4, 5, 6].map((n) => openWaitMs(o, n))).toEqual([1000, 2000, 4000, 8000, 8000, 8000]);
    let s = tripped();
    const waits: number[] = [s.openUntilMs! - s.sinceMs];
    for (let i = 0; i < 4; i++) {
      const now = s.openUntilMs!;
      s = reduceBreaker(s, { type: 'acquirePermit', permitId: `p${i}`, reporter: 'w1' }, now);
      s = reduceBreaker(s, outcomes([fail({ generation: s.generation, permitId: `p${i}` })]), now);
      waits.push(s.openUntilMs! - s.sinceMs);
    }
    expect(waits).toEqual([1000, 2000, 4000, 8000, 8000]);
  });
});

describe('operator states', () => {
  test('FORCED_OPEN rejects with no end until closed; reset clears the trip count, force close keeps it', () => {
    let s = tripped();
    s = reduceBreaker(s, { type: 'forceOpen', note: 'maintenance' }, T0 + 100);
    expect(s.state).toBe('FORCED_OPEN');
    expect(nextDeadlineMs(s)).toBeUndefined();
    expect(reduceBreaker(s, { type: 'tick' }, T0 + 1e9).state).toBe('FORCED_OPEN');
    expect(s.transitions.at(-1)).toMatchObject({ reason: 'forced_open', note: 'maintenance' });
    const closed = reduceBreaker(s, { type: 'forceClose' }, T0 + 200);
    expect(closed.state).toBe('CLOSED');
    expect(closed.consecutiveTrips).toBe(1);
    const reset = reduceBreaker(s, { type: 'reset' }, T0 + 200);
    expect(reset.consecutiveTrips).toBe(0);
  });

  test('DISABLED admits everything and records nothing', () => {
    let s = reduceBreaker(initialBreakerState('billing', small, T0), { type: 'disable' }, T0);
    s = reduceBreaker(s, outcomes(Array.from({ length: 20 }, () => fail({ startedAt: T0 + 1 }))), T0 + 1);
    expect(s.state).toBe('DISABLED');
    expect(s.window.totalCalls).toBe(0);
    expect(permitDecision(s, 'x', T0)).toMatchObject({ granted: true, state: 'DISABLED' });
  });
});

test('the reducer never mutates its input', () => {
  const s = deepFreeze(reduceBreaker(tripped(), { type: 'tick' }, T0 + 2000));
  expect(() => {
    let t = reduceBreaker(s, { type: 'acquirePermit', permitId: 'a', reporter: 'w' }, T0 + 2000);
    t = reduceBreaker(t, outcomes([ok({ generation: t.generation, permitId: 'a' })]), T0 + 2001);
    reduceBreaker(s, { type: 'forceOpen' }, T0 + 2002);
  }).not.toThrow();
});

describe('options', () => {
  test('bad options are rejected with a RangeError naming the option and the value', () => {
    expect(() => resolveBreakerOptions({ failureRateThreshold: 150 })).toThrow(
      new RangeError('circuit breaker option failureRateThreshold must be a percent in (0, 100], got 150'),
    );
    expect(() => resolveBreakerOptions({ permittedNumberOfCallsInHalfOpenState: 0 })).toThrow(/permittedNumberOfCallsInHalfOpenState .* got 0/);
    expect(() => resolveBreakerOptions({ waitDurationInOpenStateMs: 60_000, maxWaitDurationInOpenStateMs: 1000 })).toThrow(/maxWaitDurationInOpenStateMs .* got 1000/);
    expect(() => resolveBreakerOptions({ slidingWindowType: 'SESSION' as never })).toThrow(/slidingWindowType must be COUNT_BASED or TIME_BASED, got "SESSION"/);
    expect(() => resolveBreakerOptions({ slidingWindowSize: 2, minimumNumberOfReporters: 3 })).toThrow(/minimumNumberOfReporters .* at most slidingWindowSize .* got 3/);
  });

  test('the registry form takes resilience4j names and duration strings', () => {
    const o = breakerOptionsSchema.parse({ waitDurationInOpenState: '45s', slowCallDurationThreshold: '2s', failureStatuses: ['5xx', 404] });
    expect(o).toMatchObject({ waitDurationInOpenStateMs: 45_000, slowCallDurationThresholdMs: 2000, failureStatuses: [[500, 599], [404, 404]], slidingWindowSize: 100 });
    const bad = breakerOptionsSchema.safeParse({ failureRateThreshold: 0 });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues[0]!.message).toBe('circuit breaker option failureRateThreshold must be a percent in (0, 100], got 0');
    expect(breakerOptionsSchema.safeParse({ waitDuration: '5s' }).success).toBe(false);
  });

  test('a registry service carries normalized breaker options; a bad one is reported with its path and line', () => {
    const text = (cb: string) =>
      [
        'services:',
        '  - id: billing',
        '    type: api',
        '    endpoints: [{ url: "http://127.0.0.1:9/" }]',
        `    circuitBreaker: ${cb}`,
      ].join('\n');
    const good = parseRegistry(text('{ failureRateThreshold: 25, waitDurationInOpenState: 10s }'), 'inline.yaml');
    if (!good.ok) throw new Error(JSON.stringify(good.problems));
    expect(good.registry.services[0]!.circuitBreaker).toMatchObject({ failureRateThreshold: 25, waitDurationInOpenStateMs: 10_000, minimumNumberOfCalls: 20 });
    const bad = parseRegistry(text('{ permittedNumberOfCallsInHalfOpenState: -1 }'), 'inline.yaml');
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.problems[0]).toMatchObject({
      path: 'services[0].circuitBreaker.permittedNumberOfCallsInHalfOpenState',
      message: 'circuit breaker option permittedNumberOfCallsInHalfOpenState must be an integer in 1..1000, got -1',
    });
  });
});

test('configure changes the options without a transition; a new window shape empties the window', () => {
  let s = reduceBreaker(initialBreakerState('billing', small, T0), outcomes([fail(), ok(), ok(), ok()]), T0);
  expect(s.state).toBe('CLOSED');
  // Same window, lower threshold: judged at once (1 of 4 = 25%).
  const lowered = reduceBreaker(s, { type: 'configure', options: resolveBreakerOptions({ ...small, failureRateThreshold: 25 }) }, T0 + 1);
  expect(lowered.state).toBe('OPEN');
  expect(lowered.transitions.at(-1)!.reason).toBe('failure_rate');
  s = reduceBreaker(s, { type: 'configure', options: resolveBreakerOptions({ ...small, slidingWindowSize: 50 }) }, T0 + 1);
  expect(s).toMatchObject({ state: 'CLOSED', generation: 0 });
  expect(s.window.totalCalls).toBe(0);
  expect(s.options.slidingWindowSize).toBe(50);
});

test('the view of a time-based window leaves out calls older than the window, without a transition', () => {
  const opts = { ...small, slidingWindowType: 'TIME_BASED' as const, slidingWindowDurationMs: 10_000, minimumNumberOfCalls: 100 };
  const s = reduceBreaker(initialBreakerState('billing', opts, T0), outcomes([fail(), ok()]), T0);
  expect(breakerView(s, T0 + 1000).rates).toMatchObject({ calls: 2, failureRate: 50 });
  const later = breakerView(s, T0 + 30_000);
  expect(later.rates.calls).toBe(0);
  expect(later.generation).toBe(0);
});

describe('alerts', () => {
  test('an incident alerts once when it starts and once when it ends, with its duration; the steps in between do not', () => {
    let s = tripped();
    const trip = s.transitions.at(-1)!;
    expect(breakerAlert(trip)).toMatchObject({
      id: 'breaker/billing#1',
      kind: 'TRIGGERED',
      source: 'breaker',
      serviceId: 'billing',
      summary: 'circuit breaker of billing opened: failure rate 100% of 4 calls',
    });
    s = reduceBreaker(s, { type: 'tick' }, T0 + 1010);
    expect(breakerAlert(s.transitions.at(-1)!)).toBeUndefined(); // OPEN -> HALF_OPEN
    s = reduceBreaker(s, { type: 'acquirePermit', permitId: 'a', reporter: 'w' }, T0 + 1010);
    s = reduceBreaker(s, outcomes([fail({ generation: s.generation, permitId: 'a' })]), T0 + 1020);
    expect(breakerAlert(s.transitions.at(-1)!)).toBeUndefined(); // HALF_OPEN -> OPEN: the same incident
    s = reduceBreaker(s, { type: 'reset', note: 'fixed upstream' }, T0 + 5010);
    expect(breakerAlert(s.transitions.at(-1)!)).toEqual({
      id: `breaker/billing#${s.generation}`,
      kind: 'RESOLVED',
      source: 'breaker',
      serviceId: 'billing',
      rootCause: 'billing',
      at: T0 + 5010,
      summary: 'circuit breaker of billing closed: reset by an operator (fixed upstream)',
      durationMs: 5000,
    });
    const forced = reduceBreaker(s, { type: 'forceOpen', note: 'maintenance' }, T0 + 6000);
    expect(breakerAlert(forced.transitions.at(-1)!)).toMatchObject({ kind: 'TRIGGERED', summary: 'circuit breaker of billing opened: forced open by an operator (maintenance)' });
  });
});
