/** The health history's SQL on PostgreSQL (see ../health.ts for the rules). */
import type { Pool } from 'pg';
import type { AvailabilitySpan } from '../../domain/health';
import type { BucketRow, HealthDriver, Source, SpanRow } from '../health';
import { inTransaction, LOCK_NAMESPACE, LOCKS } from './database';

type SpanState = AvailabilitySpan['state'];

export function postgresHealthDriver(pool: Pool): HealthDriver {
  return {
    async spanTransaction(serviceIds, plan) {
      await inTransaction(pool, async (c) => {
        // Every writer's span batch takes turns: the read of the latest spans and the writes that follow it are one step.
        await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_NAMESPACE, LOCKS.healthSpans]);
        const rows = await c.query<{ id: string; service_id: string; from_ms: string; to_ms: string; state: SpanState }>(
          `SELECT DISTINCT ON (service_id) id, service_id, from_ms, to_ms, state FROM health_spans
            WHERE service_id = ANY($1::text[]) ORDER BY service_id, from_ms DESC, id DESC`,
          [serviceIds],
        );
        const latest = new Map<string, SpanRow>();
        for (const r of rows.rows) latest.set(r.service_id, { id: Number(r.id), serviceId: r.service_id, from: Number(r.from_ms), to: Number(r.to_ms), state: r.state });
        const w = plan(latest);
        if (w.updates.length > 0) {
          await c.query(`UPDATE health_spans h SET to_ms = u.to_ms FROM unnest($1::bigint[], $2::bigint[]) AS u(id, to_ms) WHERE h.id = u.id`, [
            w.updates.map((u) => u.id),
            w.updates.map((u) => u.to),
          ]);
        }
        if (w.inserts.length > 0) {
          await c.query(
            `INSERT INTO health_spans (service_id, from_ms, to_ms, state) SELECT s, f, t, st FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) WITH ORDINALITY AS i(s, f, t, st, n) ORDER BY n`,
            [w.inserts.map((i) => i.serviceId), w.inserts.map((i) => i.from), w.inserts.map((i) => i.to), w.inserts.map((i) => i.state)],
          );
        }
      });
    },
    async spans(serviceId, fromMs, toMs) {
      const r = await pool.query<{ from_ms: string; to_ms: string; state: SpanState }>(
        'SELECT from_ms, to_ms, state FROM health_spans WHERE service_id = $1 AND to_ms > $2 AND from_ms < $3 ORDER BY from_ms',
        [serviceId, fromMs, toMs],
      );
      return r.rows.map((x) => ({ from: Number(x.from_ms), to: Number(x.to_ms), state: x.state }));
    },
    async saveBuckets(rows: BucketRow[]) {
      await pool.query(
        `INSERT INTO health_buckets (service_id, hour_ms, source, writer, count, errors, histogram)
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])
         ON CONFLICT (service_id, hour_ms, source, writer) DO UPDATE SET count = excluded.count, errors = excluded.errors, histogram = excluded.histogram`,
        [rows.map((r) => r.serviceId), rows.map((r) => r.hour), rows.map((r) => r.source), rows.map((r) => r.writer), rows.map((r) => r.count), rows.map((r) => r.errors), rows.map((r) => r.histogram)],
      );
    },
    async ownBuckets(writer, keys) {
      const r = await pool.query<{ service_id: string; hour_ms: string; source: Source; count: string; errors: string; histogram: string }>(
        `SELECT b.service_id, b.hour_ms, b.source, b.count, b.errors, b.histogram
           FROM health_buckets b JOIN unnest($2::text[], $3::bigint[], $4::text[]) AS k(s, h, src) ON b.service_id = k.s AND b.hour_ms = k.h AND b.source = k.src
          WHERE b.writer = $1`,
        [writer, keys.map((k) => k.serviceId), keys.map((k) => k.hour), keys.map((k) => k.source)],
      );
      return r.rows.map((x) => ({ serviceId: x.service_id, hour: Number(x.hour_ms), source: x.source, writer, count: Number(x.count), errors: Number(x.errors), histogram: x.histogram }));
    },
    async bucketsBetween(serviceId, fromHour, toHour) {
      const r = await pool.query<{ hour_ms: string; source: Source; writer: string; count: string; errors: string; histogram: string }>(
        'SELECT hour_ms, source, writer, count, errors, histogram FROM health_buckets WHERE service_id = $1 AND hour_ms >= $2 AND hour_ms < $3',
        [serviceId, fromHour, toHour],
      );
      return r.rows.map((x) => ({ serviceId, hour: Number(x.hour_ms), source: x.source, writer: x.writer, count: Number(x.count), errors: Number(x.errors), histogram: x.histogram }));
    },
    async prune(beforeMs) {
      await pool.query('DELETE FROM health_spans WHERE to_ms < $1', [beforeMs]);
      await pool.query('DELETE FROM health_buckets WHERE hour_ms < $1', [beforeMs]);
    },
  };
}
