/**
 * Group commit of the embedded store's audit rows: `audit()` calls made in
 * one turn of the event loop are written in one transaction (one WAL sync
 * instead of one per row), in call order, each caller learning the outcome
 * of its group. Real SQLite in temp dirs.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteState, type SqliteState } from '../../src/state';
import type { NewAuditEntry } from '../../src/state/types';

const tmp = () => mkdtempSync(join(tmpdir(), 'ia-audit-'));
const states: SqliteState[] = [];
afterAll(async () => {
  for (const s of states) await s.close();
});

async function sqliteState(dataDir: string, opts: { now?: () => number; ownConnection?: boolean } = {}): Promise<SqliteState> {
  const st = await openSqliteState({ dataDir, masterKey: randomBytes(32), ...opts });
  states.push(st);
  return st;
}

const entry = (i: number, extra: Partial<NewAuditEntry> = {}): NewAuditEntry => ({
  credentialId: 'db',
  step: 'verify',
  serviceId: `svc-${i}`,
  versionId: 'v2',
  outcome: 'ok',
  actor: 'rotation/db#r',
  detail: `row ${i}`,
  ...extra,
});

/**
 * Frames in the write-ahead log (https://sqlite.org/fileformat2.html#walformat:
 * a 32-byte header, then frames of a 24-byte header and one page). Every
 * commit appends at least one frame, so n rows committed one by one append
 * at least n.
 */
function walFrames(st: SqliteState): number {
  const pageSize = st.db.pragma('page_size', { simple: true }) as number;
  const size = statSync(`${st.db.name}-wal`).size;
  return Math.max(0, (size - 32) / (pageSize + 24));
}

test('audit() calls in one turn of the event loop land in one transaction, in call order, with the time of each call', async () => {
  let clock = 0;
  const st = await sqliteState(tmp(), { ownConnection: true, now: () => clock });
  // No checkpoint may move frames out of the log while we count them.
  st.db.pragma('wal_autocheckpoint = 0');
  await st.credentials.audit(entry(-1)); // the log exists and holds the first rows' pages
  const before = walFrames(st);

  const calls: Array<Promise<void>> = [];
  for (let i = 0; i < 40; i++) {
    clock = 1000 + i;
    calls.push(st.credentials.audit(entry(i)));
  }
  clock = 0;
  await Promise.all(calls);

  const appended = walFrames(st) - before;
  expect(appended).toBeGreaterThan(0);
  expect(appended).toBeLessThan(40); // one commit: 40 separate ones append at least 40 frames
  const trail = (await st.credentials.auditTrail()).slice(1);
  expect(trail.map((e) => [e.detail, e.at])).toEqual(Array.from({ length: 40 }, (_, i) => [`row ${i}`, 1000 + i]));
  expect(trail.every((e, i) => i === 0 || e.id > trail[i - 1]!.id)).toBe(true);
});

test('two rows with the same event key in one group: one row, the first', async () => {
  const st = await sqliteState(tmp());
  await Promise.all([
    st.credentials.audit(entry(1, { eventKey: 'rotation/db#r/7/verify/svc-1/ok' })),
    st.credentials.audit(entry(2)),
    st.credentials.audit(entry(3, { eventKey: 'rotation/db#r/7/verify/svc-1/ok' })),
  ]);
  expect((await st.credentials.auditTrail()).map((e) => e.detail)).toEqual(['row 1', 'row 2']);
});

test('a group whose transaction fails rejects every caller of that group; the next group is written', async () => {
  const st = await sqliteState(tmp());
  // outcome is NOT NULL in credential_audit: this row fails the group's transaction.
  const bad = entry(2, { outcome: null as unknown as string });
  const group = [st.credentials.audit(entry(1)), st.credentials.audit(bad), st.credentials.audit(entry(3))];
  const settled = await Promise.allSettled(group);
  expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected', 'rejected']);
  for (const s of settled) expect((s as PromiseRejectedResult).reason.message).toContain('NOT NULL constraint failed: credential_audit.outcome');
  expect(await st.credentials.auditTrail()).toEqual([]);

  await st.credentials.audit(entry(4));
  expect((await st.credentials.auditTrail()).map((e) => e.detail)).toEqual(['row 4']);

  // A connection closed under a queued group: every caller is told, none resolves.
  const other = await sqliteState(tmp(), { ownConnection: true });
  const queued = [other.credentials.audit(entry(5)), other.credentials.audit(entry(6))];
  other.db.close();
  const closed = await Promise.allSettled(queued);
  expect(closed.map((s) => s.status)).toEqual(['rejected', 'rejected']);
  for (const s of closed) expect((s as PromiseRejectedResult).reason.message).toContain('not open');
});

test('close() writes the rows still queued before it closes the database', async () => {
  const dir = tmp();
  const st = await sqliteState(dir);
  const queued = [1, 2, 3].map((i) => st.credentials.audit(entry(i)));
  await st.close();
  await expect(Promise.all(queued)).resolves.toEqual([undefined, undefined, undefined]);
  const again = await sqliteState(dir);
  expect((await again.credentials.auditTrail()).map((e) => e.detail)).toEqual(['row 1', 'row 2', 'row 3']);
});
