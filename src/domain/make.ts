/**
 * Make.com (formerly Integromat) as a service type: the pure parts shared by
 * the Make API client, the health checks, the `make` rotation provider and the
 * webhook/scenario workflows.
 *
 * Protocol source: the Make API documentation, developers.make.com/api-documentation
 * (zones and base URL: "Make API structure"; limits: "Rate limiting";
 * pagination: "Pagination and sorting"; errors: "HTTP status error codes").
 * No I/O and no clock here: workflows import this module.
 */
import { z } from 'zod';
import { formatDuration, tryParseDuration } from './duration';

// ---------------------------------------------------------------------------
// Zones and base URL
// ---------------------------------------------------------------------------

/** Make's public zones; the API of a zone lives at `https://{zone}.make.com/api/v2`. */
export const MAKE_ZONES = ['eu1', 'eu2', 'us1', 'us2'] as const;
export type MakeZone = (typeof MAKE_ZONES)[number];

/**
 * The API base URL of a Make zone, without a trailing slash.
 *
 * @param zone one of `eu1`, `eu2`, `us1`, `us2`; a host such as `eu1.make.com`
 *   or `acme.make.cloud` (private instance); or an absolute `http(s)://` URL
 *   (a private instance, or a local fake in tests). `/api/v2` is appended
 *   unless the URL already ends with it.
 * @returns e.g. `https://eu1.make.com/api/v2`.
 * @throws RangeError naming the value when it is none of these forms.
 */
export function makeApiBaseUrl(zone: string): string {
  const z0 = zone.trim();
  if ((MAKE_ZONES as readonly string[]).includes(z0)) return `https://${z0}.make.com/api/v2`;
  let url: URL;
  try {
    url = /^https?:\/\//i.test(z0) ? new URL(z0) : new URL(`https://${z0}`);
  } catch {
    throw new RangeError(`invalid Make zone "${zone}": use eu1, eu2, us1, us2, a host such as eu1.make.com, or an https:// URL`);
  }
  if (!url.hostname || url.search || url.hash || !/^[a-z0-9.-]+$/i.test(url.hostname)) {
    throw new RangeError(`invalid Make zone "${zone}": use eu1, eu2, us1, us2, a host such as eu1.make.com, or an https:// URL`);
  }
  const path = url.pathname.replace(/\/+$/, '');
  const base = `${url.protocol}//${url.host}${path}`;
  return path.endsWith('/api/v2') ? base : `${base}/api/v2`;
}

// ---------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------

/** Requests per minute per organization, by plan (Make API docs, "Rate limiting"). */
export const MAKE_PLAN_RATE_LIMITS_PER_MINUTE = { core: 60, pro: 120, teams: 240, enterprise: 1000 } as const;
export type MakePlan = keyof typeof MAKE_PLAN_RATE_LIMITS_PER_MINUTE;
export const MAKE_PLANS = Object.keys(MAKE_PLAN_RATE_LIMITS_PER_MINUTE) as MakePlan[];

/** The message Make sends with a 429 (Make API docs, "Rate limiting"). */
export const MAKE_RATE_LIMIT_MESSAGE = 'Requests limit for organization exceeded, please try again later.';

/**
 * The organization's API limit in requests per minute. Precedence: an explicit
 * `apiLimitPerMinute`, then the organization's `license.apiLimit` read from
 * `GET /organizations/{organizationId}`, then the plan's documented figure,
 * then the lowest plan's (Core, 60) so an unknown organization is never overrun.
 *
 * @throws RangeError naming the option when a figure is not a positive integer.
 */
export function makeRateLimitPerMinute(opts: { apiLimitPerMinute?: number; licenseApiLimit?: number; plan?: MakePlan }): number {
  for (const [name, v] of [
    ['apiLimitPerMinute', opts.apiLimitPerMinute],
    ['license.apiLimit', opts.licenseApiLimit],
  ] as const) {
    if (v === undefined) continue;
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`invalid ${name} ${v}: must be a positive integer (requests per minute)`);
    return v;
  }
  if (opts.plan !== undefined) {
    const v = MAKE_PLAN_RATE_LIMITS_PER_MINUTE[opts.plan];
    if (v === undefined) throw new RangeError(`invalid Make plan "${opts.plan}": use one of ${MAKE_PLANS.join(', ')}`);
    return v;
  }
  return MAKE_PLAN_RATE_LIMITS_PER_MINUTE.core;
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/** Make's error body: every Make API error has this schema (Make API docs, "HTTP status error codes"). */
export interface MakeErrorBody {
  /** Human-readable cause, e.g. "Access denied." */
  detail?: string;
  /** Short title, e.g. "Permission denied". */
  message?: string;
  /** Make's error code, e.g. "SC403", "IM005". */
  code?: string;
  /** Field-level errors, each `{ message, code?, ... }`. */
  suberrors?: Array<{ message?: string; code?: string; detail?: string } | string>;
}

/** The facts of one failed Make API call, JSON-serialisable (it may travel in an ApplicationFailure's details). */
export interface MakeErrorInfo {
  status: number;
  method: string;
  /** Path relative to the API base, without the query string, e.g. `/connections/128/set-data`. */
  path: string;
  code?: string;
  message?: string;
  detail?: string;
  suberrors: string[];
}

const MAX_TEXT = 300;
const clip = (s: string): string => (s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}…` : s);

/**
 * Reads Make's error body `{ detail, message, code, suberrors }`.
 *
 * @param body the parsed JSON body, or raw text; anything else is ignored.
 * @returns the facts, with texts clipped to 300 characters; the query string
 *   is stripped from `path` so no parameter values leak into messages.
 */
export function parseMakeError(status: number, method: string, path: string, body: unknown): MakeErrorInfo {
  const info: MakeErrorInfo = { status, method: method.toUpperCase(), path: path.split('?')[0]!, suberrors: [] };
  let b: unknown = body;
  if (typeof body === 'string') {
    try {
      b = JSON.parse(body);
    } catch {
      if (body.trim()) info.detail = clip(body.trim());
      return info;
    }
  }
  if (b && typeof b === 'object' && !Array.isArray(b)) {
    const o = b as Record<string, unknown>;
    if (typeof o.code === 'string' || typeof o.code === 'number') info.code = String(o.code);
    if (typeof o.message === 'string' && o.message) info.message = clip(o.message);
    if (typeof o.detail === 'string' && o.detail) info.detail = clip(o.detail);
    if (Array.isArray(o.suberrors)) {
      for (const s of o.suberrors.slice(0, 10)) {
        if (typeof s === 'string') info.suberrors.push(clip(s));
        else if (s && typeof s === 'object') {
          const se = s as Record<string, unknown>;
          const text = [se.message, se.detail].filter((x) => typeof x === 'string' && x).join(': ');
          if (text) info.suberrors.push(clip(`${text}${typeof se.code === 'string' ? ` (${se.code})` : ''}`));
        }
      }
    }
  }
  return info;
}

/** What the user can do about a Make API status. */
function makeHint(status: number): string {
  switch (status) {
    case 401:
      return 'check the Make API token in the credential store (Make profile > API)';
    case 403:
      return "check the token's scopes and the user's role in the organization/team";
    case 404:
      return 'check the id in the registry: it does not exist in this zone/team';
    case 429:
      return "the organization's API limit per minute was exceeded; it will be retried — set make.apiLimitPerMinute below the plan's figure when other clients share the organization";
    default:
      return status >= 500 ? 'Make is failing; it will be retried' : 'check the request against the Make API documentation';
  }
}

/**
 * One readable line for a failed Make call: what failed, Make's own words, and
 * what to do.
 *
 * @example `Make API POST /connections/128/set-data failed: 400 Cannot edit this connection. [IM005] — check the request ...`
 */
export function formatMakeError(info: MakeErrorInfo, context?: string): string {
  const words = [info.message, info.detail].filter((x, i, a): x is string => !!x && a.indexOf(x) === i);
  const said = words.length ? ` ${words.join(': ')}` : '';
  const code = info.code ? ` [${info.code}]` : '';
  const subs = info.suberrors.length ? ` (${info.suberrors.join('; ')})` : '';
  const where = context ? ` (${context})` : '';
  return `Make API ${info.method} ${info.path}${where} failed: ${info.status}${said}${code}${subs} — ${makeHint(info.status)}`;
}

/** Statuses on which a Make call may be retried (DESIGN.md: 429, 502, 503, 504, plus 408 and 500). */
export function isRetryableMakeStatus(status: number): boolean {
  return status === 408 || status === 429 || status === 500 || status === 502 || status === 503 || status === 504;
}

// ---------------------------------------------------------------------------
// Pagination
// ---------------------------------------------------------------------------

/** Largest `pg[limit]` this client asks for. */
export const MAKE_MAX_PAGE_LIMIT = 10_000;
/** Default page size of this client. */
export const MAKE_DEFAULT_PAGE_LIMIT = 100;

/**
 * Query parameters of one page: `pg[offset]` (results to skip) and `pg[limit]`
 * (results to return), as Make documents them (Make API docs, "Pagination and sorting").
 *
 * @throws RangeError naming the option when offset < 0 or limit is outside [1, 10000].
 */
export function makePageQuery(offset: number, limit: number): Record<string, string> {
  if (!Number.isInteger(offset) || offset < 0) throw new RangeError(`invalid pg[offset] ${offset}: must be an integer >= 0`);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAKE_MAX_PAGE_LIMIT) {
    throw new RangeError(`invalid pg[limit] ${limit}: must be an integer in [1, ${MAKE_MAX_PAGE_LIMIT}]`);
  }
  return { 'pg[offset]': String(offset), 'pg[limit]': String(limit) };
}

/**
 * The offset of the next page, or `undefined` when this page was the last.
 * Make returns no total count, so a page shorter than `limit` (or empty) ends
 * the listing; a full page may be followed by an empty one.
 */
export function makeNextOffset(offset: number, limit: number, received: number): number | undefined {
  if (received <= 0 || received < limit) return undefined;
  return offset + received;
}

/** Default bound on the items of one listing: beyond it the listing stops with an error rather than grow without end. */
export const MAKE_DEFAULT_MAX_LIST_ITEMS = 10_000;
/** Default bound on the pages of one listing (matters with small pages). */
export const MAKE_DEFAULT_MAX_LIST_PAGES = 1_000;

/**
 * True when a page holds exactly the ids of the previous page, in the same
 * order: the server ignored `pg[offset]` and answered the same page again, so
 * walking on would never end. An empty page never repeats.
 *
 * @param previous the ids of the previous page (undefined for the first page).
 * @param ids the ids of this page (items without an `id` compare by their JSON text).
 */
export function makePageRepeats(previous: readonly string[] | undefined, ids: readonly string[]): boolean {
  if (!previous || ids.length === 0 || previous.length !== ids.length) return false;
  return ids.every((id, i) => id === previous[i]);
}

/** Number of requests needed to list `total` items with page size `limit` (the final empty page counted when total is a multiple of limit). */
export function makePagesNeeded(total: number, limit: number): number {
  return Math.floor(total / limit) + 1;
}

// ---------------------------------------------------------------------------
// Resources (the fields this project reads)
// ---------------------------------------------------------------------------

/** `GET /connections/{id}` → `{ connection }`, also the items of `GET /connections?teamId=` → `{ connections, pg }`. */
export interface MakeConnection {
  id: number;
  name: string;
  accountName?: string;
  accountType?: string;
  packageName?: string;
  teamId?: number;
  /** False when the connection's data cannot be changed through the API (e.g. OAuth connections). */
  editable?: boolean;
  /** When the connection's credentials expire (ISO 8601), or null when they do not. Read with {@link evaluateConnection}. */
  expire?: string | null;
}

/**
 * `GET /organizations/{organizationId}` → `{ organization }` (fields as in the
 * official SDK's `Organization` type and recorded answer).
 */
export interface MakeOrganization {
  id: number;
  name?: string;
  /** Whether Make paused the organization (its scenarios do not run). */
  isPaused?: boolean;
  /** Operations used in the current period; Make answers a string of digits. */
  operations?: string | number;
  /** Extra operations bought for the current period (string of digits). */
  operationsExt?: string | number;
  /** Start of the next period (ISO 8601), or null. */
  nextReset?: string | null;
  license?: {
    /** API requests per minute. */
    apiLimit?: number;
    /** Operations per period. */
    operations?: number;
  };
}

/** `GET /users/me/current-authorization` → `{ authorization }`: how the call was authorized and the token's scopes. */
export interface MakeAuthorization {
  /** E.g. `token`. */
  authUsed?: string;
  /** The token's API scopes, e.g. `connections:write`. */
  scope: string[];
}

/**
 * The scopes the `make` rotation provider's calls need (Make API docs, "Make
 * roles and API scopes": `:read` allows GET, `:write` POST/PUT/PATCH/DELETE):
 * `GET /connections/{id}` and `/editable-data-schema` read, `POST
 * /connections/{id}/set-data` and `/test` write.
 */
export const MAKE_ROTATION_SCOPES = ['connections:read', 'connections:write'] as const;

/**
 * The scopes of `required` that `granted` lacks, in the order of `required`.
 * Names compare exactly (Make's scope names are lower case, `resource:read|write`).
 */
export function makeMissingScopes(granted: readonly string[], required: readonly string[]): string[] {
  const have = new Set(granted);
  return required.filter((s) => !have.has(s));
}

/** Items of `GET /scenarios?teamId=` → `{ scenarios, pg }`; `GET /scenarios/{id}` → `{ scenario }`. */
export interface MakeScenario {
  id: number;
  name: string;
  teamId?: number;
  hookId?: number | null;
  /** True when the scenario is active (switched ON). Read with {@link makeScenarioActive}. */
  isActive?: boolean;
  /** Deprecated by Make in favour of `isActive`; read only when `isActive` is absent. */
  islinked?: boolean;
  isPaused?: boolean;
  isinvalid?: boolean;
  scheduling?: { type?: string };
  /** Incomplete executions waiting to be resolved (Make's DLQ). */
  dlqCount?: number;
}

/**
 * Whether a scenario is active (switched ON): Make's `isActive`, or, in an
 * answer without it, the deprecated `islinked`; neither (or not booleans) reads
 * as inactive, so an expected-active scenario is never passed on a guess.
 */
export function makeScenarioActive(s: Pick<MakeScenario, 'isActive' | 'islinked'>): boolean {
  if (typeof s.isActive === 'boolean') return s.isActive;
  return s.islinked === true;
}

/** Items of `GET /scenarios/{id}/logs` → `{ scenarioLogs, pg }`. `status` 1 success, 2 warning, 3 error. */
export interface MakeScenarioLog {
  id?: number | string;
  imtId?: string;
  type?: string;
  status: number;
  timestamp: string;
  duration?: number;
  operations?: number;
}

/** Items of `GET /hooks?teamId=` → `{ hooks, pg }`; `GET /hooks/{id}` → `{ hook }`. */
export interface MakeHook {
  id: number;
  name: string;
  teamId?: number;
  udid?: string;
  typeName?: string;
  url?: string;
  enabled: boolean;
  /** True when Make removed the hook's address (unused for too long). */
  gone?: boolean;
  scenarioId?: number | null;
  queueCount?: number;
  queueLimit?: number;
}

/** `GET /scenarios/{scenarioId}/executions/{executionId}`. */
export interface MakeExecution {
  status: 'RUNNING' | 'SUCCESS' | 'WARNING' | 'ERROR' | string;
  outputs?: Record<string, unknown>;
  error?: { message?: string; name?: string };
}

/** The terminal outcome of an execution status, or undefined while it runs. */
export function makeExecutionOutcome(status: string): 'success' | 'warning' | 'error' | undefined {
  switch (status.toUpperCase()) {
    case 'SUCCESS':
      return 'success';
    case 'WARNING':
      return 'warning';
    case 'ERROR':
      return 'error';
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------
// Registry block for `type: make` services
// ---------------------------------------------------------------------------

/** A duration with a unit (`7d`, `36h`), parsed to ms; a bare number is refused (its unit would be a guess). */
const expiryDurationMs = z.string().transform((v, ctx) => {
  const ms = tryParseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `invalid duration "${v}": use a number and a unit, e.g. 12h, 7d` });
    return z.NEVER;
  }
  return ms;
});

const slug = z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'must be a slug: lowercase letters, digits and "-"');
const makeId = z.number().int().positive();

export const makeConnectionSchema = z.strictObject({
  id: makeId,
  name: z.string().optional(),
  /** The registry service whose credentials this connection holds (for scenario impact). */
  standsFor: slug.optional(),
  /** The registry credential pushed into this connection on rotation. */
  credential: slug.optional(),
  /**
   * The field of the connection data that receives the secret (e.g. `apiKey`).
   * When absent, the secret must be a JSON object and becomes the whole data.
   */
  dataField: z.string().min(1).optional(),
  /** Other, non-secret fields sent with the secret: `set-data` replaces all data, missing fields become empty. */
  data: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
});

export const makeScenarioSchema = z.strictObject({
  id: makeId,
  name: z.string().optional(),
  /** Ids of the connections (listed above) the scenario uses. */
  connections: z.array(makeId).default([]),
  /** Whether the scenario should be active; an inactive expected-active scenario is unhealthy. */
  expectActive: z.boolean().default(true),
});

export const makeHookSchema = z.strictObject({
  id: makeId,
  name: z.string().optional(),
});

/**
 * `make:` block of a `type: make` service. The service's endpoint is the zone's
 * API base (`makeApiBaseUrl(zone)`); its `credential` is the Make API token.
 */
export const makeConfigSchema = z
  .strictObject({
    zone: z.string().min(1),
    organizationId: makeId,
    teamId: makeId,
    plan: z.enum(['core', 'pro', 'teams', 'enterprise']).optional(),
    /** Overrides the plan's figure and `license.apiLimit`. */
    apiLimitPerMinute: z.number().int().positive().optional(),
    connections: z.array(makeConnectionSchema).default([]),
    scenarios: z.array(makeScenarioSchema).default([]),
    hooks: z.array(makeHookSchema).default([]),
    /** How many recent executions per scenario the health check reads. */
    recentExecutions: z.number().int().min(1).max(100).default(10),
    /** Health: the organization is degraded once it has used this share (percent) of its period's operations. */
    operationsWarningPercent: z.number().min(1).max(100).default(90),
    /** Health: a connection expiring within this duration (e.g. `7d`) is degraded; parsed to ms. */
    connectionExpiryWarning: expiryDurationMs.default(7 * 86_400_000),
  })
  .superRefine((m, ctx) => {
    try {
      makeApiBaseUrl(m.zone);
    } catch (e) {
      ctx.addIssue({ code: 'custom', path: ['zone'], message: (e as Error).message });
    }
    const ids = new Set(m.connections.map((c) => c.id));
    m.scenarios.forEach((s, i) =>
      s.connections.forEach((c, j) => {
        if (!ids.has(c)) ctx.addIssue({ code: 'custom', path: ['scenarios', i, 'connections', j], message: `connection ${c} is not listed under make.connections` });
      }),
    );
  });

export type MakeConfig = z.output<typeof makeConfigSchema>;

/**
 * Registry-level checks of `type: make` services (attached to the registry
 * schema): a make service has a `make:` block; each connection's `standsFor`
 * names a service and its `credential` a credential that lists this service
 * among its consumers (otherwise rotations never reach the connection).
 */
export function checkMakeReferences(
  doc: { services: ReadonlyArray<{ id: string; type: string; make?: MakeConfig }>; credentials: ReadonlyArray<{ id: string; consumers: readonly string[] }> },
  addIssue: (path: Array<string | number>, message: string) => void,
): void {
  const services = new Set(doc.services.map((s) => s.id));
  const credentials = new Map(doc.credentials.map((c) => [c.id, c]));
  doc.services.forEach((s, i) => {
    if (s.type === 'make' && !s.make) addIssue(['services', i, 'type'], `service "${s.id}" is type make but has no make: block (zone, organizationId, teamId)`);
    if (s.type !== 'make' && s.make) addIssue(['services', i, 'make'], `service "${s.id}" has a make: block but is type ${s.type}; set type: make`);
    s.make?.connections.forEach((c, j) => {
      if (c.standsFor !== undefined && !services.has(c.standsFor)) addIssue(['services', i, 'make', 'connections', j, 'standsFor'], `unknown service "${c.standsFor}"`);
      if (c.credential === undefined) return;
      const cred = credentials.get(c.credential);
      if (!cred) addIssue(['services', i, 'make', 'connections', j, 'credential'], `unknown credential "${c.credential}"`);
      else if (!cred.consumers.includes(s.id)) {
        addIssue(['services', i, 'make', 'connections', j, 'credential'], `credential "${c.credential}" does not list "${s.id}" among its consumers, so rotations would not reach this connection`);
      }
    });
  });
}

export type MakeConnectionConfig = z.output<typeof makeConnectionSchema>;
export type MakeScenarioConfig = z.output<typeof makeScenarioSchema>;

// ---------------------------------------------------------------------------
// Connection data for rotation
// ---------------------------------------------------------------------------

/**
 * The body of `POST /connections/{id}/set-data` for a secret. Make replaces
 * the whole data with the body, so the static `data` fields are always sent.
 *
 * @param secret the credential value; when `dataField` is absent it must be a JSON object.
 * @throws Error (without the secret's value) when the secret is not a JSON object and no `dataField` is set.
 */
export function makeConnectionData(conn: Pick<MakeConnectionConfig, 'id' | 'dataField' | 'data'>, secret: string): Record<string, unknown> {
  if (conn.dataField) return { ...conn.data, [conn.dataField]: secret };
  let parsed: unknown;
  try {
    parsed = JSON.parse(secret);
  } catch {
    parsed = undefined;
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new Error(`Make connection ${conn.id}: the secret is not a JSON object; set make.connections[].dataField to the field that takes it`);
  }
  return { ...conn.data, ...(parsed as Record<string, unknown>) };
}

// ---------------------------------------------------------------------------
// Health evaluation
// ---------------------------------------------------------------------------

export type MakeHealthStatus = 'healthy' | 'degraded' | 'unhealthy' | 'impacted' | 'unknown';

/** One checked Make resource. `reason` never holds secret material. */
export interface MakeResourceHealth {
  kind: 'token' | 'organization' | 'connection' | 'scenario' | 'hook';
  id: string;
  name?: string;
  status: MakeHealthStatus;
  reason?: string;
  /** For `impacted`: the registry service ids that are the root cause. */
  rootCause?: string[];
}

/**
 * A scenario's health from its state and recent executions (newest first):
 * `unhealthy` when invalid, expected active but inactive, or the latest
 * execution failed; `degraded` when some recent executions failed or warned,
 * or incomplete executions wait (`dlqCount` > 0, the count in the reason);
 * `impacted` (over healthy/degraded) when a service one of its connections
 * stands for is unhealthy.
 *
 * @param unhealthyServices registry service ids currently unhealthy (from the sweep).
 */
export function evaluateScenario(
  cfg: MakeScenarioConfig,
  scenario: MakeScenario | undefined,
  logs: MakeScenarioLog[],
  connections: MakeConnectionConfig[],
  unhealthyServices: ReadonlySet<string>,
): MakeResourceHealth {
  const base = { kind: 'scenario' as const, id: String(cfg.id), name: scenario?.name ?? cfg.name };
  if (!scenario) return { ...base, status: 'unhealthy', reason: `scenario ${cfg.id} not found` };
  if (scenario.isinvalid) return { ...base, status: 'unhealthy', reason: 'scenario is invalid' };
  if (cfg.expectActive && !makeScenarioActive(scenario)) return { ...base, status: 'unhealthy', reason: 'scenario is inactive' };
  if (cfg.expectActive && scenario.isPaused) return { ...base, status: 'unhealthy', reason: 'scenario is paused' };
  const errors = logs.filter((l) => l.status === 3).length;
  const warnings = logs.filter((l) => l.status === 2).length;
  let status: MakeHealthStatus = 'healthy';
  let reason: string | undefined;
  if (logs.length && logs[0]!.status === 3) {
    status = 'unhealthy';
    reason = `latest execution failed (${errors} of ${logs.length} recent executions failed)`;
  } else if (errors || warnings) {
    status = 'degraded';
    reason = `${errors} failed and ${warnings} warning of ${logs.length} recent executions`;
  }
  const dlq = typeof scenario.dlqCount === 'number' && scenario.dlqCount > 0 ? scenario.dlqCount : 0;
  if (dlq) {
    const dlqReason = `${dlq} incomplete execution${dlq === 1 ? ' waits' : 's wait'} to be resolved in Make (dlqCount)`;
    reason = reason ? `${reason}; ${dlqReason}` : dlqReason;
    if (status === 'healthy') status = 'degraded';
  }
  const standsFor = new Map(connections.map((c) => [c.id, c.standsFor]));
  const causes = [...new Set(cfg.connections.map((c) => standsFor.get(c)).filter((s): s is string => !!s && unhealthyServices.has(s)))].sort();
  if (status !== 'unhealthy' && causes.length) {
    return { ...base, status: 'impacted', reason: `depends on unhealthy ${causes.join(', ')}`, rootCause: causes };
  }
  return { ...base, status, ...(reason ? { reason } : {}) };
}

/** A whole number as Make writes counters (`"1200"` or 1200), or undefined when it is not one. */
function countOf(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/**
 * An organization's health from `GET /organizations/{id}`:
 * - `unhealthy` when `isPaused` is true (Make runs none of its scenarios);
 * - `degraded` when the operations used this period (`operations`) reach
 *   `operationsWarningPercent` of the period's limit (`license.operations`),
 *   the figures and the share in the reason; at or past the limit the reason says so;
 * - `unknown` when `isPaused` is not a boolean or either figure is missing or
 *   not a whole number (an answer it cannot read is never healthy), unless a
 *   readable part already shows trouble.
 * Extra operations bought (`operationsExt`) are not added to the limit, so the
 * warning comes early rather than late.
 *
 * @param opts.operationsWarningPercent share of the limit, in percent (1–100).
 */
export function evaluateOrganization(org: MakeOrganization, opts: { operationsWarningPercent: number }): MakeResourceHealth {
  const base = { kind: 'organization' as const, id: String(org.id), ...(org.name ? { name: org.name } : {}) };
  const reasons: string[] = [];
  let status: MakeHealthStatus = 'healthy';
  const worsen = (s: MakeHealthStatus, reason: string) => {
    reasons.push(reason);
    if (RANK[s] > RANK[status]) status = s;
  };
  if (typeof org.isPaused !== 'boolean') worsen('unknown', 'the organization answer has no isPaused');
  else if (org.isPaused) worsen('unhealthy', 'organization is paused (isPaused): its scenarios do not run — check its subscription and operations in Make');
  const used = countOf(org.operations);
  const limit = countOf(org.license?.operations);
  if (used === undefined || limit === undefined || limit === 0) {
    worsen('unknown', 'operations used (operations) or the limit (license.operations) unreadable in the organization answer');
  } else {
    const pct = Math.floor((used * 100) / limit);
    const figures = `operations used ${used} of ${limit} (${pct}%) this period`;
    if (used >= limit) worsen('degraded', `${figures}: the limit is reached, scenarios stop until the period resets or operations are added`);
    else if (used * 100 >= opts.operationsWarningPercent * limit) {
      worsen('degraded', `${figures}, at or above the ${opts.operationsWarningPercent}% warning${org.nextReset ? `; the period resets ${org.nextReset}` : ''}`);
    }
  }
  return status === 'healthy' ? { ...base, status } : { ...base, status, reason: reasons.join('; ') };
}

/** A rough, readable span: whole days, else hours, else minutes (`3d`, `5h`, `12m`). */
function roughSpan(ms: number): string {
  if (ms >= 86_400_000) return `${Math.floor(ms / 86_400_000)}d`;
  if (ms >= 3_600_000) return `${Math.floor(ms / 3_600_000)}h`;
  return `${Math.max(0, Math.floor(ms / 60_000))}m`;
}

/**
 * A connection's health from its test (`POST /connections/{id}/test`) and its
 * `expire` (`GET /connections/{id}`): `unhealthy` when the test says
 * `verified: false` or `expire` has passed; `degraded` when it falls within
 * `expiryWarningMs` of `nowMs`; `unknown` when `expire` is not a date. A null
 * or absent `expire` never expires.
 *
 * @param nowMs the current time, ms since the epoch (passed in: no clock here).
 * @param expiryWarningMs how early an expiry degrades the connection, ms.
 */
export function evaluateConnection(
  cfg: { id: number; name?: string },
  check: { verified: boolean; expire?: string | null },
  nowMs: number,
  expiryWarningMs: number,
): MakeResourceHealth {
  const base = { kind: 'connection' as const, id: String(cfg.id), ...(cfg.name ? { name: cfg.name } : {}) };
  const reasons: string[] = [];
  let status: MakeHealthStatus = 'healthy';
  const worsen = (s: MakeHealthStatus, reason: string) => {
    reasons.push(reason);
    if (RANK[s] > RANK[status]) status = s;
  };
  if (!check.verified) worsen('unhealthy', 'connection test failed (verified: false)');
  if (check.expire !== null && check.expire !== undefined) {
    const at = typeof check.expire === 'string' ? Date.parse(check.expire) : NaN;
    if (Number.isNaN(at)) worsen('unknown', `connection expire ${JSON.stringify(check.expire)} is not a date`);
    else if (at <= nowMs) worsen('unhealthy', `connection expired at ${check.expire}: reauthorize it in Make`);
    else if (at - nowMs <= expiryWarningMs) {
      worsen('degraded', `connection expires at ${check.expire} (in ${roughSpan(at - nowMs)}, within the ${formatDuration(expiryWarningMs)} warning): reauthorize it in Make`);
    }
  }
  return status === 'healthy' ? { ...base, status } : { ...base, status, reason: reasons.join('; ') };
}

/**
 * A hook's health: `unhealthy` when disabled, gone, or its address does not
 * answer; `degraded` when its queue is full (new requests are rejected).
 */
export function evaluateHook(id: number, hook: MakeHook | undefined, reachable: boolean | undefined): MakeResourceHealth {
  const base = { kind: 'hook' as const, id: String(id), name: hook?.name };
  if (!hook) return { ...base, status: 'unhealthy', reason: `hook ${id} not found` };
  if (!hook.enabled) return { ...base, status: 'unhealthy', reason: 'hook is disabled' };
  if (hook.gone) return { ...base, status: 'unhealthy', reason: 'hook address is gone (removed by Make)' };
  if (reachable === false) return { ...base, status: 'unhealthy', reason: `hook address ${hook.url ?? ''} is not reachable`.trim() };
  if (hook.queueLimit !== undefined && hook.queueCount !== undefined && hook.queueLimit > 0 && hook.queueCount >= hook.queueLimit) {
    return { ...base, status: 'degraded', reason: `hook queue is full (${hook.queueCount}/${hook.queueLimit})` };
  }
  return { ...base, status: 'healthy' };
}

const RANK: Record<MakeHealthStatus, number> = { healthy: 0, unknown: 1, impacted: 2, degraded: 3, unhealthy: 4 };

/**
 * The Make service's overall status: the worst of its parts (unhealthy >
 * degraded > impacted > unknown > healthy); a failed token check alone makes
 * it unhealthy because nothing else can be read.
 */
export function overallMakeStatus(parts: MakeResourceHealth[]): MakeHealthStatus {
  if (parts.length === 0) return 'unknown';
  let worst: MakeHealthStatus = 'healthy';
  for (const p of parts) if (RANK[p.status] > RANK[worst]) worst = p.status;
  return worst;
}

// ---------------------------------------------------------------------------
// Webhook delivery
// ---------------------------------------------------------------------------

/** Retry policy of one subscriber in `deliverWebhook`. */
export interface WebhookRetryPolicy {
  /** Total attempts over all the subscriber's endpoints, >= 1. Default 5. */
  maximumAttempts: number;
  /** Backoff cap for the first retry, ms. Default 1000. */
  initialIntervalMs: number;
  /** Growth per retry, >= 1. Default 2. */
  backoffCoefficient: number;
  /** Largest backoff, ms. Default 60000. */
  maximumIntervalMs: number;
}

export const DEFAULT_WEBHOOK_RETRY: WebhookRetryPolicy = {
  maximumAttempts: 5,
  initialIntervalMs: 1_000,
  backoffCoefficient: 2,
  maximumIntervalMs: 60_000,
};

/**
 * Validates and completes a retry policy.
 * @throws RangeError naming the option and the value given.
 */
export function webhookRetryPolicy(p: Partial<WebhookRetryPolicy> = {}): WebhookRetryPolicy {
  const r = { ...DEFAULT_WEBHOOK_RETRY, ...p };
  if (!Number.isInteger(r.maximumAttempts) || r.maximumAttempts < 1) throw new RangeError(`invalid maximumAttempts ${r.maximumAttempts}: must be an integer >= 1`);
  if (!Number.isFinite(r.initialIntervalMs) || r.initialIntervalMs < 0) throw new RangeError(`invalid initialIntervalMs ${r.initialIntervalMs}: must be >= 0`);
  if (!Number.isFinite(r.backoffCoefficient) || r.backoffCoefficient < 1) throw new RangeError(`invalid backoffCoefficient ${r.backoffCoefficient}: must be >= 1`);
  if (!Number.isFinite(r.maximumIntervalMs) || r.maximumIntervalMs < r.initialIntervalMs) {
    throw new RangeError(`invalid maximumIntervalMs ${r.maximumIntervalMs}: must be >= initialIntervalMs (${r.initialIntervalMs})`);
  }
  return r;
}

/**
 * Delay before retry number `retry` (1 = the first retry): full jitter over an
 * exponential cap, `random * min(maximumIntervalMs, initialIntervalMs * coefficient^(retry-1))`
 * (AWS Architecture Blog, "Exponential Backoff And Jitter").
 *
 * @param random a number in [0, 1); workflows pass `Math.random()` (deterministic in the sandbox).
 * @returns whole ms in [0, maximumIntervalMs].
 */
export function webhookBackoffMs(retry: number, policy: WebhookRetryPolicy, random: number): number {
  const exp = policy.initialIntervalMs * Math.pow(policy.backoffCoefficient, Math.max(0, retry - 1));
  const cap = Math.min(policy.maximumIntervalMs, Number.isFinite(exp) ? exp : policy.maximumIntervalMs);
  const r = Math.min(Math.max(random, 0), 1);
  return Math.floor(cap * r);
}

/**
 * Which of a subscriber's endpoints the next delivery attempt uses: the first
 * at the start, the next one (round robin) after each failure; an endpoint
 * that refused for good is dropped, and the one after it is next.
 */
export class EndpointFailover {
  private readonly alive: number[];
  private cursor = 0;

  /** @throws RangeError when count is not an integer >= 0. */
  constructor(count: number) {
    if (!Number.isInteger(count) || count < 0) throw new RangeError(`invalid endpoint count ${count}: must be an integer >= 0`);
    this.alive = Array.from({ length: count }, (_, i) => i);
  }

  /** Index (into the subscriber's endpoints) for the next attempt, or undefined when none is left. */
  current(): number | undefined {
    return this.alive.length ? this.alive[this.cursor % this.alive.length] : undefined;
  }

  /** Endpoints still in rotation. */
  get remaining(): number {
    return this.alive.length;
  }

  /** Records a failed attempt on the current endpoint; `permanent` drops it. */
  failed(permanent: boolean): void {
    if (!this.alive.length) return;
    const at = this.cursor % this.alive.length;
    if (permanent) {
      this.alive.splice(at, 1);
      this.cursor = at; // the next endpoint slid into this slot
    } else {
      this.cursor = at + 1;
    }
  }
}

/**
 * The `Idempotency-Key` header value of one event for one subscriber: the same
 * for every retry and endpoint, so a receiver can drop duplicates
 * (IETF draft-ietf-httpapi-idempotency-key-header).
 */
export function webhookIdempotencyKey(eventId: string, subscriberId: string): string {
  return `${eventId}:${subscriberId}`;
}

/** HTTP statuses a webhook receiver answers with that end delivery to that endpoint at once (it will never accept this event). */
export function isPermanentWebhookStatus(status: number): boolean {
  return status === 400 || status === 401 || status === 403 || status === 404 || status === 410 || status === 413 || status === 422;
}
