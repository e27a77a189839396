/**
 * One room for all state outside Temporal. `openState` opens the configured
 * backend — PostgreSQL when a database URL is given (any number of workers
 * on any number of hosts), else the embedded SQLite file
 * `<dataDir>/integration-agent.db` (one host) — and runs its pending
 * migrations. See docs/state.md.
 */
import { loadMasterKey } from './crypto';
import type { HealthHistoryOptions } from './health';
import { openPostgresState, type PostgresState } from './postgres';
import type { SecretCacheOptions } from './postgres/credentials';
import { openSqliteState, type SqliteState } from './sqlite';
import type { StateBackend } from './types';

export type * from './types';
export { keyId, loadMasterKey, MasterKeyMismatchError, SecretCipher } from './crypto';
export type { HealthHistoryOptions } from './health';

export interface OpenStateOptions {
  /** Folder of the embedded database and of a generated `master.key`. */
  dataDir: string;
  /** `postgres://…` (INTEGRATION_AGENT_DATABASE_URL): the shared backend; absent: embedded SQLite. */
  databaseUrl?: string;
  /** Master key (32 bytes) encrypting secrets at rest; default `loadMasterKey(dataDir)` (env INTEGRATION_AGENT_MASTER_KEY or `<dataDir>/master.key`). */
  masterKey?: Buffer;
  /** Older master keys still accepted for decryption. */
  oldKeys?: Buffer[];
  /** This process's writer id in the health history; default a random UUID. */
  writerId?: string;
  /** Health history options (retention, flush cadence, past-hours cache). */
  health?: Omit<HealthHistoryOptions, 'writerId'>;
  /** PostgreSQL: the decrypted-secret cache (max age, reconnect delay). */
  secretCache?: SecretCacheOptions;
  /** PostgreSQL: pool size; default 10. */
  maxConnections?: number;
  /** Clock, epoch ms (tests). */
  now?: () => number;
}

/**
 * Opens the state backend and applies pending migrations (safe when several
 * processes start at once).
 * @throws RangeError for a bad master key, or a database URL without an explicit master key
 *   (option or INTEGRATION_AGENT_MASTER_KEY: a generated per-host key cannot be shared);
 *   Error naming the database when it cannot be opened or migrated.
 */
export async function openState(opts: OpenStateOptions): Promise<StateBackend> {
  if (!opts || typeof opts.dataDir !== 'string' || opts.dataDir === '') throw new RangeError(`dataDir: expected a folder path, got ${JSON.stringify(opts?.dataDir)}`);
  const health = { ...opts.health, writerId: opts.writerId };
  if (opts.databaseUrl !== undefined && opts.databaseUrl !== '') {
    if (!/^postgres(ql)?:\/\//.test(opts.databaseUrl)) throw new RangeError('databaseUrl: expected a postgres:// or postgresql:// URL (INTEGRATION_AGENT_DATABASE_URL)');
    // A key generated into one host's data dir would seal secrets no other worker can read.
    if (opts.masterKey === undefined && !process.env.INTEGRATION_AGENT_MASTER_KEY) {
      throw new RangeError(
        'INTEGRATION_AGENT_DATABASE_URL is set (state shared by every worker) but INTEGRATION_AGENT_MASTER_KEY is not: every worker and the CLI must hold the one key the shared secrets are encrypted under. ' +
          `Set INTEGRATION_AGENT_MASTER_KEY to base64 of 32 bytes (openssl rand -base64 32), the same everywhere; after \`state migrate\`, the contents of ${opts.dataDir}/master.key`,
      );
    }
    const masterKey = opts.masterKey ?? loadMasterKey(opts.dataDir);
    return openPostgresState({ databaseUrl: opts.databaseUrl, masterKey, oldKeys: opts.oldKeys, health, secretCache: opts.secretCache, maxConnections: opts.maxConnections, now: opts.now });
  }
  return openSqliteState({ dataDir: opts.dataDir, masterKey: opts.masterKey ?? loadMasterKey(opts.dataDir), oldKeys: opts.oldKeys, health, now: opts.now });
}

export { openPostgresState, openSqliteState, type PostgresState, type SqliteState };
