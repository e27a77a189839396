/**
 * `createActivities(deps)`: every side effect the workflows may ask for, built
 * from explicit dependencies (tests pass real local servers and temp dirs).
 * Each area has its own factory; this composes them.
 */
import { createRegistryActivities, type RegistrySource } from './registry';

export interface ActivityDeps {
  registry: RegistrySource;
  /** Folder for local state (credential store, embedded database). */
  dataDir: string;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createRegistryActivities(deps.registry),
  };
}

export type Activities = ReturnType<typeof createActivities>;
