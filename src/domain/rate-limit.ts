/**
 * Strict rate limiting: at most `limit` starts in ANY window of `windowMs`,
 * wherever the window is placed (no double burst at a fixed-window boundary).
 *
 * Algorithm: a sliding log. Each window keeps the times of its last `limit`
 * starts in a ring buffer. A new start at time `t` is allowed when fewer than
 * `limit` starts were recorded, or when the oldest of the last `limit` starts
 * happened at or before `t - windowMs`. Inductively, any two starts `limit`
 * apart in the log are at least `windowMs` apart, so every half-open interval
 * `[x, x + windowMs)` contains at most `limit` starts. Cost: O(1) time per
 * decision, O(limit) memory per window (8 bytes per slot).
 *
 * Why not a token bucket or GCRA: with a burst of N they admit N at once and
 * then refill continuously, so a window straddling the burst can hold up to
 * 2N - 1 starts. A fixed-window counter admits 2N across a boundary. Only
 * the log is exact, and for the limits registries hold (per second, per
 * minute, hundreds to a few thousand) its memory is small.
 *
 * Pure: time is an argument (milliseconds on any monotonic clock). A time
 * earlier than the last recorded start (a clock step back) is treated as the
 * last recorded start, so the guarantee holds on the recorded timeline.
 */

/** One window: at most `limit` starts in any `windowMs`. */
export interface WindowLimit {
  /** Starts allowed per window; an integer >= 1. */
  limit: number;
  /** Window length in milliseconds; finite and > 0. */
  windowMs: number;
}

class WindowLog {
  private readonly starts: Float64Array;
  private count = 0;
  /** Index of the oldest of the last `limit` starts (when full), i.e. the next slot to overwrite. */
  private head = 0;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
  ) {
    this.starts = new Float64Array(limit);
  }

  /** Earliest time >= nowMs when this window admits a start. */
  nextStartAt(nowMs: number): number {
    if (this.count < this.limit) return nowMs;
    return Math.max(nowMs, this.starts[this.head]! + this.windowMs);
  }

  record(nowMs: number): void {
    this.starts[this.head] = nowMs;
    this.head = (this.head + 1) % this.limit;
    if (this.count < this.limit) this.count++;
  }
}

/**
 * A set of windows enforced together (e.g. 10 per second and 300 per minute):
 * a start is allowed only when every window allows it, and is then recorded in
 * every window.
 */
export class SlidingLogLimiter {
  private readonly windows: WindowLog[];
  private lastMs = -Infinity;

  /**
   * @param windows one or more windows; an empty list admits everything.
   * @throws RangeError naming the option and value when a limit is not an integer >= 1 or a window is not finite and > 0.
   */
  constructor(windows: readonly WindowLimit[]) {
    this.windows = windows.map((w, i) => {
      if (!Number.isInteger(w.limit) || w.limit < 1) {
        throw new RangeError(`rate limit window ${i}: limit must be an integer >= 1, got ${String(w.limit)}`);
      }
      if (typeof w.windowMs !== 'number' || !Number.isFinite(w.windowMs) || w.windowMs <= 0) {
        throw new RangeError(`rate limit window ${i}: windowMs must be a finite number > 0, got ${String(w.windowMs)}`);
      }
      return new WindowLog(w.limit, w.windowMs);
    });
  }

  /**
   * The earliest time, >= `nowMs`, at which a start would be allowed.
   * @param nowMs current time in ms on the limiter's clock.
   */
  nextStartAt(nowMs: number): number {
    let t = Math.max(nowMs, this.lastMs);
    for (const w of this.windows) t = Math.max(t, w.nextStartAt(t));
    return t;
  }

  /**
   * Records a start at `nowMs` when every window allows it.
   * @returns true when the start was admitted and recorded; false (nothing recorded) otherwise.
   */
  tryStart(nowMs: number): boolean {
    const t = Math.max(nowMs, this.lastMs);
    if (this.nextStartAt(t) > t) return false;
    for (const w of this.windows) w.record(t);
    this.lastMs = t;
    return true;
  }
}

/** The registry's `rateLimit` block, as far as the time windows go. */
export interface RateLimitSpec {
  perSecond?: number;
  perMinute?: number;
}

/** The windows a registry `rateLimit` block asks for (per second: 1000 ms; per minute: 60000 ms). */
export function windowsFromSpec(spec: RateLimitSpec | undefined): WindowLimit[] {
  const out: WindowLimit[] = [];
  if (spec?.perSecond !== undefined) out.push({ limit: spec.perSecond, windowMs: 1_000 });
  if (spec?.perMinute !== undefined) out.push({ limit: spec.perMinute, windowMs: 60_000 });
  return out;
}
