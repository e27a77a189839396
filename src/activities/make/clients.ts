/**
 * One {@link MakeClient} per `type: make` registry service, built on demand
 * from the registry in force, with the organization's API limit set once per
 * organization: `make.apiLimitPerMinute` when given, else the organization's
 * `license.apiLimit` (read once with `GET /organizations/{id}`), else the
 * plan's documented figure.
 */
import { getService, type ServiceSpec } from '../../domain/registry';
import { makeApiBaseUrl, makeRateLimitPerMinute, type MakeConfig } from '../../domain/make';
import type { RegistrySource } from '../registry';
import type { SharedAdmission } from '../../state/admission';
import { MakeClient, MakeOrganizationLimits, type MakeTransport } from './client';

/** Dependencies of the Make activities. */
export interface MakeDeps {
  registry: RegistrySource;
  /** The transport of one service: `coordinatorMakeTransport(coordinator, service.id)` in the worker. */
  transportFor(service: ServiceSpec): MakeTransport;
  /** Shared per-organization limits; default one instance per deps object (60 s windows, cluster-wide through `sharedAdmission` when given). */
  limits?: MakeOrganizationLimits;
  /** Cluster-wide admission (`openSharedAdmission`): the organization limit then holds across every worker process. */
  sharedAdmission?: SharedAdmission;
  /** Page size for listings; default 100. */
  pageLimit?: number;
  /** Connect timeout when checking that a hook's address answers, ms; default 3000. */
  hookConnectTimeoutMs?: number;
}

/** A Make service of the registry with its client. */
export interface MakeService {
  service: ServiceSpec;
  config: MakeConfig;
  client: MakeClient;
}

/**
 * The service's `make` block, or an Error that says what to add where.
 * @throws Error naming the service when it is not `type: make`, has no `make:` block, does not
 *   authenticate with `auth.scheme: make`, or has an endpoint other than its zone's API base.
 */
export function makeConfigOf(service: ServiceSpec): MakeConfig {
  if (service.type !== 'make') throw new Error(`service "${service.id}" is type ${service.type}, not make`);
  if (!service.make) throw new Error(`service "${service.id}" has no make: block (zone, organizationId, teamId) in the registry`);
  if (service.auth?.scheme !== 'make') throw new Error(`service "${service.id}": set auth: { scheme: make } so the token is sent as "Authorization: Token ..."`);
  const base = makeApiBaseUrl(service.make.zone);
  const off = service.endpoints.filter((e) => e.url.replace(/\/+$/, '') !== base);
  if (off.length) {
    throw new Error(`service "${service.id}": endpoint ${off[0]!.url} is not the API base of Make zone ${service.make.zone}; use endpoints: [{ url: ${base} }]`);
  }
  return service.make;
}

export function createMakeClients(deps: MakeDeps) {
  const limits = deps.limits ?? new MakeOrganizationLimits({ shared: deps.sharedAdmission });
  const licenseRead = new Map<number, Promise<void>>();

  /** Sets the organization limit from the license once; failures leave the plan's figure in force. */
  async function readLicense(client: MakeClient, cfg: MakeConfig, signal?: AbortSignal): Promise<void> {
    let p = licenseRead.get(cfg.organizationId);
    if (!p) {
      p = client
        .organization(signal)
        .then((org) => {
          const apiLimit = org.license?.apiLimit;
          if (typeof apiLimit === 'number' && Number.isInteger(apiLimit) && apiLimit > 0) limits.set(cfg.organizationId, makeRateLimitPerMinute({ licenseApiLimit: apiLimit }));
        })
        .catch(() => {
          licenseRead.delete(cfg.organizationId);
        });
      licenseRead.set(cfg.organizationId, p);
    }
    await p;
  }

  return {
    limits,
    /**
     * The client of a registry service.
     * @throws Error from {@link makeConfigOf} or for an unknown service id.
     */
    async forService(serviceId: string, signal?: AbortSignal): Promise<MakeService> {
      return this.forSpec(getService(deps.registry.current(), serviceId), signal);
    },

    /**
     * The client of a service spec (e.g. from a workflow's registry snapshot).
     * @throws Error from {@link makeConfigOf}.
     */
    async forSpec(service: ServiceSpec, signal?: AbortSignal): Promise<MakeService> {
      const serviceId = service.id;
      const config = makeConfigOf(service);
      if (limits.get(config.organizationId) === undefined || config.apiLimitPerMinute !== undefined) {
        limits.set(config.organizationId, makeRateLimitPerMinute({ apiLimitPerMinute: config.apiLimitPerMinute, plan: config.plan }));
      }
      const client = new MakeClient({ serviceId, organizationId: config.organizationId, transport: deps.transportFor(service), limits, pageLimit: deps.pageLimit });
      if (config.apiLimitPerMinute === undefined) await readLicense(client, config, signal);
      return { service, config, client };
    },
  };
}

export type MakeClients = ReturnType<typeof createMakeClients>;
