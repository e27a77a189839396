/**
 * The state layer's per-call secret read, what the coordinator pays on every
 * request: the embedded store's synchronous memo (`readSecretSync`), the
 * PostgreSQL store's cache (`readSecret`, LISTEN/NOTIFY-invalidated), and a
 * PostgreSQL read that misses (query + AES-GCM decryption), side by side.
 * Also: one probe batch of 1,000 services into the health history (spans
 * under the writers' lock + histogram samples), on each backend.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ProbeResult } from '../src/domain/health';
import { openState, type PostgresState } from '../src/state';
import type { SqliteCredentialStore } from '../src/state/sqlite';
import type { StateBackend } from '../src/state/types';
import { startPostgres } from '../test/helpers/postgres';
import { summarize, type Figure } from './harness';

/** Median ns per call of `n` sequential calls, over `rounds` rounds. */
async function nsPerCall(n: number, rounds: number, call: () => unknown): Promise<number> {
  const per: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const v = call();
      if (v instanceof Promise) await v;
    }
    per.push(((performance.now() - t0) * 1e6) / n);
  }
  return summarize(per).p50;
}

async function probeBatchMs(st: StateBackend, rounds: number): Promise<number> {
  const times: number[] = [];
  const t = Date.UTC(2026, 5, 1);
  for (let r = 0; r < rounds; r++) {
    const batch = Array.from({ length: 1000 }, (_, i) => ({ serviceId: `svc-${i}`, at: t + r * 30_000, startedAt: t + r * 30_000, verdict: (i + r) % 10 === 0 ? 'fail' : 'pass', latencyMs: 5 + (i % 50) }) as ProbeResult);
    const t0 = performance.now();
    await st.health.recordProbes(batch, () => 60_000);
    times.push(performance.now() - t0);
  }
  return summarize(times).p50;
}

export default async function run(): Promise<Figure[]> {
  const masterKey = randomBytes(32);
  const dir = mkdtempSync(join(tmpdir(), 'ia-bench-state-'));
  const pg = await startPostgres();
  const sqlite = await openState({ dataDir: dir, masterKey });
  const postgres = (await openState({ dataDir: dir, databaseUrl: pg.url(pg.adminUser, pg.adminPassword), masterKey })) as PostgresState;
  try {
    await sqlite.credentials.importCurrent('bench', 'bench-token-0123456789', 'bench');
    await postgres.credentials.importCurrent('bench', 'bench-token-0123456789', 'bench');
    const sync = sqlite.credentials as SqliteCredentialStore;
    const memo = await nsPerCall(200_000, 5, () => sync.readSecretSync('bench'));
    const cached = await nsPerCall(50_000, 5, () => postgres.credentials.readSecret('bench'));
    const uncachedStore = (await openState({ dataDir: dir, databaseUrl: pg.url(pg.adminUser, pg.adminPassword), masterKey, secretCache: { maxAgeMs: 0 } })) as PostgresState;
    const uncached = await nsPerCall(2_000, 3, () => uncachedStore.credentials.readSecret('bench'));
    await uncachedStore.close();
    const sqliteBatch = await probeBatchMs(sqlite, 7);
    const pgBatch = await probeBatchMs(postgres, 7);
    const f = (name: string, value: number, unit: string, baseline?: { name: string; value: number }): Figure => ({
      bench: 'state',
      name,
      value: Math.round(value * 100) / 100,
      unit,
      ...(baseline ? { baseline, ratio: value / baseline.value } : {}),
    });
    const memoBase = { name: 'SQLite readSecretSync (memo)', value: memo };
    return [
      f('SQLite readSecretSync (memo, per call)', memo, 'ns'),
      f('PostgreSQL readSecret, cached (per call, await included)', cached, 'ns', memoBase),
      f('PostgreSQL readSecret, no cache (query + decrypt)', uncached, 'ns', memoBase),
      f('SQLite recordProbes, 1,000 services (median batch)', sqliteBatch, 'ms'),
      f('PostgreSQL recordProbes, 1,000 services (median batch)', pgBatch, 'ms', { name: 'SQLite', value: sqliteBatch }),
    ];
  } finally {
    await postgres.close();
    await sqlite.close();
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
