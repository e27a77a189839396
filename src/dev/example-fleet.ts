/**
 * Turns a registry into demo fleet specs: every service listens on the port of
 * its first endpoint, issuers serve the credentials they issue, consumers
 * install them after checking with the issuer. Used by `integration-agent dev`
 * for `examples/services.yaml` and by tests with their own registries.
 */
import type { Registry } from '../domain/registry';
import type { FleetBehaviour, FleetServiceSpec } from './fleet';

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
