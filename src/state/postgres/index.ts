/** The shared backend: PostgreSQL, any number of workers on any number of hosts. */
import type { Pool } from 'pg';
import { SecretCipher } from '../crypto';
import { HealthHistoryStore, type HealthHistoryOptions } from '../health';
import type { StateBackend } from '../types';
import { PostgresCredentialStore, SecretCache, type SecretCacheOptions } from './credentials';
import { describeUrl, migratePostgres, openPool, postgresMigrationStatus } from './database';
import { PostgresDeadLetterStore } from './dead-letters';
import { postgresHealthDriver } from './health';

export { PostgresCredentialStore, SecretCache, CREDENTIALS_CHANNEL } from './credentials';
export { describeUrl } from './database';

export interface PostgresStateOptions {
  /** `postgres://user:password@host:port/database` */
  databaseUrl: string;
  masterKey: Buffer;
  oldKeys?: Buffer[];
  health?: HealthHistoryOptions;
  secretCache?: SecretCacheOptions;
  /** Pool size; default 10. */
  maxConnections?: number;
  /** Where the URL came from, named in errors; default INTEGRATION_AGENT_DATABASE_URL. */
  urlSource?: string;
  now?: () => number;
}

/** A PostgreSQL {@link StateBackend} plus its pool (for `state migrate` and tests). */
export type PostgresState = StateBackend & { kind: 'postgres'; pool: Pool; secretCache: SecretCache };

/**
 * Connects, migrates (advisory-locked), checks the master key against the
 * stored live secrets and starts the secret cache's listener.
 * @throws MasterKeyMismatchError when live secrets are sealed under a key not given.
 * @throws Error naming host, port and database (never the password) when the server cannot be reached or a migration fails.
 */
export async function openPostgresState(opts: PostgresStateOptions): Promise<PostgresState> {
  const cipher = new SecretCipher(opts.masterKey, opts.oldKeys);
  const pool = await openPool(opts.databaseUrl, opts.maxConnections, opts.urlSource);
  try {
    await migratePostgres(pool);
    const live = await pool.query<{ key_id: string }>('SELECT DISTINCT key_id FROM credential_versions WHERE label IS NOT NULL');
    cipher.assertFits(
      live.rows.map((r) => r.key_id),
      `the state database ${describeUrl(opts.databaseUrl)}`,
    );
    const instanceId = (await pool.query<{ value: string }>(`SELECT value FROM state_meta WHERE key = 'instance_id'`)).rows[0]?.value ?? '';
    const secretCache = new SecretCache(opts.databaseUrl, opts.secretCache);
    await secretCache.start();
    const health = new HealthHistoryStore(postgresHealthDriver(pool), opts.health);
    let closed: Promise<void> | undefined;
    return {
      kind: 'postgres',
      instanceId,
      pool,
      secretCache,
      credentials: new PostgresCredentialStore(pool, cipher, secretCache, opts.now),
      health,
      deadLetters: new PostgresDeadLetterStore(pool),
      migrationStatus: () => postgresMigrationStatus(pool),
      close() {
        return (closed ??= (async () => {
          try {
            await health.flush();
          } finally {
            await secretCache.close();
            await pool.end();
          }
        })());
      },
    };
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
}
