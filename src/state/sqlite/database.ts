/**
 * The embedded database: `<dataDir>/integration-agent.db` (SQLite via
 * better-sqlite3 v12), WAL mode, one connection per process and path shared
 * by every backend opened on it, migrated once per connection.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Umzug } from 'umzug';
import { MIGRATIONS } from '../migrations';
import type { MigrationStatus } from '../types';

export type Db = Database.Database;

/** The embedded database file of a data dir. */
export const sqlitePath = (dataDir: string): string => join(dataDir, 'integration-agent.db');

interface Shared {
  db: Db;
  users: number;
  migrated?: Promise<void>;
}

const shared = new Map<string, Shared>();

/**
 * Opens `<dataDir>/integration-agent.db` (once per process and path unless
 * `own`), creating the folder with mode 0700, and runs pending migrations.
 * @param own a connection of its own, not shared with other backends in this process (tests).
 * @returns the connection and its release function (closes it with the last user).
 */
export async function openSqlite(dataDir: string, own = false): Promise<{ db: Db; release(): void }> {
  const path = sqlitePath(dataDir);
  let s = own ? undefined : shared.get(path);
  if (!s || !s.db.open) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    s = { db, users: 0 };
    if (!own) shared.set(path, s);
  }
  s.users++;
  const entry = s;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    if (--entry.users === 0) {
      if (shared.get(path) === entry) shared.delete(path);
      if (entry.db.open) entry.db.close();
    }
  };
  try {
    await (entry.migrated ??= migrateSqlite(entry.db));
  } catch (err) {
    entry.migrated = undefined;
    release();
    throw err;
  }
  return { db: entry.db, release };
}

function umzugFor(db: Db) {
  db.exec('CREATE TABLE IF NOT EXISTS state_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)');
  return new Umzug<Db>({
    migrations: MIGRATIONS.map((m) => ({ name: m.name, up: async () => m.sqlite(db) })),
    context: db,
    logger: undefined,
    storage: {
      executed: async () => db.prepare('SELECT name FROM state_migrations ORDER BY name').pluck().all() as string[],
      logMigration: async ({ name }) => void db.prepare('INSERT OR IGNORE INTO state_migrations (name, applied_at) VALUES (?, ?)').run(name, Date.now()),
      unlogMigration: async ({ name }) => void db.prepare('DELETE FROM state_migrations WHERE name = ?').run(name),
    },
  });
}

/**
 * Applies pending migrations in one immediate transaction: another process
 * migrating the same file waits (busy_timeout) and then finds nothing to do.
 */
async function migrateSqlite(db: Db): Promise<void> {
  const umzug = umzugFor(db);
  if ((await umzug.pending()).length === 0) return;
  db.exec('BEGIN IMMEDIATE');
  try {
    await umzug.up();
    db.exec('COMMIT');
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw new Error(`migrating the embedded database ${db.name} failed: ${(err as Error).message}`);
  }
}

/** Applied and pending migration names of a connection. */
export async function sqliteMigrationStatus(db: Db): Promise<MigrationStatus> {
  const umzug = umzugFor(db);
  return { applied: (await umzug.executed()).map((m) => m.name), pending: (await umzug.pending()).map((m) => m.name) };
}
