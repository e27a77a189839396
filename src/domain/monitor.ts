/**
 * Continuous monitoring: each service on its own cadence. The sweep Schedule
 * starts a `healthMonitor` workflow per *window* (the schedule's interval);
 * its lane activities probe every service at the times of the service's own
 * grid that fall inside the window, and publish results to the health shards
 * as they come. A window's lanes start probes only at grid times in
 * `[windowStart, windowEnd)`, so consecutive windows hand over without a gap
 * and without probing a service twice, whichever worker runs them.
 *
 * The grid of a service: `phase + n * interval` (epoch ms, n integer), with
 * `phase = fnv1a(id) mod interval`. Spreading a fleet's probes over the
 * interval by a hash of the target is what Prometheus does for scrape
 * offsets (scrape/target.go, `offset`): jitter that is stable per target, so
 * every prober process and every window agrees on when a service is due, and
 * services with the same interval do not all fire at once.
 *
 * Pure: no clock, no I/O (workflow code imports it).
 */
import { fnv1a } from './health-shard';

/** The phase (0..interval-1, ms) of a service's probe grid. */
export function gridPhase(serviceId: string, intervalMs: number): number {
  return fnv1a(serviceId) % intervalMs;
}

/**
 * The first time of `serviceId`'s grid at or after `at` (epoch ms).
 * @throws RangeError when `intervalMs` is not a positive integer.
 */
export function nextGridTime(serviceId: string, intervalMs: number, at: number): number {
  if (!(Number.isInteger(intervalMs) && intervalMs > 0)) throw new RangeError(`nextGridTime: interval must be a positive integer (ms), got ${intervalMs}`);
  const phase = gridPhase(serviceId, intervalMs);
  const n = Math.ceil((at - phase) / intervalMs);
  return phase + n * intervalMs;
}

/** Schedules whose action starts a window fire at epoch-aligned multiples of the interval. */
export function windowStartOf(at: number, windowMs: number): number {
  return Math.floor(at / windowMs) * windowMs;
}

/**
 * How long a service may go without a result before it reads `unknown`
 * ("no result for N s"), ms: its interval, plus its probe timeout, plus a
 * margin for scheduling (`OVERDUE_MARGIN_MS`).
 */
export function overdueAfterMs(check: { interval: number; timeout: number }): number {
  return check.interval + check.timeout + OVERDUE_MARGIN_MS;
}

/** The margin of {@link overdueAfterMs}, ms. */
export const OVERDUE_MARGIN_MS = 1_000;

/** A lane's share of the shards: shard `k` belongs to lane `k mod lanes`. */
export function laneOfShard(shard: number, lanes: number): number {
  return shard % lanes;
}
