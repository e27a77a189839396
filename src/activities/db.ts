/**
 * The embedded database (SQLite via better-sqlite3 v12): one file under the
 * data dir, WAL mode, shared by the credential store, the audit trail and the
 * health history. Each module creates its own tables with `CREATE TABLE IF NOT EXISTS`.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;

const open = new Map<string, Db>();

/**
 * Opens (once per process and path) `<dataDir>/integration-agent.db`.
 * @param dataDir folder, created with mode 0700 when missing.
 */
export function openDatabase(dataDir: string): Db {
  const path = join(dataDir, 'integration-agent.db');
  let db = open.get(path);
  if (!db || !db.open) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    open.set(path, db);
  }
  return db;
}

/** Closes every database this process opened (worker shutdown, test teardown). */
export function closeDatabases(): void {
  for (const db of open.values()) if (db.open) db.close();
  open.clear();
}
