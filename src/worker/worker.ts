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
import { BreakerGate } from '../activities/breaker-gate';
import { registerBreakerMetrics } from '../activities/breaker-metrics';
import { createCoordinator } from '../activities/coordinator';
import { openSharedAdmission, type SharedAdmission } from '../state/admission';
import { registerHealthMetrics } from '../activities/health-metrics';
import { registerProberMetrics } from '../activities/prober-health';
import { registerOutboundMetrics } from '../activities/outbound-metrics';
import { registerRotationMetrics } from '../activities/rotation-metrics';
import { createHealthOutcomeSink } from '../activities/health-sink';
import type { OutcomeSink } from '../activities/ports';
import type { RegistrySource } from '../activities/registry';
import { AesGcmCodec } from '../codec/aes-gcm-codec';
import { assertSharedKeysFor, loadCodecKeys } from '../codec/keys';
import { openState, type StateBackend } from '../state';
import { workflowPreloadModules } from './bundle';
import { checkSearchAttributes, describeServer, disagreements, formatWorkerIdentity, limitsStore, listPollers, searchAttributesProblem } from './cluster-check';
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
    telemetryOptions: config.sdkMetricsAddress ? { metrics: sdkPrometheusOptions(config.sdkMetricsAddress) } : undefined,
    shutdownSignals: ['SIGINT', 'SIGTERM'],
  });
}

/**
 * The SDK core's Prometheus exporter on `bindAddress`, named by the Prometheus
 * conventions so that `promtool check metrics` passes: counters end in
 * `_total`, durations are seconds with the unit in the name
 * (`temporal_activity_execution_latency_seconds`), every series is under
 * the `temporal_` prefix. Without these options the core serves counters
 * without `_total` and histograms in milliseconds with no unit.
 */
export function sdkPrometheusOptions(bindAddress: string) {
  return { prometheus: { bindAddress, countersTotalSuffix: true, unitSuffix: true, useSecondsForDurations: true } };
}

/** The prebuilt bundle from `npm run build` when present, else bundle from source at start. */
export function workflowSourceOptions(): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath' | 'bundlerOptions'> {
  const prebuilt = join(__dirname, '..', 'workflow-bundle.js');
  if (existsSync(prebuilt) && __filename.endsWith('.js')) return { workflowBundle: { codePath: prebuilt } };
  // From source: bundled as the prebuilt bundle is (the same preloaded modules).
  return { workflowsPath: require.resolve('../workflows'), bundlerOptions: { preloadModules: workflowPreloadModules() } };
}

/**
 * The worker's cluster is not fit to run it (missing search attributes the
 * server would not let us create, or another poller on the task queue with
 * other keys or another state store). The message may span lines (commands to run).
 */
export class ClusterCheckError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClusterCheckError';
  }
}

export interface AgentWorker {
  worker: Worker;
  /** Temporal identity: `host:pid codec=<fp1>+<fp2> state=<id8> limits=<store>` (every codec key, the encrypting one first). */
  identity: string;
  /** The worker's own Temporal client (same connection settings and codec), closed with the worker. */
  client: Client;
  /** Runs until shutdown (signal or `worker.shutdown()`), then closes connections and databases. */
  run(): Promise<void>;
}

/**
 * Builds a worker for this project.
 * @param deps.registry the registry in force (a file watcher in production).
 * @param deps.metrics application metrics registry, when metrics are served.
 * Before it polls, the worker checks its cluster (src/worker/cluster-check.ts):
 * missing search attributes are created, or it refuses; another live poller of
 * the task queue encrypting with a codec key this process lacks, or lacking the
 * key this process encrypts with, or on another state instance, or counting
 * limits in another store, makes it refuse.
 *
 * @throws SharedKeysRequiredError (before any connection) for a non-loopback address without explicit keys.
 * @throws when the Temporal server cannot be reached (message names the address).
 * @throws ClusterCheckError when the cluster check fails (message says what to do).
 */
export async function createAgentWorker(deps: {
  config: Config;
  registry: RegistrySource;
  logger: Logger;
  metrics?: MetricsRegistry;
  /** Stable id of this worker process (breaker quorum, outcome reporter). */
  reporterId?: string;
  /**
   * The state backend; default `openState` on the config (INTEGRATION_AGENT_DATABASE_URL,
   * else the data dir's embedded file), opened here and closed by `run()`. A given one is not closed.
   */
  state?: StateBackend;
  /** Instance id of the state backend (the same for every process on one database); shown in the identity as `state=<id8>`. */
  stateInstanceId?: string;
}): Promise<AgentWorker> {
  const { config, logger } = deps;
  assertSharedKeysFor(config.address);
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
  let state: StateBackend;
  try {
    state = deps.state ?? (await openState({ dataDir: config.dataDir, databaseUrl: config.databaseUrl }));
  } catch (err) {
    await clientConnection.close();
    await connection.close();
    throw err;
  }
  const closeState = deps.state ? async () => undefined : () => state.close();
  const stateInstanceId = deps.stateInstanceId ?? state.instanceId;
  const limits = limitsStore(config);
  const identity = formatWorkerIdentity({ process: reporterId, codec: codec.activeFingerprint, codecKeys: [...codec.fingerprints], state: stateInstanceId, limits });
  try {
    await checkCluster({ config, logger, connection: clientConnection, identity, codec, stateInstanceId, limits });
  } catch (err) {
    await clientConnection.close();
    await connection.close();
    await closeState();
    throw err;
  }

  // Cluster-wide limits (rate limits, maxConcurrent, Make organisation limits) when a shared store is configured: Redis, else PostgreSQL.
  let sharedAdmission: SharedAdmission | undefined;
  try {
    sharedAdmission = await openSharedAdmission({
      databaseUrl: config.databaseUrl,
      redisUrl: config.redisUrl,
      onRenewError: (err) => logger.warn({ error: (err as Error).message }, 'could not renew cluster-wide admission leases (they expire by themselves)'),
    });
  } catch (err) {
    await clientConnection.close();
    await connection.close();
    await closeState();
    throw err;
  }

  const breakerMetrics = deps.metrics ? registerBreakerMetrics(deps.metrics) : undefined;
  const healthMetrics = deps.metrics ? registerHealthMetrics(deps.metrics) : undefined;
  const outboundMetrics = deps.metrics ? registerOutboundMetrics(deps.metrics) : undefined;
  const rotationMetrics = deps.metrics ? registerRotationMetrics(deps.metrics) : undefined;
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
  const passive = createHealthOutcomeSink(state.health, { onError: (err) => logger.warn({ error: (err as Error).message }, 'could not record call outcomes in the health history') });
  const outcomes: OutcomeSink = passive;
  const coordinator = createCoordinator({ registry: deps.registry, secrets: state.credentials, gate, outcomes, reporterId, sharedAdmission, metrics: outboundMetrics });
  const alertWebhooks = config.alertWebhooks ?? [];
  const activities = createActivities({
    registry: deps.registry,
    state,
    reporterId,
    coordinator,
    sharedAdmission,
    ...(config.probeCaFile ? { probes: { caFile: config.probeCaFile } } : {}),
    health: { client, taskQueue: config.taskQueue, metrics: healthMetrics, alertWebhooks },
    // The prober's own health: named by reporterId (host:pid), alerting through the same client.
    prober: {
      canaries: config.proberCanaries ?? [],
      ...(deps.metrics ? { metrics: registerProberMetrics(deps.metrics) } : {}),
      onError: (err) => logger.warn({ error: (err as Error).message }, 'could not report the prober state to its proberHealth workflow (sent again with the next probes)'),
    },
    rotation: {
      metrics: rotationMetrics,
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
        // This process has now seen the breaker: its gate follows it, so the state gauge does too.
        void gate.refresh(t.serviceId).catch(() => undefined);
        // No alert here: the breaker workflow delivers each transition's alert itself (its own
        // deliverAlert activity, retried with the receivers' horizon); sending it here too gave every
        // receiver each breaker alert twice.
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
    ...config.worker,
    shutdownGraceTime: '5s',
    identity,
  });
  logger.info({ address: config.address, namespace: config.namespace, taskQueue: config.taskQueue, reporterId, identity }, 'worker started');
  return {
    worker,
    identity,
    client,
    async run() {
      try {
        await worker.run();
      } finally {
        // Calls still in flight report to the gate, so the coordinator closes first.
        await coordinator.close();
        await sharedAdmission?.close();
        await gate.close().catch(() => undefined);
        await passive.close(); // writes buffered outcomes and the latency histograms (at most once a minute otherwise)
        await clientConnection.close();
        await connection.close();
        await closeState();
        logger.info('worker stopped');
      }
    },
  };
}

/**
 * The start-up cluster check: search attributes (created when missing and
 * allowed), then the other live pollers of the task queue.
 * @throws ClusterCheckError
 */
async function checkCluster(opts: {
  config: Config;
  logger: Logger;
  connection: Connection;
  identity: string;
  codec: AesGcmCodec;
  stateInstanceId?: string;
  /** Where this worker counts cluster-wide limits (`limitsStore`). */
  limits: string;
}): Promise<void> {
  const { config, logger, connection } = opts;
  const server = await describeServer(connection, config.namespace);
  if (server.namespaceMissing) {
    throw new ClusterCheckError(
      `namespace ${config.namespace} does not exist on the Temporal server at ${config.address}: set TEMPORAL_NAMESPACE to an existing one, or create it: temporal operator namespace create --namespace ${config.namespace}`,
    );
  }
  const attrs = await checkSearchAttributes(connection, config.namespace, { create: true });
  if (!attrs.listed) {
    // Some hosted servers do not let a worker list them; say so and go on rather than refuse a working cluster.
    logger.warn({ namespace: config.namespace, error: attrs.error }, 'could not check the search attributes; run `integration-agent doctor` as an operator');
  } else {
    if (attrs.created.length > 0) logger.info({ namespace: config.namespace, created: attrs.created }, 'search attributes created');
    const problem = searchAttributesProblem(attrs);
    if (problem) throw new ClusterCheckError(problem);
  }
  let pollers;
  try {
    pollers = await listPollers(connection, config.namespace, config.taskQueue);
  } catch (err) {
    logger.warn({ taskQueue: config.taskQueue, error: (err as Error).message.split('\n')[0] }, 'could not list the pollers of the task queue; keys and state stores of other workers are not checked');
    return;
  }
  const found = disagreements(
    { identity: opts.identity, codec: opts.codec.activeFingerprint, codecFingerprints: opts.codec.fingerprints, state: opts.stateInstanceId, limits: opts.limits },
    pollers,
    config.taskQueue,
  );
  if (found.length > 0) throw new ClusterCheckError(`refusing to start: ${found.map((d) => d.message).join('\n')}`);
}
