/**
 * Where the CLI finds the registry, and how a long-running command keeps it current.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Client } from '@temporalio/client';
import type { Logger } from 'pino';
import { loadRegistryFile, watchRegistryFile, type RegistryWatcher } from '../../activities/registry-file';
import { lookupRegistryId, UnknownIdError, type RegistryIdKind } from '../../domain/ids';
import type { Registry } from '../../domain/registry';
import type { Config } from '../../worker/config';
import type { RegistryLookupResult } from '../../workflows/registry-lookup';
import { connectClient, NoWorkerError } from '../connect';
import { RegistryLookupError, requireRegistryId } from '../registry-lookup';
import { CliError } from './context';

/** The packaged demo registry. */
export const EXAMPLE_REGISTRY = resolve(__dirname, '..', '..', '..', 'examples', 'services.yaml');

/** `--registry`, else the default example; throws CliError when the file does not exist. */
export function resolveRegistryPath(given?: string): string {
  const path = resolve(given ?? EXAMPLE_REGISTRY);
  if (!existsSync(path)) throw new CliError(`registry file not found: ${path} (pass --registry FILE or set INTEGRATION_AGENT_REGISTRY)`);
  return path;
}

/** Reads and validates a registry file; throws RegistryValidationError listing every problem. */
export function readRegistry(path: string): Registry {
  return loadRegistryFile(path);
}

/**
 * Follows the registry file: an edit takes effect at once; an invalid edit is
 * logged and rejected, and the last valid registry stays in force.
 */
export function openRegistry(path: string, logger: Logger): RegistryWatcher & { onReload(fn: ReloadListener): void } {
  const listeners: ReloadListener[] = [];
  const watcher = watchRegistryFile(path, {
    onReload: (next, previous) => {
      logger.info({ path, version: next.versionHash, previous: previous.versionHash }, 'registry reloaded');
      for (const fn of listeners) fn(next, previous);
    },
    onInvalid: (err) => logger.error({ path, problems: err.problems.length, error: err.message }, 'registry edit rejected; keeping the last valid registry'),
  });
  const r = watcher.current();
  logger.info({ path, version: r.versionHash, services: r.services.length, credentials: r.credentials.length }, 'registry loaded');
  return Object.assign(watcher, { onReload: (fn: ReloadListener) => void listeners.push(fn) });
}

/**
 * Refuses a service or credential id the workers' registry does not have,
 * with a did-you-mean (as `validate` words it), before a command creates or
 * changes anything for it. The registry is the file INTEGRATION_AGENT_REGISTRY
 * names when set (the variable the workers read too), else the one a worker
 * of the task queue follows, read through Temporal (the `registryLookup`
 * workflow): the CLI needs no copy of the file.
 * @returns the lookup (for a service: its registry breaker options).
 * @throws CliError: the id is unknown, or there is no registry to check against.
 */
export async function requireKnownId(client: Client | undefined, config: Config, kind: RegistryIdKind, id: string): Promise<RegistryLookupResult> {
  const registry = config.registryPath ? readRegistry(resolveRegistryPath(config.registryPath)) : undefined;
  try {
    if (registry) {
      const found = lookupRegistryId(registry, kind, id);
      if (!found.known) throw new UnknownIdError(found);
      const cb = kind === 'service' ? registry.services.find((s) => s.id === id)?.circuitBreaker : undefined;
      return cb ? { ...found, circuitBreaker: cb } : found;
    }
    if (client) return await requireRegistryId(client, kind, id, { taskQueue: config.taskQueue });
    let own: Client;
    try {
      own = await connectClient(config);
    } catch (err) {
      throw new CliError(
        `cannot check ${kind} id "${id}": INTEGRATION_AGENT_REGISTRY is not set and Temporal, whose workers know the registry, cannot be reached (${(err as Error).message.split('\n')[0]}); ` +
          'set INTEGRATION_AGENT_REGISTRY to the registry file the workers use',
      );
    }
    try {
      return await requireRegistryId(own, kind, id, { taskQueue: config.taskQueue });
    } finally {
      await own.connection.close();
    }
  } catch (err) {
    if (err instanceof UnknownIdError || err instanceof RegistryLookupError) throw new CliError(err.message);
    if (err instanceof NoWorkerError) {
      throw new CliError(
        `cannot check ${kind} id "${id}": no worker polls task queue "${config.taskQueue}" to ask for its registry, and INTEGRATION_AGENT_REGISTRY is not set; ` +
          'start a worker (`integration-agent worker` or `integration-agent dev`), or set INTEGRATION_AGENT_REGISTRY to the registry file the workers use',
      );
    }
    throw err;
  }
}

export type ReloadListener = (next: Registry, previous: Registry) => void;
