/**
 * The credential store on PostgreSQL. Label moves run in one transaction
 * holding a transaction-level advisory lock on the credential
 * (`pg_advisory_xact_lock(namespace, hashtext(credential_id))`), so two
 * processes racing a rotation step take turns and the loser gets the same
 * error as on SQLite; the partial unique index on (credential_id, label)
 * backs it. Every write transaction sends `NOTIFY integration_agent_credentials`
 * with the credential id, which empties the decrypted-secret cache of every
 * process (see {@link SecretCache}).
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Client, type Pool, type PoolClient } from 'pg';
import type { StagingLabel } from '../../domain/rotation';
import type { SecretCipher } from '../crypto';
import { notPending, pendingExists, toAuditEntry, toVersion, versionExists, versionReused, type AuditRow, type VersionRow } from '../rows';
import type { AuditEntry, CredentialStore, CredentialSummary, CredentialVersion, NewAuditEntry, VersionIdSource } from '../types';
import { inTransaction, LOCK_NAMESPACE } from './database';

/** The channel every credential write notifies (payload: the credential id). */
export const CREDENTIALS_CHANNEL = 'integration_agent_credentials';

export interface SecretCacheOptions {
  /** Longest time a decrypted value is served from memory, ms, whatever the notifications say; default 1000. 0 disables the cache. */
  maxAgeMs?: number;
  /** First delay before re-listening after the listener connection is lost, ms (doubles up to 30 s); default 500. */
  reconnectMs?: number;
}

/**
 * Decrypted secrets in memory, invalidated by LISTEN/NOTIFY on a dedicated
 * connection. While that connection is down (lost, reconnecting) the cache
 * is empty and bypassed; after re-listening it starts empty again (a
 * notification may have been missed). `maxAgeMs` bounds staleness should a
 * notification be lost without the connection noticing.
 */
export class SecretCache {
  private readonly entries = new Map<string, { value: string | undefined; at: number }>();
  private generation = 0;
  private listening = false;
  private client: Client | undefined;
  private closed = false;
  private retryMs: number;
  private timer: NodeJS.Timeout | undefined;
  private readonly maxAgeMs: number;
  private readonly reconnectMs: number;

  constructor(private readonly url: string, opts: SecretCacheOptions = {}) {
    this.maxAgeMs = opts.maxAgeMs ?? 1000;
    if (!(this.maxAgeMs >= 0)) throw new RangeError(`secretCache.maxAgeMs must be >= 0, got ${this.maxAgeMs}`);
    this.reconnectMs = opts.reconnectMs ?? 500;
    this.retryMs = this.reconnectMs;
  }

  /** True while notifications are being received (the cache is in use). */
  get active(): boolean {
    return this.listening && this.maxAgeMs > 0;
  }

  /** Connects the listener; resolves once listening, or once the first attempt failed (the cache then stays bypassed and retries). */
  async start(): Promise<void> {
    if (this.maxAgeMs === 0) return;
    await this.listen();
  }

  private async listen(): Promise<void> {
    if (this.closed) return;
    const c = new Client({ connectionString: this.url });
    this.client = c;
    const lost = () => {
      if (this.client !== c) return;
      this.client = undefined;
      this.listening = false;
      this.invalidate();
      c.end().catch(() => undefined);
      if (!this.closed) {
        this.timer = setTimeout(() => void this.listen(), this.retryMs);
        this.timer.unref();
        this.retryMs = Math.min(this.retryMs * 2, 30_000);
      }
    };
    c.on('error', lost);
    c.on('end', lost);
    c.on('notification', (n) => {
      if (n.channel === CREDENTIALS_CHANNEL) this.invalidate(n.payload);
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${CREDENTIALS_CHANNEL}`);
      if (this.client !== c) return;
      this.invalidate();
      this.listening = true;
      this.retryMs = this.reconnectMs;
    } catch {
      lost();
    }
  }

  /** Forgets cached values (of one credential, or all). */
  invalidate(credentialId?: string): void {
    this.generation++;
    if (credentialId === undefined) {
      this.entries.clear();
      return;
    }
    for (const key of this.entries.keys()) if (key === credentialId || key.startsWith(`${credentialId}\0`)) this.entries.delete(key);
  }

  /** A cached value (`found` false when absent, expired or the cache is bypassed). */
  get(key: string): { found: boolean; value?: string } {
    if (!this.active) return { found: false };
    const e = this.entries.get(key);
    if (!e || performance.now() - e.at >= this.maxAgeMs) return { found: false };
    return { found: true, value: e.value };
  }

  /** The generation a read starts under; {@link set} drops its answer when a notification arrived meanwhile. */
  get stamp(): number {
    return this.generation;
  }

  set(key: string, value: string | undefined, stamp: number, readStartedAt: number): void {
    if (!this.active || stamp !== this.generation) return;
    if (this.entries.size >= 1024) this.entries.clear();
    this.entries.set(key, { value, at: readStartedAt });
  }

  /** Simulates a lost listener connection (tests). */
  dropConnection(): void {
    const c = this.client;
    if (c) (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.listening = false;
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }
}

/** The shared store: PostgreSQL, values under AES-256-GCM. No `readSecretSync`: the coordinator awaits `readSecret`. */
export class PostgresCredentialStore implements CredentialStore {
  constructor(
    private readonly pool: Pool,
    private readonly cipher: SecretCipher,
    private readonly cache: SecretCache,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes the credential's lock for the rest of the transaction. */
  private lock(c: PoolClient, credentialId: string) {
    return c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK_NAMESPACE, credentialId]);
  }

  private notify(c: PoolClient, credentialId: string) {
    return c.query('SELECT pg_notify($1, $2)', [CREDENTIALS_CHANNEL, credentialId]);
  }

  private async write<T>(credentialId: string, fn: (c: PoolClient) => Promise<T>): Promise<T> {
    try {
      return await inTransaction(this.pool, async (c) => {
        await this.lock(c, credentialId);
        const out = await fn(c);
        await this.notify(c, credentialId);
        return out;
      });
    } finally {
      // This process sees its own write at once, whatever the listener does.
      this.cache.invalidate(credentialId);
    }
  }

  private async row(q: Pool | PoolClient, credentialId: string, versionId: string): Promise<VersionRow | undefined> {
    return (await q.query<VersionRow>('SELECT * FROM credential_versions WHERE credential_id = $1 AND version_id = $2', [credentialId, versionId])).rows[0];
  }

  private async byLabel(q: Pool | PoolClient, credentialId: string, label: StagingLabel): Promise<VersionRow | undefined> {
    return (await q.query<VersionRow>('SELECT * FROM credential_versions WHERE credential_id = $1 AND label = $2', [credentialId, label])).rows[0];
  }

  /**
   * The secret of a version (default: CURRENT), decrypted; undefined when
   * there is no such version. Served from the {@link SecretCache} while it
   * listens; another process's write is seen once its NOTIFY arrives, and
   * within the cache's max age at worst.
   * @throws Error when the row is encrypted under a master key this store was not given, or fails authentication.
   */
  async readSecret(credentialId: string, versionId?: string): Promise<string | undefined> {
    const key = versionId === undefined ? credentialId : `${credentialId}\0${versionId}`;
    const hit = this.cache.get(key);
    if (hit.found) return hit.value;
    const stamp = this.cache.stamp;
    const startedAt = performance.now();
    const row = versionId === undefined ? await this.byLabel(this.pool, credentialId, 'CURRENT') : await this.row(this.pool, credentialId, versionId);
    const secret = row ? this.cipher.open(row.credential_id, row.version_id, row) : undefined;
    this.cache.set(key, secret, stamp, startedAt);
    return secret;
  }

  async labels(credentialId: string): Promise<Record<StagingLabel, CredentialVersion | null>> {
    const rows = (await this.pool.query<VersionRow>('SELECT * FROM credential_versions WHERE credential_id = $1 AND label IS NOT NULL', [credentialId])).rows;
    const out: Record<StagingLabel, CredentialVersion | null> = { CURRENT: null, PENDING: null, PREVIOUS: null };
    for (const r of rows) out[r.label!] = toVersion(r);
    return out;
  }

  async getVersion(credentialId: string, versionId: string): Promise<CredentialVersion | undefined> {
    const r = await this.row(this.pool, credentialId, versionId);
    return r ? toVersion(r) : undefined;
  }

  async listVersions(credentialId: string): Promise<CredentialVersion[]> {
    return (await this.pool.query<VersionRow>('SELECT * FROM credential_versions WHERE credential_id = $1 ORDER BY created_at, seq', [credentialId])).rows.map(toVersion);
  }

  async listCredentials(opts: { after?: string; limit?: number } = {}): Promise<CredentialSummary[]> {
    const rows = (
      await this.pool.query<{ id: string; cur: string | null; pen: string | null; prev: string | null; sup: string | null; n: string; last: string | null }>(
        `SELECT c.credential_id AS id,
           MAX(CASE WHEN label = 'CURRENT' THEN version_id END) AS cur,
           MAX(CASE WHEN label = 'PENDING' THEN version_id END) AS pen,
           MAX(CASE WHEN label = 'PREVIOUS' THEN version_id END) AS prev,
           STRING_AGG(CASE WHEN superseded_by IS NOT NULL AND revoked_at IS NULL THEN version_id END, ' ') AS sup,
           COUNT(*) AS n,
           (SELECT MAX(at) FROM credential_audit a WHERE a.credential_id = c.credential_id) AS last
         FROM credential_versions c WHERE c.credential_id > $1 GROUP BY c.credential_id ORDER BY c.credential_id LIMIT $2`,
        [opts.after ?? '', opts.limit ?? null],
      )
    ).rows;
    return rows.map((r) => ({
      credentialId: r.id,
      current: r.cur,
      pending: r.pen,
      previous: r.prev,
      superseded: r.sup ? r.sup.split(' ').sort() : [],
      versions: Number(r.n),
      lastActivityAt: r.last === null ? null : Number(r.last),
    }));
  }

  async importCurrent(credentialId: string, secret: string, actor: string, issuerVersionId?: string): Promise<string> {
    if (typeof secret !== 'string' || secret.length === 0) throw new RangeError(`credentials import ${credentialId}: the secret is empty`);
    const versionId = issuerVersionId ?? `v-${randomUUID().slice(0, 12)}`;
    const source: VersionIdSource = issuerVersionId === undefined ? 'local' : 'issuer';
    const enc = this.cipher.seal(credentialId, versionId, secret);
    const now = this.now();
    await this.write(credentialId, async (c) => {
      if (await this.row(c, credentialId, versionId)) throw versionExists(credentialId, versionId);
      await c.query(`UPDATE credential_versions SET label = NULL WHERE credential_id = $1 AND label = 'PREVIOUS'`, [credentialId]);
      await c.query(`UPDATE credential_versions SET label = 'PREVIOUS' WHERE credential_id = $1 AND label = 'CURRENT'`, [credentialId]);
      await c.query(
        `INSERT INTO credential_versions (credential_id, version_id, label, iv, tag, ciphertext, key_id, created_at, created_by, version_id_source) VALUES ($1, $2, 'CURRENT', $3, $4, $5, $6, $7, 'import', $8)`,
        [credentialId, versionId, enc.iv, enc.tag, enc.ciphertext, enc.key_id, now, source],
      );
      await insertAudit(c, { credentialId, step: 'import', serviceId: null, versionId, outcome: 'ok', actor, detail: null, at: now }, now);
    });
    return versionId;
  }

  async putPending(credentialId: string, versionId: string, secret: string, createdBy: string, opts: { supersede?: string } = {}): Promise<void> {
    await this.write(credentialId, async (c) => {
      const pending = await this.byLabel(c, credentialId, 'PENDING');
      if (pending && pending.version_id === versionId) return;
      if (pending && pending.version_id === opts.supersede) {
        await c.query(`UPDATE credential_versions SET label = NULL, superseded_by = $1 WHERE credential_id = $2 AND version_id = $3`, [versionId, credentialId, pending.version_id]);
      } else if (pending) throw pendingExists(credentialId, pending.version_id, pending.created_by);
      if (await this.row(c, credentialId, versionId)) throw versionReused(credentialId, versionId);
      const enc = this.cipher.seal(credentialId, versionId, secret);
      await c.query(
        `INSERT INTO credential_versions (credential_id, version_id, label, iv, tag, ciphertext, key_id, created_at, created_by) VALUES ($1, $2, 'PENDING', $3, $4, $5, $6, $7, $8)`,
        [credentialId, versionId, enc.iv, enc.tag, enc.ciphertext, enc.key_id, this.now(), createdBy],
      );
    });
  }

  async promotePending(credentialId: string, versionId: string): Promise<string | null> {
    return this.write(credentialId, async (c) => {
      const row = await this.row(c, credentialId, versionId);
      if (row?.label === 'CURRENT') return (await this.byLabel(c, credentialId, 'PREVIOUS'))?.version_id ?? null;
      if (row?.label !== 'PENDING') throw notPending(credentialId, versionId, row ? row.label : undefined);
      const current = await this.byLabel(c, credentialId, 'CURRENT');
      await c.query(`UPDATE credential_versions SET label = NULL WHERE credential_id = $1 AND label = 'PREVIOUS'`, [credentialId]);
      await c.query(`UPDATE credential_versions SET label = 'PREVIOUS' WHERE credential_id = $1 AND label = 'CURRENT'`, [credentialId]);
      await c.query(`UPDATE credential_versions SET label = 'CURRENT' WHERE credential_id = $1 AND version_id = $2`, [credentialId, versionId]);
      return current?.version_id ?? null;
    });
  }

  async discardPending(credentialId: string, versionId: string): Promise<void> {
    await this.write(credentialId, (c) => c.query(`UPDATE credential_versions SET label = NULL WHERE credential_id = $1 AND version_id = $2 AND label = 'PENDING'`, [credentialId, versionId]));
  }

  async markRevoked(credentialId: string, versionId: string, at: number = this.now()): Promise<void> {
    await this.write(credentialId, (c) =>
      c.query('UPDATE credential_versions SET revoked_at = $1 WHERE credential_id = $2 AND version_id = $3 AND revoked_at IS NULL', [at, credentialId, versionId]),
    );
  }

  async audit(entry: NewAuditEntry): Promise<void> {
    await insertAudit(this.pool, entry, this.now());
  }

  async auditTrail(opts: { credentialId?: string; before?: number; limit?: number } = {}): Promise<AuditEntry[]> {
    const limit = opts.limit ?? null;
    const before = opts.before ?? Number.MAX_SAFE_INTEGER;
    const rows = (
      opts.credentialId === undefined
        ? await this.pool.query<AuditRow>('SELECT * FROM credential_audit WHERE id < $1 ORDER BY id DESC LIMIT $2', [before, limit])
        : await this.pool.query<AuditRow>('SELECT * FROM credential_audit WHERE credential_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3', [opts.credentialId, before, limit])
    ).rows;
    return rows.reverse().map(toAuditEntry);
  }
}

/** Inserts an audit entry; with an `eventKey`, at most once. */
async function insertAudit(q: Pool | PoolClient, e: NewAuditEntry, now: number): Promise<void> {
  await q.query(
    `INSERT INTO credential_audit (at, credential_id, step, service_id, version_id, outcome, actor, detail, event_key)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_key) DO NOTHING`,
    [e.at ?? now, e.credentialId, e.step, e.serviceId ?? null, e.versionId ?? null, e.outcome, e.actor, e.detail ?? null, e.eventKey ?? null],
  );
}
