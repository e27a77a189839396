/** The health history's SQL on the embedded database (see ../health.ts for the rules). */
import type { AvailabilitySpan } from '../../domain/health';
import type { BucketRow, HealthDriver, Source, SpanRow, SpanWrites } from '../health';
import type { Db } from './database';

type SpanState = AvailabilitySpan['state'];

export function sqliteHealthDriver(db: Db): HealthDriver {
  const stmt = {
    latest: db.prepare<[string], { id: number; service_id: string; from_ms: number; to_ms: number; state: SpanState }>(
      `SELECT s.id, s.service_id, s.from_ms, s.to_ms, s.state FROM json_each(?) j
         JOIN health_spans s ON s.id = (SELECT id FROM health_spans WHERE service_id = j.value ORDER BY from_ms DESC, id DESC LIMIT 1)`,
    ),
    insertSpan: db.prepare<[string, number, number, string]>('INSERT INTO health_spans (service_id, from_ms, to_ms, state) VALUES (?, ?, ?, ?)'),
    setSpanTo: db.prepare<[number, number]>('UPDATE health_spans SET to_ms = ? WHERE id = ?'),
    spans: db.prepare<[string, number, number], { from_ms: number; to_ms: number; state: SpanState }>(
      'SELECT from_ms, to_ms, state FROM health_spans WHERE service_id = ? AND to_ms > ? AND from_ms < ? ORDER BY from_ms',
    ),
    upsertBucket: db.prepare<[string, number, string, string, number, number, string]>(
      `INSERT INTO health_buckets (service_id, hour_ms, source, writer, count, errors, histogram) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (service_id, hour_ms, source, writer) DO UPDATE SET count = excluded.count, errors = excluded.errors, histogram = excluded.histogram`,
    ),
    ownBucket: db.prepare<[string, number, string, string], { count: number; errors: number; histogram: string }>(
      'SELECT count, errors, histogram FROM health_buckets WHERE service_id = ? AND hour_ms = ? AND source = ? AND writer = ?',
    ),
    bucketsBetween: db.prepare<[string, number, number], { hour_ms: number; source: Source; writer: string; count: number; errors: number; histogram: string }>(
      'SELECT hour_ms, source, writer, count, errors, histogram FROM health_buckets WHERE service_id = ? AND hour_ms >= ? AND hour_ms < ?',
    ),
    pruneSpans: db.prepare<[number]>('DELETE FROM health_spans WHERE to_ms < ?'),
    pruneBuckets: db.prepare<[number]>('DELETE FROM health_buckets WHERE hour_ms < ?'),
  };
  return {
    async spanTransaction(serviceIds: string[], plan: (latest: Map<string, SpanRow>) => SpanWrites): Promise<void> {
      // BEGIN IMMEDIATE: the read of the latest spans already holds the write lock, so another process's batch waits.
      db.transaction(() => {
        const latest = new Map<string, SpanRow>();
        for (const r of stmt.latest.all(JSON.stringify(serviceIds))) latest.set(r.service_id, { id: r.id, serviceId: r.service_id, from: r.from_ms, to: r.to_ms, state: r.state });
        const w = plan(latest);
        for (const u of w.updates) stmt.setSpanTo.run(u.to, u.id);
        for (const i of w.inserts) stmt.insertSpan.run(i.serviceId, i.from, i.to, i.state);
      }).immediate();
    },
    async spans(serviceId, fromMs, toMs) {
      return stmt.spans.all(serviceId, fromMs, toMs).map((r) => ({ from: r.from_ms, to: r.to_ms, state: r.state }));
    },
    async saveBuckets(rows: BucketRow[]) {
      db.transaction(() => {
        for (const r of rows) stmt.upsertBucket.run(r.serviceId, r.hour, r.source, r.writer, r.count, r.errors, r.histogram);
      })();
    },
    async ownBuckets(writer, keys) {
      const out: BucketRow[] = [];
      for (const k of keys) {
        const r = stmt.ownBucket.get(k.serviceId, k.hour, k.source, writer);
        if (r) out.push({ ...k, writer, count: r.count, errors: r.errors, histogram: r.histogram });
      }
      return out;
    },
    async bucketsBetween(serviceId, fromHour, toHour) {
      return stmt.bucketsBetween.all(serviceId, fromHour, toHour).map((r) => ({ serviceId, hour: r.hour_ms, source: r.source, writer: r.writer, count: r.count, errors: r.errors, histogram: r.histogram }));
    },
    async prune(beforeMs) {
      db.transaction(() => {
        stmt.pruneSpans.run(beforeMs);
        stmt.pruneBuckets.run(beforeMs);
      })();
    },
  };
}
