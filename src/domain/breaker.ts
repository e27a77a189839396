/**
 * The circuit breaker as a pure reducer: `reduceBreaker(state, event, nowMs) -> state`.
 *
 * Semantics follow resilience4j's CircuitBreaker (sliding window, failure and
 * slow-call rate thresholds, minimum number of calls, permitted calls in
 * half-open, FORCED_OPEN/DISABLED operator states), with four additions that
 * only matter once the breaker is shared by many processes:
 *
 * - the wait duration in OPEN grows with consecutive trips (capped), like
 *   resilience4j's exponential `IntervalFunction`;
 * - a HALF_OPEN trial permit that is not reported within
 *   `maxWaitDurationInHalfOpenStateMs` is given up and its slot freed, so a
 *   worker that dies mid-trial cannot wedge the breaker;
 * - every transition starts a new generation, and outcomes of calls admitted
 *   under an earlier generation are ignored (late results do not move the state);
 * - an optional quorum (`minimumNumberOfReporters`): CLOSED opens only when
 *   failing or slow calls come from that many distinct reporters.
 *
 * The reducer never reads a clock and never mutates its input, so the breaker
 * workflow, the gate and property tests share it. Everything here is
 * JSON-serialisable: the state is what the workflow carries across
 * continue-as-new and returns from its query.
 */
import { z } from 'zod';
import { tryParseDuration } from './duration';
import type { Alert } from './health';
import type { FailureKind } from './outcome';

// ---------------------------------------------------------------------------
// Options

export const SLIDING_WINDOW_TYPES = ['COUNT_BASED', 'TIME_BASED'] as const;
export type SlidingWindowType = (typeof SLIDING_WINDOW_TYPES)[number];

/** Normalized breaker options (durations in milliseconds). */
export interface BreakerOptions {
  /** `COUNT_BASED`: the last `slidingWindowSize` calls; `TIME_BASED`: calls of the last `slidingWindowDurationMs`. Default `COUNT_BASED`. */
  slidingWindowType: SlidingWindowType;
  /** Calls in a count-based window, 1..1000. Default 100. */
  slidingWindowSize: number;
  /** Length of a time-based window in ms, 1 s..1 h; aggregated in buckets of max(1 s, length/60). Default 60 000. */
  slidingWindowDurationMs: number;
  /** Percent (0, 100]: CLOSED opens when failures / calls * 100 >= this. Default 50. */
  failureRateThreshold: number;
  /** Percent (0, 100]: CLOSED opens when slow calls / calls * 100 >= this. Default 100. */
  slowCallRateThreshold: number;
  /** A call taking at least this many ms is slow. Default 60 000. */
  slowCallDurationThresholdMs: number;
  /** Calls the window must hold before rates are judged (capped at `slidingWindowSize` when count-based), >= 1. Default 20. */
  minimumNumberOfCalls: number;
  /** Wait in OPEN after the first trip, ms >= 1. Default 30 000. */
  waitDurationInOpenStateMs: number;
  /** Each further consecutive trip multiplies the wait by this, 1..100 (1 = constant). Default 2. */
  waitDurationMultiplier: number;
  /** Cap on the grown wait, ms >= waitDurationInOpenStateMs. Default 600 000. */
  maxWaitDurationInOpenStateMs: number;
  /** Trial calls admitted in HALF_OPEN, 1..1000; never more run at once or in total. Default 5. */
  permittedNumberOfCallsInHalfOpenState: number;
  /** A trial permit not reported within this many ms is given up and its slot freed, ms >= 1. Default 60 000. */
  maxWaitDurationInHalfOpenStateMs: number;
  /** Quorum: CLOSED opens only when failing/slow calls come from at least this many distinct reporters, 1..1000. Default 1. */
  minimumNumberOfReporters: number;
  /** HTTP statuses that count as failures, as inclusive ranges. Default 5xx, 408, 429; other 4xx count as successes. */
  failureStatuses: Array<[number, number]>;
}

export const DEFAULT_BREAKER_OPTIONS: Readonly<BreakerOptions> = Object.freeze({
  slidingWindowType: 'COUNT_BASED',
  slidingWindowSize: 100,
  slidingWindowDurationMs: 60_000,
  failureRateThreshold: 50,
  slowCallRateThreshold: 100,
  slowCallDurationThresholdMs: 60_000,
  minimumNumberOfCalls: 20,
  waitDurationInOpenStateMs: 30_000,
  waitDurationMultiplier: 2,
  maxWaitDurationInOpenStateMs: 600_000,
  permittedNumberOfCallsInHalfOpenState: 5,
  maxWaitDurationInHalfOpenStateMs: 60_000,
  minimumNumberOfReporters: 1,
  failureStatuses: [
    [500, 599],
    [408, 408],
    [429, 429],
  ],
} satisfies BreakerOptions);

interface Problem {
  option: string;
  value: unknown;
  expected: string;
}

function isInt(v: unknown, lo: number, hi: number): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
}
function isNum(v: unknown, lo: number, hi: number, loOpen = false): boolean {
  return typeof v === 'number' && Number.isFinite(v) && (loOpen ? v > lo : v >= lo) && v <= hi;
}

/** Every problem with a full options object (empty when valid). */
function problemsOf(o: BreakerOptions): Problem[] {
  const p: Problem[] = [];
  const check = (ok: boolean, option: keyof BreakerOptions, expected: string) => {
    if (!ok) p.push({ option, value: o[option], expected });
  };
  check(SLIDING_WINDOW_TYPES.includes(o.slidingWindowType), 'slidingWindowType', 'COUNT_BASED or TIME_BASED');
  check(isInt(o.slidingWindowSize, 1, 1000), 'slidingWindowSize', 'an integer number of calls in 1..1000');
  check(isInt(o.slidingWindowDurationMs, 1000, 3_600_000), 'slidingWindowDurationMs', 'whole ms in 1s..1h');
  check(isNum(o.failureRateThreshold, 0, 100, true), 'failureRateThreshold', 'a percent in (0, 100]');
  check(isNum(o.slowCallRateThreshold, 0, 100, true), 'slowCallRateThreshold', 'a percent in (0, 100]');
  check(isInt(o.slowCallDurationThresholdMs, 1, 86_400_000), 'slowCallDurationThresholdMs', 'whole ms in 1ms..1d');
  check(isInt(o.minimumNumberOfCalls, 1, 1_000_000), 'minimumNumberOfCalls', 'an integer >= 1');
  check(isInt(o.waitDurationInOpenStateMs, 1, 86_400_000), 'waitDurationInOpenStateMs', 'whole ms in 1ms..1d');
  check(isNum(o.waitDurationMultiplier, 1, 100), 'waitDurationMultiplier', 'a number in 1..100');
  check(
    isInt(o.maxWaitDurationInOpenStateMs, 1, 7 * 86_400_000) && o.maxWaitDurationInOpenStateMs >= o.waitDurationInOpenStateMs,
    'maxWaitDurationInOpenStateMs',
    `whole ms, at least waitDurationInOpenStateMs (${o.waitDurationInOpenStateMs}) and at most 7d`,
  );
  check(isInt(o.permittedNumberOfCallsInHalfOpenState, 1, 1000), 'permittedNumberOfCallsInHalfOpenState', 'an integer in 1..1000');
  check(isInt(o.maxWaitDurationInHalfOpenStateMs, 1, 86_400_000), 'maxWaitDurationInHalfOpenStateMs', 'whole ms in 1ms..1d');
  check(
    isInt(o.minimumNumberOfReporters, 1, 1000) && (o.slidingWindowType !== 'COUNT_BASED' || o.minimumNumberOfReporters <= o.slidingWindowSize),
    'minimumNumberOfReporters',
    'an integer in 1..1000, and at most slidingWindowSize for a count-based window (else the breaker could never open)',
  );
  check(
    Array.isArray(o.failureStatuses) &&
      o.failureStatuses.every((r) => Array.isArray(r) && r.length === 2 && isInt(r[0], 100, 599) && isInt(r[1], r[0], 599)),
    'failureStatuses',
    'ranges [lo, hi] of HTTP statuses in 100..599',
  );
  return p;
}

function describe(p: Problem): string {
  return `circuit breaker option ${p.option} must be ${p.expected}, got ${JSON.stringify(p.value)}`;
}

/**
 * Completes `partial` with {@link DEFAULT_BREAKER_OPTIONS} and validates it.
 *
 * @returns a fresh, complete {@link BreakerOptions}.
 * @throws RangeError naming the first bad option and its value, e.g.
 *   `circuit breaker option failureRateThreshold must be a percent in (0, 100], got 150`.
 */
export function resolveBreakerOptions(partial: Partial<BreakerOptions> = {}): BreakerOptions {
  const o: BreakerOptions = { ...DEFAULT_BREAKER_OPTIONS, ...stripUndefined(partial) };
  o.failureStatuses = o.failureStatuses.map((r) => [r[0], r[1]] as [number, number]);
  const problems = problemsOf(o);
  if (problems.length > 0) throw new RangeError(describe(problems[0]!));
  return o;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

/** Parses a status matcher: `503`, `"5xx"`, `"500-504"` into an inclusive range. */
export function parseStatusMatcher(m: number | string): [number, number] | undefined {
  if (typeof m === 'number') return Number.isInteger(m) && m >= 100 && m <= 599 ? [m, m] : undefined;
  const cls = /^([1-5])xx$/.exec(m);
  if (cls) return [Number(cls[1]) * 100, Number(cls[1]) * 100 + 99];
  const range = /^(\d{3})-(\d{3})$/.exec(m);
  if (range) {
    const lo = Number(range[1]);
    const hi = Number(range[2]);
    return lo >= 100 && hi <= 599 && lo <= hi ? [lo, hi] : undefined;
  }
  const one = /^(\d{3})$/.exec(m);
  if (one) return parseStatusMatcher(Number(one[1]));
  return undefined;
}

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = typeof v === 'number' ? (Number.isFinite(v) && v >= 0 ? Math.round(v) : undefined) : tryParseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `invalid duration ${JSON.stringify(v)}: use a number and a unit, e.g. 500ms, 30s, 5m` });
    return z.NEVER;
  }
  return ms;
});

/**
 * The registry's `circuitBreaker` key (resilience4j names, duration strings
 * such as `"30s"`), transformed into complete, validated {@link BreakerOptions}.
 * Every key is optional; see docs/breakers.md.
 */
export const breakerOptionsSchema = z
  .strictObject({
    slidingWindowType: z.enum(SLIDING_WINDOW_TYPES).optional(),
    slidingWindowSize: z.number().optional(),
    slidingWindowDuration: duration.optional(),
    failureRateThreshold: z.number().optional(),
    slowCallRateThreshold: z.number().optional(),
    slowCallDurationThreshold: duration.optional(),
    minimumNumberOfCalls: z.number().optional(),
    waitDurationInOpenState: duration.optional(),
    waitDurationMultiplier: z.number().optional(),
    maxWaitDurationInOpenState: duration.optional(),
    permittedNumberOfCallsInHalfOpenState: z.number().optional(),
    maxWaitDurationInHalfOpenState: duration.optional(),
    minimumNumberOfReporters: z.number().optional(),
    failureStatuses: z.array(z.union([z.number(), z.string()])).optional(),
  })
  .transform((v, ctx): BreakerOptions => {
    const statuses: Array<[number, number]> = [];
    for (const [i, m] of (v.failureStatuses ?? []).entries()) {
      const r = parseStatusMatcher(m);
      if (!r) {
        ctx.addIssue({ code: 'custom', path: ['failureStatuses', i], message: `must be a status (503), a class ("5xx") or a range ("500-504"), got ${JSON.stringify(m)}` });
        return z.NEVER;
      }
      statuses.push(r);
    }
    const o: BreakerOptions = {
      ...DEFAULT_BREAKER_OPTIONS,
      ...stripUndefined({
        slidingWindowType: v.slidingWindowType,
        slidingWindowSize: v.slidingWindowSize,
        slidingWindowDurationMs: v.slidingWindowDuration,
        failureRateThreshold: v.failureRateThreshold,
        slowCallRateThreshold: v.slowCallRateThreshold,
        slowCallDurationThresholdMs: v.slowCallDurationThreshold,
        minimumNumberOfCalls: v.minimumNumberOfCalls,
        waitDurationInOpenStateMs: v.waitDurationInOpenState,
        waitDurationMultiplier: v.waitDurationMultiplier,
        maxWaitDurationInOpenStateMs: v.maxWaitDurationInOpenState,
        permittedNumberOfCallsInHalfOpenState: v.permittedNumberOfCallsInHalfOpenState,
        maxWaitDurationInHalfOpenStateMs: v.maxWaitDurationInHalfOpenState,
        minimumNumberOfReporters: v.minimumNumberOfReporters,
        failureStatuses: v.failureStatuses ? statuses : undefined,
      }),
    };
    // Registry keys drop the Ms suffix; name the option as the user wrote it.
    for (const p of problemsOf(o)) {
      const key = p.option.replace(/Ms$/, '');
      ctx.addIssue({ code: 'custom', path: [key], message: describe({ ...p, option: key }) });
    }
    return o;
  });

export type BreakerOptionsInput = z.input<typeof breakerOptionsSchema>;

// ---------------------------------------------------------------------------
// State

export const BREAKER_STATES = ['CLOSED', 'OPEN', 'HALF_OPEN', 'FORCED_OPEN', 'DISABLED'] as const;
export type BreakerStateName = (typeof BREAKER_STATES)[number];

/** The `BreakerState` search-attribute value of a state: lower_snake_case, like every search-attribute value (`HALF_OPEN` -> `half_open`). */
export function breakerStateSearchValue(state: BreakerStateName): string {
  return state.toLowerCase();
}

/**
 * The state a `BreakerState` search-attribute value stands for, in either
 * case (breakers last upserted before the values were lower case still read
 * `OPEN` until their next transition or continue-as-new), or undefined.
 */
export function breakerStateFromSearchValue(value: unknown): BreakerStateName | undefined {
  if (typeof value !== 'string') return undefined;
  const upper = value.toUpperCase();
  return (BREAKER_STATES as readonly string[]).includes(upper) ? (upper as BreakerStateName) : undefined;
}

/** Numeric code of each state, for the state gauge. */
export const BREAKER_STATE_CODES: Readonly<Record<BreakerStateName, number>> = Object.freeze({
  CLOSED: 0,
  OPEN: 1,
  HALF_OPEN: 2,
  FORCED_OPEN: 3,
  DISABLED: 4,
});

export type TransitionReason =
  | 'failure_rate'
  | 'slow_call_rate'
  | 'trial_failed'
  | 'trials_slow'
  | 'trials_succeeded'
  | 'wait_elapsed'
  | 'forced_open'
  | 'forced_close'
  | 'reset'
  | 'disabled';

/**
 * One state change, as recorded in the state, sent to alerting and counted by
 * metrics. Carries no secrets and nothing but the service id.
 */
export interface BreakerTransition {
  serviceId: string;
  from: BreakerStateName;
  to: BreakerStateName;
  reason: TransitionReason;
  /** The generation the transition started. */
  generation: number;
  /** Epoch ms (workflow time). */
  atMs: number;
  /** When the new OPEN state ends (epoch ms), for transitions to OPEN. */
  openUntilMs?: number;
  /** Window figures at the moment of a trip from CLOSED. */
  failureRate?: number;
  slowCallRate?: number;
  calls?: number;
  /** Operator's note for forced transitions. */
  note?: string;
  /** For a transition that ends an incident (back to CLOSED/DISABLED): how long the breaker was not CLOSED, ms. */
  incidentDurationMs?: number;
}

/** One call in a count-based window. */
export interface WindowCall {
  failed: boolean;
  slow: boolean;
  reporter: string;
}

/** Aggregated calls of one bucket of a time-based window. */
export interface WindowBucket {
  startMs: number;
  calls: number;
  failures: number;
  slowCalls: number;
  /** Failing or slow calls per reporter. */
  badReporters: Record<string, number>;
}

export interface SlidingWindow {
  /** Count-based: the calls, oldest first. */
  calls: WindowCall[];
  /** Time-based: buckets, oldest first. */
  buckets: WindowBucket[];
  totalCalls: number;
  failures: number;
  slowCalls: number;
  /** Failing or slow calls per reporter, over the whole window (for the quorum). */
  badReporters: Record<string, number>;
}

export interface TrialPermit {
  permitId: string;
  reporter: string;
  grantedAtMs: number;
  /** Given up at this time (epoch ms) if not reported. */
  expiresAtMs: number;
}

export interface HalfOpenTrials {
  /** Permits granted and not yet reported; never more than the permitted number. */
  permits: TrialPermit[];
  successes: number;
  slowSuccesses: number;
  /** Permits given up after maxWaitDurationInHalfOpenStateMs. */
  abandoned: number;
}

export interface BreakerCounters {
  /** Outcomes that moved the window or decided a trial. */
  recorded: number;
  /** Outcomes that do not count (aborted, rejected, received in OPEN/FORCED_OPEN/DISABLED, trial-less in HALF_OPEN). */
  ignored: number;
  /** Outcomes of calls admitted under an earlier generation. */
  stale: number;
  permitsGranted: number;
  permitsDenied: number;
}

/** The whole breaker: what the workflow carries and its query returns. */
export interface BreakerState {
  serviceId: string;
  options: BreakerOptions;
  state: BreakerStateName;
  /** Starts at 0; +1 on every transition. */
  generation: number;
  /** When the current state began (epoch ms). */
  sinceMs: number;
  /** OPEN only: when HALF_OPEN begins (epoch ms). */
  openUntilMs?: number;
  /** Trips since the breaker was last CLOSED (grows the wait). */
  consecutiveTrips: number;
  /** When the current incident began (first move from CLOSED/DISABLED to OPEN/FORCED_OPEN), epoch ms. */
  incidentSinceMs?: number;
  window: SlidingWindow;
  /** HALF_OPEN only. */
  halfOpen?: HalfOpenTrials;
  /** The last {@link MAX_TRANSITIONS_KEPT} transitions, oldest first. */
  transitions: BreakerTransition[];
  counters: BreakerCounters;
}

export const MAX_TRANSITIONS_KEPT = 20;

/** A finished call as sent to the breaker (compact form of CallOutcome). */
export interface ReportedOutcome {
  /** Generation the call was admitted under; when absent, `startedAt` decides staleness. */
  generation?: number;
  /** The caller's own verdict (CallOutcome.ok). */
  ok: boolean;
  status?: number;
  failureKind?: FailureKind;
  latencyMs: number;
  /** Epoch ms the call started. */
  startedAt: number;
  /** Set for HALF_OPEN trials: the permit the call ran under. */
  permitId?: string;
  /** Overrides the batch's reporter. */
  reporter?: string;
}

export type BreakerEvent =
  | { type: 'outcomes'; reporter: string; outcomes: readonly ReportedOutcome[] }
  | { type: 'acquirePermit'; permitId: string; reporter: string }
  | { type: 'tick' }
  | { type: 'forceOpen'; note?: string }
  | { type: 'forceClose'; note?: string }
  | { type: 'reset'; note?: string }
  | { type: 'disable'; note?: string }
  /** New options (e.g. the registry changed). Not a transition; the window is emptied when its shape changes. */
  | { type: 'configure'; options: BreakerOptions };

function emptyWindow(): SlidingWindow {
  return { calls: [], buckets: [], totalCalls: 0, failures: 0, slowCalls: 0, badReporters: {} };
}

/** A CLOSED breaker at generation 0. Options are validated ({@link resolveBreakerOptions}). */
export function initialBreakerState(serviceId: string, options: Partial<BreakerOptions>, nowMs: number): BreakerState {
  return {
    serviceId,
    options: resolveBreakerOptions(options),
    state: 'CLOSED',
    generation: 0,
    sinceMs: nowMs,
    consecutiveTrips: 0,
    window: emptyWindow(),
    transitions: [],
    counters: { recorded: 0, ignored: 0, stale: 0, permitsGranted: 0, permitsDenied: 0 },
  };
}

/**
 * How a call counts: `ignored` for aborted or breaker-rejected calls; `failure`
 * when its status is one of `failureStatuses`, or it failed without a
 * response (timeout, connection refused/reset, DNS, TLS); `success` otherwise,
 * including 4xx business errors not listed (the service answered), as
 * resilience4j counts exceptions outside `recordExceptions`.
 */
export function classifyOutcome(o: ReportedOutcome, options: BreakerOptions): 'success' | 'failure' | 'ignored' {
  if (o.failureKind === 'aborted' || o.failureKind === 'breaker_open') return 'ignored';
  if (o.status !== undefined) {
    for (const [lo, hi] of options.failureStatuses) if (o.status >= lo && o.status <= hi) return 'failure';
    if (o.ok || (o.status >= 400 && o.status < 500)) return 'success';
    return o.failureKind === 'slow' ? 'success' : 'failure';
  }
  if (o.ok || o.failureKind === 'slow') return 'success';
  return 'failure';
}

/** The wait in OPEN after `trips` consecutive trips: min(max, base * multiplier^(trips-1)). */
export function openWaitMs(options: BreakerOptions, trips: number): number {
  const grown = options.waitDurationInOpenStateMs * Math.pow(options.waitDurationMultiplier, Math.max(0, trips - 1));
  return Math.round(Math.min(options.maxWaitDurationInOpenStateMs, grown));
}

/** Rates of the window, in percent (0 when empty). */
export function windowRates(w: SlidingWindow): { calls: number; failureRate: number; slowCallRate: number; reporters: number } {
  const calls = w.totalCalls;
  return {
    calls,
    failureRate: calls === 0 ? 0 : (w.failures * 100) / calls,
    slowCallRate: calls === 0 ? 0 : (w.slowCalls * 100) / calls,
    reporters: Object.keys(w.badReporters).length,
  };
}

// ---------------------------------------------------------------------------
// The reducer

/**
 * Rules of earlier versions, kept only so that the breaker workflow replays
 * the histories they recorded (it asks `patched()` which rules a run began
 * with). New code never sets them.
 */
export interface LegacyBreakerRules {
  /**
   * Before issue 14: an aborted or ignored HALF_OPEN trial kept its slot until
   * `maxWaitDurationInHalfOpenStateMs` gave it up.
   */
  abortedTrialKeepsSlot?: boolean;
}

/**
 * Applies one event at time `nowMs` (epoch ms, the caller's clock: workflow
 * time in the breaker workflow). Never mutates `state`.
 *
 * Time-driven changes (OPEN -> HALF_OPEN when the wait has elapsed, giving up
 * expired trial permits, evicting old time-window buckets) are applied first
 * on every event; `tick` applies only those. `legacy` replays the rules of an
 * earlier version (see {@link LegacyBreakerRules}); leave it out.
 */
export function reduceBreaker(state: BreakerState, event: BreakerEvent, nowMs: number, legacy?: LegacyBreakerRules): BreakerState {
  const s = cloneState(state);
  advanceTime(s, nowMs);
  switch (event.type) {
    case 'tick':
      break;
    case 'outcomes':
      for (const o of event.outcomes) recordOutcome(s, o, o.reporter ?? event.reporter, nowMs, legacy);
      break;
    case 'acquirePermit':
      acquirePermit(s, event.permitId, event.reporter, nowMs);
      break;
    case 'forceOpen':
      if (s.state !== 'FORCED_OPEN') transition(s, 'FORCED_OPEN', 'forced_open', nowMs, { note: event.note });
      break;
    case 'forceClose':
      if (s.state !== 'CLOSED') transition(s, 'CLOSED', 'forced_close', nowMs, { note: event.note });
      else s.window = emptyWindow();
      break;
    case 'reset':
      if (s.state !== 'CLOSED') transition(s, 'CLOSED', 'reset', nowMs, { note: event.note });
      s.window = emptyWindow();
      s.consecutiveTrips = 0;
      break;
    case 'disable':
      if (s.state !== 'DISABLED') transition(s, 'DISABLED', 'disabled', nowMs, { note: event.note });
      break;
    case 'configure': {
      const o = resolveBreakerOptions(event.options);
      const shapeChanged =
        o.slidingWindowType !== s.options.slidingWindowType ||
        o.slidingWindowSize !== s.options.slidingWindowSize ||
        o.slidingWindowDurationMs !== s.options.slidingWindowDurationMs ||
        o.slowCallDurationThresholdMs !== s.options.slowCallDurationThresholdMs ||
        JSON.stringify(o.failureStatuses) !== JSON.stringify(s.options.failureStatuses);
      s.options = o;
      if (shapeChanged) s.window = emptyWindow();
      else if (s.state === 'CLOSED') evaluateClosed(s, nowMs);
      break;
    }
    default: {
      const never: never = event;
      throw new TypeError(`unknown breaker event ${JSON.stringify(never)}`);
    }
  }
  return s;
}

/** Applies events in order (what the workflow does with a batch). */
export function reduceAll(state: BreakerState, events: Iterable<{ event: BreakerEvent; nowMs: number }>): BreakerState {
  let s = state;
  for (const { event, nowMs } of events) s = reduceBreaker(s, event, nowMs);
  return s;
}

function cloneState(s: BreakerState): BreakerState {
  return {
    ...s,
    window: {
      calls: s.window.calls.slice(),
      buckets: s.window.buckets.map((b) => ({ ...b, badReporters: { ...b.badReporters } })),
      totalCalls: s.window.totalCalls,
      failures: s.window.failures,
      slowCalls: s.window.slowCalls,
      badReporters: { ...s.window.badReporters },
    },
    halfOpen: s.halfOpen && { ...s.halfOpen, permits: s.halfOpen.permits.slice() },
    transitions: s.transitions.slice(),
    counters: { ...s.counters },
  };
}

function advanceTime(s: BreakerState, nowMs: number): void {
  if (s.state === 'OPEN' && s.openUntilMs !== undefined && nowMs >= s.openUntilMs) {
    transition(s, 'HALF_OPEN', 'wait_elapsed', nowMs);
  }
  if (s.state === 'HALF_OPEN' && s.halfOpen) {
    const h = s.halfOpen;
    const live = h.permits.filter((p) => p.expiresAtMs > nowMs);
    h.abandoned += h.permits.length - live.length;
    h.permits = live;
  }
  if (s.options.slidingWindowType === 'TIME_BASED') evictBuckets(s.window, s.options, nowMs);
}

function evictBuckets(w: SlidingWindow, o: BreakerOptions, nowMs: number): void {
  const horizon = nowMs - o.slidingWindowDurationMs;
  while (w.buckets.length > 0 && w.buckets[0]!.startMs + bucketMs(o) <= horizon) {
    const b = w.buckets.shift()!;
    w.totalCalls -= b.calls;
    w.failures -= b.failures;
    w.slowCalls -= b.slowCalls;
    for (const [r, n] of Object.entries(b.badReporters)) addReporter(w.badReporters, r, -n);
  }
}

/** Bucket length of a time-based window: max(1 s, window / 60). */
export function bucketMs(o: BreakerOptions): number {
  return Math.max(1000, Math.ceil(o.slidingWindowDurationMs / 60));
}

function addReporter(m: Record<string, number>, r: string, n: number): void {
  const v = (m[r] ?? 0) + n;
  if (v <= 0) delete m[r];
  else m[r] = v;
}

function isStale(s: BreakerState, o: ReportedOutcome): boolean {
  if (o.generation !== undefined) return o.generation < s.generation;
  // Generation 0 has no earlier generation: calls made before the breaker started count.
  return s.generation > 0 && o.startedAt < s.sinceMs;
}

function recordOutcome(s: BreakerState, o: ReportedOutcome, reporter: string, nowMs: number, legacy: LegacyBreakerRules | undefined): void {
  if (isStale(s, o)) {
    s.counters.stale++;
    return;
  }
  const kind = classifyOutcome(o, s.options);
  if (kind === 'ignored') {
    // An aborted trial says nothing about the service, but it is over: free its
    // slot now, or with one permitted trial every call waits out the permit's expiry.
    if (!legacy?.abortedTrialKeepsSlot && s.state === 'HALF_OPEN' && s.halfOpen && o.permitId !== undefined) {
      const i = s.halfOpen.permits.findIndex((p) => p.permitId === o.permitId);
      if (i >= 0) s.halfOpen.permits.splice(i, 1);
    }
    s.counters.ignored++;
    return;
  }
  const slow = o.latencyMs >= s.options.slowCallDurationThresholdMs;
  if (s.state === 'CLOSED') {
    pushCall(s, kind === 'failure', slow, reporter, nowMs);
    s.counters.recorded++;
    evaluateClosed(s, nowMs);
    return;
  }
  if (s.state === 'HALF_OPEN' && s.halfOpen && o.permitId !== undefined) {
    const h = s.halfOpen;
    const i = h.permits.findIndex((p) => p.permitId === o.permitId);
    if (i < 0) {
      // Given up already, or never granted: a late trial result does not count.
      s.counters.stale++;
      return;
    }
    h.permits.splice(i, 1);
    s.counters.recorded++;
    if (kind === 'failure') {
      trip(s, 'trial_failed', nowMs);
      return;
    }
    h.successes++;
    if (slow) h.slowSuccesses++;
    if (h.successes >= s.options.permittedNumberOfCallsInHalfOpenState) {
      const slowRate = (h.slowSuccesses * 100) / h.successes;
      if (slowRate >= s.options.slowCallRateThreshold) trip(s, 'trials_slow', nowMs);
      else transition(s, 'CLOSED', 'trials_succeeded', nowMs);
    }
    return;
  }
  s.counters.ignored++;
}

function pushCall(s: BreakerState, failed: boolean, slow: boolean, reporter: string, nowMs: number): void {
  const w = s.window;
  const o = s.options;
  w.totalCalls++;
  if (failed) w.failures++;
  if (slow) w.slowCalls++;
  const bad = failed || slow;
  if (bad) addReporter(w.badReporters, reporter, 1);
  if (o.slidingWindowType === 'COUNT_BASED') {
    w.calls.push({ failed, slow, reporter });
    while (w.calls.length > o.slidingWindowSize) {
      const old = w.calls.shift()!;
      w.totalCalls--;
      if (old.failed) w.failures--;
      if (old.slow) w.slowCalls--;
      if (old.failed || old.slow) addReporter(w.badReporters, old.reporter, -1);
    }
    return;
  }
  const size = bucketMs(o);
  const start = Math.floor(nowMs / size) * size;
  let b = w.buckets[w.buckets.length - 1];
  if (!b || b.startMs !== start) {
    b = { startMs: start, calls: 0, failures: 0, slowCalls: 0, badReporters: {} };
    w.buckets.push(b);
  }
  b.calls++;
  if (failed) b.failures++;
  if (slow) b.slowCalls++;
  if (bad) addReporter(b.badReporters, reporter, 1);
}

function evaluateClosed(s: BreakerState, nowMs: number): void {
  const o = s.options;
  const min = o.slidingWindowType === 'COUNT_BASED' ? Math.min(o.minimumNumberOfCalls, o.slidingWindowSize) : o.minimumNumberOfCalls;
  const r = windowRates(s.window);
  if (r.calls < min) return;
  if (r.reporters < o.minimumNumberOfReporters) return;
  if (r.failureRate >= o.failureRateThreshold) trip(s, 'failure_rate', nowMs, r);
  else if (r.slowCallRate >= o.slowCallRateThreshold) trip(s, 'slow_call_rate', nowMs, r);
}

function trip(s: BreakerState, reason: TransitionReason, nowMs: number, rates?: ReturnType<typeof windowRates>): void {
  s.consecutiveTrips++;
  const openUntilMs = nowMs + openWaitMs(s.options, s.consecutiveTrips);
  transition(s, 'OPEN', reason, nowMs, {
    openUntilMs,
    ...(rates && { failureRate: round2(rates.failureRate), slowCallRate: round2(rates.slowCallRate), calls: rates.calls }),
  });
  s.openUntilMs = openUntilMs;
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

/** States in which the breaker stops (some) calls: an incident lasts while the state is one of them. */
const INCIDENT: ReadonlySet<BreakerStateName> = new Set(['OPEN', 'HALF_OPEN', 'FORCED_OPEN']);

function transition(
  s: BreakerState,
  to: BreakerStateName,
  reason: TransitionReason,
  nowMs: number,
  extra: Partial<BreakerTransition> = {},
): void {
  const from = s.state;
  if (!INCIDENT.has(from) && INCIDENT.has(to)) s.incidentSinceMs = nowMs;
  if (INCIDENT.has(from) && !INCIDENT.has(to)) {
    if (s.incidentSinceMs !== undefined) extra = { ...extra, incidentDurationMs: nowMs - s.incidentSinceMs };
    s.incidentSinceMs = undefined;
  }
  s.generation++;
  s.state = to;
  s.sinceMs = nowMs;
  s.window = emptyWindow();
  s.openUntilMs = undefined;
  s.halfOpen = to === 'HALF_OPEN' ? { permits: [], successes: 0, slowSuccesses: 0, abandoned: 0 } : undefined;
  // forceClose keeps the trip count (a still-sick service re-opens with a long wait); reset clears it.
  if (reason === 'trials_succeeded' || reason === 'reset') s.consecutiveTrips = 0;
  const t: BreakerTransition = { serviceId: s.serviceId, from, to, reason, generation: s.generation, atMs: nowMs, ...stripUndefined(extra) };
  s.transitions.push(t);
  if (s.transitions.length > MAX_TRANSITIONS_KEPT) s.transitions.splice(0, s.transitions.length - MAX_TRANSITIONS_KEPT);
}

function acquirePermit(s: BreakerState, permitId: string, reporter: string, nowMs: number): void {
  if (s.state !== 'HALF_OPEN' || !s.halfOpen) {
    if (s.state === 'OPEN' || s.state === 'FORCED_OPEN') s.counters.permitsDenied++;
    return;
  }
  const h = s.halfOpen;
  if (h.permits.some((p) => p.permitId === permitId)) return; // a retried request: already granted
  if (h.permits.length + h.successes >= s.options.permittedNumberOfCallsInHalfOpenState) {
    s.counters.permitsDenied++;
    return;
  }
  h.permits.push({ permitId, reporter, grantedAtMs: nowMs, expiresAtMs: nowMs + s.options.maxWaitDurationInHalfOpenStateMs });
  s.counters.permitsGranted++;
}

// ---------------------------------------------------------------------------
// Reading the state

/** Whether a call may go ahead without a permit (CLOSED, DISABLED). */
export function admitsFreely(state: BreakerStateName): boolean {
  return state === 'CLOSED' || state === 'DISABLED';
}

/** The answer to a permit request, read from the state after the `acquirePermit` event. */
export type PermitDecision = (
  | { granted: true; generation: number; state: BreakerStateName; permitId?: string; expiresAtMs?: number }
  | { granted: false; generation: number; state: BreakerStateName; retryAfterMs: number }
) & {
  /** Set by the workflow: the first run id of its continue-as-new chain (generations restart in a new chain). */
  chainId?: string;
};

/**
 * Reads the decision for `permitId` from a state the `acquirePermit` event was
 * applied to: granted with the permit in HALF_OPEN, granted without one in
 * CLOSED/DISABLED, else denied with {@link retryAfterMs}.
 */
export function permitDecision(s: BreakerState, permitId: string, nowMs: number): PermitDecision {
  if (admitsFreely(s.state)) return { granted: true, generation: s.generation, state: s.state };
  const p = s.halfOpen?.permits.find((x) => x.permitId === permitId);
  if (p) return { granted: true, generation: s.generation, state: s.state, permitId: p.permitId, expiresAtMs: p.expiresAtMs };
  return { granted: false, generation: s.generation, state: s.state, retryAfterMs: retryAfterMs(s, nowMs) };
}

/** Default hint for states with no scheduled end (FORCED_OPEN) and for a full HALF_OPEN, ms. */
export const DEFAULT_RETRY_AFTER_MS = 1_000;

/**
 * How long a rejected caller should wait before trying again, ms: the rest of
 * the OPEN wait; in a full HALF_OPEN the sooner of 1 s and the first permit's
 * expiry; 1 s in FORCED_OPEN (an operator decides when it ends); 0 otherwise.
 */
export function retryAfterMs(s: BreakerState, nowMs: number): number {
  switch (s.state) {
    case 'OPEN':
      return Math.max(0, (s.openUntilMs ?? nowMs) - nowMs);
    case 'HALF_OPEN': {
      const first = s.halfOpen?.permits.reduce((m, p) => Math.min(m, p.expiresAtMs), Infinity) ?? Infinity;
      return Math.max(0, Math.min(DEFAULT_RETRY_AFTER_MS, first - nowMs));
    }
    case 'FORCED_OPEN':
      return DEFAULT_RETRY_AFTER_MS;
    default:
      return 0;
  }
}

/**
 * The next time (epoch ms) the state changes by itself: the end of OPEN, or
 * the first trial permit's expiry in HALF_OPEN; undefined when nothing is due.
 */
export function nextDeadlineMs(s: BreakerState): number | undefined {
  if (s.state === 'OPEN') return s.openUntilMs;
  if (s.state === 'HALF_OPEN' && s.halfOpen && s.halfOpen.permits.length > 0) {
    return s.halfOpen.permits.reduce((m, p) => Math.min(m, p.expiresAtMs), Infinity);
  }
  return undefined;
}

/** Transitions in `next` that `prev` had not seen (by generation), oldest first. */
export function newTransitions(prev: BreakerState, next: BreakerState): BreakerTransition[] {
  if (next.generation === prev.generation) return [];
  return next.transitions.filter((t) => t.generation > prev.generation);
}

/** What the breaker's query returns: the state plus the window's rates. */
export interface BreakerView extends BreakerState {
  /** Workflow time the view was taken at (epoch ms). */
  asOfMs: number;
  rates: ReturnType<typeof windowRates>;
  /** 0 unless OPEN/HALF_OPEN full/FORCED_OPEN; see {@link retryAfterMs}. */
  retryAfterMs: number;
  /** Set by the workflow: the first run id of its continue-as-new chain (generations restart in a new chain). */
  chainId?: string;
}

/** The full view of a state as of `nowMs` (no event applied: time-driven changes happen on the workflow's timer). */
export function breakerView(s: BreakerState, nowMs: number): BreakerView {
  if (s.options.slidingWindowType === 'TIME_BASED') {
    // Rates over the window as of now, without applying any transition.
    const window = cloneState(s).window;
    evictBuckets(window, s.options, nowMs);
    return { ...s, window, asOfMs: nowMs, rates: windowRates(window), retryAfterMs: retryAfterMs(s, nowMs) };
  }
  return { ...s, asOfMs: nowMs, rates: windowRates(s.window), retryAfterMs: retryAfterMs(s, nowMs) };
}

/**
 * The alert for a transition, for the health area's alerting path
 * (`deliverAlert`): TRIGGERED when the breaker starts stopping calls (CLOSED or
 * DISABLED -> OPEN or FORCED_OPEN), RESOLVED when it stops stopping them
 * (-> CLOSED or DISABLED); none for the steps in between (OPEN <-> HALF_OPEN),
 * which are one incident. The id `breaker/<serviceId>#<generation>` is the
 * receivers' idempotency key.
 */
export function breakerAlert(t: BreakerTransition): Alert | undefined {
  const base = { id: `breaker/${t.serviceId}#${t.generation}`, source: 'breaker' as const, serviceId: t.serviceId, at: t.atMs, rootCause: t.serviceId };
  if (!INCIDENT.has(t.from) && INCIDENT.has(t.to)) {
    const why =
      t.reason === 'forced_open'
        ? `forced open by an operator${t.note ? ` (${t.note})` : ''}`
        : t.reason === 'slow_call_rate'
          ? `slow-call rate ${t.slowCallRate}% of ${t.calls} calls`
          : `failure rate ${t.failureRate}% of ${t.calls} calls`;
    return {
      ...base,
      kind: 'TRIGGERED',
      summary: `circuit breaker of ${t.serviceId} opened: ${why}`,
      detail: t.openUntilMs !== undefined ? `calls are rejected; next trial at ${new Date(t.openUntilMs).toISOString()}` : 'calls are rejected until an operator closes it',
    };
  }
  if (INCIDENT.has(t.from) && !INCIDENT.has(t.to)) {
    const how = t.reason === 'trials_succeeded' ? 'trial calls succeeded' : t.reason === 'disabled' ? 'disabled by an operator' : `${t.reason === 'reset' ? 'reset' : 'closed'} by an operator${t.note ? ` (${t.note})` : ''}`;
    return { ...base, kind: 'RESOLVED', summary: `circuit breaker of ${t.serviceId} closed: ${how}`, durationMs: t.incidentDurationMs };
  }
  return undefined;
}
