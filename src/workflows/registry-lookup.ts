/**
 * `registryLookup`: is this service or credential id in the registry the
 * workers follow? A short workflow (id `registry-lookup/<uuid>`) that
 * asks a worker's registry, in an activity, and answers for one id: known or not, the closest id when not, and for a
 * service its breaker options. The CLI runs it before a command that takes an
 * id, when it has no registry file of its own (INTEGRATION_AGENT_REGISTRY),
 * so a typo is refused with a did-you-mean instead of creating a breaker or a
 * rotation for a service or credential that does not exist.
 *
 * The answer is a few fields, whatever the fleet's size.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { createRegistryActivities, RegistryEntryLookup } from '../activities/registry';
import type { RegistryIdKind } from '../domain/ids';

export interface RegistryLookupInput {
  kind: RegistryIdKind;
  id: string;
}

export type RegistryLookupResult = RegistryEntryLookup;

// A worker without the registry activity (or none at all) must not leave the CLI hanging:
// two quick attempts, and the client bounds the whole run.
const { lookupRegistryEntry } = proxyActivities<ReturnType<typeof createRegistryActivities>>({
  startToCloseTimeout: '10s',
  scheduleToCloseTimeout: '20s',
  retry: { initialInterval: '500ms', maximumAttempts: 2 },
});

/** Answers on a worker whether `input.id` is in its registry (the lookup runs in an activity: the registry never enters history). */
export async function registryLookup(input: RegistryLookupInput): Promise<RegistryLookupResult> {
  return lookupRegistryEntry(input.kind, input.id);
}
