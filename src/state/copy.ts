/**
 * Copies all state from one backend to another (`integration-agent state
 * migrate --to postgres://…`): credential versions (decrypted with the
 * source's master key and sealed again with the target's), the audit trail
 * (in order, with its times, ids and event keys), the health history
 * (spans and every writer's histogram rows) and the webhook dead letters
 * (with their ids). Runs in one transaction on the target: all or nothing.
 */
import type { Database } from 'better-sqlite3';
import type { Pool, PoolClient } from 'pg';
import type { SecretCipher } from './crypto';
import type { PostgresState } from './postgres';
import { inTransaction } from './postgres/database';
import type { SqliteState } from './sqlite';

/** What was copied, by kind. */
export interface CopyCounts {
  credentials: number;
  credentialVersions: number;
  auditEntries: number;
  healthSpans: number;
  healthBuckets: number;
  deadLetters: number;
}

export interface CopyOptions {
  /** Decrypts the source's secrets (its master key and old keys). */
  sourceCipher: SecretCipher;
  /** Encrypts them for the target. */
  targetCipher: SecretCipher;
  /** Copy into a target that already holds state (rows already there are kept); default false. */
  force?: boolean;
  /** Rows read per query; default 1000. */
  pageSize?: number;
}

/** The target already holds state and `force` was not given. */
export class TargetNotEmptyError extends Error {
  constructor(readonly counts: Partial<Record<string, number>>) {
    super(
      `the target database already holds state (${Object.entries(counts)
        .map(([t, n]) => `${n} ${t}`)
        .join(', ')}): pass --force to copy into it anyway (rows already there are kept), or point --to at an empty database`,
    );
    this.name = 'TargetNotEmptyError';
  }
}

const TABLES = ['credential_versions', 'credential_audit', 'health_spans', 'health_buckets', 'webhook_dead_letters'] as const;

type Row = Record<string, unknown>;
type Reader = (sql: string, params: unknown[]) => Promise<Row[]>;

function readerOf(source: SqliteState | PostgresState): Reader {
  if (source.kind === 'sqlite') {
    const db: Database = source.db;
    return async (sql, params) => db.prepare(sql).all(...params) as Row[];
  }
  const pool: Pool = source.pool;
  return async (sql, params) => {
    let n = 0;
    return (await pool.query(sql.replace(/\?/g, () => `$${++n}`), params)).rows as Row[];
  };
}

/** Rows of a table in pages of `size`, ordered by an increasing integer column `key`. */
async function* paged(read: Reader, table: string, key: string, size: number): AsyncGenerator<Row[]> {
  let after = -Number.MAX_SAFE_INTEGER;
  for (;;) {
    const rows = await read(`SELECT * FROM ${table} WHERE ${key} > ? ORDER BY ${key} LIMIT ?`, [after, size]);
    if (rows.length === 0) return;
    yield rows;
    after = Number(rows[rows.length - 1]![key]);
    if (rows.length < size) return;
  }
}

/** Row counts of the state tables on a PostgreSQL connection. */
async function countsOf(c: PoolClient): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const t of TABLES) out[t] = Number((await c.query<{ n: string }>(`SELECT COUNT(*) AS n FROM ${t}`)).rows[0]!.n);
  return out;
}

/** Moves a sequence past the ids copied, so new rows get fresh ids. */
async function bumpSequence(c: PoolClient, table: string): Promise<void> {
  await c.query(`SELECT setval(pg_get_serial_sequence('${table}', 'id'), GREATEST((SELECT COALESCE(MAX(id), 0) FROM ${table}), 1))`);
}

/**
 * Copies every row of `source` into `target` (a migrated PostgreSQL backend).
 * @returns the counts copied (rows already in the target with the same key are not counted).
 * @throws TargetNotEmptyError when the target holds state and `force` is not set;
 *   Error when a secret cannot be decrypted with the source's keys (nothing is copied then).
 */
export async function copyState(source: SqliteState | PostgresState, target: PostgresState, opts: CopyOptions): Promise<CopyCounts> {
  const read = readerOf(source);
  const size = opts.pageSize ?? 1000;
  const out: CopyCounts = { credentials: 0, credentialVersions: 0, auditEntries: 0, healthSpans: 0, healthBuckets: 0, deadLetters: 0 };
  return inTransaction(target.pool, async (c) => {
    const before = await countsOf(c);
    const nonEmpty = Object.fromEntries(Object.entries(before).filter(([, n]) => n > 0));
    if (Object.keys(nonEmpty).length > 0 && !opts.force) throw new TargetNotEmptyError(nonEmpty);

    const versions = await read('SELECT * FROM credential_versions ORDER BY credential_id, created_at, version_id', []);
    const credentials = new Set<string>();
    for (const r of versions) {
      const credentialId = String(r.credential_id);
      const versionId = String(r.version_id);
      const secret = opts.sourceCipher.open(credentialId, versionId, { iv: r.iv as Buffer, tag: r.tag as Buffer, ciphertext: r.ciphertext as Buffer, key_id: String(r.key_id) });
      const sealed = opts.targetCipher.seal(credentialId, versionId, secret);
      const res = await c.query(
        `INSERT INTO credential_versions (credential_id, version_id, label, iv, tag, ciphertext, key_id, created_at, created_by, revoked_at, version_id_source, superseded_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (credential_id, version_id) DO NOTHING`,
        [credentialId, versionId, r.label, sealed.iv, sealed.tag, sealed.ciphertext, sealed.key_id, r.created_at, r.created_by, r.revoked_at, r.version_id_source === 'local' ? 'local' : 'issuer', r.superseded_by ?? null],
      );
      out.credentialVersions += res.rowCount ?? 0;
      if (res.rowCount) credentials.add(credentialId);
    }
    out.credentials = credentials.size;
    if (versions.length > 0) await c.query(`SELECT pg_notify('integration_agent_credentials', '')`);

    // Ids are kept where the target table was empty (cursors and references stay valid), else new ones are given in order.
    const keepAuditIds = before.credential_audit === 0;
    for await (const rows of paged(read, 'credential_audit', 'id', size)) {
      for (const r of rows) {
        const cols = ['at', 'credential_id', 'step', 'service_id', 'version_id', 'outcome', 'actor', 'detail', 'event_key'];
        const vals = [r.at, r.credential_id, r.step, r.service_id, r.version_id, r.outcome, r.actor, r.detail, r.event_key ?? null];
        if (keepAuditIds) {
          cols.unshift('id');
          vals.unshift(r.id);
        }
        const res = await c.query(`INSERT INTO credential_audit (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT DO NOTHING`, vals);
        out.auditEntries += res.rowCount ?? 0;
      }
    }
    if (keepAuditIds) await bumpSequence(c, 'credential_audit');

    for await (const rows of paged(read, 'health_spans', 'id', size)) {
      const res = await c.query(
        `INSERT INTO health_spans (service_id, from_ms, to_ms, state) SELECT s, f, t, st FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) WITH ORDINALITY AS i(s, f, t, st, n) ORDER BY n`,
        [rows.map((r) => r.service_id), rows.map((r) => r.from_ms), rows.map((r) => r.to_ms), rows.map((r) => r.state)],
      );
      out.healthSpans += res.rowCount ?? 0;
    }

    const buckets = await read('SELECT * FROM health_buckets ORDER BY service_id, hour_ms, source, writer', []);
    for (let i = 0; i < buckets.length; i += size) {
      const rows = buckets.slice(i, i + size);
      const res = await c.query(
        `INSERT INTO health_buckets (service_id, hour_ms, source, writer, count, errors, histogram)
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[]) ON CONFLICT DO NOTHING`,
        [rows.map((r) => r.service_id), rows.map((r) => r.hour_ms), rows.map((r) => r.source), rows.map((r) => r.writer), rows.map((r) => r.count), rows.map((r) => r.errors), rows.map((r) => r.histogram)],
      );
      out.healthBuckets += res.rowCount ?? 0;
    }

    const keepDeadLetterIds = before.webhook_dead_letters === 0;
    for await (const rows of paged(read, 'webhook_dead_letters', 'id', size)) {
      for (const r of rows) {
        const cols = ['event_id', 'subscriber_id', 'endpoints', 'payload', 'idempotency_key', 'attempts', 'last_error', 'workflow_id', 'created_at', 'updated_at', 'resolved_at', 'resolved_by'];
        const vals: unknown[] = cols.map((k) => r[k]);
        if (keepDeadLetterIds) {
          cols.unshift('id');
          vals.unshift(r.id);
        }
        const res = await c.query(`INSERT INTO webhook_dead_letters (${cols.join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT DO NOTHING`, vals);
        out.deadLetters += res.rowCount ?? 0;
      }
    }
    if (keepDeadLetterIds) await bumpSequence(c, 'webhook_dead_letters');
    return out;
  });
}
