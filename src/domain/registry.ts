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
import { checkCanaryUrl } from './prober-health';

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

/**
 * One `expect.body` rule. With `path`: a JSONPath into a JSON body and one of
 * `equals`, `exists`, `matches`. Without `path`: a rule on the body as plain
 * text, `contains` (a keyword) or `matches` (a regular expression), so HTML or
 * plain-text health pages can be checked too.
 */
export const bodyRuleSchema = z
  .strictObject({
    /** JSONPath into the response body, e.g. `$.status`; absent: the rule reads the body as text. */
    path: z.string().min(1).optional(),
    equals: z.unknown().optional(),
    exists: z.boolean().optional(),
    /** Regular expression (JavaScript syntax) a matched value, or the whole text body, must match. */
    matches: z.string().optional(),
    /** A keyword the text body must contain (case-sensitive); only without `path`. */
    contains: z.string().min(1).optional(),
  })
  .superRefine((r, ctx) => {
    if (r.matches !== undefined) {
      try {
        new RegExp(r.matches);
      } catch (e) {
        ctx.addIssue({ code: 'custom', path: ['matches'], message: `invalid regular expression ${JSON.stringify(r.matches)}: ${(e as Error).message}` });
      }
    }
    if (r.path === undefined) {
      if (r.equals !== undefined || r.exists !== undefined) ctx.addIssue({ code: 'custom', path: ['path'], message: 'equals and exists need a JSONPath in path (e.g. "$.status"); for plain text use contains or matches' });
      else if (r.contains === undefined && r.matches === undefined) ctx.addIssue({ code: 'custom', message: 'a body rule needs path (JSONPath) with equals/exists/matches, or contains/matches on the text body' });
    } else if (r.contains !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['contains'], message: 'contains reads the body as text: drop path, or use matches on the JSONPath value' });
    }
  });

/** Probe types: `http` (default), `tcp` connect, `dns` query, `tls` handshake, gRPC health, PostgreSQL `SELECT 1`, Redis `PING`. */
export const PROBE_TYPES = ['http', 'tcp', 'dns', 'tls', 'grpc', 'postgres', 'redis'] as const;
export type ProbeType = (typeof PROBE_TYPES)[number];

/** DNS record types a `dns` probe can ask for. */
export const DNS_RECORD_TYPES = ['A', 'AAAA', 'CNAME', 'MX', 'TXT', 'SRV', 'NS'] as const;

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/** URL schemes a probe may use, per type (the endpoint's or `healthCheck.url`). */
const PROBE_SCHEMES: Record<ProbeType, readonly string[]> = {
  http: ['http:', 'https:'],
  tcp: ['tcp:', 'http:', 'https:'],
  dns: ['http:', 'https:', 'tcp:'],
  tls: ['https:', 'tcp:'],
  grpc: ['http:', 'https:', 'tcp:'],
  postgres: ['tcp:', 'postgres:', 'postgresql:'],
  redis: ['tcp:', 'redis:', 'rediss:'],
};

/** Request headers a registry may not set: they carry secrets, which live in the credential store. */
const SECRET_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie']);

/**
 * `address:port` or `address` (port 53), IPv6 in brackets: the resolver of a
 * `dns` probe. An address, not a name: a resolver is dialled by address
 * (who would resolve its name?).
 */
const resolverAddress = z
  .string()
  .regex(
    /^((25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}|\[[0-9a-fA-F:.]*:[0-9a-fA-F:.]*\])(:\d{1,5})?$/,
    'must be an IP address with an optional port, e.g. 127.0.0.1:5353 or [::1]:53 (a resolver is dialled by address, not by name)',
  )
  .refine((v) => {
    const port = /:(\d+)$/.exec(v.replace(/^\[[^\]]*\]/, ''))?.[1];
    return port === undefined || (Number(port) >= 1 && Number(port) <= 65535);
  }, 'port must be 1-65535');

const probeUrl = z.string().refine((u) => {
  try {
    return Object.values(PROBE_SCHEMES).some((ss) => ss.includes(new URL(u).protocol));
  } catch {
    return false;
  }
}, 'must be an absolute http://, https://, tcp://, postgres:// or redis:// URL');

/** Options that only some probe types read, and the types that read them (for "does not apply" errors). */
const TYPE_OPTIONS: Record<string, readonly ProbeType[]> = {
  path: ['http'],
  method: ['http'],
  headers: ['http'],
  body: ['http'],
  maxRedirects: ['http'],
  recordType: ['dns'],
  resolver: ['dns'],
  queryName: ['dns'],
  starttls: ['tls'],
  grpcService: ['grpc'],
  serverName: ['http', 'tls', 'grpc'],
  insecureSkipVerify: ['http', 'tls', 'grpc'],
  caFile: ['http', 'tls', 'grpc'],
  auth: ['http', 'grpc', 'postgres', 'redis'],
  ipFamily: ['http', 'tcp', 'tls', 'grpc', 'postgres', 'redis'],
};

export const healthCheckSchema = z.strictObject({
  /** Probe type; see {@link PROBE_TYPES}. Default `http` (`tcp` when the URL is `tcp://`). */
  type: z.enum(PROBE_TYPES).default('http'),
  /** Path on the service's endpoints, e.g. `/health`; give this or `url`, not both. */
  path: z.string().startsWith('/').optional(),
  /** A full URL to probe instead of the endpoints (`tcp://`, `postgres://`, `redis://` too; never with a password). */
  url: probeUrl.optional(),
  method: z.enum(HTTP_METHODS).default('GET'),
  /** Extra request headers (http); never Authorization or Cookie (use `auth: true`). */
  headers: z.record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be a header name (a token)'), z.string().regex(/^[^\r\n\0]*$/, 'must not hold CR, LF or NUL')).optional(),
  /** Request body (http), sent as is. */
  body: z.string().optional(),
  /** Redirects followed (http), 0-20; 0 (default) judges the 3xx itself. */
  maxRedirects: z.number().int().min(0).max(20).optional(),
  /** DNS record type asked for (dns); default A. */
  recordType: z.enum(DNS_RECORD_TYPES).optional(),
  /** Resolver queried (dns), `host:port`; default the system's resolvers. */
  resolver: resolverAddress.optional(),
  /** Name queried (dns); default the probed URL's host. */
  queryName: z.string().min(1).optional(),
  /** Upgrade a plain connection with STARTTLS before the handshake (tls): `smtp`. */
  starttls: z.enum(['smtp']).optional(),
  /** Service name asked about (grpc, `grpc.health.v1.HealthCheckRequest.service`); default "" (the whole server). */
  grpcService: z.string().optional(),
  /** TLS server name (SNI) and the name the certificate must match; default the URL's host. */
  serverName: z.string().min(1).optional(),
  /** Accept any certificate (http, tls, grpc): the handshake still happens and days left are still read. */
  insecureSkipVerify: z.boolean().optional(),
  /** PEM file of extra CA certificates trusted by this probe (http, tls, grpc), besides the system's and INTEGRATION_AGENT_PROBE_CA_FILE. */
  caFile: z.string().min(1).optional(),
  /** Connect over IPv4 or IPv6 only; default either (the resolver's order). */
  ipFamily: z.union([z.literal(4), z.literal(6)], { error: 'must be 4 or 6' }).optional(),
  /** Present the service's CURRENT credential (from the store, as calls do); a rejection is `credential_rejected`. */
  auth: z.boolean().optional(),
  /** Time between probes, ms; default 30s. */
  interval: positiveDurationMs.default(30_000),
  /** Time a probe may take before it fails, ms; default 2s; must be shorter than `interval`. */
  timeout: positiveDurationMs.default(2_000),
  expect: z
    .strictObject({
      status: z.array(statusMatcher).min(1).default([200]),
      maxResponseTime: durationMs.optional(),
      /** Slower than this, ms (but within `maxResponseTime`): degraded, a warning (Checkly's `degradedResponseTime`). */
      degradedResponseTime: positiveDurationMs.optional(),
      body: z.array(bodyRuleSchema).default([]),
      /**
       * The served certificate must stay valid at least this long, ms: one
       * duration or a list of thresholds (`[21d, 14d, 7d]`, each crossed one
       * is notified once). Parsed: the largest here, the list (descending) in
       * `certificateExpiryThresholds` when a list was given.
       */
      certificateExpiresAfter: z.union([positiveDurationMs, z.array(positiveDurationMs).min(1).max(10)]).optional(),
      /** DNS answers expected (dns), compared as a set; absent: any non-empty answer passes. */
      answers: z.array(z.string().min(1)).min(1).optional(),
    })
    .transform(({ certificateExpiresAfter: c, ...e }): typeof e & { certificateExpiresAfter?: number; certificateExpiryThresholds?: number[] } => {
      if (c === undefined) return e;
      if (!Array.isArray(c)) return { ...e, certificateExpiresAfter: c };
      const thresholds = [...new Set(c)].sort((a, b) => b - a);
      return { ...e, certificateExpiresAfter: thresholds[0]!, certificateExpiryThresholds: thresholds };
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
  // An option the type never reads is a mistake (a typo'd type, or a copy-paste), not a no-op.
  const type = hc.url?.startsWith('tcp:') && hc.type === 'http' ? 'tcp' : hc.type;
  const set: Record<string, boolean> = {
    path: hc.path !== undefined && type !== 'http' && type !== 'tcp',
    method: hc.method !== 'GET',
    headers: hc.headers !== undefined,
    body: hc.body !== undefined,
    maxRedirects: hc.maxRedirects !== undefined,
    recordType: hc.recordType !== undefined,
    resolver: hc.resolver !== undefined,
    queryName: hc.queryName !== undefined,
    starttls: hc.starttls !== undefined,
    grpcService: hc.grpcService !== undefined,
    serverName: hc.serverName !== undefined,
    insecureSkipVerify: hc.insecureSkipVerify !== undefined,
    caFile: hc.caFile !== undefined,
    auth: hc.auth !== undefined,
    ipFamily: hc.ipFamily !== undefined,
  };
  for (const [key, given] of Object.entries(set)) {
    const types = TYPE_OPTIONS[key]!;
    if (given && !types.includes(type)) ctx.addIssue({ code: 'custom', path: [key], message: `${key} applies to type ${types.join(', ')} only, not ${type}` });
  }
  if (hc.expect.answers !== undefined && type !== 'dns') ctx.addIssue({ code: 'custom', path: ['expect', 'answers'], message: `answers applies to type dns only, not ${type}` });
  if (hc.expect.body.length > 0 && type !== 'http') ctx.addIssue({ code: 'custom', path: ['expect', 'body'], message: `body rules apply to type http only, not ${type}` });
  if (hc.expect.certificateExpiresAfter !== undefined && !['http', 'tls', 'grpc'].includes(type)) {
    ctx.addIssue({ code: 'custom', path: ['expect', 'certificateExpiresAfter'], message: `certificateExpiresAfter applies to type http, tls, grpc only, not ${type}` });
  }
  if (hc.body !== undefined && (hc.method === 'GET' || hc.method === 'HEAD')) {
    ctx.addIssue({ code: 'custom', path: ['body'], message: `a request body needs method POST, PUT, PATCH, DELETE or OPTIONS, not ${hc.method}` });
  }
  for (const name of Object.keys(hc.headers ?? {})) {
    if (SECRET_HEADERS.has(name.toLowerCase())) {
      ctx.addIssue({ code: 'custom', path: ['headers', name], message: `${name} carries a secret, which never belongs in the registry: reference the service's credential and set healthCheck.auth: true` });
    }
  }
  if (hc.url !== undefined) {
    let u: URL | undefined;
    try {
      u = new URL(hc.url);
    } catch {
      u = undefined;
    }
    if (u && u.password) ctx.addIssue({ code: 'custom', path: ['url'], message: 'must not hold a password: store it with `integration-agent credentials import`, reference the credential from the service and set healthCheck.auth: true' });
    if (u && !PROBE_SCHEMES[type].includes(u.protocol)) {
      ctx.addIssue({ code: 'custom', path: ['url'], message: `a ${type} probe takes a ${PROBE_SCHEMES[type].map((p) => p + '//').join(', ')} URL, got ${u.protocol}//` });
    }
  }
  const degraded = hc.expect.degradedResponseTime;
  if (degraded !== undefined && degraded >= Math.min(max ?? Infinity, hc.timeout)) {
    ctx.addIssue({
      code: 'custom',
      path: ['expect', 'degradedResponseTime'],
      message: `degradedResponseTime (${formatDuration(degraded)}) must be shorter than ${max !== undefined && max < hc.timeout ? `maxResponseTime (${formatDuration(max)})` : `timeout (${formatDuration(hc.timeout)})`}, or it never applies`,
    });
  }
});

/** The URL schemes a probe of `type` accepts (endpoint or `healthCheck.url`). */
export function probeSchemes(type: ProbeType): readonly string[] {
  return PROBE_SCHEMES[type];
}

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
}).superRefine((svc, ctx) => {
  // Probe options that depend on the rest of the service: named by service id, since a
  // registry reader looks for the service, and the path alone says only its index.
  const hc = svc.healthCheck;
  if (!hc) return;
  if (hc.auth && svc.credential === undefined) {
    ctx.addIssue({ code: 'custom', path: ['healthCheck', 'auth'], message: `service "${svc.id}": auth: true presents the service's credential, but the service names none: add credential: <id>` });
  }
  if (hc.url === undefined) {
    const type = hc.type;
    // Endpoints are http(s):// or tcp:// (the endpoint schema's own rule); a postgres:// or redis:// URL goes in healthCheck.url.
    const schemes: readonly string[] = probeSchemes(type).filter((p) => p === 'http:' || p === 'https:' || p === 'tcp:');
    svc.endpoints.forEach((ep, i) => {
      let protocol: string;
      try {
        protocol = new URL(ep.url).protocol;
      } catch {
        return; // the endpoint's own check reports it
      }
      if (type === 'http' && protocol === 'tcp:') return; // a tcp:// endpoint is probed by connecting (as before)
      if (!schemes.includes(protocol)) {
        ctx.addIssue({
          code: 'custom',
          path: ['endpoints', i, 'url'],
          message: `service "${svc.id}": a ${type} health check probes each endpoint and needs a ${schemes.map((p) => p + '//').join(', ')} URL, got ${protocol}//: fix the endpoint or give healthCheck.url`,
        });
      }
    });
  }
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
   * Where a batch fans out: `workflow` (one install and one verify activity
   * per consumer, each visible and retried by Temporal) or `activity` (one
   * activity works on consecutive batches, each consumer of a batch in
   * parallel, and heartbeats its progress: far fewer Temporal round trips for
   * large fleets). Unset: `workflow` up to 10 consumers, `activity` above
   * (`defaultFanOut` in src/domain/rotation.ts).
   */
  fanOut: z.enum(['workflow', 'activity']).optional(),
});

export const registrySchema = z
  .strictObject({
    version: z.number().int().optional(),
    services: z.array(serviceSchema).default([]),
    credentials: z.array(credentialSchema).default([]),
    /** The prober's own health (docs/health.md): canary URLs every worker's network must reach. */
    prober: z
      .strictObject({
        canaries: z
          .array(z.string().superRefine((u, ctx) => void (checkCanaryUrl(u) && ctx.addIssue({ code: 'custom', message: checkCanaryUrl(u)! }))))
          .max(20, 'at most 20 canaries: a few addresses near the prober say as much as many')
          .default([]),
      })
      .optional(),
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
