/**
 * The registry file on a real disk: loading, and a watcher that follows edits,
 * rejects invalid ones and keeps the last valid registry in force.
 */
import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRegistryFile, watchRegistryFile, type RegistryWatcher } from '../../src/activities/registry-file';
import { createRegistryActivities } from '../../src/activities/registry';
import type { Registry } from '../../src/domain/registry';
import { RegistryValidationError } from '../../src/domain/registry-parse';

const fleet = (...ids: string[]) =>
  'services:\n' + ids.map((id) => `  - id: ${id}\n    type: api\n    endpoints: [{ url: "http://127.0.0.1:7001" }]\n`).join('');

let dir: string;
let file: string;
let watcher: RegistryWatcher | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ia-registry-'));
  file = join(dir, 'services.yaml');
});

afterEach(() => {
  watcher?.close();
  watcher = undefined;
  rmSync(dir, { recursive: true, force: true });
});

/** Resolves with the next value `register` delivers, or rejects after `ms`. */
function next<T>(register: (deliver: (value: T) => void) => void, ms = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nothing delivered within ${ms}ms`)), ms);
    register((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

describe('loadRegistryFile', () => {
  test('returns the registry with its source and version', () => {
    writeFileSync(file, fleet('a', 'b'));
    const registry = loadRegistryFile(file);
    expect(registry.services.map((s) => s.id)).toEqual(['a', 'b']);
    expect(registry.source).toBe(file);
    expect(registry.versionHash).toMatch(/^[0-9a-f]{16}$/);
  });

  test('throws RegistryValidationError with every problem, naming the file', () => {
    writeFileSync(file, fleet('a') + '    dependsOn: [b]\n  - id: a\n');
    let err: unknown;
    try {
      loadRegistryFile(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RegistryValidationError);
    expect((err as RegistryValidationError).message.split('\n')).toEqual([
      `${file}: 4 problem(s) in registry`,
      `services[0].dependsOn[0]: unknown service "b" (${file}:5)`,
      `services[1]: missing required key "type" (${file}:6)`,
      `services[1]: missing required key "endpoints" (${file}:6)`,
      `services[1].id: duplicate service id "a" (first defined at services[0], line 2) (${file}:6)`,
    ]);
  });

  test('a missing file is a clear one-line problem, not a stack trace', () => {
    expect(() => loadRegistryFile(join(dir, 'nope.yaml'))).toThrow(`cannot read registry file: no such file; check the path (${join(dir, 'nope.yaml')})`);
  });
});

describe('watchRegistryFile', () => {
  test('refuses to start on an invalid file, and rejects bad options by name', () => {
    writeFileSync(file, 'services: [\n');
    expect(() => watchRegistryFile(file)).toThrow(RegistryValidationError);
    writeFileSync(file, fleet('a'));
    expect(() => watchRegistryFile(file, { debounceMs: -1 })).toThrow('watchRegistryFile: debounceMs must be an integer >= 0 (ms), got -1');
    expect(() => watchRegistryFile(file, { pollIntervalMs: 1.5 })).toThrow('pollIntervalMs');
  });

  test('follows valid edits, rejects invalid ones and keeps the last valid registry in force', async () => {
    writeFileSync(file, fleet('a'));
    const reloads: Registry[] = [];
    const rejections: RegistryValidationError[] = [];
    let onReload: ((r: Registry) => void) | undefined;
    let onInvalid: ((e: RegistryValidationError) => void) | undefined;
    watcher = watchRegistryFile(file, {
      debounceMs: 20,
      pollIntervalMs: 100,
      onReload: (r) => {
        reloads.push(r);
        onReload?.(r);
      },
      onInvalid: (e) => {
        rejections.push(e);
        onInvalid?.(e);
      },
    });
    const first = watcher.current();
    const activities = createRegistryActivities(watcher);
    expect(await activities.snapshotRegistry()).toBe(first);

    // A valid edit in place.
    let reloaded = next<Registry>((d) => (onReload = d));
    writeFileSync(file, fleet('a', 'b'));
    const second = await reloaded;
    expect(second.services.map((s) => s.id)).toEqual(['a', 'b']);
    expect(second.versionHash).not.toBe(first.versionHash);
    expect(watcher.current()).toBe(second);
    expect(await activities.snapshotRegistry()).toBe(second);

    // An invalid edit: reported, and the registry in force does not change.
    const rejected = next<RegistryValidationError>((d) => (onInvalid = d));
    writeFileSync(file, fleet('a', 'b') + '    dependsOn: [ghost]\n');
    const err = await rejected;
    expect(err.problems.map((p) => p.message)).toEqual(['unknown service "ghost"']);
    expect(watcher.current()).toBe(second);

    // An editor-style save: write a temp file, rename it over the original.
    reloaded = next<Registry>((d) => (onReload = d));
    writeFileSync(join(dir, '.services.yaml.tmp'), fleet('a', 'b', 'c'));
    renameSync(join(dir, '.services.yaml.tmp'), file);
    const third = await reloaded;
    expect(third.services.map((s) => s.id)).toEqual(['a', 'b', 'c']);
    expect(reloads).toEqual([second, third]);
    expect(rejections).toHaveLength(1);
  });

  test('reload() reports unchanged, invalid and reloaded; the same invalid content is reported once', () => {
    writeFileSync(file, fleet('a'));
    const rejections: RegistryValidationError[] = [];
    watcher = watchRegistryFile(file, { pollIntervalMs: 0, debounceMs: 60_000, onInvalid: (e) => rejections.push(e) });
    expect(watcher.reload()).toBe('unchanged');
    writeFileSync(file, 'services: {}\n');
    expect(watcher.reload()).toBe('invalid');
    expect(watcher.reload()).toBe('invalid');
    expect(rejections).toHaveLength(1);
    expect(rejections[0]!.problems[0]).toMatchObject({ path: 'services', message: 'expected a list, got a mapping' });
    unlinkSync(file);
    expect(watcher.reload()).toBe('invalid');
    expect(rejections).toHaveLength(2);
    expect(rejections[1]!.message).toContain('cannot read registry file: no such file');
    expect(watcher.current().services.map((s) => s.id)).toEqual(['a']);
    writeFileSync(file, fleet('z'));
    expect(watcher.reload()).toBe('reloaded');
    expect(watcher.current().services.map((s) => s.id)).toEqual(['z']);
  });

  test('after close() no more reloads happen', async () => {
    writeFileSync(file, fleet('a'));
    let reloads = 0;
    watcher = watchRegistryFile(file, { debounceMs: 10, pollIntervalMs: 50, onReload: () => reloads++ });
    watcher.close();
    watcher.close();
    writeFileSync(file, fleet('a', 'b'));
    await new Promise((r) => setTimeout(r, 400));
    expect(reloads).toBe(0);
    expect(watcher.current().services).toHaveLength(1);
  });
});
