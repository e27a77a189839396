/**
 * Plans over a loaded registry: which services a job touches, in which
 * topological batches, how to roll back, and the critical path that bounds
 * a parallel run's wall time. Pure; workflows may call it on their snapshot.
 */
import { batchedDurationMs, criticalPath, planBatches, rollbackOrder, type CriticalPath } from './graph';
import { credentialServiceIds, expectedDurationMs, type Registry } from './registry';

/** A dependency-ordered plan over all services or one credential's services. */
export interface RegistryPlan {
  /** The registry version (content hash) the plan was made from. */
  registryVersion: string;
  /** The credential planned for; absent when the plan covers every service. */
  credentialId?: string;
  /** Services in scope: every service, or the credential's issuer then consumers. */
  serviceIds: string[];
  /** Topological batches: each service after everything it depends on (directly or through services outside the scope). */
  batches: string[][];
  /** The batches reversed, for undoing a partly applied plan. */
  rollback: string[][];
  /** The longest chain by expected duration: the lower bound on a parallel run's wall time. */
  criticalPath: CriticalPath;
  /** Wall time if each batch runs fully parallel and waits for its slowest step, ms. */
  batchedDurationMs: number;
}

/**
 * Plans work over `registry`.
 *
 * Expected step durations come from each service's `expectedDuration`
 * (default `DEFAULT_EXPECTED_DURATION_MS`, 1s).
 *
 * @param options.credentialId restrict to this credential's issuer and consumers.
 * @throws Error naming the credential and the known ids when it is absent.
 * @throws DependencyCycleError if the registry has a cycle (a validated registry never has).
 */
export function planRegistry(registry: Registry, options: { credentialId?: string } = {}): RegistryPlan {
  const { credentialId } = options;
  const serviceIds = credentialId === undefined ? registry.services.map((s) => s.id) : credentialServiceIds(registry, credentialId);
  const byId = new Map(registry.services.map((s) => [s.id, s]));
  const durationOf = (id: string): number => {
    const s = byId.get(id);
    return s ? expectedDurationMs(s) : 0;
  };
  const batches = planBatches(registry.services, serviceIds);
  return {
    registryVersion: registry.versionHash,
    ...(credentialId === undefined ? {} : { credentialId }),
    serviceIds,
    batches,
    rollback: rollbackOrder(batches),
    criticalPath: criticalPath(registry.services, durationOf, serviceIds),
    batchedDurationMs: batchedDurationMs(batches, durationOf),
  };
}
