/**
 * The embedded credential store (SQLite): staging labels, transactions,
 * encryption at rest in the file, the master key file, the append-only audit
 * trail, and the synchronous read the coordinator uses. What both backends
 * share is also in test/state/contract.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadMasterKey, openState, openSqliteState, type SqliteState } from '../../src/state';
import { SECRET_RECHECK_MS, SqliteCredentialStore } from '../../src/state/sqlite';
import { SecretCipher } from '../../src/state/crypto';
import { HIST_OPTS } from '../../src/state/health';
import { MIGRATIONS } from '../../src/state/migrations';
import * as hdr from 'hdr-histogram-js';

const tmp = () => mkdtempSync(join(tmpdir(), 'ia-store-'));
const states: SqliteState[] = [];
afterAll(async () => {
  for (const s of states) await s.close();
});

/** The embedded backend on a data dir (the process's shared connection, or one of its own as another process has). */
async function sqliteState(dataDir: string, masterKey: Buffer = randomBytes(32), opts: { oldKeys?: Buffer[]; ownConnection?: boolean } = {}): Promise<SqliteState> {
  const st = await openSqliteState({ dataDir, masterKey, ...opts });
  states.push(st);
  if (!firstOn.has(dataDir)) firstOn.set(dataDir, st);
  return st;
}
const firstOn = new Map<string, SqliteState>();

/** The connection of the first state opened on a data dir (raw SQL). */
const dbOf = (dataDir: string) => firstOn.get(dataDir)!.db;

/**
 * A reader holding other master keys on the same database, past openState's
 * check of the live secrets' keys (as when a row sealed under another key
 * appears after the process started): each read still refuses it.
 */
const readerWithKey = (dataDir: string, key: Buffer, oldKeys?: Buffer[]) => new SqliteCredentialStore(dbOf(dataDir), new SecretCipher(key, oldKeys));

async function sqliteStore(dataDir: string, masterKey?: Buffer, opts: { oldKeys?: Buffer[] } = {}): Promise<SqliteCredentialStore> {
  return (await sqliteState(dataDir, masterKey, opts)).credentials as SqliteCredentialStore;
}

describe('labels', () => {
  test('import, PENDING, finish and discard move labels as AWS staging labels do', async () => {
    const store = await sqliteStore(tmp(), randomBytes(32));
    const v1 = await store.importCurrent('db', 'one', 'test');
    const v2 = await store.importCurrent('db', 'two', 'test');
    let l = await store.labels('db');
    expect([l.CURRENT?.versionId, l.PREVIOUS?.versionId, l.PENDING]).toEqual([v2, v1, null]);

    await store.putPending('db', 'v3', 'three', 'rotation/db#1');
    await store.putPending('db', 'v3', 'three', 'rotation/db#1'); // idempotent
    await expect(store.putPending('db', 'v4', 'four', 'rotation/db#2')).rejects.toThrow('already has PENDING version v3 (created by rotation/db#1)');
    expect(await store.promotePending('db', 'v3')).toBe(v2);
    expect(await store.promotePending('db', 'v3')).toBe(v2); // idempotent
    l = await store.labels('db');
    expect([l.CURRENT?.versionId, l.PREVIOUS?.versionId, l.PENDING]).toEqual(['v3', v2, null]);
    expect((await store.getVersion('db', v1))?.label).toBeNull();
    expect(await store.readSecret('db')).toBe('three');
    expect(await store.readSecret('db', v1)).toBe('one');

    await store.putPending('db', 'v5', 'five', 'rotation/db#3');
    await store.discardPending('db', 'v5');
    await expect(store.promotePending('db', 'v5')).rejects.toThrow('is deprecated, not PENDING');
    expect((await store.labels('db')).CURRENT?.versionId).toBe('v3');
    expect(await store.listCredentials()).toEqual([expect.objectContaining({ credentialId: 'db', current: 'v3', previous: v2, pending: null, versions: 4 })]);
  });

  test('an issuer reusing a version id is refused', async () => {
    const store = await sqliteStore(tmp(), randomBytes(32));
    const v1 = await store.importCurrent('k', 'one', 'test');
    await expect(store.putPending('k', v1, 'x', 'r')).rejects.toThrow('the issuer reused a version id');
  });
});

describe('encryption at rest', () => {
  test('values are AES-256-GCM ciphertext in the file; a wrong key fails authentication; old keys still decrypt', async () => {
    const dir = tmp();
    const key = randomBytes(32);
    const store = await sqliteStore(dir, key);
    const secret = `very-secret-${randomBytes(8).toString('hex')}`;
    await store.importCurrent('c', secret, 'test');
    const bytes = readdirSync(dir)
      .filter((f) => f.startsWith('integration-agent.db'))
      .map((f) => readFileSync(join(dir, f)).toString('latin1'))
      .join('');
    expect(bytes).not.toContain(secret);
    expect(bytes.length).toBeGreaterThan(0);

    await expect(sqliteState(dir, randomBytes(32))).rejects.toThrow(/sealed under master key [0-9a-f]{8}, which this process was not given/);
    const wrong = readerWithKey(dir, randomBytes(32));
    await expect(wrong.readSecret('c')).rejects.toThrow(/encrypted under master key [0-9a-f]{8}, which this store was not given/);
    const rotatedKey = await sqliteStore(dir, randomBytes(32), { oldKeys: [key] });
    expect(await rotatedKey.readSecret('c')).toBe(secret);
  });

  test('a ciphertext moved to another row fails authentication (ids are AAD)', async () => {
    const dir = tmp();
    const store = await sqliteStore(dir, randomBytes(32));
    const a = await store.importCurrent('a', 'secret-a', 'test');
    const b = await store.importCurrent('b', 'secret-b', 'test');
    dbOf(dir)
      .prepare(`UPDATE credential_versions SET iv = (SELECT iv FROM credential_versions WHERE version_id = ?), tag = (SELECT tag FROM credential_versions WHERE version_id = ?), ciphertext = (SELECT ciphertext FROM credential_versions WHERE version_id = ?) WHERE version_id = ?`)
      .run(a, a, a, b);
    await expect(store.readSecret('b')).rejects.toThrow('failed authentication');
  });
});

describe('master key', () => {
  test('created once with mode 0600 and reused; a group-readable file is refused', () => {
    const dir = tmp();
    const k1 = loadMasterKey(dir, {});
    const k2 = loadMasterKey(dir, {});
    expect(k1.equals(k2)).toBe(true);
    expect(k1.length).toBe(32);
    expect(statSync(join(dir, 'master.key')).mode & 0o777).toBe(0o600);
    chmodSync(join(dir, 'master.key'), 0o644);
    expect(() => loadMasterKey(dir, {})).toThrow('is readable by group or others (mode 644): run chmod 600');
  });

  test('from INTEGRATION_AGENT_MASTER_KEY; a wrong length names the variable', () => {
    const key = randomBytes(32);
    expect(loadMasterKey(tmp(), { INTEGRATION_AGENT_MASTER_KEY: key.toString('base64') }).equals(key)).toBe(true);
    expect(() => loadMasterKey(tmp(), { INTEGRATION_AGENT_MASTER_KEY: randomBytes(16).toString('base64') })).toThrow(
      'INTEGRATION_AGENT_MASTER_KEY must be base64 of exactly 32 bytes (got 16 bytes)',
    );
  });
});

describe('audit trail', () => {
  test('append-only: updates and deletes are refused by the database', async () => {
    const dir = tmp();
    const store = await sqliteStore(dir, randomBytes(32));
    await store.importCurrent('x', 'secret-x', 'cli:alice');
    await store.audit({ credentialId: 'x', step: 'verify', serviceId: 'svc', versionId: 'v1', outcome: 'ok', actor: 'rotation/x#r', detail: null });
    const trail = await store.auditTrail({ credentialId: 'x' });
    expect(trail.map((e) => [e.step, e.actor])).toEqual([
      ['import', 'cli:alice'],
      ['verify', 'rotation/x#r'],
    ]);
    expect(await store.auditTrail({ limit: 1 })).toEqual([expect.objectContaining({ step: 'verify' })]);
    const db = dbOf(dir);
    expect(() => db.prepare('UPDATE credential_audit SET outcome = ?').run('tampered')).toThrow('append-only');
    expect(() => db.prepare('DELETE FROM credential_audit').run()).toThrow('append-only');
    expect(JSON.stringify(trail)).not.toContain('secret-x');
  });
});

/** A store on its own SQLite connection, as the CLI or another worker process has. */
async function storeOnOtherConnection(dataDir: string, masterKey: Buffer): Promise<{ store: SqliteCredentialStore; close(): Promise<void> }> {
  const st = await openSqliteState({ dataDir, masterKey, ownConnection: true });
  return { store: st.credentials as SqliteCredentialStore, close: () => st.close() };
}

describe('readSecretSync (the coordinator\'s per-call read)', () => {
  /** Both reads, which must agree. */
  async function both(store: SqliteCredentialStore, credentialId: string, versionId?: string): Promise<string | undefined> {
    const sync = store.readSecretSync(credentialId, versionId);
    expect(await store.readSecret(credentialId, versionId)).toBe(sync);
    return sync;
  }

  /** Long enough for the store to look at SQLite's data_version again. */
  const recheck = () => new Promise<void>((r) => setTimeout(r, SECRET_RECHECK_MS + 2));

  test('sees a CURRENT change committed on another connection on its next look at the database', async () => {
    const dir = tmp();
    const key = randomBytes(32);
    const store = await sqliteStore(dir, key);
    const other = await storeOnOtherConnection(dir, key);
    try {
      const v1 = await store.importCurrent('db', 'one', 'test');
      // Read twice: the second answer comes from the memo.
      expect(await both(store, 'db')).toBe('one');
      expect(store.readSecretSync('db')).toBe('one');

      await other.store.importCurrent('db', 'two', 'cli:alice');
      await recheck();
      expect(store.readSecretSync('db')).toBe('two');
      expect(await both(store, 'db')).toBe('two');

      // A rotation's finish moves labels only (no new row), on the other connection.
      await other.store.putPending('db', 'v3', 'three', 'rotation/db#1');
      await recheck();
      expect(await both(store, 'db')).toBe('two');
      expect(await both(store, 'db', 'v3')).toBe('three');
      await other.store.promotePending('db', 'v3');
      await recheck();
      expect(store.readSecretSync('db')).toBe('three');
      expect(await both(store, 'db')).toBe('three');
      // A version read is the version's, whatever its label.
      expect(await both(store, 'db', v1)).toBe('one');
    } finally {
      await other.close();
    }
  });

  test('sees a change made through the same instance on the very next call', async () => {
    const store = await sqliteStore(tmp(), randomBytes(32));
    await store.importCurrent('api', 'one', 'test');
    expect(await both(store, 'api')).toBe('one');
    await store.importCurrent('api', 'two', 'test');
    expect(store.readSecretSync('api')).toBe('two');
    await store.putPending('api', 'v3', 'three', 'rotation/api#1');
    expect(await both(store, 'api')).toBe('two');
    expect(await both(store, 'api', 'v3')).toBe('three');
    await store.promotePending('api', 'v3');
    expect(store.readSecretSync('api')).toBe('three');
    expect(await both(store, 'api')).toBe('three');
  });

  // Two stores on one data dir in one process share one SQLite connection
  // (openDatabase opens a path once): data_version does not move for the
  // other, so the write counter per connection has to.
  test('sees a change made through another instance on the same data dir in the same process', async () => {
    const dir = tmp();
    const key = randomBytes(32);
    const store = await sqliteStore(dir, key);
    const sibling = await sqliteStore(dir, key);
    await store.importCurrent('api', 'one', 'test');
    expect(await both(store, 'api')).toBe('one');
    await sibling.importCurrent('api', 'two', 'test');
    await recheck();
    expect(store.readSecretSync('api')).toBe('two');
  });

  test('a missing credential or version is undefined, and a later import is seen (same and other connection)', async () => {
    const dir = tmp();
    const key = randomBytes(32);
    const store = await sqliteStore(dir, key);
    const other = await storeOnOtherConnection(dir, key);
    try {
      expect(await both(store, 'late')).toBeUndefined();
      expect(store.readSecretSync('late')).toBeUndefined();
      expect(await both(store, 'late', 'v1')).toBeUndefined();
      await store.importCurrent('late', 'here now', 'test', 'v1');
      expect(store.readSecretSync('late')).toBe('here now');
      expect(await both(store, 'late', 'v1')).toBe('here now');

      expect(await both(store, 'later')).toBeUndefined();
      expect(store.readSecretSync('later')).toBeUndefined();
      await other.store.importCurrent('later', 'from the cli', 'cli:bob');
      await recheck();
      expect(store.readSecretSync('later')).toBe('from the cli');
      expect(await both(store, 'later')).toBe('from the cli');
    } finally {
      await other.close();
    }
  });

  test('a row this store cannot decrypt throws from readSecretSync and rejects from readSecret, every time', async () => {
    const dir = tmp();
    const store = await sqliteStore(dir, randomBytes(32));
    await store.importCurrent('c', 'secret-c', 'test');
    const wrong = readerWithKey(dir, randomBytes(32));
    for (let i = 0; i < 2; i++) {
      expect(() => wrong.readSecretSync('c')).toThrow(/encrypted under master key [0-9a-f]{8}/);
      await expect(wrong.readSecret('c')).rejects.toThrow(/encrypted under master key/);
    }
    expect(store.readSecretSync('c')).toBe('secret-c');
  });
});

test('bad options name the option', async () => {
  await expect(openState({ dataDir: '' })).rejects.toThrow('dataDir: expected a folder path');
  await expect(openState({ dataDir: tmp(), masterKey: randomBytes(16) })).rejects.toThrow('masterKey: expected 32 bytes, got 16');
  await expect(openState({ dataDir: tmp(), masterKey: randomBytes(32), databaseUrl: 'mysql://x' })).rejects.toThrow('databaseUrl: expected a postgres:// or postgresql:// URL');
  const saved = process.env.INTEGRATION_AGENT_MASTER_KEY;
  delete process.env.INTEGRATION_AGENT_MASTER_KEY;
  try {
    // Refused before any connection (nothing listens on port 1).
    await expect(openState({ dataDir: tmp(), databaseUrl: 'postgres://u:p@127.0.0.1:1/db' })).rejects.toThrow(/INTEGRATION_AGENT_DATABASE_URL is set .* but INTEGRATION_AGENT_MASTER_KEY is not/);
  } finally {
    if (saved !== undefined) process.env.INTEGRATION_AGENT_MASTER_KEY = saved;
  }
});

test('a data dir from before migrations (the old embedded schema, with data) upgrades in place', async () => {
  const dir = tmp();
  const key = randomBytes(32);
  // The file as the last release left it: the tables of migration 0001, no migration table, no instance id.
  const Database = (await import('better-sqlite3')).default;
  const old = new Database(join(dir, 'integration-agent.db'));
  MIGRATIONS[0]!.sqlite(old);
  old.exec('DROP TABLE state_meta');
  const sealed = new SecretCipher(key).seal('legacy', 'v-old', 'old-secret');
  old.prepare(`INSERT INTO credential_versions (credential_id, version_id, label, iv, tag, ciphertext, key_id, created_at, created_by) VALUES ('legacy', 'v-old', 'CURRENT', ?, ?, ?, ?, 1000, 'import')`).run(sealed.iv, sealed.tag, sealed.ciphertext, sealed.key_id);
  old.prepare(`INSERT INTO credential_audit (at, credential_id, step, service_id, version_id, outcome, actor, detail) VALUES (1000, 'legacy', 'import', NULL, 'v-old', 'ok', 'cli:old', NULL)`).run();
  const hour = Date.UTC(2026, 5, 1, 3);
  const hist = hdr.build(HIST_OPTS);
  hist.recordValue(42_000);
  old.prepare(`INSERT INTO health_buckets (service_id, hour_ms, source, count, errors, histogram) VALUES ('svc', ?, 'probe', 1, 0, ?)`).run(hour, hdr.encodeIntoCompressedBase64(hist));
  old.prepare(`INSERT INTO webhook_dead_letters (event_id, subscriber_id, endpoints, payload, idempotency_key, attempts, last_error, workflow_id, created_at, updated_at) VALUES ('e', 's', '[]', 'null', 'k', 1, 'x', 'webhook/e', 1, 1)`).run();
  old.close();

  const st = await sqliteState(dir, key);
  expect(await st.migrationStatus()).toEqual({ applied: MIGRATIONS.map((m) => m.name), pending: [] });
  expect(st.instanceId).toMatch(/^[0-9a-f-]{36}$/);
  expect(await st.credentials.readSecret('legacy')).toBe('old-secret');
  // Imports before --version-id existed invented their ids: recorded as local (the issuer never minted them).
  expect((await st.credentials.getVersion('legacy', 'v-old'))?.versionIdSource).toBe('local');
  expect((await st.credentials.auditTrail()).map((e) => [e.step, e.actor])).toEqual([['import', 'cli:old']]);
  expect((await st.health.figures('svc', hour + 10 * 60_000)).p50Ms).toBeCloseTo(42, 0);
  expect(await st.deadLetters.list()).toHaveLength(1);
  // New writes use the new columns.
  await st.credentials.audit({ credentialId: 'legacy', step: 'verify', serviceId: 's', versionId: 'v-old', outcome: 'ok', actor: 'a', detail: null, eventKey: 'once' });
  await st.credentials.audit({ credentialId: 'legacy', step: 'verify', serviceId: 's', versionId: 'v-old', outcome: 'ok', actor: 'a', detail: null, eventKey: 'once' });
  expect(await st.credentials.auditTrail()).toHaveLength(2);
});
