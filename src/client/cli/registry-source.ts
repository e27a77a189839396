/**
 * Where the CLI finds the registry, and how it keeps it current.
 */
import { existsSync, readFileSync, watch } from 'node:fs';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { RegistrySource } from '../../activities/registry';
import { parseRegistry, RegistryValidationError } from '../../domain/registry-parse';
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
  const r = parseRegistry(readFileSync(path, 'utf8'), path);
  if (!r.ok) throw new RegistryValidationError(path, r.problems);
  return r.registry;
}

/**
 * A registry source that re-reads the file when it changes; an invalid edit is
 * logged and rejected, the last valid registry stays in force.
 */
export function openRegistry(path: string, logger: Logger): RegistrySource & { close(): void } {
  let current = readRegistry(path);
  logger.info({ path, version: current.versionHash, services: current.services.length }, 'registry loaded');
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(path, () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      try {
        const next = readRegistry(path);
        if (next.versionHash !== current.versionHash) {
          current = next;
          logger.info({ path, version: next.versionHash }, 'registry reloaded');
        }
      } catch (err) {
        logger.error({ path, error: (err as Error).message, keptVersion: current.versionHash }, 'registry edit rejected; keeping the last valid registry');
      }
    }, 100);
  });
  return {
    current: () => current,
    close: () => {
      clearTimeout(timer);
      watcher.close();
    },
  };
}
