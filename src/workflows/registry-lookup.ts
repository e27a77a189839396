/**
 * `registryLookup`: is this service or credential id in the registry the
 * workers follow? A short workflow (id `registry-lookup/<uuid>`) that
 * snapshots the worker's registry, as every sweep and rotation does, and
 * answers for one id: known or not, the closest id when not, and for a
 * service its breaker options. The CLI runs it before a command that takes an
 * id, when it has no registry file of its own (INTEGRATION_AGENT_REGISTRY),
 * so a typo is refused with a did-you-mean instead of creating a breaker or a
 * rotation for a service or credential that does not exist.
 *
 * The answer is a few fields, whatever the fleet's size.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { createRegistryActivities } from '../activities/registry';
import { lookupRegistryId, type RegistryIdKind, type RegistryIdLookup } from '../domain/ids';
import type { BreakerOptions } from '../domain/breaker';

export interface RegistryLookupInput {
  kind: RegistryIdKind;
  id: string;
}

export interface RegistryLookupResult extends RegistryIdLookup {
  /** For a known service: its `circuitBreaker` options from the registry, if any. */
  circuitBreaker?: Partial<BreakerOptions>;
}

// A worker without the registry activity (or none at all) must not leave the CLI hanging:
// two quick attempts, and the client bounds the whole run.
const { snapshotRegistry } = proxyActivities<ReturnType<typeof createRegistryActivities>>({
  startToCloseTimeout: '10s',
  scheduleToCloseTimeout: '20s',
  retry: { initialInterval: '500ms', maximumAttempts: 2 },
});

export async function registryLookup(input: RegistryLookupInput): Promise<RegistryLookupResult> {
  const registry = await snapshotRegistry();
  const found = lookupRegistryId(registry, input.kind, input.id);
  if (input.kind !== 'service' || !found.known) return found;
  const cb = registry.services.find((s) => s.id === input.id)?.circuitBreaker;
  return cb ? { ...found, circuitBreaker: cb } : found;
}
