/**
 * The service registry: which services exist, how to reach and probe them,
 * what they depend on, and which credentials they share. This module holds the
 * schema (zod) and the normalized types every layer uses; durations are parsed
 * once here into milliseconds (`...Ms` fields).
 *
 * Secret values never appear in a registry: credentials are references.
 */
import { z } from 'zod';
import { formatDuration, tryParseDuration } from './duration';
import { checkMakeReferences, makeConfigSchema } from './make';
import { breakerOptionsSchema } from './breaker';

export const SERVICE_TYPES = ['database', 'api', 'webhook', 'storage', 'messaging', 'make'] as const;
export type ServiceType = (typeof SERVICE_TYPES)[number];

const SLUG = /^[a-z0-9][a-z0-9-]*$/;
const slug = z.string().regex(SLUG, 'must be a slug: lowercase letters, digits and "-", starting with a letter or digit');

/**
 * A duration string ("30s") parsed to milliseconds. A bare number is refused
 * (is `interval: 30` 30 seconds or 30 ms?) except 0.
 */
export const durationMs = z.union([z.string(), z.number()], { error: 'must be a duration such as 500ms, 30s, 5m, 1h or 7d' }).transform((v, ctx) => {
  if (typeof v === 'number') {
    if (v === 0) return 0;
    const hint = Number.isFinite(v) && v > 0 ? `: write ${v}s or ${v}ms` : ': write a number >= 0 and a unit, e.g. 500ms, 30s, 5m, 1h, 7d';
    ctx.addIssue({ code: 'custom', message: `invalid duration ${v}: a duration needs a unit${hint}` });
    return z.NEVER;
  }
  const ms = tryParseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `invalid duration "${v}": use a number and a unit, e.g. 500ms, 30s, 5m, 1h, 7d` });
    return z.NEVER;
  }
  return ms;
});

const httpUrl = z.string().refine((u) => {
  try {
    const p = new URL(u);
    return p.protocol === 'http:' || p.protocol === 'https:' || p.protocol === 'tcp:';
  } catch {
    return false;
  }
}, 'must be an absolute http://, https:// or tcp:// URL');

/** A duration that must be longer than zero (intervals, timeouts, schedules). */
const positiveDurationMs = durationMs.refine((ms) => ms > 0, 'must be longer than 0');

/** A status code (200) or a class/range ("2xx", "200-299"). */
const statusMatcher = z.union(
  [
    z.number().int().min(100).max(599),
    z
      .string()
      .regex(/^[1-5]xx$|^\d{3}-\d{3}$|^\d{3}$/, 'must be a status code, a class like "2xx" or a range like "200-299"')
      .refine((s) => {
        const m = /^(\d{3})(?:-(\d{3}))?$/.exec(s);
        if (!m) return true;
        const lo = Number(m[1]);
        const hi = m[2] === undefined ? lo : Number(m[2]);
        return lo >= 100 && hi <= 599 && lo <= hi;
      }, 'must be a status code or a range within 100-599, low end first'),
  ],
  { error: 'must be a status code (200), a class like "2xx" or a range like "200-299"' },
);

export const endpointSchema = z.strictObject({
  url: httpUrl,
  /** Relative share of traffic for smooth weighted round-robin; default 1. */
  weight: z.number().int().min(1).max(1000).default(1),
});

export const bodyRuleSchema = z.strictObject({
  /** JSONPath into the response body, e.g. `$.status`. */
  path: z.string().min(1),
  equals: z.unknown().optional(),
  exists: z.boolean().optional(),
  matches: z.string().optional(),
});

export const healthCheckSchema = z.strictObject({
  /** `http` (default) or `tcp` (connect only). */
  type: z.enum(['http', 'tcp']).default('http'),
  /** Path on the service's endpoints, e.g. `/health`; give this or `url`, not both. */
  path: z.string().startsWith('/').optional(),
  /** A full URL to probe instead of `path` on the endpoints. */
  url: httpUrl.optional(),
  method: z.enum(['GET', 'HEAD', 'POST']).default('GET'),
  /** Time between probes, ms; default 30s. */
  interval: positiveDurationMs.default(30_000),
  /** Time a probe may take before it fails, ms; default 2s; must be shorter than `interval`. */
  timeout: positiveDurationMs.default(2_000),
  expect: z
    .strictObject({
      status: z.array(statusMatcher).min(1).default([200]),
      maxResponseTime: durationMs.optional(),
      body: z.array(bodyRuleSchema).default([]),
      certificateExpiresAfter: durationMs.optional(),
    })
    .default({ status: [200], body: [] }),
  failureThreshold: z.number().int().min(1).max(100).default(3),
  successThreshold: z.number().int().min(1).max(100).default(2),
}).superRefine((hc, ctx) => {
  if (hc.path !== undefined && hc.url !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['url'], message: 'give either path or url, not both' });
  }
  if (hc.timeout >= hc.interval) {
    ctx.addIssue({ code: 'custom', path: ['timeout'], message: `timeout (${formatDuration(hc.timeout)}) must be shorter than interval (${formatDuration(hc.interval)})` });
  }
  const max = hc.expect.maxResponseTime;
  if (max !== undefined && max > hc.timeout) {
    ctx.addIssue({
      code: 'custom',
      path: ['expect', 'maxResponseTime'],
      message: `maxResponseTime (${formatDuration(max)}) is longer than timeout (${formatDuration(hc.timeout)}), so it never applies: lower it or raise timeout`,
    });
  }
});

export const rateLimitSchema = z.strictObject({
  perSecond: z.number().int().positive().optional(),
  perMinute: z.number().int().positive().optional(),
  maxConcurrent: z.number().int().positive().optional(),
});

export const slaSchema = z.strictObject({
  /** Availability target in percent, e.g. 99.9. */
  availability: z.number().gt(0).max(100).optional(),
  latencyP95: durationMs.optional(),
});

export const authSchema = z.strictObject({
  /** How the credential is presented: `bearer` (Authorization: Bearer), `basic`, `header` (custom header), `make` (Authorization: Token). */
  scheme: z.enum(['bearer', 'basic', 'header', 'make']).default('bearer'),
  header: z.string().optional(),
  username: z.string().optional(),
});

/**
 * How a service takes part in rotation. `http` follows the HTTP rotation
 * contract in README; other providers read their own keys (kept loose here and
 * validated by the provider).
 */
export const rotationSchema = z
  .object({
    provider: z.enum(['http', 'postgres', 'redis', 'make']),
    /** Base URL of the rotation endpoints; defaults to the service's first endpoint. */
    baseUrl: httpUrl.optional(),
  })
  .catchall(z.unknown());

/**
 * A maintenance window: alerts are silenced while it is open; probes keep
 * measuring (the time is excluded from availability). See src/domain/health.ts.
 */
export const maintenanceWindowSchema = z.strictObject({
  /** Local wall-clock start in `timezone`, without offset: `2026-12-01T02:00`. */
  start: z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/, 'must be a local date-time like 2026-12-01T02:00 (no offset; see timezone)'),
  duration: durationMs.refine((ms) => ms > 0, 'must be longer than 0'),
  /** IANA time zone the start is written in, e.g. `Europe/Berlin`; default UTC. */
  timezone: z
    .string()
    .default('UTC')
    .refine((tz) => {
      try {
        new Intl.DateTimeFormat('en-US', { timeZone: tz });
        return true;
      } catch {
        return false;
      }
    }, 'must be an IANA time zone such as UTC or Europe/Berlin'),
  /** `none` (once), or repeat every day, week (same weekday) or month (same day of month). */
  recurrence: z.enum(['none', 'daily', 'weekly', 'monthly']).default('none'),
});

export const serviceSchema = z.strictObject({
  /** Unique slug, `[a-z0-9][a-z0-9-]*`. */
  id: slug,
  /** Display name. */
  name: z.string().optional(),
  /** Free text for operators. */
  description: z.string().optional(),
  /** Owning team or person, shown in alerts. */
  owner: z.string().optional(),
  type: z.enum(SERVICE_TYPES),
  endpoints: z.array(endpointSchema).min(1),
  /** Ids of services this one needs: they are updated before it and their failure impacts it. */
  dependsOn: z.array(slug).default([]),
  /** Id of the credential used when calling this service. */
  credential: slug.optional(),
  auth: authSchema.optional(),
  healthCheck: healthCheckSchema.optional(),
  /** Breaker options (resilience4j names, durations as strings), normalized to `BreakerOptions`; see docs/breakers.md. */
  circuitBreaker: breakerOptionsSchema.optional(),
  rateLimit: rateLimitSchema.optional(),
  sla: slaSchema.optional(),
  rotation: rotationSchema.optional(),
  /**
   * Expected duration of one install+verify step on this service, ms, for
   * critical-path estimates; absent means {@link DEFAULT_EXPECTED_DURATION_MS}.
   */
  expectedDuration: durationMs.optional(),
  tags: z.array(z.string()).default([]),
  /** Maintenance windows: alerts silenced, measuring continues. */
  maintenance: z.array(maintenanceWindowSchema).default([]),
  /** Make.com organization, team, connections, scenarios and hooks of a `type: make` service (see src/domain/make.ts). */
  make: makeConfigSchema.optional(),
});

export const credentialSchema = z.strictObject({
  /** Unique slug, `[a-z0-9][a-z0-9-]*`. */
  id: slug,
  description: z.string().optional(),
  /** The service that mints and revokes this credential. */
  issuer: slug,
  /** Services that present or accept it and must receive each new version; never the issuer. */
  consumers: z.array(slug).default([]),
  provider: z.enum(['http', 'postgres', 'redis', 'make']).default('http'),
  /** How long the PREVIOUS version keeps working after a rotation, ms; default 1h. */
  gracePeriod: durationMs.default(3_600_000),
  /** Rotate automatically this often, ms; absent means on demand only. */
  schedule: positiveDurationMs.optional(),
  /** Consumers worked on at once within one rotation batch; default 32. */
  maxParallel: z.number().int().min(1).max(1000).optional(),
  /**
   * Where a batch fans out: `workflow` (default: one install and one verify
   * activity per consumer, each visible and retried by Temporal) or
   * `activity` (one activity per batch works on its consumers in parallel and
   * heartbeats its progress: far fewer Temporal round trips for large fleets).
   */
  fanOut: z.enum(['workflow', 'activity']).optional(),
});

export const registrySchema = z
  .strictObject({
    version: z.number().int().optional(),
    services: z.array(serviceSchema).default([]),
    credentials: z.array(credentialSchema).default([]),
  })
  .superRefine((doc, ctx) => checkMakeReferences(doc, (path, message) => ctx.addIssue({ code: 'custom', path, message })));

export type Endpoint = z.output<typeof endpointSchema>;
export type HealthCheck = z.output<typeof healthCheckSchema>;
export type ServiceSpec = z.output<typeof serviceSchema>;
export type MaintenanceWindow = z.output<typeof maintenanceWindowSchema>;
export type CredentialSpec = z.output<typeof credentialSchema>;
export type RegistryDocument = z.output<typeof registrySchema>;

/**
 * A loaded, validated registry with its content hash. This is what workflows
 * receive as their snapshot (JSON-serialisable; no secrets).
 */
export interface Registry extends RegistryDocument {
  /** sha256 (hex, first 16 chars) of the source text: the registry version workflows record. */
  versionHash: string;
  /** Where it was loaded from, for error messages. */
  source: string;
}

/** Expected duration of a service's rotation step when `expectedDuration` is absent: 1s. */
export const DEFAULT_EXPECTED_DURATION_MS = 1_000;

/** A service's expected step duration in ms (`expectedDuration`, else {@link DEFAULT_EXPECTED_DURATION_MS}). */
export function expectedDurationMs(service: Pick<ServiceSpec, 'expectedDuration'>): number {
  return service.expectedDuration ?? DEFAULT_EXPECTED_DURATION_MS;
}

/**
 * The services a rotation of `credentialId` touches: its issuer first, then
 * its consumers in file order. Order them with `planBatches(registry.services, ids)`.
 *
 * @throws Error naming the id and the known ids when the credential is absent.
 */
export function credentialServiceIds(registry: Registry, credentialId: string): string[] {
  const c = getCredential(registry, credentialId);
  return [c.issuer, ...c.consumers.filter((id) => id !== c.issuer)];
}

/** Looks a service up by id; throws an Error naming the id and the source when absent. */
export function getService(registry: Registry, id: string): ServiceSpec {
  const s = registry.services.find((x) => x.id === id);
  if (!s) throw new Error(`unknown service "${id}" in registry ${registry.source}`);
  return s;
}

/** Looks a credential up by id; throws an Error naming the id and the source when absent. */
export function getCredential(registry: Registry, id: string): CredentialSpec {
  const c = registry.credentials.find((x) => x.id === id);
  if (!c) {
    const known = registry.credentials.map((x) => x.id).join(', ') || 'none';
    throw new Error(`unknown credential "${id}" in registry ${registry.source} (known: ${known})`);
  }
  return c;
}
