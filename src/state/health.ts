/**
 * The health history's rules, shared by both backends (each gives a
 * {@link HealthDriver} for its SQL):
 *
 * - `health_spans`: run-length availability spans per service
 *   (`[from_ms, to_ms)`, state up/down/excluded). Each probe result extends
 *   the latest span or starts a new one; a result is valid for `validityMs`
 *   (twice the check interval), so time with no results is a gap, counted
 *   neither up nor down (see `availability` in src/domain/health.ts). A batch
 *   reads the latest span of its services and writes its changes in one
 *   transaction that writers on other processes wait for, so spans never
 *   overlap however many workers probe; nothing is cached across batches.
 * - `health_buckets`: per service, clock hour, source (`probe` | `call`) and
 *   writer (a random id per process and store), a count, an error count and
 *   an HDR histogram of latencies in microseconds (hdr-histogram-js, 2
 *   significant digits, stored compressed base64). A writer only ever
 *   rewrites its own rows; figures merge every writer's rows of the hour.
 */
import { randomUUID } from 'node:crypto';
import * as hdr from 'hdr-histogram-js';
import type { CallOutcome } from '../domain/outcome';
import { AVAILABILITY_WINDOWS, availability, availabilityClass, type AvailabilitySpan, type HealthFigures, type ProbeResult } from '../domain/health';
import type { HealthHistory } from './types';

export const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** Latencies are recorded in microseconds, up to 10 minutes. */
export const HIST_OPTS = { lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 2 as const, bitBucketSize: 32 as const };

type Histogram = hdr.Histogram;
export type Source = 'probe' | 'call';
type SpanState = AvailabilitySpan['state'];

/** The latest span of a service as stored. */
export interface SpanRow {
  id: number;
  serviceId: string;
  from: number;
  to: number;
  state: SpanState;
}

/** What a batch of probe results changes: new ends of existing spans, and new spans. */
export interface SpanWrites {
  updates: Array<{ id: number; to: number }>;
  inserts: Array<{ serviceId: string; from: number; to: number; state: SpanState }>;
}

/** One stored histogram row. */
export interface BucketRow {
  serviceId: string;
  hour: number;
  source: Source;
  writer: string;
  count: number;
  errors: number;
  /** Compressed base64 HDR histogram. */
  histogram: string;
}

/** The SQL side of the health history, one per backend. */
export interface HealthDriver {
  /**
   * In one transaction serialised with every other writer of the database:
   * reads the latest span of each service (one query), lets `plan` decide,
   * writes its changes.
   */
  spanTransaction(serviceIds: string[], plan: (latest: Map<string, SpanRow>) => SpanWrites): Promise<void>;
  spans(serviceId: string, fromMs: number, toMs: number): Promise<AvailabilitySpan[]>;
  /** Inserts or replaces rows of one writer (never another writer's). */
  saveBuckets(rows: BucketRow[]): Promise<void>;
  /** One writer's stored rows for these keys. */
  ownBuckets(writer: string, keys: Array<{ serviceId: string; hour: number; source: Source }>): Promise<BucketRow[]>;
  /** Every writer's rows of a service with `fromHour <= hour < toHour`. */
  bucketsBetween(serviceId: string, fromHour: number, toHour: number): Promise<BucketRow[]>;
  /** Deletes spans ending and buckets starting before `beforeMs`. */
  prune(beforeMs: number): Promise<void>;
}

export interface HealthHistoryOptions {
  /** How long history is kept, ms; default 31 days (the 30d window plus a day); at least 30 days. */
  retentionMs?: number;
  /**
   * This process's latency histograms are written to the database at most
   * this often, ms (encoding them is the costly part of recording); default
   * 60000. Availability spans are written at once. `flush()` writes everything now.
   */
  bucketFlushEveryMs?: number;
  /**
   * The merged histograms of the 23 past clock hours are cached per service
   * for at most this long, ms, so rows other writers flush late are seen
   * within that time; default 60000.
   */
  pastCacheMs?: number;
  /** This store's writer id (the histogram rows it owns); default a random UUID. Two live stores must never share one. */
  writerId?: string;
}

interface Bucket {
  serviceId: string;
  hour: number;
  source: Source;
  count: number;
  errors: number;
  hist: Histogram;
  dirty: boolean;
}

const newHist = (): Histogram => hdr.build(HIST_OPTS);
const decode = (b64: string): Histogram => hdr.decodeFromCompressedBase64(b64, HIST_OPTS.bitBucketSize);

/** The health history over a backend's driver. One instance per process and database. */
export class HealthHistoryStore implements HealthHistory {
  /** This store's writer id in `health_buckets`. */
  readonly writer: string;
  private readonly retentionMs: number;
  private readonly bucketFlushEveryMs: number;
  private readonly pastCacheMs: number;
  /** This writer's buckets in memory, keyed `serviceId|source|hour`. */
  private readonly buckets = new Map<string, Bucket>();
  /** Hours up to this one (inclusive) were dropped from memory after a flush: a late sample reloads the stored row. */
  private evictedUpTo = -Infinity;
  /** Merged 23 past hours per service (every writer), with when they were read. */
  private readonly past = new Map<string, { hour: number; readAt: number; hist: Histogram; count: number; errors: number }>();
  private lastPrune = 0;
  private lastBucketFlush = 0;
  /** Serialises flushes and loads of this writer's rows. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly driver: HealthDriver, opts: HealthHistoryOptions = {}) {
    const r = opts.retentionMs ?? 31 * DAY_MS;
    if (!Number.isFinite(r) || r < 30 * DAY_MS) throw new RangeError(`HealthStore: retentionMs must be >= 30 days (${30 * DAY_MS}), got ${r}`);
    this.retentionMs = r;
    const f = opts.bucketFlushEveryMs ?? 60_000;
    if (!Number.isFinite(f) || f < 0) throw new RangeError(`HealthStore: bucketFlushEveryMs must be >= 0, got ${f}`);
    this.bucketFlushEveryMs = f;
    const p = opts.pastCacheMs ?? 60_000;
    if (!Number.isFinite(p) || p < 0) throw new RangeError(`HealthStore: pastCacheMs must be >= 0, got ${p}`);
    this.pastCacheMs = p;
    if (opts.writerId !== undefined && (typeof opts.writerId !== 'string' || opts.writerId === '')) throw new RangeError(`HealthStore: writerId must be a non-empty string, got ${JSON.stringify(opts.writerId)}`);
    this.writer = opts.writerId ?? randomUUID();
  }

  async recordProbes(results: readonly ProbeResult[], validityMs: (serviceId: string) => number): Promise<void> {
    if (results.length === 0) return;
    const validity = results.map((r) => {
      const v = validityMs(r.serviceId);
      if (!(v > 0)) throw new RangeError(`recordProbes: validityMs for ${r.serviceId} must be > 0, got ${v}`);
      return v;
    });
    const ids = [...new Set(results.map((r) => r.serviceId))];
    await this.driver.spanTransaction(ids, (latest) => planSpans(results, validity, latest));
    await this.addSamples(
      results.filter((r) => r.verdict !== 'inconclusive').map((r) => ({ serviceId: r.serviceId, source: 'probe' as const, at: r.startedAt, error: r.verdict === 'fail', latencyMs: r.verdict === 'fail' ? undefined : r.latencyMs })),
    );
    const at = results[0]!.startedAt;
    if (at - this.lastPrune > HOUR_MS) await this.prune(at);
  }

  async recordCalls(outcomes: readonly CallOutcome[]): Promise<void> {
    const samples = [];
    for (const o of outcomes) {
      if (o.failureKind === 'breaker_open' || o.failureKind === 'rate_limited' || o.failureKind === 'aborted') continue;
      samples.push({ serviceId: o.serviceId, source: 'call' as const, at: o.startedAt, error: !o.ok, latencyMs: o.ok ? o.latencyMs : undefined });
    }
    await this.addSamples(samples);
  }

  spans(serviceId: string, fromMs: number, toMs: number): Promise<AvailabilitySpan[]> {
    return this.driver.spans(serviceId, fromMs, toMs);
  }

  async figures(serviceId: string, now: number, slaAvailability?: number): Promise<HealthFigures> {
    const spans = await this.spans(serviceId, now - AVAILABILITY_WINDOWS['30d'], now);
    const av: HealthFigures['availability'] = {};
    for (const [k, w] of Object.entries(AVAILABILITY_WINDOWS) as [keyof typeof AVAILABILITY_WINDOWS, number][]) {
      const a = availability(spans, now, w);
      if (a !== undefined) av[k] = a;
    }
    const out: HealthFigures = { availability: av, computedAt: now };
    if (slaAvailability !== undefined) out.slaAvailability = slaAvailability;
    const hour = Math.floor(now / HOUR_MS) * HOUR_MS;
    const merged = newHist();
    const past = await this.pastDay(serviceId, hour);
    merged.add(past.hist);
    const current = await this.merge(serviceId, hour, hour + HOUR_MS);
    merged.add(current.hist);
    current.hist.destroy();
    const count = past.count + current.count;
    const errors = past.errors + current.errors;
    if (merged.totalCount > 0) {
      out.p50Ms = merged.getValueAtPercentile(50) / 1000;
      out.p95Ms = merged.getValueAtPercentile(95) / 1000;
      out.p99Ms = merged.getValueAtPercentile(99) / 1000;
    }
    if (count > 0) out.errorRate24h = errors / count;
    merged.destroy();
    return out;
  }

  async flush(): Promise<void> {
    await this.serial(() => this.flushBuckets());
  }

  async prune(now: number): Promise<void> {
    this.lastPrune = now;
    await this.driver.prune(now - this.retentionMs);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async addSamples(samples: Array<{ serviceId: string; source: Source; at: number; error: boolean; latencyMs: number | undefined }>): Promise<void> {
    if (samples.length === 0) return;
    await this.serial(async () => {
      const missing: Array<{ serviceId: string; hour: number; source: Source }> = [];
      const seen = new Set<string>();
      for (const s of samples) {
        const hour = Math.floor(s.at / HOUR_MS) * HOUR_MS;
        const key = `${s.serviceId}|${s.source}|${hour}`;
        if (hour <= this.evictedUpTo && !this.buckets.has(key) && !seen.has(key)) {
          seen.add(key);
          missing.push({ serviceId: s.serviceId, hour, source: s.source });
        }
      }
      // A late sample for an hour already dropped from memory: continue from this writer's stored row.
      if (missing.length > 0) {
        for (const row of await this.driver.ownBuckets(this.writer, missing)) {
          this.buckets.set(`${row.serviceId}|${row.source}|${row.hour}`, { serviceId: row.serviceId, hour: row.hour, source: row.source, count: row.count, errors: row.errors, hist: decode(row.histogram), dirty: false });
        }
      }
      for (const s of samples) {
        const hour = Math.floor(s.at / HOUR_MS) * HOUR_MS;
        const key = `${s.serviceId}|${s.source}|${hour}`;
        let b = this.buckets.get(key);
        if (!b) this.buckets.set(key, (b = { serviceId: s.serviceId, hour, source: s.source, count: 0, errors: 0, hist: newHist(), dirty: false }));
        b.count++;
        if (s.error) b.errors++;
        const ms = s.latencyMs;
        if (ms !== undefined && Number.isFinite(ms) && ms >= 0) b.hist.recordValue(Math.min(HIST_OPTS.highestTrackableValue, Math.max(1, Math.round(ms * 1000))));
        b.dirty = true;
      }
      const at = performance.now();
      if (at - this.lastBucketFlush >= this.bucketFlushEveryMs) await this.flushBuckets();
    });
  }

  /** Writes dirty buckets, then drops from memory those more than an hour older than the newest. */
  private async flushBuckets(): Promise<void> {
    this.lastBucketFlush = performance.now();
    const dirty = [...this.buckets.values()].filter((b) => b.dirty);
    if (dirty.length > 0) {
      await this.driver.saveBuckets(
        dirty.map((b) => ({ serviceId: b.serviceId, hour: b.hour, source: b.source, writer: this.writer, count: b.count, errors: b.errors, histogram: hdr.encodeIntoCompressedBase64(b.hist) })),
      );
      for (const b of dirty) b.dirty = false;
    }
    let newest = -Infinity;
    for (const b of this.buckets.values()) newest = Math.max(newest, b.hour);
    for (const [key, b] of this.buckets) {
      if (!b.dirty && b.hour < newest - HOUR_MS) {
        b.hist.destroy();
        this.buckets.delete(key);
        this.evictedUpTo = Math.max(this.evictedUpTo, b.hour);
      }
    }
  }

  /**
   * Every writer's samples of a service in `[fromHour, toHour)`: stored rows,
   * with this writer's own rows taken from memory where it holds them (fresher).
   */
  private async merge(serviceId: string, fromHour: number, toHour: number): Promise<{ hist: Histogram; count: number; errors: number }> {
    const hist = newHist();
    let count = 0;
    let errors = 0;
    for (const row of await this.driver.bucketsBetween(serviceId, fromHour, toHour)) {
      if (row.writer === this.writer && this.buckets.has(`${serviceId}|${row.source}|${row.hour}`)) continue;
      const h = decode(row.histogram);
      hist.add(h);
      h.destroy();
      count += row.count;
      errors += row.errors;
    }
    for (const b of this.buckets.values()) {
      if (b.serviceId !== serviceId || b.hour < fromHour || b.hour >= toHour) continue;
      hist.add(b.hist);
      count += b.count;
      errors += b.errors;
    }
    return { hist, count, errors };
  }

  /** The merged histogram and counts of the 23 clock hours before `hour`, cached per hour for at most `pastCacheMs`. */
  private async pastDay(serviceId: string, hour: number): Promise<{ hist: Histogram; count: number; errors: number }> {
    const cached = this.past.get(serviceId);
    const t = performance.now();
    if (cached && cached.hour === hour && t - cached.readAt < this.pastCacheMs) return cached;
    const fresh = await this.merge(serviceId, hour - 23 * HOUR_MS, hour);
    // The replaced histogram is left to the garbage collector: a figures() call in flight may still be adding it.
    const entry = { hour, readAt: t, ...fresh };
    this.past.set(serviceId, entry);
    return entry;
  }
}

/**
 * Applies probe results, in order, to the latest spans: a result of the same
 * state starting no later than the latest span's end extends it; another
 * state ends the latest span at the result's start (spans never overlap) and
 * starts a new one; a result older than the latest span's start is ignored
 * (history is not rewritten).
 */
export function planSpans(results: readonly ProbeResult[], validityMs: readonly number[], latest: Map<string, SpanRow>): SpanWrites {
  type Open = { id?: number; insert?: SpanWrites['inserts'][number]; from: number; to: number; state: SpanState; changed: boolean };
  const open = new Map<string, Open | null>();
  const stored: Open[] = [];
  const inserts: SpanWrites['inserts'] = [];
  const setTo = (s: Open, to: number) => {
    s.to = to;
    if (s.insert) s.insert.to = to;
    else s.changed = true;
  };
  results.forEach((r, i) => {
    const at = r.startedAt;
    const until = at + validityMs[i]!;
    const state = availabilityClass(r);
    let last = open.get(r.serviceId);
    if (last === undefined) {
      const row = latest.get(r.serviceId);
      last = row ? { id: row.id, from: row.from, to: row.to, state: row.state, changed: false } : null;
      if (last) stored.push(last);
      open.set(r.serviceId, last);
    }
    if (last && at < last.from) return; // the clock went back past the latest span: history is not rewritten
    if (last && last.state === state && at <= last.to) {
      if (until > last.to) setTo(last, until);
      return;
    }
    // A new state from `at` on supersedes the rest of the previous span: spans never overlap.
    if (last && at < last.to) setTo(last, at);
    const insert = { serviceId: r.serviceId, from: at, to: until, state };
    inserts.push(insert);
    open.set(r.serviceId, { insert, from: at, to: until, state, changed: false });
  });
  return { updates: stored.filter((s) => s.changed).map((s) => ({ id: s.id!, to: s.to })), inserts };
}
