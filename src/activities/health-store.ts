/**
 * The long health history, in the project's embedded database (SQLite, see
 * db.ts), so 30-day figures survive worker restarts and continue-as-new:
 *
 * - `health_spans`: run-length availability spans per service
 *   (`[from_ms, to_ms)`, state up/down/excluded). Each probe result extends
 *   the open span or starts a new one; a result is valid for `validityMs`
 *   (twice the check interval), so time with no results is a gap, counted
 *   neither up nor down (see `availability` in src/domain/health.ts).
 * - `health_buckets`: per service, per clock hour and per source
 *   (`probe` | `call`), a count, an error count and an HDR histogram of
 *   latencies in microseconds (hdr-histogram-js, 2 significant digits,
 *   stored compressed base64), merged for p50/p95/p99.
 *
 * Probes write through `recordProbes`; real calls arrive from the
 * coordinator through the OutcomeSink port (`createHealthOutcomeSink`).
 */
import * as hdr from 'hdr-histogram-js';
import type { CallOutcome } from '../domain/outcome';
import {
  AVAILABILITY_WINDOWS,
  availability,
  availabilityClass,
  type AvailabilitySpan,
  type HealthFigures,
  type ProbeResult,
} from '../domain/health';
import type { OutcomeSink } from './ports';
import { openDatabase, type Db } from './db';

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** Latencies are recorded in microseconds, up to 10 minutes. */
const HIST_OPTS = { lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 2 as const, bitBucketSize: 32 as const };

type Histogram = hdr.Histogram;
type Source = 'probe' | 'call';

interface Bucket {
  count: number;
  errors: number;
  hist: Histogram;
  dirty: boolean;
}

interface OpenSpan {
  id: number;
  from: number;
  to: number;
  state: AvailabilitySpan['state'];
}

const newHist = (): Histogram => hdr.build(HIST_OPTS);

export interface HealthStoreOptions {
  /** How long history is kept, ms; default 31 days (the 30d window plus a day). */
  retentionMs?: number;
  /**
   * Current-hour latency histograms are written to the database at most this
   * often, ms (encoding them is the costly part of recording); default 60000.
   * Availability spans are written at once. `flush()` writes everything now.
   */
  bucketFlushEveryMs?: number;
}

/** Health history over one SQLite database. One instance per process and database. */
export class HealthStore {
  private readonly retentionMs: number;
  private readonly spansOpen = new Map<string, OpenSpan | null>();
  /** Current-hour buckets, keyed `serviceId|source`. */
  private readonly current = new Map<string, { hour: number; bucket: Bucket }>();
  /** Merged earlier 23 hours per service: rebuilt when the clock hour changes. */
  private readonly past = new Map<string, { hour: number; hist: Histogram; count: number; errors: number }>();
  private lastPrune = 0;
  private lastBucketFlush = 0;
  private readonly bucketFlushEveryMs: number;
  private readonly stmt;

  constructor(readonly db: Db, opts: HealthStoreOptions = {}) {
    const r = opts.retentionMs ?? 31 * DAY_MS;
    if (!Number.isFinite(r) || r < 30 * DAY_MS) throw new RangeError(`HealthStore: retentionMs must be >= 30 days (${30 * DAY_MS}), got ${r}`);
    this.retentionMs = r;
    const f = opts.bucketFlushEveryMs ?? 60_000;
    if (!Number.isFinite(f) || f < 0) throw new RangeError(`HealthStore: bucketFlushEveryMs must be >= 0, got ${f}`);
    this.bucketFlushEveryMs = f;
    db.exec(`
      CREATE TABLE IF NOT EXISTS health_spans (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service_id TEXT NOT NULL,
        from_ms INTEGER NOT NULL,
        to_ms INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('up', 'down', 'excluded'))
      );
      CREATE INDEX IF NOT EXISTS health_spans_by_service ON health_spans (service_id, to_ms);
      CREATE TABLE IF NOT EXISTS health_buckets (
        service_id TEXT NOT NULL,
        hour_ms INTEGER NOT NULL,
        source TEXT NOT NULL,
        count INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        histogram TEXT NOT NULL,
        PRIMARY KEY (service_id, hour_ms, source)
      );
    `);
    this.stmt = {
      lastSpan: db.prepare<[string], { id: number; from_ms: number; to_ms: number; state: AvailabilitySpan['state'] }>(
        'SELECT id, from_ms, to_ms, state FROM health_spans WHERE service_id = ? ORDER BY from_ms DESC, id DESC LIMIT 1',
      ),
      insertSpan: db.prepare<[string, number, number, string]>('INSERT INTO health_spans (service_id, from_ms, to_ms, state) VALUES (?, ?, ?, ?)'),
      setSpanTo: db.prepare<[number, number]>('UPDATE health_spans SET to_ms = ? WHERE id = ?'),
      spans: db.prepare<[string, number, number], { from_ms: number; to_ms: number; state: AvailabilitySpan['state'] }>(
        'SELECT from_ms, to_ms, state FROM health_spans WHERE service_id = ? AND to_ms > ? AND from_ms < ? ORDER BY from_ms',
      ),
      bucket: db.prepare<[string, number, string], { count: number; errors: number; histogram: string }>(
        'SELECT count, errors, histogram FROM health_buckets WHERE service_id = ? AND hour_ms = ? AND source = ?',
      ),
      bucketsBetween: db.prepare<[string, number, number], { count: number; errors: number; histogram: string }>(
        'SELECT count, errors, histogram FROM health_buckets WHERE service_id = ? AND hour_ms >= ? AND hour_ms < ?',
      ),
      upsertBucket: db.prepare<[string, number, string, number, number, string]>(
        `INSERT INTO health_buckets (service_id, hour_ms, source, count, errors, histogram) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (service_id, hour_ms, source) DO UPDATE SET count = excluded.count, errors = excluded.errors, histogram = excluded.histogram`,
      ),
      pruneSpans: db.prepare<[number]>('DELETE FROM health_spans WHERE to_ms < ?'),
      pruneBuckets: db.prepare<[number]>('DELETE FROM health_buckets WHERE hour_ms < ?'),
    };
  }

  /**
   * Records probe results in one transaction.
   * @param validityMs how long each result stands for, ms, per service (twice
   *   its check interval is the usual choice); must be > 0.
   */
  recordProbes(results: readonly ProbeResult[], validityMs: (serviceId: string) => number): void {
    this.db.transaction(() => {
      for (const r of results) {
        const v = validityMs(r.serviceId);
        if (!(v > 0)) throw new RangeError(`recordProbes: validityMs for ${r.serviceId} must be > 0, got ${v}`);
        this.extendSpan(r.serviceId, r.startedAt, r.startedAt + v, availabilityClass(r));
        if (r.verdict !== 'inconclusive') this.addSample(r.serviceId, 'probe', r.startedAt, r.verdict === 'fail', r.verdict === 'fail' ? undefined : r.latencyMs);
      }
      this.maybeFlushBuckets();
    })();
    this.maybePrune(results[0]?.startedAt);
  }

  /**
   * Records real call outcomes (passive monitoring). Calls that never reached
   * the service (breaker open, local rate limit, aborted by the caller) are skipped.
   */
  recordCalls(outcomes: readonly CallOutcome[]): void {
    this.db.transaction(() => {
      for (const o of outcomes) {
        if (o.failureKind === 'breaker_open' || o.failureKind === 'rate_limited' || o.failureKind === 'aborted') continue;
        this.addSample(o.serviceId, 'call', o.startedAt, !o.ok, o.ok ? o.latencyMs : undefined);
      }
      this.maybeFlushBuckets();
    })();
  }

  /** Availability spans of a service overlapping `[fromMs, toMs)`, oldest first. */
  spans(serviceId: string, fromMs: number, toMs: number): AvailabilitySpan[] {
    return this.stmt.spans.all(serviceId, fromMs, toMs).map((r) => ({ from: r.from_ms, to: r.to_ms, state: r.state }));
  }

  /**
   * Figures for one service at `now`: availability over 1h/24h/7d/30d (the
   * rule in src/domain/health.ts), p50/p95/p99 in ms and the error rate over
   * the last 24 clock hours (probes and real calls together).
   */
  figures(serviceId: string, now: number, slaAvailability?: number): HealthFigures {
    const spans = this.spans(serviceId, now - AVAILABILITY_WINDOWS['30d'], now);
    const av: HealthFigures['availability'] = {};
    for (const [k, w] of Object.entries(AVAILABILITY_WINDOWS) as [keyof typeof AVAILABILITY_WINDOWS, number][]) {
      const a = availability(spans, now, w);
      if (a !== undefined) av[k] = a;
    }
    const out: HealthFigures = { availability: av, computedAt: now };
    if (slaAvailability !== undefined) out.slaAvailability = slaAvailability;
    const hour = Math.floor(now / HOUR_MS) * HOUR_MS;
    const merged = newHist();
    let count = 0;
    let errors = 0;
    const past = this.pastDay(serviceId, hour);
    merged.add(past.hist);
    count += past.count;
    errors += past.errors;
    for (const source of ['probe', 'call'] as const) {
      const cur = this.current.get(`${serviceId}|${source}`);
      if (cur && cur.hour === hour) {
        merged.add(cur.bucket.hist);
        count += cur.bucket.count;
        errors += cur.bucket.errors;
      } else {
        const row = this.stmt.bucket.get(serviceId, hour, source);
        if (row) {
          merged.add(hdr.decodeFromCompressedBase64(row.histogram, HIST_OPTS.bitBucketSize));
          count += row.count;
          errors += row.errors;
        }
      }
    }
    if (merged.totalCount > 0) {
      out.p50Ms = merged.getValueAtPercentile(50) / 1000;
      out.p95Ms = merged.getValueAtPercentile(95) / 1000;
      out.p99Ms = merged.getValueAtPercentile(99) / 1000;
    }
    if (count > 0) out.errorRate24h = errors / count;
    merged.destroy();
    return out;
  }

  /** Writes every buffered latency histogram now (worker shutdown). */
  flush(): void {
    this.db.transaction(() => this.flushBuckets())();
  }

  private maybeFlushBuckets(): void {
    const at = performance.now();
    if (at - this.lastBucketFlush < this.bucketFlushEveryMs) return;
    this.lastBucketFlush = at;
    this.flushBuckets();
  }

  /** Deletes history older than the retention. */
  prune(now: number): void {
    const before = now - this.retentionMs;
    this.stmt.pruneSpans.run(before);
    this.stmt.pruneBuckets.run(before);
    this.spansOpen.clear();
    this.lastPrune = now;
  }

  private maybePrune(now: number | undefined): void {
    if (now !== undefined && now - this.lastPrune > HOUR_MS) this.prune(now);
  }

  private extendSpan(serviceId: string, at: number, until: number, state: AvailabilitySpan['state']): void {
    let last = this.spansOpen.get(serviceId);
    if (last === undefined) {
      const row = this.stmt.lastSpan.get(serviceId);
      last = row ? { id: row.id, from: row.from_ms, to: row.to_ms, state: row.state } : null;
    }
    if (last && at < last.from) return; // the clock went back past the latest span: history is not rewritten
    if (last && last.state === state && at <= last.to) {
      if (until > last.to) {
        last.to = until;
        this.stmt.setSpanTo.run(until, last.id);
      }
      this.spansOpen.set(serviceId, last);
      return;
    }
    if (last && at < last.to) {
      // A new state from `at` on supersedes the rest of the previous span: spans never overlap.
      last.to = at;
      this.stmt.setSpanTo.run(at, last.id);
    }
    const info = this.stmt.insertSpan.run(serviceId, at, until, state);
    this.spansOpen.set(serviceId, { id: Number(info.lastInsertRowid), from: at, to: until, state });
  }

  private addSample(serviceId: string, source: Source, at: number, error: boolean, latencyMs: number | undefined): void {
    const hour = Math.floor(at / HOUR_MS) * HOUR_MS;
    const key = `${serviceId}|${source}`;
    let cur = this.current.get(key);
    if (!cur || cur.hour !== hour) {
      if (cur && cur.hour > hour) {
        // A late sample for an earlier hour: write straight to its row.
        const b = this.loadBucket(serviceId, hour, source);
        this.sample(b, error, latencyMs);
        this.saveBucket(serviceId, hour, source, b);
        b.hist.destroy();
        return;
      }
      if (cur?.bucket.dirty) this.saveBucket(serviceId, cur.hour, source, cur.bucket);
      cur?.bucket.hist.destroy();
      cur = { hour, bucket: this.loadBucket(serviceId, hour, source) };
      this.current.set(key, cur);
    }
    this.sample(cur.bucket, error, latencyMs);
  }

  private sample(b: Bucket, error: boolean, latencyMs: number | undefined): void {
    b.count++;
    if (error) b.errors++;
    if (latencyMs !== undefined && Number.isFinite(latencyMs) && latencyMs >= 0) {
      b.hist.recordValue(Math.min(HIST_OPTS.highestTrackableValue, Math.max(1, Math.round(latencyMs * 1000))));
    }
    b.dirty = true;
  }

  private loadBucket(serviceId: string, hour: number, source: Source): Bucket {
    const row = this.stmt.bucket.get(serviceId, hour, source);
    if (!row) return { count: 0, errors: 0, hist: newHist(), dirty: false };
    return { count: row.count, errors: row.errors, hist: hdr.decodeFromCompressedBase64(row.histogram, HIST_OPTS.bitBucketSize), dirty: false };
  }

  private saveBucket(serviceId: string, hour: number, source: Source, b: Bucket): void {
    this.stmt.upsertBucket.run(serviceId, hour, source, b.count, b.errors, hdr.encodeIntoCompressedBase64(b.hist));
    b.dirty = false;
  }

  private flushBuckets(): void {
    for (const [key, cur] of this.current) {
      if (!cur.bucket.dirty) continue;
      const i = key.lastIndexOf('|');
      this.saveBucket(key.slice(0, i), cur.hour, key.slice(i + 1) as Source, cur.bucket);
    }
  }

  /** The merged histogram and counts of the 23 clock hours before `hour` (cached per hour). */
  private pastDay(serviceId: string, hour: number): { hist: Histogram; count: number; errors: number } {
    const cached = this.past.get(serviceId);
    if (cached && cached.hour === hour) return cached;
    cached?.hist.destroy();
    const hist = newHist();
    let count = 0;
    let errors = 0;
    for (const row of this.stmt.bucketsBetween.all(serviceId, hour - 23 * HOUR_MS, hour)) {
      const h = hdr.decodeFromCompressedBase64(row.histogram, HIST_OPTS.bitBucketSize);
      hist.add(h);
      h.destroy();
      count += row.count;
      errors += row.errors;
    }
    const entry = { hour, hist, count, errors };
    this.past.set(serviceId, entry);
    return entry;
  }
}

const stores = new Map<Db, HealthStore>();

/** Writes every open health store's buffered histograms (call on worker shutdown, before closeDatabases). */
export function flushHealthStores(): void {
  for (const [db, s] of stores) if (db.open) s.flush();
}

/** The health store of `<dataDir>/integration-agent.db` (one per process and database). */
export function openHealthStore(dataDir: string): HealthStore {
  const db = openDatabase(dataDir);
  for (const d of stores.keys()) if (!d.open) stores.delete(d);
  let s = stores.get(db);
  if (!s) {
    s = new HealthStore(db);
    stores.set(db, s);
  }
  return s;
}

export interface HealthOutcomeSinkOptions {
  /** Flush buffered outcomes at least this often, ms; default 1000. */
  flushEveryMs?: number;
  /** Flush at once when this many are buffered; default 1000. */
  maxBuffered?: number;
  /** Called with errors from a flush (the sink never throws into the caller). */
  onError?: (err: unknown) => void;
}

/**
 * Passive monitoring: an {@link OutcomeSink} for the coordinator that buffers
 * real call outcomes and writes them to the health store in batches. `record`
 * never throws or blocks; `close()` stops the timer and writes everything buffered.
 */
export function createHealthOutcomeSink(store: HealthStore, opts: HealthOutcomeSinkOptions = {}): OutcomeSink & { flush(): void; close(): void } {
  const every = opts.flushEveryMs ?? 1000;
  const max = opts.maxBuffered ?? 1000;
  if (!(every > 0)) throw new RangeError(`createHealthOutcomeSink: flushEveryMs must be > 0, got ${every}`);
  if (!(max >= 1)) throw new RangeError(`createHealthOutcomeSink: maxBuffered must be >= 1, got ${max}`);
  let buf: CallOutcome[] = [];
  const flush = () => {
    if (buf.length === 0) return;
    const batch = buf;
    buf = [];
    try {
      store.recordCalls(batch);
    } catch (err) {
      opts.onError?.(err);
    }
  };
  const timer = setInterval(flush, every);
  timer.unref();
  return {
    record(outcome) {
      buf.push(outcome);
      if (buf.length >= max) setImmediate(flush);
    },
    flush,
    close() {
      clearInterval(timer);
      flush();
      try {
        store.flush();
      } catch (err) {
        opts.onError?.(err);
      }
    },
  };
}
