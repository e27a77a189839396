/**
 * The two state backends for tests: `describe.each(STATE_BACKENDS)` over a
 * file's cases, each case on a fresh database — a temp data dir (SQLite), or
 * a new database on one real PostgreSQL server started on first use and
 * stopped after the file (call `useStateBackends()` at the top of the file).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openState, type OpenStateOptions } from '../../src/state';
import type { StateBackend } from '../../src/state/types';
import { startPostgres, type TestPostgres } from './postgres';

export type BackendKind = 'sqlite' | 'postgres';
export const STATE_BACKENDS: BackendKind[] = ['sqlite', 'postgres'];

/** Where one fresh database lives: pass to `openState` (with a master key). */
export interface StateLocation {
  dataDir: string;
  databaseUrl?: string;
}

let server: Promise<TestPostgres> | undefined;
let databases = 0;

/** Registers the afterAll that stops the file's PostgreSQL server (if one was started). */
export function useStateBackends(): void {
  afterAll(async () => {
    const s = server;
    server = undefined;
    if (s) await (await s).stop();
  });
}

/** The file's PostgreSQL server, started on first use. */
export function testPostgres(): Promise<TestPostgres> {
  return (server ??= startPostgres());
}

/** A fresh, empty database of that kind. */
export async function freshLocation(kind: BackendKind): Promise<StateLocation> {
  const dataDir = mkdtempSync(join(tmpdir(), `ia-state-${kind}-`));
  if (kind === 'sqlite') return { dataDir };
  const pg = await testPostgres();
  const name = `ia_state_${process.pid}_${++databases}`;
  await pg.sql(`CREATE DATABASE ${name}`);
  return { dataDir, databaseUrl: pg.url(pg.adminUser, pg.adminPassword).replace(/\/postgres$/, `/${name}`) };
}

/** Opens a backend on a location (closing it is the caller's). */
export function openAt(loc: StateLocation, opts: Omit<OpenStateOptions, 'dataDir' | 'databaseUrl'> = {}): Promise<StateBackend> {
  return openState({ ...loc, ...opts });
}

/** Polls `check` every 10 ms until it holds; fails with `what` after `maxMs` (a bound for a hang, not a speed target). */
export async function eventually(check: () => Promise<boolean> | boolean, what: string, maxMs = 10_000): Promise<void> {
  const end = Date.now() + maxMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`never happened: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
