/**
 * The schema, as one ordered list of versioned migrations with a SQLite and a
 * PostgreSQL variant each, run by umzug at `openState` (sqlite/migrate.ts,
 * postgres/migrate.ts). A migration is applied once per database, in one
 * transaction with the row that records it; several processes starting at
 * once are serialised by a lock (SQLite: an immediate transaction;
 * PostgreSQL: an advisory lock). Never edit a released migration: add one.
 *
 * 0001 creates the schema the embedded file had before migrations existed,
 * with `CREATE … IF NOT EXISTS`, so existing data dirs upgrade in place.
 */
import { randomUUID } from 'node:crypto';
import type { Database } from 'better-sqlite3';
import type { PoolClient } from 'pg';
import { ADMISSION_SCHEMA } from '../admission/schema';

export interface StateMigration {
  /** Unique, sortable: `NNNN-what`. */
  name: string;
  sqlite(db: Database): void;
  postgres(client: PoolClient): Promise<void>;
}

export const MIGRATIONS: readonly StateMigration[] = [
  {
    name: '0001-initial',
    sqlite(db) {
      db.exec(`
        CREATE TABLE IF NOT EXISTS credential_versions (
          credential_id TEXT NOT NULL,
          version_id    TEXT NOT NULL,
          label         TEXT CHECK (label IN ('CURRENT','PENDING','PREVIOUS')),
          iv            BLOB NOT NULL,
          tag           BLOB NOT NULL,
          ciphertext    BLOB NOT NULL,
          key_id        TEXT NOT NULL,
          created_at    INTEGER NOT NULL,
          created_by    TEXT NOT NULL,
          revoked_at    INTEGER,
          PRIMARY KEY (credential_id, version_id)
        );
        CREATE UNIQUE INDEX IF NOT EXISTS credential_versions_label ON credential_versions (credential_id, label) WHERE label IS NOT NULL;
        CREATE TABLE IF NOT EXISTS credential_audit (
          id            INTEGER PRIMARY KEY AUTOINCREMENT,
          at            INTEGER NOT NULL,
          credential_id TEXT NOT NULL,
          step          TEXT NOT NULL,
          service_id    TEXT,
          version_id    TEXT,
          outcome       TEXT NOT NULL,
          actor         TEXT NOT NULL,
          detail        TEXT
        );
        CREATE INDEX IF NOT EXISTS credential_audit_credential ON credential_audit (credential_id, id);
        CREATE TRIGGER IF NOT EXISTS credential_audit_no_update BEFORE UPDATE ON credential_audit
          BEGIN SELECT RAISE(ABORT, 'credential_audit is append-only'); END;
        CREATE TRIGGER IF NOT EXISTS credential_audit_no_delete BEFORE DELETE ON credential_audit
          BEGIN SELECT RAISE(ABORT, 'credential_audit is append-only'); END;
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
        CREATE TABLE IF NOT EXISTS webhook_dead_letters (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          event_id TEXT NOT NULL,
          subscriber_id TEXT NOT NULL,
          endpoints TEXT NOT NULL,
          payload TEXT NOT NULL,
          idempotency_key TEXT NOT NULL,
          attempts INTEGER NOT NULL,
          last_error TEXT NOT NULL,
          workflow_id TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          resolved_at INTEGER,
          resolved_by TEXT,
          UNIQUE (workflow_id, subscriber_id)
        );
        CREATE INDEX IF NOT EXISTS webhook_dead_letters_open ON webhook_dead_letters (resolved_at, id);
        CREATE TABLE IF NOT EXISTS state_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      `);
      db.prepare(`INSERT OR IGNORE INTO state_meta (key, value) VALUES ('instance_id', ?)`).run(randomUUID());
    },
    async postgres(c) {
      await c.query(`
        CREATE TABLE IF NOT EXISTS credential_versions (
          credential_id TEXT NOT NULL,
          version_id    TEXT NOT NULL,
          label         TEXT CHECK (label IN ('CURRENT','PENDING','PREVIOUS')),
          iv            BYTEA NOT NULL,
          tag           BYTEA NOT NULL,
          ciphertext    BYTEA NOT NULL,
          key_id        TEXT NOT NULL,
          created_at    BIGINT NOT NULL,
          created_by    TEXT NOT NULL,
          revoked_at    BIGINT,
          seq           BIGSERIAL NOT NULL,
          PRIMARY KEY (credential_id, version_id)
        );
        CREATE UNIQUE INDEX IF NOT EXISTS credential_versions_label ON credential_versions (credential_id, label) WHERE label IS NOT NULL;
        CREATE TABLE IF NOT EXISTS credential_audit (
          id            BIGSERIAL PRIMARY KEY,
          at            BIGINT NOT NULL,
          credential_id TEXT NOT NULL,
          step          TEXT NOT NULL,
          service_id    TEXT,
          version_id    TEXT,
          outcome       TEXT NOT NULL,
          actor         TEXT NOT NULL,
          detail        TEXT
        );
        CREATE INDEX IF NOT EXISTS credential_audit_credential ON credential_audit (credential_id, id);
        CREATE OR REPLACE FUNCTION credential_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN RAISE EXCEPTION 'credential_audit is append-only'; END $$;
        DROP TRIGGER IF EXISTS credential_audit_no_change ON credential_audit;
        CREATE TRIGGER credential_audit_no_change BEFORE UPDATE OR DELETE ON credential_audit
          FOR EACH ROW EXECUTE FUNCTION credential_audit_append_only();
        DROP TRIGGER IF EXISTS credential_audit_no_truncate ON credential_audit;
        CREATE TRIGGER credential_audit_no_truncate BEFORE TRUNCATE ON credential_audit
          FOR EACH STATEMENT EXECUTE FUNCTION credential_audit_append_only();
        CREATE TABLE IF NOT EXISTS health_spans (
          id BIGSERIAL PRIMARY KEY,
          service_id TEXT NOT NULL,
          from_ms BIGINT NOT NULL,
          to_ms BIGINT NOT NULL,
          state TEXT NOT NULL CHECK (state IN ('up', 'down', 'excluded'))
        );
        CREATE INDEX IF NOT EXISTS health_spans_by_service ON health_spans (service_id, to_ms);
        CREATE TABLE IF NOT EXISTS health_buckets (
          service_id TEXT NOT NULL,
          hour_ms BIGINT NOT NULL,
          source TEXT NOT NULL,
          count BIGINT NOT NULL,
          errors BIGINT NOT NULL,
          histogram TEXT NOT NULL,
          PRIMARY KEY (service_id, hour_ms, source)
        );
        CREATE TABLE IF NOT EXISTS webhook_dead_letters (
          id BIGSERIAL PRIMARY KEY,
          event_id TEXT NOT NULL,
          subscriber_id TEXT NOT NULL,
          endpoints TEXT NOT NULL,
          payload TEXT NOT NULL,
          idempotency_key TEXT NOT NULL,
          attempts INTEGER NOT NULL,
          last_error TEXT NOT NULL,
          workflow_id TEXT NOT NULL,
          created_at BIGINT NOT NULL,
          updated_at BIGINT NOT NULL,
          resolved_at BIGINT,
          resolved_by TEXT,
          UNIQUE (workflow_id, subscriber_id)
        );
        CREATE INDEX IF NOT EXISTS webhook_dead_letters_open ON webhook_dead_letters (resolved_at, id);
        CREATE TABLE IF NOT EXISTS state_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      `);
      await c.query(`INSERT INTO state_meta (key, value) VALUES ('instance_id', $1) ON CONFLICT (key) DO NOTHING`, [randomUUID()]);
    },
  },
  {
    // Several writers: audit entries with an idempotency key; one histogram row per writer process; latest span by service.
    name: '0002-shared-writers',
    sqlite(db) {
      const cols = db.prepare(`SELECT name FROM pragma_table_info('credential_audit')`).pluck().all() as string[];
      if (!cols.includes('event_key')) db.exec('ALTER TABLE credential_audit ADD COLUMN event_key TEXT');
      db.exec(`
        CREATE UNIQUE INDEX IF NOT EXISTS credential_audit_event_key ON credential_audit (event_key);
        CREATE INDEX IF NOT EXISTS health_spans_latest ON health_spans (service_id, from_ms);
        CREATE TABLE health_buckets_by_writer (
          service_id TEXT NOT NULL,
          hour_ms INTEGER NOT NULL,
          source TEXT NOT NULL,
          writer TEXT NOT NULL,
          count INTEGER NOT NULL,
          errors INTEGER NOT NULL,
          histogram TEXT NOT NULL,
          PRIMARY KEY (service_id, hour_ms, source, writer)
        );
        INSERT INTO health_buckets_by_writer (service_id, hour_ms, source, writer, count, errors, histogram)
          SELECT service_id, hour_ms, source, 'legacy', count, errors, histogram FROM health_buckets;
        DROP TABLE health_buckets;
        ALTER TABLE health_buckets_by_writer RENAME TO health_buckets;
      `);
    },
    async postgres(c) {
      await c.query(`
        ALTER TABLE credential_audit ADD COLUMN IF NOT EXISTS event_key TEXT;
        CREATE UNIQUE INDEX IF NOT EXISTS credential_audit_event_key ON credential_audit (event_key);
        CREATE INDEX IF NOT EXISTS health_spans_latest ON health_spans (service_id, from_ms);
        ALTER TABLE health_buckets ADD COLUMN IF NOT EXISTS writer TEXT NOT NULL DEFAULT 'legacy';
        ALTER TABLE health_buckets ALTER COLUMN writer DROP DEFAULT;
        ALTER TABLE health_buckets DROP CONSTRAINT IF EXISTS health_buckets_pkey;
        ALTER TABLE health_buckets ADD PRIMARY KEY (service_id, hour_ms, source, writer);
      `);
    },
  },
  {
    // Cluster-wide admission (src/state/admission/postgres.ts): PostgreSQL only; the embedded backend admits per process.
    name: '0003-cluster-admission',
    sqlite() {},
    async postgres(c) {
      await c.query(ADMISSION_SCHEMA);
    },
  },
  {
    // Where a version id comes from: `issuer` (minted, or imported with --version-id) or `local` (invented by
    // `credentials import`, never seen by the issuer, so never revocable there by id). Every import before this
    // migration invented its id (the CLI had no --version-id), hence the backfill.
    name: '0004-version-id-source',
    sqlite(db) {
      const cols = db.prepare(`SELECT name FROM pragma_table_info('credential_versions')`).pluck().all() as string[];
      if (!cols.includes('version_id_source')) {
        db.exec(`ALTER TABLE credential_versions ADD COLUMN version_id_source TEXT NOT NULL DEFAULT 'issuer' CHECK (version_id_source IN ('issuer','local'))`);
      }
      db.exec(`UPDATE credential_versions SET version_id_source = 'local' WHERE created_by = 'import'`);
    },
    async postgres(c) {
      await c.query(`
        ALTER TABLE credential_versions ADD COLUMN IF NOT EXISTS version_id_source TEXT NOT NULL DEFAULT 'issuer' CHECK (version_id_source IN ('issuer','local'));
        UPDATE credential_versions SET version_id_source = 'local' WHERE created_by = 'import';
      `);
    },
  },
  {
    // A leftover PENDING replaced by a forced rotation keeps a marker until the issuer revokes it
    // (`supersededBy`: the version that took its PENDING label), so the store never loses track of a
    // version some consumer may still hold (docs/rotation.md, "Repairing an interrupted rotation").
    name: '0005-superseded-pending',
    sqlite(db) {
      const cols = db.prepare(`SELECT name FROM pragma_table_info('credential_versions')`).pluck().all() as string[];
      if (!cols.includes('superseded_by')) db.exec('ALTER TABLE credential_versions ADD COLUMN superseded_by TEXT');
    },
    async postgres(c) {
      await c.query('ALTER TABLE credential_versions ADD COLUMN IF NOT EXISTS superseded_by TEXT');
    },
  },
];
