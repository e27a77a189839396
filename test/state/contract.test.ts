/**
 * The state layer's contract, the same cases on both backends (a real SQLite
 * file, a real PostgreSQL database): credentials and label moves raced by two
 * connections, secret reads that see another process's writes, the audit
 * trail written exactly once per event key under concurrent inserts, the
 * health history with two writers on one database, dead letters, and
 * migrations run by three processes at once.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSqliteState, type PostgresState } from '../../src/state';
import { MIGRATIONS } from '../../src/state/migrations';
import type { StateBackend } from '../../src/state/types';
import type { ProbeResult, ProbeVerdict } from '../../src/domain/health';
import type { CallOutcome } from '../../src/domain/outcome';
import { eventually, freshLocation, openAt, STATE_BACKENDS, useStateBackends, type BackendKind, type StateLocation } from '../helpers/state';

useStateBackends();

const T0 = Date.UTC(2026, 5, 1, 0, 0, 0);
const MIN = 60_000;
const probe = (serviceId: string, at: number, verdict: ProbeVerdict, latencyMs = 10): ProbeResult => ({ serviceId, at, startedAt: at, verdict, latencyMs }) as ProbeResult;
const call = (serviceId: string, at: number, ok: boolean, latencyMs: number): CallOutcome => ({
  serviceId,
  endpoint: 'http://127.0.0.1:1',
  ok,
  latencyMs,
  startedAt: at,
  reporter: 'test',
  ...(ok ? {} : { failureKind: 'http_5xx' as CallOutcome['failureKind'] }),
});

describe.each(STATE_BACKENDS)('%s backend', (kind: BackendKind) => {
  const masterKey = randomBytes(32);
  const opened: StateBackend[] = [];
  afterAll(async () => {
    for (const s of opened) await s.close();
  });
  /** A backend on `loc`; `own`: its own connection(s), as another process has (SQLite shares one per process otherwise). */
  const open = async (loc: StateLocation, own = false): Promise<StateBackend> => {
    const st = kind === 'sqlite' && own ? await openSqliteState({ dataDir: loc.dataDir, masterKey, ownConnection: true }) : await openAt(loc, { masterKey });
    opened.push(st);
    return st;
  };
  /** Two processes' views of one fresh database. */
  const pair = async (): Promise<[StateBackend, StateBackend, StateLocation]> => {
    const loc = await freshLocation(kind);
    return [await open(loc), await open(loc, true), loc];
  };

  describe('credentials', () => {
    test('import, PENDING, finish and discard move labels as AWS staging labels do; errors name the state', async () => {
      const [a] = await pair();
      const store = a.credentials;
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
      await expect(store.promotePending('db', 'nope')).rejects.toThrow('version nope is unknown, not PENDING');
      await expect(store.putPending('db', v1, 'x', 'r')).rejects.toThrow('the issuer reused a version id');
      await store.markRevoked('db', v1, 1234);
      expect((await store.getVersion('db', v1))?.revokedAt).toBe(1234);
      expect((await store.listVersions('db')).map((v) => v.versionId)).toEqual([v1, v2, 'v3', 'v5']);
      await store.importCurrent('zz', 'z', 'test');
      expect(await store.listCredentials()).toEqual([
        expect.objectContaining({ credentialId: 'db', current: 'v3', previous: v2, pending: null, superseded: [], versions: 4 }),
        expect.objectContaining({ credentialId: 'zz', versions: 1 }),
      ]);
      expect((await store.listCredentials({ after: 'db', limit: 5 })).map((c) => c.credentialId)).toEqual(['zz']);
      expect(await store.readSecret('none')).toBeUndefined();
    });

    test('version id source: an import without the issuer\'s id is local, with it (or minted) it is the issuer\'s', async () => {
      const [a, b] = await pair();
      const local = await a.credentials.importCurrent('src', 'one', 'test');
      await a.credentials.importCurrent('src', 'two', 'test', 'iss-2');
      await a.credentials.putPending('src', 'v-minted', 'three', 'rotation/src#1');
      expect(Object.fromEntries((await b.credentials.listVersions('src')).map((v) => [v.versionId, v.versionIdSource]))).toEqual({ [local]: 'local', 'iss-2': 'issuer', 'v-minted': 'issuer' });
      const labels = await b.credentials.labels('src');
      expect([labels.CURRENT?.versionIdSource, labels.PREVIOUS?.versionIdSource]).toEqual(['issuer', 'local']);
    });

    test('a forced rotation supersedes a leftover PENDING in one transaction: the leftover keeps supersededBy and is listed until revoked', async () => {
      const [a, b] = await pair();
      const store = a.credentials;
      const v1 = await store.importCurrent('api', 'one', 'test');
      await store.putPending('api', 'v-left', 'left', 'rotation/api#1');
      await expect(b.credentials.putPending('api', 'v-new', 'new', 'rotation/api#2', { supersede: 'v-other' })).rejects.toThrow('already has PENDING version v-left');
      await b.credentials.putPending('api', 'v-new', 'new', 'rotation/api#2', { supersede: 'v-left' });
      await b.credentials.putPending('api', 'v-new', 'new', 'rotation/api#2', { supersede: 'v-left' }); // idempotent
      const l = await store.labels('api');
      expect([l.CURRENT?.versionId, l.PENDING?.versionId]).toEqual([v1, 'v-new']);
      expect(await store.getVersion('api', 'v-left')).toMatchObject({ label: null, supersededBy: 'v-new', revokedAt: null });
      expect(await store.getVersion('api', 'v-new')).toMatchObject({ label: 'PENDING', supersededBy: null });
      expect(await store.readSecret('api', 'v-left')).toBe('left');
      expect(await store.listCredentials()).toEqual([expect.objectContaining({ credentialId: 'api', pending: 'v-new', superseded: ['v-left'] })]);
      await store.markRevoked('api', 'v-left');
      expect(await b.credentials.listCredentials()).toEqual([expect.objectContaining({ credentialId: 'api', superseded: [] })]);
    });

    test('two connections racing putPending: exactly one wins, the other gets the PENDING error; racing promotes agree', async () => {
      const [a, b] = await pair();
      for (let i = 0; i < 10; i++) {
        const id = `race-${i}`;
        const initial = await a.credentials.importCurrent(id, 'initial', 'test');
        const results = await Promise.allSettled([a.credentials.putPending(id, `va-${i}`, 'from a', 'rotation/a'), b.credentials.putPending(id, `vb-${i}`, 'from b', 'rotation/b')]);
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(won).toHaveLength(1);
        expect(lost).toHaveLength(1);
        expect(String(lost[0]!.reason.message)).toMatch(new RegExp(`credential ${id} already has PENDING version v[ab]-${i} \\(created by rotation/[ab]\\)`));
        const pending = (await a.credentials.labels(id)).PENDING!.versionId;
        const promoted = await Promise.all([a.credentials.promotePending(id, pending), b.credentials.promotePending(id, pending)]);
        expect(promoted).toEqual([initial, initial]);
        const l = await b.credentials.labels(id);
        expect([l.CURRENT?.versionId, l.PREVIOUS?.versionId, l.PENDING]).toEqual([pending, initial, null]);
      }
    });

    test('a reader sees another process\'s promote; values are ciphertext at rest under the master key', async () => {
      const [a, b] = await pair();
      await b.credentials.importCurrent('api', 'one', 'test');
      expect(await a.credentials.readSecret('api')).toBe('one');
      expect(await a.credentials.readSecret('api')).toBe('one'); // from the cache where there is one
      await b.credentials.putPending('api', 'v2', 'two', 'rotation/api#1');
      await b.credentials.promotePending('api', 'v2');
      await eventually(async () => (await a.credentials.readSecret('api')) === 'two', 'the reader sees the promoted version');
      // Another master key cannot read it; the old key given as oldKeys can.
      const loc = await freshLocation(kind);
      const first = await openAt(loc, { masterKey });
      await first.credentials.importCurrent('k', 'secret-k', 'test');
      await first.close();
      await expect(openAt(loc, { masterKey: randomBytes(32) })).rejects.toThrow(/sealed under master key [0-9a-f]{8}, which this process was not given/);
      const rotated = await openAt(loc, { masterKey: randomBytes(32), oldKeys: [masterKey] });
      opened.push(rotated);
      expect(await rotated.credentials.readSecret('k')).toBe('secret-k');
    });

    if (kind === 'postgres') {
      test('the secret cache is bypassed while its listener is lost and used again once it listens', async () => {
        const [a, b] = await pair();
        const cache = (a as PostgresState).secretCache;
        await b.credentials.importCurrent('svc', 'one', 'test');
        await eventually(() => cache.active, 'the listener is up');
        expect(await a.credentials.readSecret('svc')).toBe('one');
        cache.dropConnection();
        await eventually(() => !cache.active, 'the lost listener is noticed');
        await b.credentials.importCurrent('svc', 'two', 'test');
        // No notification can arrive now: the read goes to the database.
        expect(await a.credentials.readSecret('svc')).toBe('two');
        await eventually(() => cache.active, 'the listener comes back');
        expect(await a.credentials.readSecret('svc')).toBe('two');
        await b.credentials.importCurrent('svc', 'three', 'test');
        await eventually(async () => (await a.credentials.readSecret('svc')) === 'three', 'the notification after re-listening');
      });
    }
  });

  describe('audit trail', () => {
    test('an event key is written exactly once under concurrent inserts from two connections; entries keep their order', async () => {
      const [a, b] = await pair();
      const entry = (i: number) => ({ credentialId: 'c', step: 'install', serviceId: `s${i}`, versionId: 'v1', outcome: 'ok', actor: 'rotation/c#r', detail: null, eventKey: `rotation/c#r/${i}/install/s${i}/ok` });
      await Promise.all(Array.from({ length: 40 }, (_, i) => [a.credentials.audit(entry(i)), b.credentials.audit(entry(i)), a.credentials.audit(entry(i))]).flat());
      // Without a key, every insert is an entry.
      await Promise.all([a.credentials.audit({ ...entry(99), eventKey: undefined }), b.credentials.audit({ ...entry(99), eventKey: undefined })]);
      const trail = await a.credentials.auditTrail({ credentialId: 'c' });
      expect(trail).toHaveLength(42);
      expect(new Set(trail.map((e) => e.serviceId)).size).toBe(41);
      const ids = trail.map((e) => e.id);
      expect([...ids].sort((x, y) => x - y)).toEqual(ids);
      expect((await b.credentials.auditTrail({ limit: 2 })).map((e) => e.id)).toEqual(ids.slice(-2));
      expect((await b.credentials.auditTrail({ before: ids[1]! })).map((e) => e.id)).toEqual([ids[0]]);
      expect(JSON.stringify(trail)).not.toContain('eventKey');
    });

    test('append-only: updates and deletes are refused by the database', async () => {
      const [a] = await pair();
      await a.credentials.importCurrent('x', 'secret-x', 'cli:alice');
      const trail = await a.credentials.auditTrail({ credentialId: 'x' });
      expect(trail.map((e) => [e.step, e.actor])).toEqual([['import', 'cli:alice']]);
      expect(JSON.stringify(trail)).not.toContain('secret-x');
      if (kind === 'sqlite') {
        const db = (a as unknown as { db: import('better-sqlite3').Database }).db;
        expect(() => db.prepare('UPDATE credential_audit SET outcome = ?').run('tampered')).toThrow('append-only');
        expect(() => db.prepare('DELETE FROM credential_audit').run()).toThrow('append-only');
      } else {
        const pool = (a as PostgresState).pool;
        await expect(pool.query(`UPDATE credential_audit SET outcome = 'tampered'`)).rejects.toThrow('append-only');
        await expect(pool.query('DELETE FROM credential_audit')).rejects.toThrow('append-only');
        await expect(pool.query('TRUNCATE credential_audit')).rejects.toThrow('append-only');
      }
    });
  });

  describe('health history with two writers', () => {
    test('sweeps alternating between two workers give the spans one writer would', async () => {
      const [a, b] = await pair();
      const [single] = await pair();
      const verdicts: ProbeVerdict[] = ['pass', 'pass', 'fail', 'fail', 'pass', 'warn', 'inconclusive', 'pass', 'fail', 'pass'];
      for (let i = 0; i < 40; i++) {
        const batch = ['x', 'y', 'z'].map((id, k) => probe(id, T0 + i * 30_000, verdicts[(i + k) % verdicts.length]!));
        await (i % 2 === 0 ? a : b).health.recordProbes(batch, () => MIN);
        await single.health.recordProbes(batch, () => MIN);
      }
      // Latency histograms are buffered per writer (written at most once a minute, and at close): flush them.
      await Promise.all([a.health.flush(), b.health.flush(), single.health.flush()]);
      for (const id of ['x', 'y', 'z']) {
        const spans = await a.health.spans(id, 0, T0 + 100 * MIN);
        expect(spans).toEqual(await single.health.spans(id, 0, T0 + 100 * MIN));
        expect(await b.health.figures(id, T0 + 25 * MIN)).toEqual(await single.health.figures(id, T0 + 25 * MIN));
      }
    });

    test('concurrent batches from two writers never overlap spans', async () => {
      const [a, b] = await pair();
      const ids = Array.from({ length: 20 }, (_, i) => `svc-${i}`);
      const batches: Promise<void>[] = [];
      for (let i = 0; i < 30; i++) {
        const at = T0 + i * 30_000;
        const batch = ids.map((id, k) => probe(id, at, (i + k) % 4 === 0 ? 'fail' : 'pass'));
        batches.push((i % 2 === 0 ? a : b).health.recordProbes(batch, () => MIN));
      }
      await Promise.all(batches);
      for (const id of ids) {
        const spans = await a.health.spans(id, 0, T0 + 100 * MIN);
        expect(spans.length).toBeGreaterThan(0);
        for (let i = 1; i < spans.length; i++) expect(spans[i]!.from).toBeGreaterThanOrEqual(spans[i - 1]!.to);
      }
    });

    test('latency histograms of two writers are summed: figures equal one writer\'s with every sample', async () => {
      const [a, b] = await pair();
      const [single] = await pair();
      const now = T0 + 5 * 60 * MIN;
      const samples = Array.from({ length: 400 }, (_, i) => call('lat', T0 + (i % 5) * 60 * MIN + i * 1000, i % 9 !== 0, 1 + ((i * 37) % 250)));
      await a.health.recordCalls(samples.filter((_, i) => i % 2 === 0));
      await b.health.recordCalls(samples.filter((_, i) => i % 2 === 1));
      await single.health.recordCalls(samples);
      await Promise.all([a.health.flush(), b.health.flush(), single.health.flush()]);
      const expected = await single.health.figures('lat', now);
      expect(expected.errorRate24h).toBeCloseTo(45 / 400, 6);
      expect(await a.health.figures('lat', now)).toEqual(expected);
      expect(await b.health.figures('lat', now)).toEqual(expected);
      // Each writer's rows are its own: more samples from b change b's row only, and both see them
      // (in the current hour at once; past hours are cached for up to pastCacheMs).
      await b.health.recordCalls([call('lat', now, true, 240)]);
      await b.health.flush();
      expect((await a.health.figures('lat', now)).errorRate24h).toBeCloseTo(45 / 401, 6);
    });
  });

  describe('dead letters', () => {
    test('one per workflow and subscriber whoever records it; a redelivery updates it; resolve and list', async () => {
      const [a, b] = await pair();
      const input = { eventId: 'e1', subscriberId: 'sub', endpoints: ['https://a.example/hook'], payload: { n: 1 }, idempotencyKey: 'k1', attempts: 3, lastError: 'HTTP 503', workflowId: 'webhook/e1' };
      const ids = await Promise.all([a.deadLetters.record(input, 1000), b.deadLetters.record(input, 1001), a.deadLetters.record(input, 1002)]);
      expect(new Set(ids).size).toBe(1);
      const id = ids[0]!;
      expect(await b.deadLetters.get(id)).toEqual(expect.objectContaining({ id, eventId: 'e1', subscriberId: 'sub', endpoints: ['https://a.example/hook'], attempts: 3, lastError: 'HTTP 503', workflowId: 'webhook/e1' }));
      expect(await a.deadLetters.payload(id)).toEqual({ n: 1 });
      expect(await b.deadLetters.record({ ...input, workflowId: 'webhook/e1-redeliver', attempts: 2, lastError: 'HTTP 500', redeliveryOf: id }, 2000)).toBe(id);
      expect(await a.deadLetters.get(id)).toEqual(expect.objectContaining({ attempts: 5, lastError: 'HTTP 500', updatedAt: 2000 }));
      const other = await a.deadLetters.record({ ...input, eventId: 'e2', workflowId: 'webhook/e2' }, 3000);
      expect((await b.deadLetters.list()).map((d) => d.id)).toEqual([other, id]);
      expect(await a.deadLetters.resolve(id, 'webhook/e1-redeliver', 4000)).toBe(true);
      expect(await a.deadLetters.resolve(id, 'someone-else', 5000)).toBe(true);
      expect(await a.deadLetters.get(id)).toEqual(expect.objectContaining({ resolvedAt: 4000, resolvedBy: 'webhook/e1-redeliver' }));
      expect((await b.deadLetters.list({ state: 'open' })).map((d) => d.id)).toEqual([other]);
      expect((await b.deadLetters.list({ state: 'resolved' })).map((d) => d.id)).toEqual([id]);
      expect((await b.deadLetters.list({ state: 'all', limit: 1 })).map((d) => d.id)).toEqual([other]);
      expect(await a.deadLetters.resolve(999_999, 'x', 1)).toBe(false);
      expect(await a.deadLetters.get(999_999)).toBeUndefined();
    });
  });

  describe('migrations', () => {
    test('three processes opening one new database at once: all succeed, each migration applied once, one instance id', async () => {
      const loc = await freshLocation(kind);
      const go = join(loc.dataDir, 'go');
      const children = Array.from({ length: 3 }, () => {
        const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), join(__dirname, 'open-child.ts')], {
          env: { ...process.env, STATE_DATA_DIR: loc.dataDir, ...(loc.databaseUrl ? { STATE_DATABASE_URL: loc.databaseUrl } : {}), STATE_MASTER_KEY: masterKey.toString('base64'), STATE_GO: go },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        return new Promise<{ instanceId: string; applied: string[]; pending: string[] }>((resolve, reject) =>
          child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child exited ${code}: ${err.slice(0, 2000)}`)))),
        );
      });
      // The children load the TypeScript sources first; release them together.
      await new Promise((r) => setTimeout(r, 1500));
      writeFileSync(go, '');
      const results = await Promise.all(children);
      const names = MIGRATIONS.map((m) => m.name);
      for (const r of results) expect(r).toEqual({ instanceId: results[0]!.instanceId, applied: names, pending: [] });
      expect(results[0]!.instanceId).toMatch(/^[0-9a-f-]{36}$/);
      const st = await open(loc);
      expect(st.instanceId).toBe(results[0]!.instanceId);
      expect(await st.migrationStatus()).toEqual({ applied: names, pending: [] });
      const rows = kind === 'sqlite'
        ? ((st as unknown as { db: import('better-sqlite3').Database }).db.prepare('SELECT name FROM state_migrations').pluck().all() as string[])
        : (await (st as PostgresState).pool.query<{ name: string }>('SELECT name FROM state_migrations')).rows.map((r) => r.name);
      expect(rows.sort()).toEqual(names);
      // Another database is another instance.
      expect((await open(await freshLocation(kind))).instanceId).not.toBe(st.instanceId);
    });
  });
});
