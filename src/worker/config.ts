/**
 * Process configuration from the environment, validated once at start
 * (zod). Errors name the variable, the value and what is expected.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import type { ConnectionOptions } from '@temporalio/client';
import type { NativeConnectionOptions } from '@temporalio/worker';
import { DEFAULT_TASK_QUEUE } from '../domain/constants';
import { parseAlertWebhooks, type AlertWebhook } from '../domain/alert-receivers';
import { checkCanaryUrl } from '../domain/prober-health';

const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'must be host:port, e.g. localhost:7233');
const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');

/**
 * Default of `WORKER_EAGER_ACTIVITIES` (the SDK's `maxEagerActivityReservationsPerWorkflowTask`):
 * the rotation's default `maxParallel`, so a whole batch of consumer steps goes out eagerly. The
 * rotation benchmark's worker uses it too, so it measures what `worker` and `dev` run.
 */
export const DEFAULT_EAGER_ACTIVITIES = 32;

const envSchema = z.object({
  TEMPORAL_ADDRESS: hostPort.default('localhost:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default(DEFAULT_TASK_QUEUE),
  /** Turn TLS on without client certificates (Temporal Cloud with an API key does this by itself). */
  TEMPORAL_TLS: bool.optional(),
  TEMPORAL_TLS_CERT: z.string().optional(),
  TEMPORAL_TLS_KEY: z.string().optional(),
  TEMPORAL_TLS_CA: z.string().optional(),
  TEMPORAL_TLS_SERVER_NAME: z.string().optional(),
  TEMPORAL_API_KEY: z.string().optional(),
  INTEGRATION_AGENT_DATA_DIR: z.string().optional(),
  INTEGRATION_AGENT_REGISTRY: z.string().optional(),
  /** `postgres://user:password@host:port/db`: the shared state backend for many workers on many hosts (default: embedded SQLite in the data dir). */
  INTEGRATION_AGENT_DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\/\S+$/, 'must be a postgres:// or postgresql:// URL').optional(),
  /** `redis://host:port[/db]`: cluster-wide admission (rate limits, concurrency caps) through Redis instead of PostgreSQL. */
  INTEGRATION_AGENT_REDIS_URL: z.string().regex(/^rediss?:\/\/\S+$/, 'must be a redis:// or rediss:// URL').optional(),
  /** `host:port` for the worker's Prometheus /metrics (application and SDK metrics). */
  METRICS_ADDRESS: hostPort.optional(),
  /** `host:port` for the Temporal SDK core's own Prometheus endpoint (task slots, poll latency...). */
  SDK_METRICS_ADDRESS: hostPort.optional(),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  /** A PEM file of extra CAs every health probe speaking TLS trusts (a private CA), besides the system roots. */
  INTEGRATION_AGENT_PROBE_CA_FILE: z.string().min(1).optional(),
  /**
   * Canary targets of the prober's own health (docs/health.md, "The prober's own health"): comma-separated
   * `tcp://host:port`, `http://…` or `https://…` the worker's network must reach (its resolver, its gateway).
   */
  INTEGRATION_AGENT_PROBER_CANARIES: z.string().optional(),
  /** Activities run at once per worker process. */
  MAX_CONCURRENT_ACTIVITIES: z.coerce.number().int().min(1).max(10_000).default(200),
  /**
   * Workflows kept in the worker's cache (sticky execution); beyond it the least recently used
   * is evicted and replayed from history on its next task. Default 1000: health shards (128 per
   * task queue), breakers and running rotations fit; the SDK's own default (derived from the heap
   * limit) let per-service workflows grow a worker past 5 GiB. See docs/health.md, "Worker tuning".
   */
  WORKER_MAX_CACHED_WORKFLOWS: z.coerce.number().int().min(0).max(1_000_000).default(1000),
  /** Workflow tasks run at once per worker process (SDK default 40). */
  WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: z.coerce.number().int().min(2).max(10_000).optional(),
  /** Threads running workflow code (SDK default 1 with the reused V8 context). */
  WORKER_WORKFLOW_THREADS: z.coerce.number().int().min(1).max(64).optional(),
  /**
   * Activities a workflow task may take back eagerly (in the answer to its completion, skipping the
   * server's queues) when the server allows eager activities. Default {@link DEFAULT_EAGER_ACTIVITIES}
   * instead of the SDK's 3: a rotation batch schedules up to `maxParallel` (default 32) consumer steps
   * in one workflow task, and with 3 the other 29 waited for the queues (docs/temporal-overhead.md).
   * 0 turns eager activities off for this worker.
   */
  WORKER_EAGER_ACTIVITIES: z.coerce.number().int().min(0).max(1_000).default(DEFAULT_EAGER_ACTIVITIES),
});


export type Config = {
  address: string;
  namespace: string;
  taskQueue: string;
  tls?: { clientCertPath?: string; clientKeyPath?: string; caPath?: string; serverName?: string };
  apiKey?: string;
  dataDir: string;
  registryPath?: string;
  /** Shared state backend (PostgreSQL); undefined: embedded SQLite under dataDir (one host). */
  databaseUrl?: string;
  /** Redis for cluster-wide admission; undefined: PostgreSQL when databaseUrl is set, else per process. */
  redisUrl?: string;
  metricsAddress?: string;
  sdkMetricsAddress?: string;
  logLevel: z.output<typeof envSchema>['LOG_LEVEL'];
  maxConcurrentActivities: number;
  /** Worker tuning (docs/health.md, "Worker tuning"): SDK options left to their defaults when undefined. */
  worker: { maxCachedWorkflows: number; maxConcurrentWorkflowTaskExecutions?: number; workflowThreadPoolSize?: number; maxEagerActivityReservationsPerWorkflowTask: number };
  /** Extra CAs for health probes (INTEGRATION_AGENT_PROBE_CA_FILE), checked readable at start. */
  probeCaFile?: string;
  /** Canary URLs of the prober's own health (INTEGRATION_AGENT_PROBER_CANARIES), checked at start. */
  proberCanaries?: string[];
  /** Alert receivers (`ALERT_WEBHOOKS`, README "Alert receivers"), validated at start; none: alerts are decided but sent nowhere. */
  alertWebhooks?: AlertWebhook[];
};

/** Thrown for configuration the user must fix; the message lists every problem. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The per-user default data dir: `$XDG_DATA_HOME/integration-agent` or `~/.local/share/integration-agent`. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share'), 'integration-agent');
}

/**
 * Reads and validates the configuration.
 * @throws ConfigError listing each bad variable with its value (API keys are never echoed).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const r = envSchema.safeParse(env);
  if (!r.success) {
    const lines = r.error.issues.map((i) => {
      const name = String(i.path[0]);
      const shown = name === 'TEMPORAL_API_KEY' || name === 'INTEGRATION_AGENT_DATABASE_URL' || name === 'INTEGRATION_AGENT_REDIS_URL' ? '(hidden: may hold a password)' : JSON.stringify(env[name]);
      return `${name}=${shown}: ${i.message}`;
    });
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  const e = r.data;
  if (Boolean(e.TEMPORAL_TLS_CERT) !== Boolean(e.TEMPORAL_TLS_KEY)) {
    throw new ConfigError('invalid configuration: TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (mTLS client certificate and its key)');
  }
  if (e.INTEGRATION_AGENT_PROBE_CA_FILE) {
    const pem = readFile(e.INTEGRATION_AGENT_PROBE_CA_FILE, 'INTEGRATION_AGENT_PROBE_CA_FILE').toString('utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(`invalid configuration: INTEGRATION_AGENT_PROBE_CA_FILE=${e.INTEGRATION_AGENT_PROBE_CA_FILE} holds no PEM certificate`);
  }
  const proberCanaries = parseCanaries(e.INTEGRATION_AGENT_PROBER_CANARIES);
  let alertWebhooks: AlertWebhook[];
  try {
    alertWebhooks = parseAlertWebhooks(env.ALERT_WEBHOOKS);
  } catch (err) {
    // The parser names the receiver and never echoes a URL, key or password.
    throw new ConfigError(`invalid configuration: ${(err as Error).message}`);
  }
  const wantsTls = e.TEMPORAL_TLS || e.TEMPORAL_TLS_CERT || e.TEMPORAL_TLS_CA || e.TEMPORAL_TLS_SERVER_NAME;
  return {
    address: e.TEMPORAL_ADDRESS,
    namespace: e.TEMPORAL_NAMESPACE,
    taskQueue: e.TEMPORAL_TASK_QUEUE,
    tls: wantsTls
      ? { clientCertPath: e.TEMPORAL_TLS_CERT, clientKeyPath: e.TEMPORAL_TLS_KEY, caPath: e.TEMPORAL_TLS_CA, serverName: e.TEMPORAL_TLS_SERVER_NAME }
      : undefined,
    apiKey: e.TEMPORAL_API_KEY,
    dataDir: e.INTEGRATION_AGENT_DATA_DIR || defaultDataDir(env),
    registryPath: e.INTEGRATION_AGENT_REGISTRY,
    databaseUrl: e.INTEGRATION_AGENT_DATABASE_URL,
    redisUrl: e.INTEGRATION_AGENT_REDIS_URL,
    metricsAddress: e.METRICS_ADDRESS,
    sdkMetricsAddress: e.SDK_METRICS_ADDRESS,
    logLevel: e.LOG_LEVEL,
    maxConcurrentActivities: e.MAX_CONCURRENT_ACTIVITIES,
    worker: {
      maxCachedWorkflows: e.WORKER_MAX_CACHED_WORKFLOWS,
      ...(e.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS !== undefined ? { maxConcurrentWorkflowTaskExecutions: e.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS } : {}),
      ...(e.WORKER_WORKFLOW_THREADS !== undefined ? { workflowThreadPoolSize: e.WORKER_WORKFLOW_THREADS } : {}),
      maxEagerActivityReservationsPerWorkflowTask: e.WORKER_EAGER_ACTIVITIES,
    },
    ...(e.INTEGRATION_AGENT_PROBE_CA_FILE ? { probeCaFile: e.INTEGRATION_AGENT_PROBE_CA_FILE } : {}),
    ...(alertWebhooks.length ? { alertWebhooks } : {}),
    ...(proberCanaries.length ? { proberCanaries } : {}),
  };
}

/**
 * `INTEGRATION_AGENT_PROBER_CANARIES`: comma-separated canary URLs.
 * @throws ConfigError naming the bad entry and what a canary may be.
 */
export function parseCanaries(value: string | undefined): string[] {
  const urls = (value ?? '')
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);
  for (const u of urls) {
    const problem = checkCanaryUrl(u);
    if (problem) throw new ConfigError(`invalid configuration: INTEGRATION_AGENT_PROBER_CANARIES: ${problem}`);
  }
  return urls;
}

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

function tlsOptions(config: Config) {
  if (!config.tls && !config.apiKey) return undefined;
  if (!config.tls) return true as const; // API key: TLS with system roots.
  const t = config.tls;
  return {
    serverNameOverride: t.serverName,
    serverRootCACertificate: t.caPath ? readFile(t.caPath, 'TEMPORAL_TLS_CA') : undefined,
    clientCertPair:
      t.clientCertPath && t.clientKeyPath
        ? { crt: readFile(t.clientCertPath, 'TEMPORAL_TLS_CERT'), key: readFile(t.clientKeyPath, 'TEMPORAL_TLS_KEY') }
        : undefined,
  };
}

/** Options for `Connection.connect` (client side). */
export function clientConnectionOptions(config: Config): ConnectionOptions {
  return { address: config.address, tls: tlsOptions(config), apiKey: config.apiKey, connectTimeout: 5_000 };
}

/** Options for `NativeConnection.connect` (worker side). */
export function workerConnectionOptions(config: Config): NativeConnectionOptions {
  return { address: config.address, tls: tlsOptions(config), apiKey: config.apiKey };
}
