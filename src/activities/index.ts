/**
 * `createActivities(deps)`: every side effect the workflows may ask for, built
 * from explicit dependencies (tests pass real local servers and temp dirs).
 * Each area has its own factory; this composes them.
 */
import { createRegistryActivities, type RegistrySource } from './registry';
import { createProbeActivities, type ProbeDeps } from './probes';

export interface ActivityDeps {
  registry: RegistrySource;
  /** Folder for local state (credential store, embedded database). */
  dataDir: string;
  /** Health probes: extra trusted CAs, clock (optional). */
  probes?: ProbeDeps;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createRegistryActivities(deps.registry),
    ...createProbeActivities(deps.probes),
  };
}

export type Activities = ReturnType<typeof createActivities>;
