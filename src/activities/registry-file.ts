/**
 * The registry on disk: load it once (CLI, worker start) or keep watching it
 * (worker), so an edit takes effect without a restart and an invalid edit is
 * rejected while the last valid registry stays in force.
 */
import { readFileSync, unwatchFile, watch, watchFile, type FSWatcher, type Stats } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { Registry } from '../domain/registry';
import { RegistryValidationError, parseRegistry, registryVersionHash } from '../domain/registry-parse';
import type { RegistrySource } from './registry';

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.code === 'EISDIR' ? 'is a directory' : e.message;
    throw new RegistryValidationError(path, [{ path: '', message: `cannot read registry file: ${why}; check the path` }]);
  }
}

/**
 * Reads and validates a registry file (YAML or JSON).
 *
 * @param path file path; also the `source` named in messages and on the registry.
 * @returns the registry with its version hash (sha256 of the text, 16 hex chars).
 * @throws RegistryValidationError listing every problem (or why the file cannot be read).
 */
export function loadRegistryFile(path: string): Registry {
  const result = parseRegistry(readText(path), path);
  if (!result.ok) throw new RegistryValidationError(path, result.problems);
  return result.registry;
}

export interface WatchRegistryOptions {
  /** Called after a changed, valid file replaced the registry in force. Must not throw. */
  onReload?(registry: Registry, previous: Registry): void;
  /** Called when a changed file is invalid or unreadable; the previous registry stays in force. Must not throw. */
  onInvalid?(error: RegistryValidationError): void;
  /** Quiet time after the last change event before re-reading, ms; default 100. Editors write in bursts. */
  debounceMs?: number;
  /**
   * Interval of the stat-polling fallback, ms; default 1000; 0 turns it off.
   * Catches changes `fs.watch` misses (network filesystems, symlink swaps as
   * in Kubernetes ConfigMaps).
   */
  pollIntervalMs?: number;
}

/** A registry source that follows its file. */
export interface RegistryWatcher extends RegistrySource {
  /**
   * Re-reads the file now (as a change event would, without the debounce).
   * @returns `reloaded` when a new valid version took effect, `unchanged` when the content hash is the same, `invalid` when rejected.
   */
  reload(): 'reloaded' | 'unchanged' | 'invalid';
  /** Stops watching. Idempotent. */
  close(): void;
}

function nonNegativeInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`watchRegistryFile: ${name} must be an integer >= 0 (ms), got ${value}`);
  return value;
}

/**
 * Loads a registry file and keeps following it. Change events (from
 * `fs.watch` on the file's directory, so atomic rename-into-place saves are
 * seen, plus stat polling) are debounced; the file is then re-read and, when
 * its content hash differs from the registry in force, validated. A valid
 * file replaces the registry (`onReload`); an invalid or missing one is
 * reported once per distinct content (`onInvalid`) and the last valid registry
 * stays in force.
 *
 * @throws RegistryValidationError when the file is invalid at start (there is no last valid registry yet).
 * @throws RangeError naming the option for a bad `debounceMs` or `pollIntervalMs`.
 */
export function watchRegistryFile(path: string, options: WatchRegistryOptions = {}): RegistryWatcher {
  const debounceMs = nonNegativeInt('debounceMs', options.debounceMs, 100);
  const pollIntervalMs = nonNegativeInt('pollIntervalMs', options.pollIntervalMs, 1000);
  let current = loadRegistryFile(path);
  let lastRejectedHash: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const reload = (): 'reloaded' | 'unchanged' | 'invalid' => {
    let text: string;
    try {
      text = readText(path);
    } catch (err) {
      if (lastRejectedHash !== 'unreadable') {
        lastRejectedHash = 'unreadable';
        options.onInvalid?.(err as RegistryValidationError);
      }
      return 'invalid';
    }
    const hash = registryVersionHash(text);
    if (hash === current.versionHash) {
      lastRejectedHash = undefined;
      return 'unchanged';
    }
    const result = parseRegistry(text, path);
    if (!result.ok) {
      if (hash !== lastRejectedHash) {
        lastRejectedHash = hash;
        options.onInvalid?.(new RegistryValidationError(path, result.problems));
      }
      return 'invalid';
    }
    lastRejectedHash = undefined;
    const previous = current;
    current = result.registry;
    options.onReload?.(current, previous);
    return 'reloaded';
  };

  const schedule = () => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      if (!closed) reload();
    }, debounceMs);
    timer.unref();
  };

  const name = basename(path);
  let dirWatcher: FSWatcher | undefined;
  try {
    dirWatcher = watch(dirname(resolve(path)), { persistent: false }, (_event, filename) => {
      if (filename === null || filename === name) schedule();
    });
    dirWatcher.on('error', () => undefined); // the poller still runs
  } catch {
    dirWatcher = undefined; // no inotify (or similar) here: polling alone
  }
  const onStat = (now: Stats, before: Stats) => {
    if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino) schedule();
  };
  if (pollIntervalMs > 0) watchFile(path, { interval: pollIntervalMs, persistent: false }, onStat);

  return {
    current: () => current,
    reload,
    close() {
      if (closed) return;
      closed = true;
      if (timer) clearTimeout(timer);
      dirWatcher?.close();
      if (pollIntervalMs > 0) unwatchFile(path, onStat);
    },
  };
}
