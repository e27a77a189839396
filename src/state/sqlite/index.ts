/** The embedded backend: `<dataDir>/integration-agent.db`, one host. */
import { SecretCipher } from '../crypto';
import { HealthHistoryStore, type HealthHistoryOptions } from '../health';
import type { StateBackend } from '../types';
import { SqliteCredentialStore } from './credentials';
import { openSqlite, sqliteMigrationStatus, sqlitePath, type Db } from './database';
import { SqliteDeadLetterStore } from './dead-letters';
import { sqliteHealthDriver } from './health';

export { SqliteCredentialStore, SECRET_RECHECK_MS } from './credentials';
export { sqlitePath, type Db } from './database';

export interface SqliteStateOptions {
  dataDir: string;
  masterKey: Buffer;
  oldKeys?: Buffer[];
  health?: HealthHistoryOptions;
  now?: () => number;
  /** A connection of its own instead of the process's shared one (tests of cross-connection behaviour). */
  ownConnection?: boolean;
}

/** A SQLite {@link StateBackend} plus its connection (for `state migrate`). */
export type SqliteState = StateBackend & { kind: 'sqlite'; db: Db };

/**
 * Opens and migrates the embedded database.
 * @throws MasterKeyMismatchError when live secrets are sealed under a master key not given.
 */
export async function openSqliteState(opts: SqliteStateOptions): Promise<SqliteState> {
  const cipher = new SecretCipher(opts.masterKey, opts.oldKeys);
  const { db, release } = await openSqlite(opts.dataDir, opts.ownConnection);
  try {
    cipher.assertFits(db.prepare('SELECT DISTINCT key_id FROM credential_versions WHERE label IS NOT NULL').pluck().all() as string[], `the state database ${sqlitePath(opts.dataDir)}`);
  } catch (err) {
    release();
    throw err;
  }
  const instanceId = (db.prepare(`SELECT value FROM state_meta WHERE key = 'instance_id'`).pluck().get() as string | undefined) ?? '';
  const health = new HealthHistoryStore(sqliteHealthDriver(db), opts.health);
  const credentials = new SqliteCredentialStore(db, cipher, opts.now);
  let closed: Promise<void> | undefined;
  return {
    kind: 'sqlite',
    instanceId,
    db,
    credentials,
    health,
    deadLetters: new SqliteDeadLetterStore(db),
    migrationStatus: () => sqliteMigrationStatus(db),
    close() {
      return (closed ??= (async () => {
        try {
          // Audit rows still queued for their group commit are written (or their callers told why not) first.
          credentials.flushAudit();
          if (db.open) await health.flush();
        } finally {
          release();
        }
      })());
    },
  };
}
