/**
 * Activities that hand the worker's current registry to workflows, so that
 * every run snapshots it (with its version hash) through history and replays
 * deterministically.
 */
import type { Registry } from '../domain/registry';
import type { BreakerOptions } from '../domain/breaker';
import { lookupRegistryId, type RegistryIdKind, type RegistryIdLookup } from '../domain/ids';

/** What {@link createRegistryActivities}' `lookupRegistryEntry` answers: a few fields, whatever the fleet's size. */
export interface RegistryEntryLookup extends RegistryIdLookup {
  /** For a known service: its `circuitBreaker` options from the registry, if any. */
  circuitBreaker?: Partial<BreakerOptions>;
}

/** Where the worker's current registry comes from (a file watcher, or a fixed value in tests). */
export interface RegistrySource {
  /** The last valid registry. */
  current(): Registry;
}

/**
 * A registry source that also answers "the registry of version `hash`" for
 * the last few versions it handed out, so that a sweep that began before a
 * reload still reads its own version's pages (workflows pass the registry by
 * reference: its version hash).
 */
export interface VersionedRegistry extends RegistrySource {
  /** The registry with this version hash, if it is the current one or one of the last 4 handed out. */
  byVersion(versionHash: string): Registry | undefined;
}

/** Wraps `source` to remember the last 4 versions its `current()` returned. */
export function versionedRegistry(source: RegistrySource): VersionedRegistry {
  if ('byVersion' in source) return source as VersionedRegistry;
  const seen = new Map<string, Registry>();
  const current = () => {
    const r = source.current();
    if (!seen.has(r.versionHash)) {
      seen.set(r.versionHash, r);
      while (seen.size > 4) seen.delete(seen.keys().next().value!);
    }
    return r;
  };
  return {
    current,
    byVersion(versionHash) {
      const now = current();
      return now.versionHash === versionHash ? now : seen.get(versionHash);
    },
  };
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
    /**
     * Is `id` a service (or credential) of the registry in force now? Answers
     * on the worker, so only the answer (known or not, the closest id, a
     * service's breaker options) enters history, never the registry.
     */
    async lookupRegistryEntry(kind: RegistryIdKind, id: string): Promise<RegistryEntryLookup> {
      const registry = source.current();
      const found = lookupRegistryId(registry, kind, id);
      if (kind !== 'service' || !found.known) return found;
      const cb = registry.services.find((s) => s.id === id)?.circuitBreaker;
      return cb ? { ...found, circuitBreaker: cb } : found;
    },
  };
}
