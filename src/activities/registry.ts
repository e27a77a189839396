/**
 * Activities that hand the worker's current registry to workflows, so that
 * every run snapshots it (with its version hash) through history and replays
 * deterministically.
 */
import type { Registry } from '../domain/registry';

/** Where the worker's current registry comes from (a file watcher, or a fixed value in tests). */
export interface RegistrySource {
  /** The last valid registry. */
  current(): Registry;
}

/** A fixed registry, for tests and one-shot runs. */
export function staticRegistry(registry: Registry): RegistrySource {
  return { current: () => registry };
}

export function createRegistryActivities(source: RegistrySource) {
  return {
    /** Returns the registry in force now; workflows call this once at their start. */
    async snapshotRegistry(): Promise<Registry> {
      return source.current();
    },
  };
}
