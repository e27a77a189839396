/**
 * Cluster-wide admission: rate limits and concurrency caps that hold across
 * every worker process together, counted in one shared store on the store's
 * own clock. PostgreSQL (`INTEGRATION_AGENT_DATABASE_URL`) or Redis
 * (`INTEGRATION_AGENT_REDIS_URL`, preferred when both are set) implement
 * one narrow interface, {@link ClusterLimiter}; {@link SharedAdmission} does
 * the waiting above it. docs/coordinator.md ("Cluster-wide limits") has the
 * guarantees, the lease bound and the cost per call.
 */
import { PostgresClusterLimiter, type PostgresLimiterOptions } from './postgres';
import { RedisClusterLimiter, type RedisLimiterOptions } from './redis';
import { SharedAdmission } from './shared-admission';
import type { ClusterLimiter } from './types';

export { AdmissionStoreError, AdmissionWaitError } from './types';
export type { ClusterGrant, ClusterLimiter } from './types';
export { PostgresClusterLimiter } from './postgres';
export type { PostgresLimiterOptions } from './postgres';
export { RedisClusterLimiter } from './redis';
export type { RedisLimiterOptions } from './redis';
export { SharedAdmission, DEFAULT_MAX_GRANT_AGE_MS } from './shared-admission';
export type { SharedAcquire, SharedRelease, SharedAdmissionStats } from './shared-admission';

/** Where the shared store is: the process configuration's URLs (src/worker/config.ts). */
export interface SharedAdmissionConfig {
  /** PostgreSQL URL (INTEGRATION_AGENT_DATABASE_URL). */
  databaseUrl?: string;
  /** Redis URL (INTEGRATION_AGENT_REDIS_URL); wins over databaseUrl. */
  redisUrl?: string;
  /** Lease of a concurrency hold, ms; default 10_000. */
  leaseMs?: number;
  /** Renewal interval of live holds, ms; default 3_000. */
  renewEveryMs?: number;
  /** Told when a lease renewal fails. */
  onRenewError?: (err: unknown) => void;
}

/**
 * Opens the store the configuration names: Redis when `redisUrl` is set,
 * else PostgreSQL when `databaseUrl` is, else nothing (limits stay per
 * process).
 * @returns the limiter, or undefined when no shared store is configured.
 * @throws AdmissionStoreError naming the store when it cannot be reached; RangeError for bad lease options.
 */
export async function openClusterLimiter(config: SharedAdmissionConfig): Promise<ClusterLimiter | undefined> {
  const lease = { leaseMs: config.leaseMs, renewEveryMs: config.renewEveryMs, onRenewError: config.onRenewError };
  if (config.redisUrl) return RedisClusterLimiter.open({ url: config.redisUrl, ...lease } satisfies RedisLimiterOptions);
  if (config.databaseUrl) return PostgresClusterLimiter.open({ url: config.databaseUrl, ...lease } satisfies PostgresLimiterOptions);
  return undefined;
}

/**
 * {@link openClusterLimiter} wrapped in a {@link SharedAdmission}: what the
 * coordinator and the Make client take. Close it on shutdown.
 * @returns undefined when no shared store is configured.
 * @throws as {@link openClusterLimiter}.
 */
export async function openSharedAdmission(config: SharedAdmissionConfig): Promise<SharedAdmission | undefined> {
  const limiter = await openClusterLimiter(config);
  return limiter && new SharedAdmission(limiter);
}
