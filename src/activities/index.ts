/**
 * `createActivities(deps)`: every side effect the workflows may ask for, built
 * from explicit dependencies (tests pass real local servers and temp dirs).
 * Each area has its own factory; this composes them.
 */
import { hostname } from 'node:os';
import { createRegistryActivities, versionedRegistry, type RegistrySource } from './registry';
import { createRegistryPageActivities } from './registry-pages';
import { createDiagnosticsActivities } from './diagnostics';
import { createProbeActivities, createProber, type ProbeDeps } from './probes';
import { ProberHealth, type ProberHealthOptions } from './prober-health';
import { createMonitorLaneActivities, createPublishResultsActivity } from './monitor-lane';
import { createAlertActivities, type AlertWebhook } from './alerts';
import { createBreakerActivities, type BreakerActivityDeps } from './breaker';
import { createHealthPublishActivities, type HealthPublishDeps } from './health-publish';
import type { CredentialStore, StateBackend } from '../state/types';
import type { ProbeResult } from '../domain/health';
import { createRotationActivities, type RotationPreflightChecks } from './rotation';
import type { RotationMetrics } from './rotation-metrics';
import { createStateReadActivities } from './state-read';
import type { RotationProvider } from './providers';
import { createCoordinatorActivities, CoordinatorError, type Coordinator } from './coordinator';
import type { SharedAdmission } from '../state/admission';
import { builtInProviders } from './providers';
import { coordinatorMakeTransport, createMakeActivities, createMakeClients, createMakeProvider } from './make';

export interface ActivityDeps {
  registry: RegistrySource;
  /**
   * All state outside Temporal (`openState`: PostgreSQL or the embedded
   * SQLite file): the credential store, the health history, the webhook dead
   * letters. Opened and closed by the caller (the worker).
   */
  state: StateBackend;
  /** Stable id of this worker process (`host:pid`): breaker quorum, outcome reporter, diagnostics. */
  reporterId?: string;
  /** Health probes: extra trusted CAs (PEM, or a file), clock (optional); the credential store defaults to the state's. */
  probes?: ProbeDeps;
  /** Health: the client that signals `service/<id>` workflows, alert webhooks, figure cadence. */
  health?: Omit<HealthPublishDeps, 'history'> & { alertWebhooks?: AlertWebhook[] };
  /** Rotation: a credential store other than `state.credentials` (tests), providers, preflight views. */
  rotation?: { store?: CredentialStore; providers?: Record<string, RotationProvider>; preflight?: RotationPreflightChecks; metrics?: RotationMetrics };
  /** Breakers: metrics to count transitions on (`registerBreakerMetrics`), an extra transition hook. */
  breakers?: BreakerActivityDeps;
  /** The process's API coordinator (`createCoordinator`, closed by the worker on shutdown); without it `callService` fails non-retryably. */
  coordinator?: Coordinator;
  /** Cluster-wide admission (src/state/admission): Make's organisation limits then hold across every worker process. */
  sharedAdmission?: SharedAdmission;
  /**
   * The prober's own health (docs/health.md): canary URLs (`INTEGRATION_AGENT_PROBER_CANARIES`),
   * thresholds, where reports go. On by default, named by `reporterId`, alerting through
   * `health.client`; `false` turns it off (every result stands as probed).
   */
  prober?: false | Pick<ProberHealthOptions, 'canaries' | 'rule' | 'taskQueue' | 'onError' | 'now' | 'metrics'>;
}

export function createActivities(deps: ActivityDeps) {
  // One credential store: rotations write it, operator reads (state-read workflows) read the same.
  const credentials = deps.rotation?.store ?? deps.state.credentials;
  // Make.com: one set of clients (per-organization API limits) shared by the Make activities and the `make` rotation provider.
  const registry = versionedRegistry(deps.registry);
  // auth: true probes present the CURRENT credential from the same store calls read.
  // The coordinator's load balancer learns the endpoints a probe found down (this process's view).
  const probeDeps: ProbeDeps = { secrets: credentials, onEndpointsDown: deps.coordinator?.reportEndpointsDown?.bind(deps.coordinator), ...deps.probes };
  const prober = createProber(probeDeps);
  // A prober is a process: one ProberHealth per worker, judging every probe path's results
  // (probeServices, and through it probeRegistryPage; lanes call the same judge).
  const proberHealth =
    deps.prober === false
      ? undefined
      : new ProberHealth({ identity: deps.reporterId ?? `${hostname()}:${process.pid}`, registry: deps.registry, probe: prober.probeOne, client: deps.health?.client, taskQueue: deps.health?.taskQueue, ...deps.prober });
  const probes = createProbeActivities({ ...probeDeps, ...(proberHealth ? { judge: (r) => proberHealth.judge(r) } : {}) }, prober);
  const makeClients = createMakeClients({ registry: deps.registry, transportFor: (s) => coordinatorMakeTransport(deps.coordinator ?? missingCoordinator, s.id), sharedAdmission: deps.sharedAdmission });
  return {
    ...createRegistryActivities(registry),
    ...createRegistryPageActivities({ registry, probe: probes.probeServices, history: deps.state.health }),
    ...createDiagnosticsActivities({ registry: deps.registry, reporterId: deps.reporterId ?? `pid:${process.pid}` }),
    ...probes,
    ...createMonitorLaneActivities({ registry, probe: prober.probeOne, ...(proberHealth ? { judge: (r: ProbeResult[]) => proberHealth.judge(r) } : {}), history: deps.state.health, client: deps.health?.client, taskQueue: deps.health?.taskQueue, metrics: deps.health?.metrics }),
    ...createPublishResultsActivity({ registry, history: deps.state.health, client: deps.health?.client, taskQueue: deps.health?.taskQueue }),
    ...createHealthPublishActivities({ ...deps.health, history: deps.state.health }),
    ...createAlertActivities({ webhooks: deps.health?.alertWebhooks ?? [] }),
    ...createBreakerActivities(deps.breakers),
    ...createRotationActivities({
      store: credentials,
      registry,
      providers: deps.rotation?.providers ?? { ...builtInProviders(), make: createMakeProvider(makeClients) },
      preflight: deps.rotation?.preflight,
      coordinator: deps.coordinator,
      metrics: deps.rotation?.metrics,
      alertWebhooks: deps.health?.alertWebhooks?.length ?? 0,
    }),
    ...createStateReadActivities({ credentials }),
    ...createCoordinatorActivities(deps.coordinator ?? missingCoordinator),
    ...createMakeActivities({ registry: deps.registry, deadLetters: deps.state.deadLetters, transportFor: (s) => coordinatorMakeTransport(deps.coordinator ?? missingCoordinator, s.id) }, makeClients),
  };
}

export type Activities = ReturnType<typeof createActivities>;

/** Stands in when the worker was built without a coordinator: every call fails with a message saying so. */
const missingCoordinator: Coordinator = {
  async request(serviceId, req) {
    throw new CoordinatorError({
      serviceId,
      method: req.method ?? 'GET',
      path: req.path,
      kind: 'other',
      retryable: false,
      notSent: true,
      detail: 'this worker has no API coordinator: pass deps.coordinator (createCoordinator) to createActivities',
    });
  },
  async close() {},
};
