/**
 * Waiting for a cluster-wide admission: the part above the store.
 *
 * Per key, this process keeps one FIFO queue of waiters and at most one
 * round trip to the store in flight (MAX_IN_FLIGHT). A round trip asks for
 * as many starts as there are waiters not yet asked for (up to `maxBatch`);
 * the store admits what the limits allow and the queue hands the admissions
 * out in order, to the longest waiting first. So an
 * uncontended call costs one round trip, and under load one round trip
 * admits many calls: the store's cost, not the number of callers, bounds
 * the rate.
 *
 * When the store admits fewer than asked, the queue sleeps until the time
 * the store named (`retryAfterMs`, plus a small jitter so that processes do
 * not all ask at the same instant), never polling the store in a loop. A
 * waiter whose deadline comes before that time fails at once with an
 * {@link AdmissionWaitError} carrying the wait, as the in-process limiter
 * does. When only the concurrency cap stopped it, the store cannot know when
 * another process will release: the queue asks again after a short pause
 * that doubles (10 ms up to 200 ms), and at once when a hold of this process
 * is released.
 *
 * A grant that comes back later than `maxGrantAgeMs` after it was asked for
 * is not used (its holds are released, and the queue asks again): the start
 * was recorded on the store's clock when the store decided, and sending it
 * much later could bring it closer to another process's start than the
 * guard the windows were widened by. A store that is always that far away
 * (another region) must not stall every call, so the bound is at least
 * twice the fastest of the last 32 round trips: there the guarantee is only
 * as good as the guard is wide against the store's round trip (docs).
 */
import { performance } from 'node:perf_hooks';
import type { WindowLimit } from '../../domain/rate-limit';
import { AdmissionStoreError, AdmissionWaitError, type ClusterLimiter } from './types';

/** Ends one admission: frees its concurrency hold (if any). Call once when the call has ended; later calls do nothing. */
export type SharedRelease = () => void;

/** What one {@link SharedAdmission.acquire} waits for. */
export interface SharedAcquire {
  /** Windows to enforce, already widened by their guard (see the coordinator's `guardMs`). */
  windows: readonly WindowLimit[];
  /** Holds alive at once across the cluster; undefined: no cap. */
  maxConcurrent: number | undefined;
  /** performance.now() time after which starting is pointless (the caller's deadline). */
  deadline: number;
  /** Aborts the wait: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Largest round-trip time, ms, after which a grant is not used; default {@link DEFAULT_MAX_GRANT_AGE_MS}. */
  maxGrantAgeMs?: number;
}

/** Half of the coordinator's 25 ms guard on a per-second window. */
export const DEFAULT_MAX_GRANT_AGE_MS = 12.5;
const MIN_POLL_MS = 10;
/**
 * Round trips in flight per key and process. 2 (a second, usually tiny,
 * batch while the first is out) measured slower on the bench: twice the
 * round trips for the same admissions.
 */
const MAX_IN_FLIGHT = 1;
const MAX_POLL_MS = 200;

interface Waiter {
  resolve: (release: SharedRelease) => void;
  reject: (err: unknown) => void;
  deadline: number;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface Lane {
  key: string;
  queue: Waiter[];
  /** Round trips in flight. */
  asking: number;
  /** Starts those round trips ask for. */
  asked: number;
  timer: NodeJS.Timeout | undefined;
  windows: readonly WindowLimit[];
  maxConcurrent: number | undefined;
  maxGrantAgeMs: number;
  pollMs: number;
  /** The last answer said every slot is held: a release here should wake the queue. */
  waitingForSlot: boolean;
}

/** Counters, for the bench and the metrics. */
export interface SharedAdmissionStats {
  /** Round trips to the store for admissions. */
  roundTrips: number;
  /** Starts admitted. */
  admitted: number;
  /** Starts admitted but not used because the grant came back too late. */
  staleGrants: number;
}

export class SharedAdmission {
  private readonly lanes = new Map<string, Lane>();
  private closed = false;
  readonly stats: SharedAdmissionStats = { roundTrips: 0, admitted: 0, staleGrants: 0 };
  private readonly maxBatch: number;
  private readonly random: () => number;
  /** The last round trips to the store, ms (a ring), for the floor of the grant-age bound. */
  private readonly rtts = new Float64Array(32).fill(Infinity);
  private rttAt = 0;

  /**
   * @param limiter the store (see `openClusterLimiter`); closed by {@link close}.
   * @param opts.maxBatch most starts asked for in one round trip; default 256.
   * @param opts.random uniform [0, 1) source for the jitter; default Math.random.
   * @throws RangeError naming the option when maxBatch is not an integer >= 1.
   */
  constructor(
    readonly limiter: ClusterLimiter,
    opts: { maxBatch?: number; random?: () => number } = {},
  ) {
    this.maxBatch = opts.maxBatch ?? 256;
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) throw new RangeError(`SharedAdmission maxBatch must be an integer >= 1, got ${String(opts.maxBatch)}`);
    this.random = opts.random ?? Math.random;
  }

  /** The store, for messages: `PostgreSQL at host:port`, `Redis at host:port`. */
  get store(): string {
    return this.limiter.store;
  }

  /**
   * Waits for a cluster-wide admission of one start under `key`.
   * @returns the release (frees the concurrency hold; a no-op without `maxConcurrent`).
   * @throws (rejects) {@link AdmissionWaitError} when the windows cannot admit before `deadline`;
   *   {@link AdmissionStoreError} when the store fails or this instance is closed; the signal's reason when aborted.
   */
  acquire(key: string, req: SharedAcquire): Promise<SharedRelease> {
    if (this.closed) return Promise.reject(new AdmissionStoreError(this.limiter.store, new Error('the shared admission is closed (the worker is shutting down)')));
    const signal = req.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let lane = this.lanes.get(key);
    if (lane === undefined) {
      lane = { key, queue: [], asking: 0, asked: 0, timer: undefined, windows: req.windows, maxConcurrent: req.maxConcurrent, maxGrantAgeMs: 0, pollMs: MIN_POLL_MS, waitingForSlot: false };
      this.lanes.set(key, lane);
    }
    // The latest limits win (a registry reload); the same key always means the same limit.
    lane.windows = req.windows;
    lane.maxConcurrent = req.maxConcurrent;
    lane.maxGrantAgeMs = req.maxGrantAgeMs ?? DEFAULT_MAX_GRANT_AGE_MS;
    const l = lane;
    return new Promise<SharedRelease>((resolve, reject) => {
      const w: Waiter = { resolve, reject, deadline: req.deadline, signal, onAbort: undefined };
      if (signal) {
        w.onAbort = () => {
          const i = l.queue.indexOf(w);
          if (i >= 0) l.queue.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      l.queue.push(w);
      if (l.timer === undefined && l.asking < MAX_IN_FLIGHT) this.ask(l);
    });
  }

  /** Rejects every waiter, then closes the store (its holds are dropped where it can). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new AdmissionStoreError(this.limiter.store, new Error('the shared admission closed (the worker is shutting down)'));
    for (const lane of this.lanes.values()) {
      if (lane.timer) clearTimeout(lane.timer);
      lane.timer = undefined;
      for (const w of lane.queue.splice(0)) settle(w, err);
    }
    this.lanes.clear();
    await this.limiter.close();
  }

  /** Asks the store for the waiters not yet asked for (when there are any and fewer than MAX_IN_FLIGHT round trips are out). */
  private ask(lane: Lane): void {
    if (lane.timer !== undefined) clearTimeout(lane.timer);
    lane.timer = undefined;
    const n = Math.min(lane.queue.length - lane.asked, this.maxBatch);
    if (n <= 0 || this.closed || lane.asking >= MAX_IN_FLIGHT) {
      if (lane.asking === 0 && lane.queue.length === 0 && this.lanes.get(lane.key) === lane) this.lanes.delete(lane.key);
      return;
    }
    lane.asking++;
    lane.asked += n;
    const t0 = performance.now();
    this.stats.roundTrips++;
    this.limiter.tryAcquire(lane.key, lane.windows, lane.maxConcurrent, n).then(
      (grant) => {
        lane.asking--;
        lane.asked = Math.max(0, lane.asked - n);
        const now = performance.now();
        const rtt = now - t0;
        const fastest = this.fastestRttMs();
        this.rtts[this.rttAt] = rtt;
        this.rttAt = (this.rttAt + 1) % this.rtts.length;
        if (this.closed) return void grant.holdIds.forEach((id) => void this.limiter.release(id));
        if (grant.granted > 0 && lane.windows.length > 0 && rtt > lane.maxGrantAgeMs && (fastest === Infinity || rtt > 2 * fastest)) {
          // Too late to send without eating into the guard: give the holds back, ask again.
          this.stats.staleGrants += grant.granted;
          for (const id of grant.holdIds) void this.limiter.release(id);
          return this.ask(lane);
        }
        this.stats.admitted += grant.granted;
        for (let i = 0; i < grant.granted; i++) {
          const holdId = grant.holdIds[i];
          const w = lane.queue.shift();
          if (w === undefined) {
            // Its waiter gave up while we asked.
            if (holdId !== undefined) void this.limiter.release(holdId);
            continue;
          }
          settle(w, undefined, this.releaseFor(lane.key, holdId));
        }
        if (grant.granted >= n) {
          lane.pollMs = MIN_POLL_MS;
          lane.waitingForSlot = false;
          // More may have arrived meanwhile; unless the other round trip found the limit reached and set a timer.
          if (lane.timer === undefined) this.ask(lane);
          return;
        }
        let waitMs: number;
        if (grant.blockedBy === 'concurrency') {
          lane.waitingForSlot = true;
          waitMs = Math.max(grant.retryAfterMs, lane.pollMs);
          lane.pollMs = Math.min(MAX_POLL_MS, lane.pollMs * 2);
        } else {
          lane.waitingForSlot = false;
          lane.pollMs = MIN_POLL_MS;
          waitMs = grant.retryAfterMs;
          // Nobody queued can start before then: who cannot wait that long fails now.
          const at = now + waitMs;
          for (let i = lane.queue.length - 1; i >= 0; i--) {
            const w = lane.queue[i]!;
            if (w.deadline < at) {
              lane.queue.splice(i, 1);
              settle(w, new AdmissionWaitError(lane.key, waitMs));
            }
          }
        }
        if (lane.queue.length === 0) return this.ask(lane);
        if (lane.timer !== undefined) clearTimeout(lane.timer);
        const jitter = this.random() * Math.min(10, 1 + waitMs * 0.05);
        lane.timer = setTimeout(() => this.ask(lane), Math.max(1, Math.ceil(waitMs + jitter)));
      },
      (err: unknown) => {
        lane.asking--;
        lane.asked = Math.max(0, lane.asked - n);
        // Everyone queued was part of this ask or behind it: they all learn the store failed.
        for (const w of lane.queue.splice(0)) settle(w, err);
        this.ask(lane);
      },
    );
  }

  /** The fastest of the last round trips to the store, ms (Infinity before the first). */
  private fastestRttMs(): number {
    let min = Infinity;
    for (let i = 0; i < this.rtts.length; i++) if (this.rtts[i]! < min) min = this.rtts[i]!;
    return min;
  }

  private releaseFor(key: string, holdId: string | undefined): SharedRelease {
    if (holdId === undefined) return NOOP;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      void this.limiter.release(holdId).then(() => {
        // A slot of ours is free: whoever here waits for one asks now rather than at its next poll.
        const lane = this.lanes.get(key);
        if (lane !== undefined && lane.waitingForSlot && lane.timer !== undefined && lane.asking === 0 && !this.closed) {
          lane.pollMs = MIN_POLL_MS;
          this.ask(lane);
        }
      });
    };
  }
}

const NOOP: SharedRelease = () => {};

function settle(w: Waiter, err: unknown, release?: SharedRelease): void {
  if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
  if (err !== undefined) w.reject(err);
  else w.resolve(release!);
}
