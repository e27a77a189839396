/**
 * The credential store on the embedded database (better-sqlite3): label
 * moves in one transaction, values under AES-256-GCM (../crypto.ts), and a
 * synchronous fast path for the coordinator ({@link SqliteCredentialStore.readSecretSync}).
 */
import { performance } from 'node:perf_hooks';
import { randomUUID } from 'node:crypto';
import type { StagingLabel } from '../../domain/rotation';
import type { SecretCipher } from '../crypto';
import type { AuditEntry, CredentialStore, CredentialSummary, CredentialVersion, NewAuditEntry, VersionIdSource } from '../types';
import type { Db } from './database';
import { notPending, pendingExists, toAuditEntry, toVersion, versionExists, versionReused, type AuditRow, type VersionRow } from '../rows';

/**
 * Write counters per SQLite connection. Store instances on one data dir in
 * one process share a connection, and SQLite's `data_version` does not move
 * for a connection's own commits: each write bumps this instead, and every
 * instance's memo follows it.
 */
const WRITES = new WeakMap<Db, { count: number }>();

/** Longest time a commit by another connection can go unseen by {@link SqliteCredentialStore.readSecretSync}, ms. */
export const SECRET_RECHECK_MS = 1;

/** The embedded store: SQLite (better-sqlite3), values under AES-256-GCM. */
export class SqliteCredentialStore implements CredentialStore {
  /** Decrypted secrets by credential id (CURRENT) or `id\0versionId`; see {@link readSecretSync}. */
  private readonly secrets = new Map<string, string | undefined>();
  /** Writes through this connection (every store instance on it), shared; the memo is valid for one value. */
  private readonly connectionWrites: { count: number };
  private secretsWrites = -1;
  private secretsDataVersion = -1;
  /** performance.now() of the last data_version check. */
  private secretsCheckedAt = -Infinity;
  private dataVersionQuery: { get(): unknown } | undefined;
  /** Audit rows waiting for their group's commit ({@link audit}), in call order. */
  private auditQueue: Array<{ entry: NewAuditEntry; resolve(): void; reject(err: unknown): void }> = [];
  /** The scheduled write of {@link auditQueue}, while rows wait. */
  private auditFlush: NodeJS.Immediate | undefined;
  private insertAuditStmt: { run(...params: unknown[]): unknown } | undefined;

  /**
   * @param db a migrated connection (`openSqlite`).
   * @param cipher the master key (and old keys).
   * @param now clock, epoch ms.
   */
  constructor(private readonly db: Db, private readonly cipher: SecretCipher, private readonly now: () => number = Date.now) {
    let writes = WRITES.get(db);
    if (writes === undefined) WRITES.set(db, (writes = { count: 0 }));
    this.connectionWrites = writes;
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
    const secret = row ? this.cipher.open(row.credential_id, row.version_id, row) : undefined;
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
           GROUP_CONCAT(CASE WHEN superseded_by IS NOT NULL AND revoked_at IS NULL THEN version_id END, ' ') AS sup,
           COUNT(*) AS n,
           (SELECT MAX(at) FROM credential_audit a WHERE a.credential_id = c.credential_id) AS last
         FROM credential_versions c WHERE c.credential_id > ? GROUP BY c.credential_id ORDER BY c.credential_id LIMIT ?`,
      )
      .all(opts.after ?? '', opts.limit ?? -1) as Array<{ id: string; cur: string | null; pen: string | null; prev: string | null; sup: string | null; n: number; last: number | null }>;
    return rows.map((r) => ({ credentialId: r.id, current: r.cur, pending: r.pen, previous: r.prev, superseded: r.sup ? r.sup.split(' ').sort() : [], versions: r.n, lastActivityAt: r.last }));
  }

  async importCurrent(credentialId: string, secret: string, actor: string, issuerVersionId?: string): Promise<string> {
    if (typeof secret !== 'string' || secret.length === 0) throw new RangeError(`credentials import ${credentialId}: the secret is empty`);
    const versionId = issuerVersionId ?? `v-${randomUUID().slice(0, 12)}`;
    const source: VersionIdSource = issuerVersionId === undefined ? 'local' : 'issuer';
    const enc = this.cipher.seal(credentialId, versionId, secret);
    const now = this.now();
    this.db.transaction(() => {
      this.connectionWrites.count++;
      if (this.row(credentialId, versionId)) throw versionExists(credentialId, versionId);
      this.db.prepare(`UPDATE credential_versions SET label = NULL WHERE credential_id = ? AND label = 'PREVIOUS'`).run(credentialId);
      this.db.prepare(`UPDATE credential_versions SET label = 'PREVIOUS' WHERE credential_id = ? AND label = 'CURRENT'`).run(credentialId);
      this.db
        .prepare(
          `INSERT INTO credential_versions (credential_id, version_id, label, iv, tag, ciphertext, key_id, created_at, created_by, version_id_source) VALUES (?, ?, 'CURRENT', ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(credentialId, versionId, enc.iv, enc.tag, enc.ciphertext, enc.key_id, now, 'import', source);
      this.insertAudit({ credentialId, step: 'import', serviceId: null, versionId, outcome: 'ok', actor, detail: null, at: now });
    }).immediate();
    return versionId;
  }

  async putPending(credentialId: string, versionId: string, secret: string, createdBy: string, opts: { supersede?: string } = {}): Promise<void> {
    this.db.transaction(() => {
      this.connectionWrites.count++;
      const pending = this.byLabel(credentialId, 'PENDING');
      if (pending && pending.version_id === versionId) return;
      if (pending && pending.version_id === opts.supersede) {
        this.db.prepare(`UPDATE credential_versions SET label = NULL, superseded_by = ? WHERE credential_id = ? AND version_id = ?`).run(versionId, credentialId, pending.version_id);
      } else if (pending) throw pendingExists(credentialId, pending.version_id, pending.created_by);
      if (this.row(credentialId, versionId)) throw versionReused(credentialId, versionId);
      const enc = this.cipher.seal(credentialId, versionId, secret);
      this.db
        .prepare(
          `INSERT INTO credential_versions (credential_id, version_id, label, iv, tag, ciphertext, key_id, created_at, created_by) VALUES (?, ?, 'PENDING', ?, ?, ?, ?, ?, ?)`,
        )
        .run(credentialId, versionId, enc.iv, enc.tag, enc.ciphertext, enc.key_id, this.now(), createdBy);
    }).immediate();
  }

  async promotePending(credentialId: string, versionId: string): Promise<string | null> {
    return this.db.transaction(() => {
      this.connectionWrites.count++;
      const row = this.row(credentialId, versionId);
      if (row?.label === 'CURRENT') return this.byLabel(credentialId, 'PREVIOUS')?.version_id ?? null;
      if (row?.label !== 'PENDING') throw notPending(credentialId, versionId, row ? row.label : undefined);
      const current = this.byLabel(credentialId, 'CURRENT');
      this.db.prepare(`UPDATE credential_versions SET label = NULL WHERE credential_id = ? AND label = 'PREVIOUS'`).run(credentialId);
      this.db.prepare(`UPDATE credential_versions SET label = 'PREVIOUS' WHERE credential_id = ? AND label = 'CURRENT'`).run(credentialId);
      this.db.prepare(`UPDATE credential_versions SET label = 'CURRENT' WHERE credential_id = ? AND version_id = ?`).run(credentialId, versionId);
      return current?.version_id ?? null;
    }).immediate();
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
    // Prepared once: compiling the statement cost about as much as running it, per row.
    this.insertAuditStmt ??= this.db.prepare(
      'INSERT INTO credential_audit (at, credential_id, step, service_id, version_id, outcome, actor, detail, event_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_key) DO NOTHING',
    );
    this.insertAuditStmt.run(e.at ?? this.now(), e.credentialId, e.step, e.serviceId ?? null, e.versionId ?? null, e.outcome, e.actor, e.detail ?? null, e.eventKey ?? null);
  }

  /**
   * Appends to the audit trail (at most once per `eventKey`) by group
   * commit: the row is queued, with its time taken now (`entry.at ??
   * now()`), and every row queued in this turn of the event loop is written
   * in one transaction by a `setImmediate` callback, in call order (ids
   * ascend in call order); each promise settles when that transaction has
   * committed. Why: each commit in WAL mode appends the table's and indexes'
   * pages to the log (and syncs it under `synchronous = FULL`) while the
   * event loop waits; a rotation batch writes two rows per consumer at
   * nearly the same moment, and one commit for all of them costs about what
   * one row did.
   *
   * A row written by another method of this store in the same turn (e.g.
   * `importCurrent`'s) commits at once and so precedes the queued rows.
   * {@link flushAudit} writes the queue now (the backend's `close()` calls it).
   * @throws (rejects) the transaction's error, for every row of the group it
   *   failed (none of them is written): e.g. a row breaking a constraint, or
   *   the connection closed before the group was written.
   */
  audit(entry: NewAuditEntry): Promise<void> {
    return new Promise((resolve, reject) => {
      this.auditQueue.push({ entry: { ...entry, at: entry.at ?? this.now() }, resolve, reject });
      this.auditFlush ??= setImmediate(() => this.flushAudit());
    });
  }

  /**
   * Writes the queued audit rows now, in one transaction, and settles their
   * promises (rejected with the transaction's error if it fails). Never
   * throws. Audit rows do not touch `connectionWrites`: that count empties
   * the secrets memo, and no secret changes here.
   */
  flushAudit(): void {
    if (this.auditFlush !== undefined) clearImmediate(this.auditFlush);
    this.auditFlush = undefined;
    const group = this.auditQueue;
    if (group.length === 0) return;
    this.auditQueue = [];
    try {
      this.db.transaction(() => {
        for (const q of group) this.insertAudit(q.entry);
      })();
    } catch (err) {
      for (const q of group) q.reject(err);
      return;
    }
    for (const q of group) q.resolve();
  }

  async auditTrail(opts: { credentialId?: string; before?: number; limit?: number } = {}): Promise<AuditEntry[]> {
    const limit = opts.limit ?? -1;
    const before = opts.before ?? Number.MAX_SAFE_INTEGER;
    const rows = (
      opts.credentialId === undefined
        ? this.db.prepare('SELECT * FROM credential_audit WHERE id < ? ORDER BY id DESC LIMIT ?').all(before, limit)
        : this.db.prepare('SELECT * FROM credential_audit WHERE credential_id = ? AND id < ? ORDER BY id DESC LIMIT ?').all(opts.credentialId, before, limit)
    ) as AuditRow[];
    return rows.reverse().map(toAuditEntry);
  }
}
