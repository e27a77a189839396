/**
 * Where the CLI finds the registry, and how a long-running command keeps it current.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { loadRegistryFile, watchRegistryFile, type RegistryWatcher } from '../../activities/registry-file';
import type { Registry } from '../../domain/registry';
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

export type ReloadListener = (next: Registry, previous: Registry) => void;
