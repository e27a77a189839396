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
import { DefaultLogger, NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import { closeDatabases } from '../activities/db';
import type { RegistrySource } from '../activities/registry';
import { AesGcmCodec } from '../codec/aes-gcm-codec';
import { loadCodecKeys } from '../codec/keys';
import { workerConnectionOptions, type Config } from './config';
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
  const activities = createActivities({ registry: deps.registry, dataDir: config.dataDir, reporterId });
  const worker = await Worker.create({
    connection,
    namespace: config.namespace,
    taskQueue: config.taskQueue,
    ...workflowSourceOptions(),
    activities,
    dataConverter: { payloadCodecs: [new AesGcmCodec(loadCodecKeys(config.dataDir))] },
    maxConcurrentActivityTaskExecutions: config.maxConcurrentActivities,
    shutdownGraceTime: '5s',
    identity: reporterId,
  });
  logger.info({ address: config.address, namespace: config.namespace, taskQueue: config.taskQueue, reporterId }, 'worker started');
  return {
    worker,
    async run() {
      try {
        await worker.run();
      } finally {
        await connection.close();
        closeDatabases();
        logger.info('worker stopped');
      }
    },
  };
}
