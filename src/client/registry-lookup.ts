/**
 * Service and credential ids checked against the registry the workers follow,
 * for programs and the CLI: a typo is refused with a did-you-mean (as
 * `validate` words it) before anything is created for an id that does not
 * exist.
 *
 * The workers' registry is read through Temporal (the `registryLookup`
 * workflow runs on a worker), so the caller needs no copy of the registry
 * file; a caller that has the file can pass it instead (`registry`).
 */
import { randomUUID } from 'node:crypto';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { rootCauseMessage } from './failure';
import { DEFAULT_TASK_QUEUE } from '../domain/constants';
import { lookupRegistryId, UnknownIdError, type RegistryIdKind } from '../domain/ids';
import type { Registry } from '../domain/registry';
import type { RegistryLookupResult, registryLookup } from '../workflows/registry-lookup';
import { requireWorker } from './connect';

/** How long a lookup may take before it is reported as failed, ms. */
export const REGISTRY_LOOKUP_TIMEOUT_MS = 30_000;

export interface RegistryLookupOptions {
  /** Task queue of the workers whose registry counts; default the project's. */
  taskQueue?: string;
  /** A registry to check against instead of asking a worker (e.g. the same file the workers load). */
  registry?: Registry;
}

/** The lookup could not be made (the worker failed or timed out); says which workflow and what to check. */
export class RegistryLookupError extends Error {
  constructor(
    readonly workflowId: string,
    message: string,
  ) {
    super(message);
    this.name = 'RegistryLookupError';
  }
}

/**
 * Whether `id` is a service or credential of the registry (given, else the
 * one the workers of `opts.taskQueue` follow), with the closest id when not.
 * @throws NoWorkerError when no worker polls the task queue (and no registry
 *   was given); RegistryLookupError when the lookup workflow fails or times out.
 */
export async function lookupRegistry(client: Client, kind: RegistryIdKind, id: string, opts: RegistryLookupOptions = {}): Promise<RegistryLookupResult> {
  if (opts.registry) {
    const found: RegistryLookupResult = lookupRegistryId(opts.registry, kind, id);
    const cb = kind === 'service' && found.known ? opts.registry.services.find((s) => s.id === id)?.circuitBreaker : undefined;
    return cb ? { ...found, circuitBreaker: cb } : found;
  }
  const taskQueue = opts.taskQueue ?? DEFAULT_TASK_QUEUE;
  await requireWorker(client, taskQueue);
  const workflowId = `registry-lookup/${randomUUID()}`;
  try {
    return await client.workflow.execute<typeof registryLookup>('registryLookup', {
      taskQueue,
      workflowId,
      args: [{ kind, id }],
      workflowExecutionTimeout: REGISTRY_LOOKUP_TIMEOUT_MS,
    });
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err;
    throw new RegistryLookupError(
      workflowId,
      `could not read the registry of the workers on task queue "${taskQueue}" to check ${kind} id "${id}" (workflow ${workflowId}: ${rootCauseMessage(err)}); ` +
        'check that those workers run `integration-agent worker`, or set INTEGRATION_AGENT_REGISTRY to the registry file they use',
    );
  }
}

/**
 * Like {@link lookupRegistry}, but an unknown id throws.
 * @throws UnknownIdError (a RangeError: `unknown service "x" in the registry … (did you mean "y"?)`), and as {@link lookupRegistry}.
 */
export async function requireRegistryId(client: Client, kind: RegistryIdKind, id: string, opts: RegistryLookupOptions = {}): Promise<RegistryLookupResult> {
  const found = await lookupRegistry(client, kind, id, opts);
  if (!found.known) throw new UnknownIdError(found);
  return found;
}
