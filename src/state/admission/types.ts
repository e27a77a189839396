/**
 * Cluster-wide admission: the one narrow interface both stores implement
 * (PostgreSQL in `postgres.ts`, Redis in `redis.ts`), and the errors callers
 * act on. The waiting, FIFO order and deadlines live above it, in
 * `shared-admission.ts`; a store only answers "how many of these may start
 * now, and if not all, when to ask again".
 */
import type { WindowLimit } from '../../domain/rate-limit';

/** What a store answers to {@link ClusterLimiter.tryAcquire}. */
export interface ClusterGrant {
  /** How many of the asked starts were admitted (0..count), in the order asked. */
  granted: number;
  /**
   * One concurrency hold per admitted start when `maxConcurrent` was given
   * (release each with {@link ClusterLimiter.release}); empty otherwise.
   */
  holdIds: string[];
  /**
   * When not all were admitted: ms (on the store's clock) until the windows
   * admit the next start (exact: the oldest start of the full window leaves
   * it then); 0 when they would admit now (only concurrency stopped it), and
   * when everything asked was admitted.
   */
  retryAfterMs: number;
  /**
   * What stopped the rest: `rate` (a window is full) or `concurrency` (every
   * slot is held: ask again after a release, or poll); undefined when all were admitted.
   */
  blockedBy?: 'rate' | 'concurrency';
}

/**
 * A store that counts starts and concurrency holds for every process of the
 * cluster, on its own clock.
 *
 * Guarantees, per key: no half-open interval of any window's `windowMs` (on
 * the store's clock) holds more than its `limit` admitted starts, and no more
 * than `maxConcurrent` holds are alive at once. Holds are leases of
 * {@link ClusterLimiter.leaseMs}, renewed by the instance that took them
 * every {@link ClusterLimiter.renewEveryMs} until released; a hold of a process
 * that died expires at most `leaseMs` after its last renewal.
 */
export interface ClusterLimiter {
  /** Which store this is, for messages: `PostgreSQL at 10.0.0.5:5432`, `Redis at 127.0.0.1:6379` (never credentials). */
  readonly store: string;
  /** Lease of a concurrency hold, ms. */
  readonly leaseMs: number;
  /** Interval of lease renewal, ms. */
  readonly renewEveryMs: number;
  /**
   * Admits up to `count` starts for `key` now, as far as every window and
   * the concurrency cap allow (one round trip, atomic per key).
   * @param key what the limit is about: `service:<id>`, `make-org:<id>`.
   * @param windows the windows to enforce (already widened by any guard); may be empty.
   * @param maxConcurrent holds alive at once; undefined: no cap (no holds are taken).
   * @param count starts wanted, an integer >= 1.
   * @throws AdmissionStoreError when the store cannot be reached or fails.
   */
  tryAcquire(key: string, windows: readonly WindowLimit[], maxConcurrent: number | undefined, count: number): Promise<ClusterGrant>;
  /**
   * Frees a concurrency hold (stops renewing it). Never throws: when the store
   * cannot be reached the lease runs out by itself within `leaseMs`.
   */
  release(holdId: string): Promise<void>;
  /** Stops renewing, drops this instance's holds where possible, closes the connections. Idempotent. */
  close(): Promise<void>;
}

/**
 * The shared store could not answer: the call was not sent. Retryable (the
 * limit is never lifted when its store is down; Temporal's activity retry
 * tries again later).
 */
export class AdmissionStoreError extends Error {
  readonly code = 'ADMISSION_STORE_UNAVAILABLE';
  readonly retryable = true;
  constructor(
    /** The store, as {@link ClusterLimiter.store}. */
    readonly store: string,
    cause: unknown,
  ) {
    super(
      `cluster-wide admission: ${store} did not answer (${describeCause(cause)}); the call was not sent, so the limit is not lifted. ` +
        'It is retried; check that the server is up and reachable (INTEGRATION_AGENT_DATABASE_URL / INTEGRATION_AGENT_REDIS_URL).',
    );
    this.name = 'AdmissionStoreError';
  }
}

/** The cause of a store failure in a few words, without anything that could hold a password. */
function describeCause(cause: unknown): string {
  const e = cause as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : undefined;
  let msg = typeof e?.message === 'string' ? e.message : String(cause);
  // Drivers may quote the connection string; cut any URL with user info out.
  msg = msg.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s@/]*@\S*/gi, '<url>').slice(0, 200);
  return code && !msg.includes(code) ? `${code}: ${msg}` : msg;
}

/** Thrown when the cluster-wide rate limit cannot admit before the caller's deadline. */
export class AdmissionWaitError extends Error {
  constructor(
    readonly key: string,
    /** Time until the next start the store could admit, ms. */
    readonly retryAfterMs: number,
  ) {
    super(`cluster-wide rate limit of ${key} would delay the call past its deadline (next start in ${Math.ceil(retryAfterMs)} ms)`);
    this.name = 'AdmissionWaitError';
  }
}

/** Validates what both stores are given; throws RangeError naming the bad value. */
export function checkRequest(key: string, windows: readonly WindowLimit[], maxConcurrent: number | undefined, count: number): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > 200) throw new RangeError(`admission key must be a non-empty string of at most 200 characters, got ${JSON.stringify(key)}`);
  windows.forEach((w, i) => {
    if (!Number.isInteger(w.limit) || w.limit < 1) throw new RangeError(`admission window ${i} of ${key}: limit must be an integer >= 1, got ${String(w.limit)}`);
    if (!Number.isFinite(w.windowMs) || w.windowMs <= 0) throw new RangeError(`admission window ${i} of ${key}: windowMs must be a finite number > 0, got ${String(w.windowMs)}`);
  });
  if (maxConcurrent !== undefined && (!Number.isInteger(maxConcurrent) || maxConcurrent < 1)) throw new RangeError(`maxConcurrent of ${key} must be an integer >= 1, got ${String(maxConcurrent)}`);
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`admission count must be an integer >= 1, got ${String(count)}`);
}

/** `host:port` of a store URL, for messages (no user, no password, no database). */
export function storeAddress(url: string, defaultPort: number): string {
  try {
    const u = new URL(url);
    return `${u.hostname || 'localhost'}:${u.port || defaultPort}`;
  } catch {
    return '(unparsable URL)';
  }
}
