/**
 * The shared backend's connections and migrations: a pg Pool on
 * `INTEGRATION_AGENT_DATABASE_URL`; migrations run by umzug on one dedicated
 * connection holding a session advisory lock, so workers starting at once
 * take turns and each migration is applied once.
 */
import { Pool, type PoolClient } from 'pg';
import { Umzug } from 'umzug';
import { MIGRATIONS } from '../migrations';
import type { MigrationStatus } from '../types';

/**
 * First key of every advisory lock this layer takes (`pg_advisory_lock(int, int)`),
 * the second one naming what is locked; other users of the database pick other namespaces.
 */
export const LOCK_NAMESPACE = 0x1a2e;
export const LOCKS = { migrations: 1, healthSpans: 2 } as const;

/** `host:port/database` of a URL, without user or password (for messages). */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}${u.pathname || '/'}`;
  } catch {
    return '(unparsable URL)';
  }
}

/**
 * A pool on `url`, checked by one round trip.
 * @param source where the URL came from, named in the error (default INTEGRATION_AGENT_DATABASE_URL).
 * @throws Error naming host, port and database (never the password) when it cannot connect.
 */
export async function openPool(url: string, max = 10, source = 'INTEGRATION_AGENT_DATABASE_URL'): Promise<Pool> {
  const pool = new Pool({ connectionString: url, max, connectionTimeoutMillis: 10_000 });
  // An idle connection that breaks is dropped by the pool; without a listener it would crash the process.
  pool.on('error', () => undefined);
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw new Error(
      `cannot connect to PostgreSQL at ${describeUrl(url)} (${source}): ${(err as Error).message}. Check the URL, that the server is running and that the user may connect.`,
    );
  }
  return pool;
}

/** Runs `fn` in a transaction on one pooled connection; rolls back on error. */
export async function inTransaction<T>(pool: Pool, fn: (c: PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  let broken: Error | undefined;
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (err) {
    await c.query('ROLLBACK').catch((e: Error) => (broken = e));
    throw err;
  } finally {
    c.release(broken);
  }
}

function umzugFor(c: PoolClient, executed: () => Promise<string[]>) {
  return new Umzug<PoolClient>({
    migrations: MIGRATIONS.map((m) => ({
      name: m.name,
      // The migration and the row recording it commit together.
      up: async () => {
        await c.query('BEGIN');
        try {
          await m.postgres(c);
          await c.query('INSERT INTO state_migrations (name, applied_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [m.name, Date.now()]);
          await c.query('COMMIT');
        } catch (err) {
          await c.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
      },
    })),
    context: c,
    logger: undefined,
    storage: {
      executed,
      logMigration: async () => undefined,
      unlogMigration: async ({ name }) => void (await c.query('DELETE FROM state_migrations WHERE name = $1', [name])),
    },
  });
}

const executedOn = (c: PoolClient) => async (): Promise<string[]> => {
  const exists = await c.query<{ t: string | null }>(`SELECT to_regclass('state_migrations')::text AS t`);
  if (!exists.rows[0]?.t) return [];
  return (await c.query<{ name: string }>('SELECT name FROM state_migrations ORDER BY name')).rows.map((r) => r.name);
};

/**
 * Applies pending migrations under `pg_advisory_lock` on a dedicated connection.
 * @throws Error naming the migration that failed.
 */
export async function migratePostgres(pool: Pool): Promise<void> {
  const c = await pool.connect();
  let broken: Error | undefined;
  try {
    const umzug = umzugFor(c, executedOn(c));
    if ((await umzug.pending()).length === 0) return;
    await c.query('SELECT pg_advisory_lock($1, $2)', [LOCK_NAMESPACE, LOCKS.migrations]);
    try {
      await c.query('CREATE TABLE IF NOT EXISTS state_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)');
      await umzug.up();
    } finally {
      await c.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_NAMESPACE, LOCKS.migrations]).catch((e: Error) => (broken = e));
    }
  } catch (err) {
    broken ??= err as Error;
    throw new Error(`migrating the PostgreSQL state database failed: ${(err as Error).message}`);
  } finally {
    c.release(broken);
  }
}

/** Applied and pending migration names. */
export async function postgresMigrationStatus(pool: Pool): Promise<MigrationStatus> {
  const c = await pool.connect();
  try {
    const umzug = umzugFor(c, executedOn(c));
    return { applied: (await umzug.executed()).map((m) => m.name), pending: (await umzug.pending()).map((m) => m.name) };
  } finally {
    c.release();
  }
}
