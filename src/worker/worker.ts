/**
 * The worker process: one Runtime with a pino-backed logger, a connection to
 * Temporal (TLS/mTLS/API key from config), the payload codec, the prebuilt
 * workflow bundle, and every activity built from explicit dependencies.
 *
 * Shutdown: the Runtime turns SIGINT/SIGTERM into `worker.shutdown()`; running
 * activities get `shutdownGraceTime` to finish, then are cancelled; the
 * process exits 0.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Registry as MetricsRegistry } from 'prom-client';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import { createAlertActivities, parseAlertWebhooks } from '../activities/alerts';
import { BreakerGate } from '../activities/breaker-gate';
import { registerBreakerMetrics } from '../activities/breaker-metrics';
import { createCoordinator } from '../activities/coordinator';
import { SqliteCredentialStore } from '../activities/credential-store';
import { closeDatabases } from '../activities/db';
import { registerHealthMetrics } from '../activities/health-metrics';
import { createHealthOutcomeSink, flushHealthStores, openHealthStore } from '../activities/health-store';
import type { OutcomeSink } from '../activities/ports';
import type { RegistrySource } from '../activities/registry';
import { AesGcmCodec } from '../codec/aes-gcm-codec';
import { loadCodecKeys } from '../codec/keys';
import { breakerAlert } from '../domain/breaker';
import { clientConnectionOptions, workerConnectionOptions, type Config } from './config';
import { PinoSdkLogger } from './logger';

let runtimeInstalled = false;

/**
 * Installs the process-wide Temporal Runtime once (logger, SDK metrics, signal handling).
 * Later calls are no-ops.
 */
export function installRuntime(config: Config, logger: Logger): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({
    logger: config.logLevel === 'silent' ? new DefaultLogger('ERROR', () => undefined) : new PinoSdkLogger(logger),
    telemetryOptions: config.sdkMetricsAddress ? { metrics: { prometheus: { bindAddress: config.sdkMetricsAddress } } } : undefined,
    shutdownSignals: ['SIGINT', 'SIGTERM'],
  });
}

/** The prebuilt bundle from `npm run build` when present, else bundle from source at start. */
export function workflowSourceOptions(): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> {
  const prebuilt = join(__dirname, '..', 'workflow-bundle.js');
  if (existsSync(prebuilt) && __filename.endsWith('.js')) return { workflowBundle: { codePath: prebuilt } };
  return { workflowsPath: require.resolve('../workflows') };
}

export interface AgentWorker {
  worker: Worker;
  /** The worker's own Temporal client (same connection settings and codec), closed with the worker. */
  client: Client;
  /** Runs until shutdown (signal or `worker.shutdown()`), then closes connections and databases. */
  run(): Promise<void>;
}

/**
 * Builds a worker for this project.
 * @param deps.registry the registry in force (a file watcher in production).
 * @param deps.metrics application metrics registry, when metrics are served.
 * @throws when the Temporal server cannot be reached (message names the address).
 */
export async function createAgentWorker(deps: {
  config: Config;
  registry: RegistrySource;
  logger: Logger;
  metrics?: MetricsRegistry;
  /** Stable id of this worker process (breaker quorum, outcome reporter). */
  reporterId?: string;
}): Promise<AgentWorker> {
  const { config, logger } = deps;
  installRuntime(config, logger);
  let connection: NativeConnection;
  try {
    connection = await NativeConnection.connect(workerConnectionOptions(config));
  } catch (err) {
    throw new Error(`cannot connect to Temporal at ${config.address} (namespace ${config.namespace}): ${(err as Error).message}. Is the server running? Set TEMPORAL_ADDRESS to point elsewhere.`);
  }
  const reporterId = deps.reporterId ?? `${hostname()}:${process.pid}`;
  const codec = new AesGcmCodec(loadCodecKeys(config.dataDir));
  // Activities talk to Temporal too (breaker gate, per-service health workflows): one client, same codec.
  const clientConnection = await Connection.connect(clientConnectionOptions(config));
  const client = new Client({ connection: clientConnection, namespace: config.namespace, dataConverter: { payloadCodecs: [codec] } });

  const breakerMetrics = deps.metrics ? registerBreakerMetrics(deps.metrics) : undefined;
  const healthMetrics = deps.metrics ? registerHealthMetrics(deps.metrics) : undefined;
  const gate = new BreakerGate({
    client,
    taskQueue: config.taskQueue,
    reporter: reporterId,
    optionsFor: (serviceId) => deps.registry.current().services.find((s) => s.id === serviceId)?.circuitBreaker,
    metrics: breakerMetrics,
    onError: (err, serviceId) => logger.warn({ serviceId, error: (err as Error).message }, 'breaker gate could not reach its breaker workflow'),
  });
  // Passive monitoring: every real call's outcome feeds the health history. (The breaker hears of
  // each call through the gate's permit, which the coordinator reports to; feeding it here too would count twice.)
  const passive = createHealthOutcomeSink(openHealthStore(config.dataDir));
  const outcomes: OutcomeSink = passive;
  const store = new SqliteCredentialStore({ dataDir: config.dataDir });
  const coordinator = createCoordinator({ registry: deps.registry, secrets: store, gate, outcomes, reporterId });
  const alertWebhooks = parseAlertWebhooks(process.env.ALERT_WEBHOOKS);
  const alerts = createAlertActivities({ webhooks: alertWebhooks });
  const activities = createActivities({
    registry: deps.registry,
    dataDir: config.dataDir,
    reporterId,
    coordinator,
    health: { client, taskQueue: config.taskQueue, metrics: healthMetrics, alertWebhooks },
    rotation: {
      store,
      preflight: {
        breakerState: async (serviceId) => {
          await gate.refresh(serviceId).catch(() => undefined);
          return gate.cached(serviceId)?.state;
        },
      },
    },
    breakers: {
      metrics: breakerMetrics,
      onTransition: async (t) => {
        const alert = breakerAlert(t);
        if (alert && alertWebhooks.length > 0) await alerts.deliverAlert(alert);
      },
    },
  });
  const worker = await Worker.create({
    connection,
    namespace: config.namespace,
    taskQueue: config.taskQueue,
    ...workflowSourceOptions(),
    activities,
    dataConverter: { payloadCodecs: [codec] },
    maxConcurrentActivityTaskExecutions: config.maxConcurrentActivities,
    shutdownGraceTime: '5s',
    identity: reporterId,
  });
  logger.info({ address: config.address, namespace: config.namespace, taskQueue: config.taskQueue, reporterId }, 'worker started');
  return {
    worker,
    client,
    async run() {
      try {
        await worker.run();
      } finally {
        // Calls still in flight report to the gate, so the coordinator closes first.
        await coordinator.close();
        await gate.close().catch(() => undefined);
        passive.close();
        flushHealthStores(); // latency histograms are written at most once a minute otherwise
        await clientConnection.close();
        await connection.close();
        closeDatabases();
        logger.info('worker stopped');
      }
    },
  };
}
