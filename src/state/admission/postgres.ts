/**
 * Cluster-wide admission in PostgreSQL: one SQL function, `admission_take`,
 * called in one round trip per batch of starts. Inside it
 * `pg_advisory_xact_lock(hashtext(key))` serialises every process's
 * decisions on the same key, and `clock_timestamp()` is the one clock they
 * all share, so hosts with skewed clocks still agree.
 *
 * Per key and window the log is a ring of `limit` slots (table
 * `admission_start`) with its head and fill count (`admission_window`),
 * exactly the sliding log of `src/domain/rate-limit.ts`: a start may take the
 * oldest slot once that slot's time has left the window. A batch of k starts
 * costs O(k) slot rows, whatever the limit. Concurrency holds are rows of
 * `admission_hold` with a lease (`expires_at`, server clock), renewed by the
 * instance that took them; expired ones are deleted by the next decision.
 */
import { Pool, type PoolClient } from 'pg';
import type { WindowLimit } from '../../domain/rate-limit';
import { migratePostgres } from '../postgres/database';
import { LeaseBook } from './leases';
import { AdmissionStoreError, checkRequest, storeAddress, type ClusterGrant, type ClusterLimiter } from './types';

/** Options of {@link PostgresClusterLimiter.open}. */
export interface PostgresLimiterOptions {
  /** `postgres://user:password@host:port/db` (INTEGRATION_AGENT_DATABASE_URL). */
  url: string;
  /** Lease of a concurrency hold, ms; default 10_000. */
  leaseMs?: number;
  /** Renewal interval of live holds, ms; default 3_000 (must be < leaseMs). */
  renewEveryMs?: number;
  /** Connections in this process's pool; default 4. */
  poolSize?: number;
  /** Longest a round trip may take before it fails as the store's failure, ms; default 2_000. */
  queryTimeoutMs?: number;
  /** Told when a lease renewal fails (the holds then expire by themselves). */
  onRenewError?: (err: unknown) => void;
}


const TAKE = 'SELECT granted, retry_after_ms, blocked_by FROM admission_take($1, $2, $3, $4, $5, $6, $7)';
const RENEW = `UPDATE admission_hold SET expires_at = extract(epoch from clock_timestamp()) * 1000 + $2
  WHERE id = ANY($1) AND expires_at > extract(epoch from clock_timestamp()) * 1000`;
const RELEASE = 'DELETE FROM admission_hold WHERE id = ANY($1)';

/** The PostgreSQL {@link ClusterLimiter}. Open with {@link PostgresClusterLimiter.open}. */
export class PostgresClusterLimiter implements ClusterLimiter {
  readonly store: string;
  readonly leaseMs: number;
  readonly renewEveryMs: number;
  private readonly leases: LeaseBook;
  private closed = false;

  private constructor(
    private readonly pool: Pool,
    address: string,
    opts: PostgresLimiterOptions,
  ) {
    this.store = `PostgreSQL at ${address}`;
    this.leaseMs = opts.leaseMs ?? 10_000;
    this.renewEveryMs = opts.renewEveryMs ?? 3_000;
    this.leases = new LeaseBook(this.renewEveryMs, (holds) => this.renew([...holds.keys()]), opts.onRenewError);
  }

  /**
   * Connects, applies pending state migrations (the admission tables and
   * function are migration 0003; several processes starting at once are
   * serialised by the migration lock), and checks the round trip once.
   * @throws RangeError when leaseMs/renewEveryMs are out of range; AdmissionStoreError when the server cannot be reached.
   */
  static async open(opts: PostgresLimiterOptions): Promise<PostgresClusterLimiter> {
    checkLease(opts.leaseMs ?? 10_000, opts.renewEveryMs ?? 3_000);
    const address = storeAddress(opts.url, 5432);
    const timeout = opts.queryTimeoutMs ?? 2_000;
    const pool = new Pool({
      connectionString: opts.url,
      max: opts.poolSize ?? 4,
      connectionTimeoutMillis: timeout,
      query_timeout: timeout,
      idleTimeoutMillis: 30_000,
      application_name: 'integration-agent admission',
    });
    // An idle client whose server went away emits here; the next query reports it.
    pool.on('error', () => {});
    const limiter = new PostgresClusterLimiter(pool, address, opts);
    let client: PoolClient | undefined;
    try {
      // The tables and the function are a versioned state migration (0003-cluster-admission), applied under its lock.
      await migratePostgres(pool);
      client = await pool.connect();
      // Compiles the function on this connection now, not on the first call's clock.
      await client.query({ name: 'admission_take', text: TAKE, values: ['ia-admission:warm-up', [], [], null, 1, [], 0] });
    } catch (err) {
      client?.release(true);
      client = undefined;
      await pool.end().catch(() => {});
      throw new AdmissionStoreError(limiter.store, err);
    } finally {
      client?.release();
    }
    return limiter;
  }

  async tryAcquire(key: string, windows: readonly WindowLimit[], maxConcurrent: number | undefined, count: number): Promise<ClusterGrant> {
    if (this.closed) throw new AdmissionStoreError(this.store, new Error('the limiter is closed'));
    checkRequest(key, windows, maxConcurrent, count);
    const holdIds = maxConcurrent === undefined ? [] : this.leases.newIds(count);
    let row: { granted: number; retry_after_ms: number; blocked_by: 'rate' | 'concurrency' | null };
    try {
      const res = await this.pool.query({
        name: 'admission_take',
        text: TAKE,
        values: [key, windows.map((w) => w.limit), windows.map((w) => w.windowMs), maxConcurrent ?? null, count, holdIds, this.leaseMs],
      });
      row = res.rows[0];
    } catch (err) {
      throw new AdmissionStoreError(this.store, err);
    }
    const granted = row.granted;
    const held = holdIds.slice(0, granted);
    for (const id of held) this.leases.add(id, key);
    return { granted, holdIds: held, retryAfterMs: Math.max(0, row.retry_after_ms), blockedBy: row.blocked_by ?? undefined };
  }

  async release(holdId: string): Promise<void> {
    if (this.leases.remove(holdId) === undefined) return;
    await this.pool.query({ name: 'admission_release', text: RELEASE, values: [[holdId]] }).catch(() => {});
  }

  private async renew(ids: string[]): Promise<void> {
    try {
      await this.pool.query({ name: 'admission_renew', text: RENEW, values: [ids, this.leaseMs] });
    } catch (err) {
      throw new AdmissionStoreError(this.store, err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.leases.stop();
    const ids = [...this.leases.holds.keys()];
    this.leases.holds.clear();
    if (ids.length > 0) await this.pool.query(RELEASE, [ids]).catch(() => {});
    await this.pool.end().catch(() => {});
  }
}

/** @throws RangeError naming the option when the lease or its renewal interval is out of range. */
export function checkLease(leaseMs: number, renewEveryMs: number): void {
  if (!Number.isFinite(leaseMs) || leaseMs < 100) throw new RangeError(`admission leaseMs must be a number of ms >= 100, got ${String(leaseMs)}`);
  if (!Number.isFinite(renewEveryMs) || renewEveryMs < 10 || renewEveryMs >= leaseMs) {
    throw new RangeError(`admission renewEveryMs must be a number of ms >= 10 and below leaseMs (${leaseMs}), got ${String(renewEveryMs)}`);
  }
}
