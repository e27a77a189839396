/**
 * Turns a registry into demo fleet specs: every service listens on the port of
 * its first endpoint, issuers serve the credentials they issue, consumers
 * install them after checking with the issuer. Used by `integration-agent dev`
 * for `examples/services.yaml` (`startDemoFleet`: free ports, and the registry
 * rewritten to follow them), by `demo-fleet` (the registry's own ports) and by
 * tests with their own registries.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseDocument } from 'yaml';
import { loadRegistryFile } from '../activities/registry-file';
import type { Registry } from '../domain/registry';
import { startFleet, type Fleet, type FleetBehaviour, type FleetServiceSpec } from './fleet';

/** How the example services in examples/services.yaml behave: one slow, one failing. */
export const EXAMPLE_BEHAVIOURS: Record<string, FleetBehaviour> = {
  'reports-api': { latencyMs: 700 },
  'legacy-gateway': { failing: true },
};

/**
 * @param registry services whose first endpoint is an http://127.0.0.1 or localhost URL.
 * @param behaviours per-service behaviour overrides.
 * @throws Error naming the service whose endpoint is not on loopback (the demo never sends traffic elsewhere).
 */
export function fleetSpecsFromRegistry(registry: Registry, behaviours: Record<string, FleetBehaviour> = {}): FleetServiceSpec[] {
  const urlOf = new Map(registry.services.map((s) => [s.id, s.endpoints[0]!.url]));
  return registry.services.map((s) => {
    const u = new URL(s.endpoints[0]!.url);
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) {
      throw new Error(`service "${s.id}": demo services run on loopback only, but its endpoint is ${u.origin}; pass --registry only with loopback URLs or run a worker against your real services`);
    }
    const consumes: Record<string, string> = {};
    for (const c of registry.credentials) if (c.consumers.includes(s.id)) consumes[c.id] = urlOf.get(c.issuer)!;
    return {
      id: s.id,
      host: u.hostname === 'localhost' ? '127.0.0.1' : u.hostname.replace(/[[\]]/g, ''),
      port: Number(u.port || 80),
      issues: registry.credentials.filter((c) => c.issuer === s.id).map((c) => c.id),
      consumes,
      behaviour: behaviours[s.id],
    };
  });
}

/**
 * Where the demo services listen: `'free'`, ports the operating system picks
 * (two `dev` runs, or a port some other program holds, never collide); or
 * `{ base }`, the ports `base`, `base + 1`, ... in registry order (with base
 * 17101, examples/services.yaml's own ports), for a setup whose ports must be
 * known in advance.
 */
export type DemoPorts = 'free' | { base: number };

export interface DemoFleet {
  fleet: Fleet;
  /** The registry the fleet follows: the source's, each service's first endpoint at the port it got. */
  registry: Registry;
  /** Where that registry was written (YAML: the source's text, comments kept, only those URLs changed). */
  registryPath: string;
  /** Closes the services and removes a registry file written to a temporary directory. */
  close(): Promise<void>;
}

/**
 * Starts the demo services of a loopback registry on the ports `opts.ports`
 * says, and writes the registry they follow, for a worker to load. Consumers
 * reach their issuer at the port it got (looked up when they check a secret).
 *
 * @param sourcePath registry file whose services' first endpoints are loopback URLs.
 * @param opts.ports default `'free'`.
 * @param opts.outPath where to write the registry; default a new temporary
 *   directory, removed by `close()`.
 * @param opts.behaviours per-service behaviour; default {@link EXAMPLE_BEHAVIOURS}.
 * @throws RegistryValidationError for an invalid source; Error naming a
 *   service not on loopback; RangeError for a base outside 1..65535 (minus the
 *   fleet's size); the listen error (e.g. EADDRINUSE with a base).
 */
export async function startDemoFleet(
  sourcePath: string,
  opts: { ports?: DemoPorts; outPath?: string; behaviours?: Record<string, FleetBehaviour> } = {},
): Promise<DemoFleet> {
  const ports = opts.ports ?? 'free';
  const source = loadRegistryFile(sourcePath);
  const n = source.services.length;
  if (ports !== 'free' && (!Number.isInteger(ports.base) || ports.base < 1 || ports.base + n - 1 > 65_535)) {
    throw new RangeError(`demo port base: expected a whole number from 1 to ${65_536 - n} (the fleet takes ${n} ports from it), got ${ports.base}`);
  }
  const issuerOf = new Map(source.credentials.map((c) => [c.id, c.issuer]));
  let fleet: Fleet | undefined;
  const urlOf = (id: string) => () => fleet!.get(id).url;
  const specs = fleetSpecsFromRegistry(source, opts.behaviours ?? EXAMPLE_BEHAVIOURS).map((spec, i) => ({
    ...spec,
    port: ports === 'free' ? 0 : ports.base + i,
    consumes: Object.fromEntries(Object.keys(spec.consumes ?? {}).map((c) => [c, urlOf(issuerOf.get(c)!)])),
  }));
  fleet = await startFleet(specs);
  const started = fleet;
  let tempDir: string | undefined;
  try {
    const doc = parseDocument(readFileSync(sourcePath, 'utf8'));
    source.services.forEach((s, i) => {
      const was = new URL(s.endpoints[0]!.url);
      const now = new URL(started.get(s.id).url);
      was.port = now.port;
      doc.setIn(['services', i, 'endpoints', 0, 'url'], s.endpoints[0]!.url.endsWith('/') || was.pathname !== '/' ? was.href : was.href.replace(/\/$/, ''));
    });
    const portsNote = ports === 'free' ? 'free ports' : `ports from ${ports.base}`;
    doc.commentBefore = ` Written by integration-agent from ${sourcePath}: its demo services on ${portsNote}.\n${doc.commentBefore ?? ''}`;
    let registryPath = opts.outPath;
    if (!registryPath) {
      tempDir = mkdtempSync(join(tmpdir(), 'integration-agent-demo-'));
      registryPath = join(tempDir, basename(sourcePath));
    }
    writeFileSync(registryPath, doc.toString());
    const registry = loadRegistryFile(registryPath);
    return {
      fleet: started,
      registry,
      registryPath,
      close: async () => {
        await started.close();
        if (tempDir) rmSync(tempDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await started.close();
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    throw err;
  }
}
