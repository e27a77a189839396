/**
 * The credential store: versioned secrets with AWS Secrets Manager staging
 * labels (CURRENT, PENDING, PREVIOUS) and an append-only audit trail.
 *
 * {@link SqliteCredentialStore} is the embedded default (better-sqlite3, the
 * shared database from `openDatabase(dataDir)`); a shared server store
 * (PostgreSQL, Vault) implements {@link CredentialStore}.
 *
 * Secret values are encrypted at rest with AES-256-GCM (NIST SP 800-38D: a
 * fresh 96-bit IV per value, 128-bit tag, the credential and version ids as
 * additional authenticated data so a ciphertext cannot be moved to another
 * row). The master key comes from `INTEGRATION_AGENT_MASTER_KEY` (base64 of
 * 32 bytes) or from `<dataDir>/master.key`, created with mode 0600 on first run.
 * Secret values never appear in errors, logs or the audit trail.
 */
import { performance } from 'node:perf_hooks';
import { createCipheriv, createDecipheriv, createHash, randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StagingLabel } from '../domain/rotation';
import { openDatabase, type Db } from './db';
import type { SecretReader } from './ports';

/** One version of a credential, without its value. */
export interface CredentialVersion {
  credentialId: string;
  versionId: string;
  /** Staging label, or null for a deprecated version. */
  label: StagingLabel | null;
  /** Epoch ms. */
  createdAt: number;
  /** Epoch ms the issuer confirmed the revocation, or null. */
  revokedAt: number | null;
  /** Who created it: `import`, or the rotation (`rotation/<id>#<runId>`) that minted it. */
  createdBy: string;
}

/** One line of the audit trail. Never holds a secret value. */
export interface AuditEntry {
  id: number;
  /** Epoch ms. */
  at: number;
  credentialId: string;
  /** e.g. `import`, `mint`, `install`, `verify`, `finish`, `revoke`, `restore`, `discard_pending`, `rotation`. */
  step: string;
  serviceId: string | null;
  versionId: string | null;
  /** `ok`, `failed`, `started`, `completed`, `rolled_back`, `needs_attention`, ... */
  outcome: string;
  /** Who acted: `cli:<user>`, or `rotation/<id>#<runId>`. */
  actor: string;
  /** One line of detail (an error message), never a secret. */
  detail: string | null;
}

export type NewAuditEntry = Omit<AuditEntry, 'id' | 'at'> & { at?: number };

/** Summary of one credential for listings. */
export interface CredentialSummary {
  credentialId: string;
  current: string | null;
  pending: string | null;
  previous: string | null;
  versions: number;
  /** Epoch ms of the last audit entry, or null. */
  lastActivityAt: number | null;
}

/**
 * What rotation needs from a store. Implementations must make each method
 * atomic; label moves happen in one transaction.
 */
export interface CredentialStore extends SecretReader {
  /** Version ids by label, or null. */
  labels(credentialId: string): Promise<Record<StagingLabel, CredentialVersion | null>>;
  getVersion(credentialId: string, versionId: string): Promise<CredentialVersion | undefined>;
  listVersions(credentialId: string): Promise<CredentialVersion[]>;
  /**
   * Credentials ordered by id. `after` starts the page after that id (a
   * cursor: pass the last id of the previous page); `limit` keeps at most
   * that many (default: all).
   */
  listCredentials(opts?: { after?: string; limit?: number }): Promise<CredentialSummary[]>;
  /**
   * Records an existing secret as CURRENT (the old CURRENT becomes PREVIOUS).
   * @returns the new version id.
   */
  importCurrent(credentialId: string, secret: string, actor: string, versionId?: string): Promise<string>;
  /**
   * Records `versionId` as PENDING, created by `createdBy`. Idempotent: when
   * that version is already PENDING it is kept as is.
   * @throws Error when another version is PENDING (a leftover of another run): call {@link discardPending} first.
   */
  putPending(credentialId: string, versionId: string, secret: string, createdBy: string): Promise<void>;
  /**
   * finishSecret: in one transaction, the old PREVIOUS loses its label, CURRENT
   * becomes PREVIOUS and PENDING `versionId` becomes CURRENT. Idempotent when
   * `versionId` is already CURRENT.
   * @returns the version now PREVIOUS (the old CURRENT), or null when there was none.
   * @throws Error when `versionId` is neither PENDING nor CURRENT.
   */
  promotePending(credentialId: string, versionId: string): Promise<string | null>;
  /** Removes the PENDING label from `versionId` (rollback); idempotent. */
  discardPending(credentialId: string, versionId: string): Promise<void>;
  /** Marks a version revoked at its issuer (epoch ms `at`); idempotent. */
  markRevoked(credentialId: string, versionId: string, at?: number): Promise<void>;
  /** Appends to the audit trail. */
  audit(entry: NewAuditEntry): Promise<void>;
  /**
   * Audit entries, oldest first; `credentialId` filters, `before` keeps
   * entries whose id is below it (a cursor: pass the first id of the previous
   * page to page back), `limit` keeps the newest n of those.
   */
  auditTrail(opts?: { credentialId?: string; limit?: number; before?: number }): Promise<AuditEntry[]>;
}

/** Loads the master key: env `INTEGRATION_AGENT_MASTER_KEY` (base64, 32 bytes) or `<dataDir>/master.key`, created (0600) when absent. */
export function loadMasterKey(dataDir: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  const fromEnv = env.INTEGRATION_AGENT_MASTER_KEY;
  if (fromEnv !== undefined && fromEnv !== '') {
    const key = Buffer.from(fromEnv, 'base64');
    if (key.length !== 32) {
      throw new RangeError(`INTEGRATION_AGENT_MASTER_KEY must be base64 of exactly 32 bytes (got ${key.length} bytes); generate one with: openssl rand -base64 32`);
    }
    return key;
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, 'master.key');
  try {
    // 'wx': only the first process to get here writes; the others read the same key.
    writeFileSync(path, randomBytes(32).toString('base64') + '\n', { flag: 'wx', mode: 0o600 });
    chmodSync(path, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) throw new Error(`${path} is readable by group or others (mode ${mode.toString(8)}): run chmod 600 ${path}`);
  const key = Buffer.from(readFileSync(path, 'utf8').trim(), 'base64');
  if (key.length !== 32) throw new Error(`${path} must hold base64 of exactly 32 bytes (got ${key.length} bytes)`);
  return key;
}

/** Key id of a master key: first 8 hex chars of its sha256 (recorded per row so old keys can be kept for decryption). */
export function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8);
}

const SCHEMA = `
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
`;

interface VersionRow {
  credential_id: string;
  version_id: string;
  label: StagingLabel | null;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
  key_id: string;
  created_at: number;
  created_by: string;
  revoked_at: number | null;
}

const toVersion = (r: VersionRow): CredentialVersion => ({
  credentialId: r.credential_id,
  versionId: r.version_id,
  label: r.label,
  createdAt: r.created_at,
  revokedAt: r.revoked_at,
  createdBy: r.created_by,
});

export interface SqliteCredentialStoreOptions {
  /** Folder of the shared database and of `master.key`. */
  dataDir: string;
  /** Master key (32 bytes); default {@link loadMasterKey}(dataDir). */
  masterKey?: Buffer;
  /** Older master keys still accepted for decryption. */
  oldKeys?: Buffer[];
  /** Clock, epoch ms (tests). */
  now?: () => number;
}

/**
 * Write counters per SQLite connection. Store instances on one data dir in
 * one process share a connection (`openDatabase`), and SQLite's
 * `data_version` does not move for a connection's own commits: each write
 * bumps this instead, and every instance's memo follows it.
 */
const WRITES = new WeakMap<Db, { count: number }>();

/** Longest time a commit by another connection can go unseen by {@link SqliteCredentialStore.readSecretSync}, ms. */
export const SECRET_RECHECK_MS = 1;

/** The embedded store: SQLite (better-sqlite3), values under AES-256-GCM. */
export class SqliteCredentialStore implements CredentialStore {
  private readonly db: Db;
  private readonly key: Buffer;
  private readonly keyId: string;
  private readonly keys: Map<string, Buffer>;
  private readonly now: () => number;
  /** Decrypted secrets by credential id (CURRENT) or `id\0versionId`; see {@link readSecretSync}. */
  private readonly secrets = new Map<string, string | undefined>();
  /** Writes through this connection (every store instance on it), shared; the memo is valid for one value. */
  private readonly connectionWrites: { count: number };
  private secretsWrites = -1;
  private secretsDataVersion = -1;
  /** performance.now() of the last data_version check. */
  private secretsCheckedAt = -Infinity;
  private dataVersionQuery: { get(): unknown } | undefined;

  constructor(opts: SqliteCredentialStoreOptions) {
    if (!opts || typeof opts.dataDir !== 'string' || opts.dataDir === '') throw new RangeError(`dataDir: expected a folder path, got ${JSON.stringify(opts?.dataDir)}`);
    this.key = opts.masterKey ?? loadMasterKey(opts.dataDir);
    if (this.key.length !== 32) throw new RangeError(`masterKey: expected 32 bytes, got ${this.key.length}`);
    this.keyId = keyId(this.key);
    this.keys = new Map([[this.keyId, this.key], ...(opts.oldKeys ?? []).map((k) => [keyId(k), k] as [string, Buffer])]);
    this.now = opts.now ?? Date.now;
    this.db = openDatabase(opts.dataDir);
    this.db.exec(SCHEMA);
    let writes = WRITES.get(this.db);
    if (writes === undefined) WRITES.set(this.db, (writes = { count: 0 }));
    this.connectionWrites = writes;
  }

  private encrypt(credentialId: string, versionId: string, secret: string) {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(`${credentialId}\0${versionId}`));
    const ciphertext = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
    return { iv, tag: cipher.getAuthTag(), ciphertext, key_id: this.keyId };
  }

  private decrypt(row: VersionRow): string {
    const key = this.keys.get(row.key_id);
    if (!key) throw new Error(`credential ${row.credential_id} version ${row.version_id} is encrypted under master key ${row.key_id}, which this store was not given`);
    const d = createDecipheriv('aes-256-gcm', key, row.iv);
    d.setAAD(Buffer.from(`${row.credential_id}\0${row.version_id}`));
    d.setAuthTag(row.tag);
    try {
      return Buffer.concat([d.update(row.ciphertext), d.final()]).toString('utf8');
    } catch {
      throw new Error(`credential ${row.credential_id} version ${row.version_id} failed authentication (wrong master key or tampered row)`);
    }
  }

  private row(credentialId: string, versionId: string): VersionRow | undefined {
    return this.db.prepare('SELECT * FROM credential_versions WHERE credential_id = ? AND version_id = ?').get(credentialId, versionId) as VersionRow | undefined;
  }

  private byLabel(credentialId: string, label: StagingLabel): VersionRow | undefined {
    return this.db.prepare('SELECT * FROM credential_versions WHERE credential_id = ? AND label = ?').get(credentialId, label) as VersionRow | undefined;
  }

  async readSecret(credentialId: string, versionId?: string): Promise<string | undefined> {
    return this.readSecretSync(credentialId, versionId);
  }

  /**
   * The secret of a version (default: CURRENT), decrypted; undefined when
   * there is no such version. What the coordinator calls on every request.
   *
   * Answers are kept decrypted in memory while the database is unchanged, so
   * a call costs a Map lookup instead of a query and an AES-GCM decryption.
   * Writes through this process's connection (this store, or another
   * instance on the same data dir) empty the memo at once. Commits by other
   * connections (the CLI, another worker on the same data dir) move SQLite's
   * `data_version` (https://sqlite.org/pragma.html#pragma_data_version),
   * which is read at most once per {@link SECRET_RECHECK_MS}: such a change
   * is seen within that time. A rotation keeps the previous version valid
   * for its grace period (minutes), so a call in that window that still
   * carries it authenticates.
   *
   * @throws Error when the row is encrypted under a master key this store was not given, or fails authentication.
   */
  readSecretSync(credentialId: string, versionId?: string): string | undefined {
    const now = performance.now();
    if (now - this.secretsCheckedAt >= SECRET_RECHECK_MS) {
      this.secretsCheckedAt = now;
      this.dataVersionQuery ??= this.db.prepare('PRAGMA data_version').pluck();
      const dataVersion = this.dataVersionQuery.get() as number;
      if (dataVersion !== this.secretsDataVersion) {
        this.secrets.clear();
        this.secretsDataVersion = dataVersion;
      }
    }
    if (this.connectionWrites.count !== this.secretsWrites) {
      this.secrets.clear();
      this.secretsWrites = this.connectionWrites.count;
    }
    const key = versionId === undefined ? credentialId : `${credentialId}\0${versionId}`;
    const known = this.secrets.get(key);
    if (known !== undefined || this.secrets.has(key)) return known;
    const row = versionId === undefined ? this.byLabel(credentialId, 'CURRENT') : this.row(credentialId, versionId);
    const secret = row ? this.decrypt(row) : undefined;
    if (this.secrets.size >= 1024) this.secrets.clear();
    this.secrets.set(key, secret);
    return secret;
  }

  async labels(credentialId: string): Promise<Record<StagingLabel, CredentialVersion | null>> {
    const rows = this.db.prepare('SELECT * FROM credential_versions WHERE credential_id = ? AND label IS NOT NULL').all(credentialId) as VersionRow[];
    const out: Record<StagingLabel, CredentialVersion | null> = { CURRENT: null, PENDING: null, PREVIOUS: null };
    for (const r of rows) out[r.label!] = toVersion(r);
    return out;
  }

  async getVersion(credentialId: string, versionId: string): Promise<CredentialVersion | undefined> {
    const r = this.row(credentialId, versionId);
    return r ? toVersion(r) : undefined;
  }

  async listVersions(credentialId: string): Promise<CredentialVersion[]> {
    return (this.db.prepare('SELECT * FROM credential_versions WHERE credential_id = ? ORDER BY created_at, rowid').all(credentialId) as VersionRow[]).map(toVersion);
  }

  async listCredentials(opts: { after?: string; limit?: number } = {}): Promise<CredentialSummary[]> {
    const rows = this.db
      .prepare(
        `SELECT c.credential_id AS id,
           MAX(CASE WHEN label = 'CURRENT' THEN version_id END) AS cur,
           MAX(CASE WHEN label = 'PENDING' THEN version_id END) AS pen,
           MAX(CASE WHEN label = 'PREVIOUS' THEN version_id END) AS prev,
           COUNT(*) AS n,
           (SELECT MAX(at) FROM credential_audit a WHERE a.credential_id = c.credential_id) AS last
         FROM credential_versions c WHERE c.credential_id > ? GROUP BY c.credential_id ORDER BY c.credential_id LIMIT ?`,
      )
      .all(opts.after ?? '', opts.limit ?? -1) as Array<{ id: string; cur: string | null; pen: string | null; prev: string | null; n: number; last: number | null }>;
    return rows.map((r) => ({ credentialId: r.id, current: r.cur, pending: r.pen, previous: r.prev, versions: r.n, lastActivityAt: r.last }));
  }

  async importCurrent(credentialId: string, secret: string, actor: string, versionId: string = `v-${randomUUID().slice(0, 12)}`): Promise<string> {
    if (typeof secret !== 'string' || secret.length === 0) throw new RangeError(`credentials import ${credentialId}: the secret is empty`);
    const enc = this.encrypt(credentialId, versionId, secret);
    const now = this.now();
    this.db.transaction(() => {
      this.connectionWrites.count++;
      this.db.prepare(`UPDATE credential_versions SET label = NULL WHERE credential_id = ? AND label = 'PREVIOUS'`).run(credentialId);
      this.db.prepare(`UPDATE credential_versions SET label = 'PREVIOUS' WHERE credential_id = ? AND label = 'CURRENT'`).run(credentialId);
      this.db
        .prepare(
          `INSERT INTO credential_versions (credential_id, version_id, label, iv, tag, ciphertext, key_id, created_at, created_by) VALUES (?, ?, 'CURRENT', ?, ?, ?, ?, ?, ?)`,
        )
        .run(credentialId, versionId, enc.iv, enc.tag, enc.ciphertext, enc.key_id, now, 'import');
      this.insertAudit({ credentialId, step: 'import', serviceId: null, versionId, outcome: 'ok', actor, detail: null, at: now });
    })();
    return versionId;
  }

  async putPending(credentialId: string, versionId: string, secret: string, createdBy: string): Promise<void> {
    this.db.transaction(() => {
      this.connectionWrites.count++;
      const pending = this.byLabel(credentialId, 'PENDING');
      if (pending && pending.version_id === versionId) return;
      if (pending) {
        throw new Error(
          `credential ${credentialId} already has PENDING version ${pending.version_id} (created by ${pending.created_by}); finish or discard it before minting another`,
        );
      }
      if (this.row(credentialId, versionId)) throw new Error(`credential ${credentialId} version ${versionId} already exists; the issuer reused a version id`);
      const enc = this.encrypt(credentialId, versionId, secret);
      this.db
        .prepare(
          `INSERT INTO credential_versions (credential_id, version_id, label, iv, tag, ciphertext, key_id, created_at, created_by) VALUES (?, ?, 'PENDING', ?, ?, ?, ?, ?, ?)`,
        )
        .run(credentialId, versionId, enc.iv, enc.tag, enc.ciphertext, enc.key_id, this.now(), createdBy);
    })();
  }

  async promotePending(credentialId: string, versionId: string): Promise<string | null> {
    return this.db.transaction(() => {
      this.connectionWrites.count++;
      const row = this.row(credentialId, versionId);
      if (row?.label === 'CURRENT') return this.byLabel(credentialId, 'PREVIOUS')?.version_id ?? null;
      if (row?.label !== 'PENDING') {
        throw new Error(`credential ${credentialId} version ${versionId} is ${row ? (row.label ?? 'deprecated') : 'unknown'}, not PENDING: cannot finish`);
      }
      const current = this.byLabel(credentialId, 'CURRENT');
      this.db.prepare(`UPDATE credential_versions SET label = NULL WHERE credential_id = ? AND label = 'PREVIOUS'`).run(credentialId);
      this.db.prepare(`UPDATE credential_versions SET label = 'PREVIOUS' WHERE credential_id = ? AND label = 'CURRENT'`).run(credentialId);
      this.db.prepare(`UPDATE credential_versions SET label = 'CURRENT' WHERE credential_id = ? AND version_id = ?`).run(credentialId, versionId);
      return current?.version_id ?? null;
    })();
  }

  async discardPending(credentialId: string, versionId: string): Promise<void> {
    this.connectionWrites.count++;
    this.db.prepare(`UPDATE credential_versions SET label = NULL WHERE credential_id = ? AND version_id = ? AND label = 'PENDING'`).run(credentialId, versionId);
  }

  async markRevoked(credentialId: string, versionId: string, at: number = this.now()): Promise<void> {
    this.connectionWrites.count++;
    this.db.prepare('UPDATE credential_versions SET revoked_at = ? WHERE credential_id = ? AND version_id = ? AND revoked_at IS NULL').run(at, credentialId, versionId);
  }

  private insertAudit(e: NewAuditEntry): void {
    this.db
      .prepare('INSERT INTO credential_audit (at, credential_id, step, service_id, version_id, outcome, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(e.at ?? this.now(), e.credentialId, e.step, e.serviceId ?? null, e.versionId ?? null, e.outcome, e.actor, e.detail ?? null);
  }

  async audit(entry: NewAuditEntry): Promise<void> {
    this.insertAudit(entry);
  }

  async auditTrail(opts: { credentialId?: string; limit?: number; before?: number } = {}): Promise<AuditEntry[]> {
    const limit = opts.limit ?? -1;
    const before = opts.before ?? Number.MAX_SAFE_INTEGER;
    const rows = (
      opts.credentialId === undefined
        ? this.db.prepare('SELECT * FROM credential_audit WHERE id < ? ORDER BY id DESC LIMIT ?').all(before, limit)
        : this.db.prepare('SELECT * FROM credential_audit WHERE credential_id = ? AND id < ? ORDER BY id DESC LIMIT ?').all(opts.credentialId, before, limit)
    ) as Array<{ id: number; at: number; credential_id: string; step: string; service_id: string | null; version_id: string | null; outcome: string; actor: string; detail: string | null }>;
    return rows.reverse().map((r) => ({
      id: r.id,
      at: r.at,
      credentialId: r.credential_id,
      step: r.step,
      serviceId: r.service_id,
      versionId: r.version_id,
      outcome: r.outcome,
      actor: r.actor,
      detail: r.detail,
    }));
  }
}
