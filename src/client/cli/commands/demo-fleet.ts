/**
 * `integration-agent demo-fleet [--registry FILE] [--listen HOST] [--json]`:
 * only the demo services of `dev` (one slow, one failing, an issuer and its
 * consumers), for a deployment whose workers run elsewhere. docker compose
 * runs it in a container of its own (`demo-services`) so that the workers'
 * registry, deploy/compose/services.yaml, names addresses they can reach.
 *
 * Each service listens on HOST at the port of its first endpoint in the
 * registry, whatever host name that URL gives: the file the workers read is
 * the file this command serves, so their ports cannot drift apart.
 */
import type { Command } from 'commander';
import { startFleet } from '../../../dev/fleet';
import { EXAMPLE_BEHAVIOURS, fleetSpecsFromRegistry } from '../../../dev/example-fleet';
import type { Registry } from '../../../domain/registry';
import { CliError, emit } from '../context';
import { readRegistry, resolveRegistryPath } from '../registry-source';

const WILDCARD = new Set(['0.0.0.0', '::']);
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

function withHost(url: string, host: string): string {
  const u = new URL(url);
  u.hostname = host.includes(':') ? `[${host}]` : host;
  return u.href.replace(/\/$/, '');
}

/**
 * The registry as seen from inside the fleet: every service's first endpoint
 * on `host` (the port unchanged), so a consumer checks a secret with its issuer
 * over an address the fleet itself listens on.
 */
function asSeenFrom(registry: Registry, host: string): Registry {
  return {
    ...registry,
    services: registry.services.map((s) => ({ ...s, endpoints: s.endpoints.map((e, i) => (i === 0 ? { ...e, url: withHost(e.url, host) } : e)) })),
  };
}

export function register(program: Command): void {
  program
    .command('demo-fleet')
    .description("run only the demo services (as `dev` does), each on its registry endpoint's port; for containers and other hosts")
    .option('--registry <file>', 'registry whose services to serve (default: examples/services.yaml)')
    .option('--listen <host>', 'address to listen on: 0.0.0.0 in a container, else a loopback or interface address', '127.0.0.1')
    .option('--json', 'print the services and their addresses as JSON')
    .action(async (opts: { registry?: string; listen: string; json?: boolean }) => {
      const listen = opts.listen.replace(/^\[(.*)\]$/, '$1');
      if (!listen || /\s|\/|^\d+$/.test(listen)) throw new CliError(`--listen: "${opts.listen}" is not a host address (e.g. 127.0.0.1, or 0.0.0.0 in a container)`);
      const registryPath = resolveRegistryPath(opts.registry);
      const registry = readRegistry(registryPath);
      // Issuers are reached over loopback when listening on every interface, else on the one address listened on.
      const reachable = WILDCARD.has(listen) ? '127.0.0.1' : listen;
      const specs = fleetSpecsFromRegistry(asSeenFrom(registry, '127.0.0.1'), EXAMPLE_BEHAVIOURS).map((spec) => ({
        ...spec,
        host: listen,
        consumes: LOOPBACK.has(reachable)
          ? spec.consumes
          : Object.fromEntries(Object.entries(spec.consumes ?? {}).map(([c, url]) => [c, typeof url === 'string' ? withHost(url, reachable) : url])),
      }));
      const fleet = await startFleet(specs);
      const services = registry.services.map((s) => ({
        id: s.id,
        listen: fleet.get(s.id).url,
        registryUrl: s.endpoints[0]!.url,
        behaviour: EXAMPLE_BEHAVIOURS[s.id] ?? {},
      }));
      emit(opts, { registry: registryPath, services }, () =>
        [`demo services from ${registryPath} (Ctrl-C stops them):`, ...services.map((s) => `  ${s.id} ${s.listen}  (registry: ${s.registryUrl})`)].join('\n'),
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await fleet.close();
    });
}
