/**
 * Per-service admission in this worker process: the strict sliding-log rate
 * limit (`src/domain/rate-limit.ts`) plus a cap on calls in flight, served
 * first-in first-out. Every HTTP request the coordinator sends takes one
 * admission, failover tries and Temporal retries included.
 *
 * At most one timer exists per service, and only while someone waits; an
 * aborted waiter is removed at once, so nothing is left behind.
 *
 * Each window is widened by a small guard ({@link guardMs}) so the limit also
 * holds as the service observes arrivals, not only as we send them.
 *
 * With a shared store configured (`CoordinatorDeps.sharedAdmission`), a
 * limited service's admission has a second stage: after this process admits
 * a call, the cluster-wide limiter (src/state/admission) must admit it too,
 * on the store's clock, so the limits hold across every worker process.
 * Unlimited services never reach the store.
 */
import { performance } from 'node:perf_hooks';
import { SlidingLogLimiter, type WindowLimit } from '../../domain/rate-limit';
import { AdmissionWaitError, type SharedAdmission } from '../../state/admission';

/** Releases the in-flight slot; call exactly once when the call has ended. */
export type Release = () => void;

/** Thrown when the rate limit cannot admit before the caller's deadline. */
export class AdmissionDeadlineError extends Error {
  readonly code = 'RATE_LIMITED';
  constructor(readonly retryAfterMs: number) {
    super(`rate limit would delay the call past its deadline (next start in ${Math.ceil(retryAfterMs)} ms)`);
    this.name = 'AdmissionDeadlineError';
  }
}

interface Waiter {
  resolve: (release: Release) => void;
  reject: (err: unknown) => void;
  /** performance.now() value after which waiting is pointless. */
  deadline: number;
  signal: AbortSignal;
  onAbort: () => void;
}

const NOOP: Release = () => {};

/**
 * Extra spacing added to each window: the service sees our starts after
 * network and event-loop jitter, which can bring two starts closer than we
 * sent them. min(25 ms, 2.5% of the window): 25 ms on a per-second or
 * per-minute limit.
 */
export function guardMs(windowMs: number): number {
  return Math.min(25, windowMs * 0.025);
}

/** The cluster-wide stage of one service's admission. */
export interface SharedStage {
  admission: SharedAdmission;
  /** The limit's key in the store, e.g. `service:billing`. */
  key: string;
}

/**
 * The guard of the cluster-wide stage: twice {@link guardMs}, min(50 ms, 5% of
 * the window). Starts admitted by different processes reach the service
 * through different event loops, each of which can stall on its own (GC, a
 * busy host), so the spread between the store's decision and the arrival is
 * wider than within one process.
 */
export function sharedGuardMs(windowMs: number): number {
  return Math.min(50, windowMs * 0.05);
}

export class Admission {
  private readonly limiter: SlidingLogLimiter | undefined;
  private active = 0;
  private readonly queue: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private readonly shared: SharedStage | undefined;
  /** The windows widened by the shared guard, as the cluster-wide stage enforces them. */
  private readonly sharedWindows: WindowLimit[];
  /** Largest store round trip whose grant is still used: half the smallest in-process guard (a quarter of the shared one). */
  private readonly maxGrantAgeMs: number;

  /**
   * @param windows rate windows (empty: no rate limit).
   * @param maxConcurrent calls in flight at once (undefined: no cap); an integer >= 1.
   * @param shared the cluster-wide stage; ignored when nothing limits the service.
   * @throws RangeError naming the option and value when maxConcurrent is not an integer >= 1.
   */
  constructor(
    windows: readonly WindowLimit[],
    private readonly maxConcurrent: number | undefined,
    private readonly now: () => number = () => performance.now(),
    shared?: SharedStage,
  ) {
    if (maxConcurrent !== undefined && (!Number.isInteger(maxConcurrent) || maxConcurrent < 1)) {
      throw new RangeError(`maxConcurrent must be an integer >= 1, got ${String(maxConcurrent)}`);
    }
    this.limiter = windows.length > 0 ? new SlidingLogLimiter(windows.map((w) => ({ limit: w.limit, windowMs: w.windowMs + guardMs(w.windowMs) }))) : undefined;
    this.sharedWindows = windows.map((w) => ({ limit: w.limit, windowMs: w.windowMs + sharedGuardMs(w.windowMs) }));
    this.shared = this.unlimited ? undefined : shared;
    this.maxGrantAgeMs = windows.length > 0 ? Math.min(...windows.map((w) => guardMs(w.windowMs))) / 2 : Infinity;
  }

  /** True when nothing limits this service (admission is free). */
  get unlimited(): boolean {
    return this.limiter === undefined && this.maxConcurrent === undefined;
  }

  /** Calls in flight now (counted only when maxConcurrent is set). */
  get inFlight(): number {
    return this.active;
  }

  /**
   * Admits at once when nobody waits ahead and the limits allow it.
   * @returns the release; an {@link AdmissionDeadlineError} when the rate limit's next start lies beyond `deadline`; undefined when the caller must wait ({@link acquire}).
   */
  tryAcquire(deadline: number): Release | AdmissionDeadlineError | undefined {
    if (this.unlimited) return NOOP;
    // The shared stage answers only after a round trip.
    if (this.queue.length > 0 || this.shared) return undefined;
    return this.tryNow(deadline);
  }

  /**
   * Waits for an admission.
   * @param signal aborts the wait (rejects with the signal's reason).
   * @param deadline performance.now() time past which the call is pointless:
   *   when the rate limit's next start lies beyond it, rejects at once with
   *   {@link AdmissionDeadlineError} carrying the wait. With a shared stage,
   *   rejects with its `AdmissionStoreError` when the store fails (the call was not sent).
   */
  acquire(signal: AbortSignal, deadline: number): Promise<Release> {
    const shared = this.shared;
    if (shared === undefined) return this.acquireHere(signal, deadline);
    return this.acquireHere(signal, deadline).then((local) =>
      shared.admission.acquire(shared.key, { windows: this.sharedWindows, maxConcurrent: this.maxConcurrent, deadline, signal, maxGrantAgeMs: this.maxGrantAgeMs }).then(
        (cluster) => () => {
          cluster();
          local();
        },
        (err: unknown) => {
          local();
          throw err instanceof AdmissionWaitError ? new AdmissionDeadlineError(err.retryAfterMs) : err;
        },
      ),
    );
  }

  /** The in-process stage of {@link acquire}. */
  private acquireHere(signal: AbortSignal, deadline: number): Promise<Release> {
    if (this.unlimited) return Promise.resolve(NOOP);
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.queue.length === 0) {
      const r = this.tryNow(deadline);
      if (r) return r instanceof Error ? Promise.reject(r) : Promise.resolve(r);
    }
    return new Promise<Release>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        deadline,
        signal,
        onAbort: () => {
          const i = this.queue.indexOf(w);
          if (i >= 0) this.queue.splice(i, 1);
          reject(signal.reason);
          this.pump();
        },
      };
      signal.addEventListener('abort', w.onAbort, { once: true });
      this.queue.push(w);
      this.pump();
    });
  }

  /** Admits now when possible; returns the release, an error when the deadline cannot be met, or undefined to wait. */
  private tryNow(deadline: number): Release | AdmissionDeadlineError | undefined {
    if (this.maxConcurrent !== undefined && this.active >= this.maxConcurrent) return undefined;
    if (this.limiter) {
      const now = this.now();
      const at = this.limiter.nextStartAt(now);
      if (at > now) return at > deadline ? new AdmissionDeadlineError(at - now) : undefined;
      this.limiter.tryStart(now);
    }
    // Only a concurrency cap needs to hear when the call ends.
    if (this.maxConcurrent === undefined) return NOOP;
    this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      this.pump();
    };
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const w = this.queue[0]!;
      const r = this.tryNow(w.deadline);
      if (r === undefined) break;
      this.queue.shift();
      w.signal.removeEventListener('abort', w.onAbort);
      if (r instanceof Error) w.reject(r);
      else w.resolve(r);
    }
    this.schedule();
  }

  /** Keeps one timer for the head waiter when it waits on the rate limit (not on a free slot). */
  private schedule(): void {
    const head = this.queue[0];
    let at: number | undefined;
    if (head && this.limiter && (this.maxConcurrent === undefined || this.active < this.maxConcurrent)) {
      at = this.limiter.nextStartAt(this.now());
    }
    if (at === undefined) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      return;
    }
    if (this.timer && this.timerAt === at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, Math.max(0, Math.ceil(at - this.now())));
  }
}
