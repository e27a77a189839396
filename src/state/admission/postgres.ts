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

/** Schema of the admission tables and function; created once, under a lock, by the first process that starts. */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS admission_window (
  key text NOT NULL,
  window_ms double precision NOT NULL,
  lim integer NOT NULL,
  head integer NOT NULL,
  cnt integer NOT NULL,
  PRIMARY KEY (key, window_ms)
);
CREATE TABLE IF NOT EXISTS admission_start (
  key text NOT NULL,
  window_ms double precision NOT NULL,
  slot integer NOT NULL,
  at double precision NOT NULL,
  PRIMARY KEY (key, window_ms, slot)
);
CREATE TABLE IF NOT EXISTS admission_hold (
  id text PRIMARY KEY,
  key text NOT NULL,
  expires_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS admission_hold_key ON admission_hold (key, expires_at);

-- Admits up to p_count starts of p_key now: every window (p_limits[i] starts in any
-- p_windows[i] ms) and the concurrency cap p_max (NULL: none) allowing. Time is the
-- server's clock_timestamp() in ms. Returns how many were admitted, and when not all:
-- retry_after_ms until the windows admit the next one (0: they would now) and
-- blocked_by ('rate' or 'concurrency').
CREATE OR REPLACE FUNCTION admission_take(
  p_key text, p_limits integer[], p_windows double precision[], p_max integer, p_count integer,
  p_hold_ids text[], p_lease_ms double precision,
  OUT granted integer, OUT retry_after_ms double precision, OUT blocked_by text)
LANGUAGE plpgsql AS $fn$
DECLARE
  now_ms double precision;
  n integer := coalesce(array_length(p_limits, 1), 0);
  v_heads integer[] := '{}';
  v_cnts integer[] := '{}';
  k integer := p_count;
  i integer;
  m integer;
  v_lim integer;
  v_win double precision;
  v_wh integer;
  v_wc integer;
  v_wl integer;
  v_avail integer;
  r record;
  v_ats double precision[];
  v_live integer;
  conc_blocked boolean := false;
  t double precision;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('ia-admission:' || p_key));
  now_ms := extract(epoch from clock_timestamp()) * 1000;
  -- Pass 1: how many each window admits now.
  FOR i IN 1 .. n LOOP
    v_lim := p_limits[i];
    v_win := p_windows[i];
    SELECT w.head, w.cnt, w.lim INTO v_wh, v_wc, v_wl FROM admission_window w WHERE w.key = p_key AND w.window_ms = v_win;
    IF NOT FOUND THEN
      INSERT INTO admission_window (key, window_ms, lim, head, cnt) VALUES (p_key, v_win, v_lim, 0, 0);
      v_wh := 0; v_wc := 0;
    ELSIF v_wl <> v_lim THEN
      -- The limit changed: keep the most recent starts (they still count), oldest first in slots 0..m-1.
      SELECT coalesce(array_agg(s.at ORDER BY s.at), '{}') INTO v_ats
        FROM (SELECT a.at FROM admission_start a WHERE a.key = p_key AND a.window_ms = v_win ORDER BY a.at DESC LIMIT v_lim) s;
      DELETE FROM admission_start a WHERE a.key = p_key AND a.window_ms = v_win;
      INSERT INTO admission_start (key, window_ms, slot, at)
        SELECT p_key, v_win, u.o - 1, u.a FROM unnest(v_ats) WITH ORDINALITY AS u(a, o);
      v_wc := coalesce(array_length(v_ats, 1), 0);
      v_wh := v_wc % v_lim;
      UPDATE admission_window w SET lim = p_limits[i], head = v_wh, cnt = v_wc WHERE w.key = p_key AND w.window_ms = v_win;
    END IF;
    v_heads := v_heads || v_wh;
    v_cnts := v_cnts || v_wc;
    v_avail := v_lim - v_wc; -- slots never used
    IF v_avail < k THEN
      -- Used slots, oldest first, that have left the window: a prefix of the ring from its head.
      m := 0;
      FOR r IN
        SELECT a.at FROM generate_series(0, least(k - v_avail, v_wc) - 1) AS g(j)
          JOIN admission_start a ON a.key = p_key AND a.window_ms = v_win AND a.slot = (v_wh + v_avail + g.j) % v_lim
          ORDER BY g.j
      LOOP
        EXIT WHEN r.at > now_ms - v_win;
        m := m + 1;
      END LOOP;
      k := least(k, v_avail + m);
    END IF;
  END LOOP;
  -- Concurrency: live leases of the key.
  IF p_max IS NOT NULL AND k > 0 THEN
    DELETE FROM admission_hold h WHERE h.key = p_key AND h.expires_at <= now_ms;
    SELECT count(*) INTO v_live FROM admission_hold h WHERE h.key = p_key;
    IF p_max - v_live < k THEN
      k := greatest(0, p_max - v_live);
      conc_blocked := true;
    END IF;
  END IF;
  -- Pass 2: record the k starts; when short, when the windows admit the next one.
  retry_after_ms := 0;
  FOR i IN 1 .. n LOOP
    v_lim := p_limits[i];
    v_win := p_windows[i];
    v_wh := v_heads[i];
    v_wc := v_cnts[i];
    IF k < p_count AND v_wc + k >= v_lim THEN
      IF k >= v_lim THEN
        t := now_ms; -- the next to leave is one of this batch
      ELSE
        SELECT a.at INTO t FROM admission_start a
          WHERE a.key = p_key AND a.window_ms = v_win AND a.slot = (v_wh + k) % v_lim;
      END IF;
      retry_after_ms := greatest(retry_after_ms, t + v_win - now_ms);
    END IF;
    IF k > 0 THEN
      INSERT INTO admission_start (key, window_ms, slot, at)
        SELECT p_key, v_win, (v_wh + g.j) % v_lim, now_ms FROM generate_series(0, k - 1) AS g(j)
        ON CONFLICT (key, window_ms, slot) DO UPDATE SET at = EXCLUDED.at;
      UPDATE admission_window w SET head = (v_wh + k) % v_lim, cnt = least(v_lim, v_wc + k) WHERE w.key = p_key AND w.window_ms = v_win;
    END IF;
  END LOOP;
  IF p_max IS NOT NULL AND k > 0 THEN
    INSERT INTO admission_hold (id, key, expires_at) SELECT u.id, p_key, now_ms + p_lease_ms FROM unnest(p_hold_ids[1:k]) AS u(id);
  END IF;
  granted := k;
  blocked_by := CASE WHEN k >= p_count THEN NULL WHEN conc_blocked THEN 'concurrency' ELSE 'rate' END;
END
$fn$;
`;

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
   * Connects, creates the tables and the function when missing (under an
   * advisory lock, so workers starting together do not collide), and checks
   * the round trip once.
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
      client = await pool.connect();
      await client.query('BEGIN');
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('ia-admission:schema'))`);
      await client.query(SCHEMA);
      await client.query('COMMIT');
      // Compiles the function on this connection now, not on the first call's clock.
      await client.query({ name: 'admission_take', text: TAKE, values: ['ia-admission:warm-up', [], [], null, 1, [], 0] });
    } catch (err) {
      await client?.query('ROLLBACK').catch(() => {});
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
