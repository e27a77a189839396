/**
 * Health evaluation, pure: judging one probe against a service's `expect`
 * rules, dependency-aware status with root cause, hysteresis, the availability
 * rule, alert decisions and maintenance windows. Time is always an argument
 * (epoch milliseconds); nothing here reads a clock, so workflows, activities
 * and property tests share it. See docs/health.md for the rules in prose.
 */
import type { HealthCheck, MaintenanceWindow, ServiceSpec } from './registry';
import { healthCheckSchema } from './registry';
import { impactOf } from './graph';

/** The status of a service, as the sweep and the per-service entity report it. */
export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy' | 'impacted' | 'unknown' | 'maintenance';

export const HEALTH_STATUSES: readonly HealthStatus[] = ['healthy', 'degraded', 'unhealthy', 'impacted', 'unknown', 'maintenance'];

/**
 * Why a probe failed. `slow` is a response slower than `expect.maxResponseTime`;
 * `answer`: a DNS answer other than `expect.answers`; `credential_rejected`:
 * the service refused the managed credential (HTTP 401/403 with `auth: true`,
 * PostgreSQL/Redis authentication, gRPC UNAUTHENTICATED/PERMISSION_DENIED);
 * `protocol`: the peer answered, but not in the protocol probed (no gRPC
 * health service, a Redis reply other than PONG, an SMTP server without STARTTLS).
 */
export type ProbeFailureKind =
  | 'timeout'
  | 'connection_refused'
  | 'dns'
  | 'tls'
  | 'status'
  | 'body'
  | 'slow'
  | 'answer'
  | 'credential_rejected'
  | 'protocol'
  | 'other';

/**
 * The verdict of one probe, in application/health+json terms
 * (draft-inadarei-api-health-check: pass/warn/fail), plus `inconclusive` when
 * no result exists (the prober itself failed): an inconclusive result is never
 * read as healthy.
 */
export type ProbeVerdict = 'pass' | 'warn' | 'fail' | 'inconclusive';

/** What a probe activity observed on the wire, before any judgment. */
export interface ProbeObservation {
  /** Epoch ms when the probe started. */
  startedAt: number;
  /** Wall time from start to the full response (or the failure), ms. */
  latencyMs: number;
  /** Set when no (complete) response arrived. */
  error?: { kind: ProbeFailureKind; message: string };
  /** HTTP status code, when a response arrived. */
  status?: number;
  /** Response Content-Type (media type only, lower case). */
  contentType?: string;
  /** Body could not be parsed as JSON although rules or health+json needed it. */
  bodyParseError?: string;
  /** For each `expect.body` rule, in order, the values its JSONPath matched. */
  bodyMatches?: unknown[][];
  /** The `status` member of an application/health+json body. */
  healthJsonStatus?: string;
  /** Leaf certificate `notAfter` of the TLS connection actually used, epoch ms. */
  certNotAfter?: number;
  /** DNS answers (dns probes), each in the text form `expect.answers` uses (see docs/registry.md). */
  answers?: string[];
  /** `grpc.health.v1.HealthCheckResponse.ServingStatus` name (grpc probes), e.g. `SERVING`. */
  servingStatus?: string;
  /** The credential presented (`auth: true`), by id. */
  credentialId?: string;
}

/** One judged probe result (JSON-serialisable; carries no secrets). */
export interface ProbeResult {
  serviceId: string;
  verdict: ProbeVerdict;
  latencyMs: number;
  /** Epoch ms when the probe started. */
  startedAt: number;
  status?: number;
  failureKind?: ProbeFailureKind;
  /** One line for humans: what failed and the value seen. */
  detail?: string;
  /** Whole days until the served leaf certificate expires (floor; negative when expired). */
  certDaysLeft?: number;
  /** A `warn` on the certificate: the smallest `certificateExpiresAfter` threshold its remaining validity is under, ms. */
  certThresholdMs?: number;
  /** True when the service was inside a maintenance window at `startedAt`. */
  maintenance?: boolean;
  /** Services with several endpoints: how many answered well, of how many probed. */
  endpoints?: { up: number; total: number };
  /** Indexes (in registry order) of the endpoints whose probe failed; absent when none did. */
  endpointsDown?: number[];
  /** The credential a `credential_rejected` failure is about (its id; never the secret). */
  credentialId?: string;
}

const DAY_MS = 86_400_000;

/** The registry's health check for a service, with schema defaults when it declares none. */
export function effectiveHealthCheck(service: Pick<ServiceSpec, 'healthCheck'>): HealthCheck {
  return service.healthCheck ?? healthCheckSchema.parse({});
}

/**
 * Does `status` satisfy one registry status matcher: a code (`200`, `"204"`),
 * a class (`"2xx"`) or an inclusive range (`"200-299"`)?
 */
export function statusMatches(status: number, matcher: number | string): boolean {
  if (typeof matcher === 'number') return status === matcher;
  const m = matcher.trim();
  if (/^[1-5]xx$/.test(m)) return Math.floor(status / 100) === Number(m[0]);
  const range = /^(\d{3})-(\d{3})$/.exec(m);
  if (range) return status >= Number(range[1]) && status <= Number(range[2]);
  return /^\d{3}$/.test(m) && status === Number(m);
}

/**
 * Maps an application/health+json `status` (draft-inadarei-api-health-check-06 §3.1:
 * "pass" with aliases "ok"/"up", "fail" with "error"/"down", and "warn") to a verdict.
 * Unknown values are `fail`: a body we cannot read is not a pass.
 */
export function healthJsonVerdict(status: string): 'pass' | 'warn' | 'fail' {
  switch (status.toLowerCase()) {
    case 'pass':
    case 'ok':
    case 'up':
      return 'pass';
    case 'warn':
      return 'warn';
    default:
      return 'fail';
  }
}

/** Whole days left until `notAfter` at `now` (floor; negative once expired). */
export function certDaysLeft(notAfter: number, now: number): number {
  return Math.floor((notAfter - now) / DAY_MS);
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? s.slice(0, 77) + '...' : s;
}

/**
 * Judges one observation against a health check's `expect` rules.
 *
 * Order: transport error, then per type: http status code and body (JSON
 * parse, JSONPath and text rules, health+json status); dns answers; grpc
 * serving status; then response time (`slow`), certificate days left (any
 * TLS connection: http, tls, grpc).
 * The first failing rule decides the failure kind; `warn` (slower than
 * `expect.degradedResponseTime`, health+json "warn", or a certificate
 * expiring before `expect.certificateExpiresAfter`, the last of these
 * deciding the detail) gives a degraded verdict; a certificate warning
 * carries the smallest threshold crossed (`certThresholdMs`).
 *
 * @param now epoch ms used for certificate days left.
 */
export function evaluateProbe(serviceId: string, check: HealthCheck, obs: ProbeObservation, now: number): ProbeResult {
  const base: ProbeResult = { serviceId, verdict: 'pass', latencyMs: obs.latencyMs, startedAt: obs.startedAt };
  if (obs.status !== undefined) base.status = obs.status;
  if (obs.certNotAfter !== undefined) base.certDaysLeft = certDaysLeft(obs.certNotAfter, now);
  const fail = (failureKind: ProbeFailureKind, detail: string): ProbeResult => ({ ...base, verdict: 'fail', failureKind, detail });
  if (obs.error) {
    const r = fail(obs.error.kind, obs.error.message);
    if (obs.error.kind === 'credential_rejected' && obs.credentialId) r.credentialId = obs.credentialId;
    return r;
  }
  if (check.type === 'http') {
    if (obs.status === undefined) return fail('other', 'no response status');
    const allowed = check.expect.status;
    if (!allowed.some((m) => statusMatches(obs.status!, m))) {
      return fail('status', `status ${obs.status}, expected ${allowed.join(' or ')}`);
    }
    if (obs.bodyParseError) return fail('body', `body is not JSON: ${obs.bodyParseError}`);
    const rules = check.expect.body;
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i]!;
      const found = obs.bodyMatches?.[i] ?? [];
      if (rule.path === undefined) {
        // A text rule: the activity reports the matched text (or nothing).
        if (found.length === 0) {
          return fail('body', rule.contains !== undefined ? `body does not contain ${show(rule.contains)}` : `body does not match /${rule.matches}/`);
        }
        continue;
      }
      if (rule.exists !== undefined && (found.length > 0) !== rule.exists) {
        return fail('body', `${rule.path} ${rule.exists ? 'is missing' : 'exists but must not'}`);
      }
      if (rule.equals !== undefined && !found.some((v) => deepEqual(v, rule.equals))) {
        return fail('body', `${rule.path} is ${found.length ? show(found[0]) : 'missing'}, expected ${show(rule.equals)}`);
      }
      if (rule.matches !== undefined) {
        let re: RegExp;
        try {
          re = new RegExp(rule.matches);
        } catch {
          return fail('body', `${rule.path}: invalid pattern ${show(rule.matches)} in registry`);
        }
        if (!found.some((v) => re.test(typeof v === 'string' ? v : JSON.stringify(v)))) {
          return fail('body', `${rule.path} is ${found.length ? show(found[0]) : 'missing'}, expected to match /${rule.matches}/`);
        }
      }
    }
  } else if (check.type === 'dns') {
    const got = obs.answers ?? [];
    const kind = check.recordType ?? 'A';
    if (got.length === 0) return fail('dns', `no ${kind} record`);
    const want = check.expect.answers;
    if (want !== undefined) {
      const norm = (a: string) => normalizeDnsAnswer(kind, a);
      const g = [...new Set(got.map(norm))].sort();
      const w = [...new Set(want.map(norm))].sort();
      if (g.length !== w.length || g.some((x, i) => x !== w[i])) return fail('answer', `${kind} answer ${show(g)}, expected ${show(w)}`);
    }
  } else if (check.type === 'grpc') {
    const st = obs.servingStatus;
    if (st !== 'SERVING') {
      const what = check.grpcService ? `service ${show(check.grpcService)}` : 'server';
      return fail('status', st === 'SERVICE_UNKNOWN' ? `SERVICE_UNKNOWN: the server does not know ${what}` : `${what} is ${st ?? 'UNKNOWN'}`);
    }
  }
  const max = check.expect.maxResponseTime;
  if (max !== undefined && obs.latencyMs > max) return fail('slow', `responded in ${Math.round(obs.latencyMs)}ms, limit ${max}ms`);
  const degraded = check.expect.degradedResponseTime;
  if (degraded !== undefined && obs.latencyMs > degraded) {
    base.verdict = 'warn';
    base.failureKind = 'slow';
    base.detail = `responded in ${Math.round(obs.latencyMs)}ms, degraded above ${degraded}ms`;
  }
  if (obs.healthJsonStatus !== undefined) {
    const v = healthJsonVerdict(obs.healthJsonStatus);
    if (v === 'fail') return { ...base, verdict: 'fail', failureKind: 'body', detail: `health+json status "${obs.healthJsonStatus}"` };
    if (v === 'warn') {
      base.verdict = 'warn';
      delete base.failureKind;
      base.detail = `health+json status "${obs.healthJsonStatus}"`;
    }
  }
  const minLeftMs = check.expect.certificateExpiresAfter;
  if (minLeftMs !== undefined && obs.certNotAfter !== undefined) {
    if (obs.certNotAfter <= now) return fail('tls', `certificate expired ${-base.certDaysLeft!} day(s) ago`);
    const leftMs = obs.certNotAfter - now;
    if (leftMs < minLeftMs) {
      // The smallest threshold crossed: the service's warning notifies each one once.
      const crossed = Math.min(...(check.expect.certificateExpiryThresholds ?? [minLeftMs]).filter((t) => leftMs < t));
      return {
        ...base,
        verdict: 'warn',
        failureKind: 'tls',
        certThresholdMs: crossed,
        detail: `certificate expires in ${base.certDaysLeft} day(s), under the ${formatThreshold(crossed)} threshold`,
      };
    }
  }
  return base;
}

/**
 * One DNS answer in a comparable form: names lower case without the final
 * dot, IPv6 addresses expanded-then-compressed by the URL parser, whitespace
 * collapsed (MX `10 mail.example.com`, SRV `priority weight port target`, TXT as is).
 */
export function normalizeDnsAnswer(recordType: string, answer: string): string {
  const a = answer.trim();
  switch (recordType) {
    case 'TXT':
      return a;
    case 'AAAA':
      try {
        return new URL(`http://[${a}]/`).hostname.slice(1, -1);
      } catch {
        return a.toLowerCase();
      }
    default:
      return a
        .split(/\s+/)
        .map((w) => w.toLowerCase().replace(/\.$/, ''))
        .join(' ');
  }
}

/**
 * The result of a service probed on several endpoints, from each endpoint's
 * result (registry order). Every endpoint passing: the worst of their
 * verdicts (pass, else warn). Some failing: `warn` (degraded), detail
 * "2/3 endpoints up; <first failure>". All failing: `fail` with the first
 * endpoint's failure kind and "0/3 endpoints up; ...". Latency: the slowest
 * endpoint (they are probed at once, so the probe took that long);
 * certificate days: the fewest.
 */
export function combineEndpointResults(results: readonly ProbeResult[], urls: readonly string[]): ProbeResult {
  if (results.length === 1) return results[0]!;
  const down: number[] = [];
  results.forEach((r, i) => r.verdict === 'fail' && down.push(i));
  const up = results.length - down.length;
  const firstBad = down.length ? results[down[0]!]! : undefined;
  const lead = results.find((r) => r.verdict !== 'fail') ?? results[0]!;
  const out: ProbeResult = {
    ...lead,
    latencyMs: Math.max(...results.map((r) => r.latencyMs)),
    startedAt: Math.min(...results.map((r) => r.startedAt)),
    endpoints: { up, total: results.length },
  };
  const days = results.map((r) => r.certDaysLeft).filter((d): d is number => d !== undefined);
  if (days.length) out.certDaysLeft = Math.min(...days);
  // The lowest certificate threshold any endpoint crossed: the warning's notices follow the worst certificate.
  const crossed = results.map((r) => r.certThresholdMs).filter((t): t is number => t !== undefined);
  if (crossed.length) out.certThresholdMs = Math.min(...crossed);
  else delete out.certThresholdMs;
  const count = `${up}/${results.length} endpoints up`;
  if (firstBad) {
    out.endpointsDown = down;
    out.failureKind = firstBad.failureKind ?? 'other';
    out.detail = `${count}; ${hostOf(urls[down[0]!])}: ${firstBad.detail ?? firstBad.failureKind ?? 'failed'}`;
    out.verdict = up === 0 ? 'fail' : 'warn';
    if (up === 0) {
      if (firstBad.status !== undefined) out.status = firstBad.status;
      else delete out.status;
    }
    if (firstBad.credentialId) out.credentialId = firstBad.credentialId;
  } else {
    const warn = results.find((r) => r.verdict === 'warn');
    out.verdict = warn ? 'warn' : 'pass';
    if (warn) {
      out.failureKind = warn.failureKind!;
      out.detail = `${count}; ${warn.detail ?? ''}`;
      if (!warn.failureKind) delete out.failureKind;
    } else {
      delete out.failureKind;
      out.detail = count;
    }
  }
  return out;
}

function hostOf(url: string | undefined): string {
  if (!url) return 'endpoint';
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** A threshold for humans: whole days as `14-day`, else the duration (`36h`). */
function formatThreshold(ms: number): string {
  if (ms % DAY_MS === 0) return `${ms / DAY_MS}-day`;
  const h = ms / 3_600_000;
  return Number.isInteger(h) ? `${h}h` : `${Math.round(ms / 1000)}s`;
}

/**
 * What a probe activity needs about one service (a slice of the registry
 * snapshot). It travels through workflow history, once per service per
 * sweep: only what the probe reads, and never a secret (credentials by id).
 */
export interface ProbeTarget {
  id: string;
  /** Absolute URL probed: `healthCheck.url`, else the first endpoint with its path and query replaced by `healthCheck.path`. */
  url: string;
  /** Every URL probed, in endpoint order, when there is more than one (`url` is the first). */
  urls?: string[];
  check: HealthCheck;
  maintenance: MaintenanceWindow[];
  /** With `healthCheck.auth: true`: the credential presented and how (the service's `credential` and `auth`). */
  credential?: { id: string; scheme: 'bearer' | 'basic' | 'header' | 'make'; header?: string; username?: string };
}

/**
 * The probe target of a service: its effective check and the URL(s) it
 * probes: `healthCheck.url` alone, else every endpoint (with `path`).
 */
export function probeTarget(
  service: Pick<ServiceSpec, 'id' | 'endpoints' | 'healthCheck' | 'maintenance'> & Partial<Pick<ServiceSpec, 'credential' | 'auth'>>,
): ProbeTarget {
  let check = effectiveHealthCheck(service);
  const withPath = (raw: string): string => {
    const ep = new URL(raw);
    if (check.path) {
      const [p, q] = check.path.split('?', 2) as [string, string | undefined];
      ep.pathname = p;
      ep.search = q ? `?${q}` : '';
    }
    return ep.toString();
  };
  const urls = check.url ? [check.url] : service.endpoints.map((e) => withPath(e.url));
  const url = urls[0]!;
  if (url.startsWith('tcp:') && check.type === 'http') check = { ...check, type: 'tcp' };
  const t: ProbeTarget = { id: service.id, url, check, maintenance: service.maintenance ?? [] };
  if (urls.length > 1) t.urls = urls;
  if (check.auth && service.credential) {
    const a = service.auth;
    t.credential = { id: service.credential, scheme: a?.scheme ?? 'bearer' };
    if (a?.header !== undefined) t.credential.header = a.header;
    if (a?.username !== undefined) t.credential.username = a.username;
  }
  return t;
}

/** A result standing in for a probe that produced none (activity failed or timed out). */
export function inconclusiveResult(serviceId: string, startedAt: number, detail: string): ProbeResult {
  return { serviceId, verdict: 'inconclusive', latencyMs: 0, startedAt, detail };
}

// ---------------------------------------------------------------------------
// Dependency graph: impact and root cause

/** A service's sweep status after the dependency graph is applied. */
export interface ClassifiedService {
  id: string;
  status: HealthStatus;
  /** For `impacted`: the failing service(s) at the root, sorted; `rootCause` is the first. */
  rootCauses?: string[];
  /** For a root cause: every service that depends on it, transitively (sorted). */
  impacts?: string[];
}

/**
 * Dependency-aware status of one sweep (Gatus/Uptime Kuma have no equivalent;
 * the rule is ours, see docs/health.md):
 * - in maintenance -> `maintenance` (measured, never alerted);
 * - a (transitive) dependency failed -> `impacted`, root causes = the failing
 *   dependencies that have no failing dependency of their own;
 * - else verdict pass -> `healthy`, warn -> `degraded`, fail -> `unhealthy`,
 *   inconclusive -> `unknown`.
 * A failing root cause gets `impacts`: all its transitive dependents.
 * Unknown (inconclusive) dependencies impact nobody.
 */
export function classifySweep(
  nodes: ReadonlyArray<{ id: string; dependsOn: readonly string[] }>,
  results: ReadonlyMap<string, Pick<ProbeResult, 'verdict' | 'maintenance'>>,
): Map<string, ClassifiedService> {
  // A service failing inside its maintenance window still explains its dependents' failures.
  const failing = new Set(nodes.filter((n) => results.get(n.id)?.verdict === 'fail').map((n) => n.id));
  const known = new Set(nodes.map((n) => n.id));
  const graph = nodes.map((n) => ({ id: n.id, dependsOn: n.dependsOn.filter((d) => known.has(d)) }));
  let impact: Map<string, string[]>;
  try {
    impact = impactOf(graph, failing);
  } catch {
    impact = impactToleratingCycles(graph, failing);
  }
  const dependents = new Map<string, string[]>();
  for (const n of graph) for (const d of n.dependsOn) (dependents.get(d) ?? dependents.set(d, []).get(d)!).push(n.id);
  const out = new Map<string, ClassifiedService>();
  for (const n of nodes) {
    const r = results.get(n.id);
    if (r?.maintenance) {
      out.set(n.id, { id: n.id, status: 'maintenance' });
      continue;
    }
    const roots = impact.get(n.id);
    if (roots?.length) {
      out.set(n.id, { id: n.id, status: 'impacted', rootCauses: roots });
      continue;
    }
    const status: HealthStatus =
      r === undefined ? 'unknown' : r.verdict === 'pass' ? 'healthy' : r.verdict === 'warn' ? 'degraded' : r.verdict === 'fail' ? 'unhealthy' : 'unknown';
    const c: ClassifiedService = { id: n.id, status };
    if (status === 'unhealthy') {
      const all = new Set<string>();
      const stack = [n.id];
      while (stack.length) for (const m of dependents.get(stack.pop()!) ?? []) if (m !== n.id && !all.has(m)) (all.add(m), stack.push(m));
      c.impacts = [...all].sort();
    }
    out.set(n.id, c);
  }
  return out;
}

/**
 * `impactOf` for a graph with cycles (the registry refuses them; a sweep must
 * still answer): plain walks, and among failing services that explain each
 * other the smallest id is the root, so exactly one of them alerts.
 */
function impactToleratingCycles(nodes: ReadonlyArray<{ id: string; dependsOn: readonly string[] }>, failing: ReadonlySet<string>): Map<string, string[]> {
  const deps = new Map(nodes.map((n) => [n.id, n.dependsOn]));
  const memo = new Map<string, Set<string>>();
  const failingDeps = (id: string): Set<string> => {
    const cached = memo.get(id);
    if (cached) return cached;
    const out = new Set<string>();
    const seen = new Set<string>([id]);
    const stack = [...(deps.get(id) ?? [])];
    while (stack.length) {
      const d = stack.pop()!;
      if (seen.has(d)) continue;
      seen.add(d);
      if (failing.has(d)) out.add(d);
      stack.push(...(deps.get(d) ?? []));
    }
    memo.set(id, out);
    return out;
  };
  const out = new Map<string, string[]>();
  for (const n of nodes) {
    const fdeps = failingDeps(n.id);
    if (fdeps.size === 0) continue;
    let roots = [...fdeps].filter((d) => failingDeps(d).size === 0).sort();
    if (roots.length === 0) roots = [[...fdeps, ...(failing.has(n.id) ? [n.id] : [])].sort()[0]!];
    if (roots[0] !== n.id) out.set(n.id, roots);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Maintenance windows

/** Offset of `tz` from UTC at instant `ms`, in ms (local = utc + offset). */
function tzOffsetMs(ms: number, tz: string): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: tz,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  }).formatToParts(new Date(ms));
  const n = (t: string) => Number(parts.find((p) => p.type === t)!.value);
  const local = Date.UTC(n('year'), n('month') - 1, n('day'), n('hour'), n('minute'), n('second'));
  return local - Math.floor(ms / 1000) * 1000;
}

/**
 * The UTC instant of a local wall-clock time in `tz` (month 1-12). In a DST
 * gap the time moves forward by the gap; in a repeated hour the later
 * instant is taken.
 */
export function zonedTimeToUtc(y: number, mo: number, d: number, h: number, mi: number, s: number, tz: string): number {
  const guess = Date.UTC(y, mo - 1, d, h, mi, s);
  const o1 = tzOffsetMs(guess, tz);
  const o2 = tzOffsetMs(guess - o1, tz);
  return o1 === o2 ? guess - o1 : guess - o2;
}

/** Local calendar date (y, m, d) at instant `ms` in `tz`. */
function localDate(ms: number, tz: string): { y: number; m: number; d: number } {
  const local = new Date(ms + tzOffsetMs(ms, tz));
  return { y: local.getUTCFullYear(), m: local.getUTCMonth() + 1, d: local.getUTCDate() };
}

/**
 * The occurrence of `w` open at instant `at` (epoch ms), as `[startMs, endMs)`,
 * or undefined. Occurrences repeat on the local calendar of `w.timezone`
 * (daily: every day at the start's wall time; weekly: same weekday; monthly:
 * same day of month, skipped in months without it), never before `w.start`.
 */
export function openMaintenanceOccurrence(w: MaintenanceWindow, at: number): [number, number] | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(w.start);
  if (!m) throw new RangeError(`maintenance window start "${w.start}": expected a local date-time like 2026-12-01T02:00`);
  const [y, mo, d, h, mi, s] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i] ?? 0)) as [number, number, number, number, number, number];
  const tz = w.timezone;
  const first = zonedTimeToUtc(y, mo, d, h, mi, s, tz);
  const hit = (start: number): [number, number] | undefined => (start >= first && start <= at && at < start + w.duration ? [start, start + w.duration] : undefined);
  if (w.recurrence === 'none') return hit(first);
  if (at < first) return undefined;
  const today = localDate(at, tz);
  const dayMs = 86_400_000;
  // Walk back over local calendar days far enough to cover the duration.
  const backDays = Math.ceil(w.duration / dayMs) + (w.recurrence === 'weekly' ? 7 : w.recurrence === 'monthly' ? 31 : 1);
  const startWeekday = new Date(Date.UTC(y, mo - 1, d)).getUTCDay();
  for (let k = 0; k <= backDays; k++) {
    const cal = new Date(Date.UTC(today.y, today.m - 1, today.d - k));
    const cy = cal.getUTCFullYear();
    const cm = cal.getUTCMonth() + 1;
    const cd = cal.getUTCDate();
    if (w.recurrence === 'weekly' && cal.getUTCDay() !== startWeekday) continue;
    if (w.recurrence === 'monthly' && cd !== d) continue;
    const occ = hit(zonedTimeToUtc(cy, cm, cd, h, mi, s, tz));
    if (occ) return occ;
  }
  return undefined;
}

/** True when any window is open at `at` (epoch ms). */
export function inMaintenance(windows: readonly MaintenanceWindow[], at: number): boolean {
  return windows.some((w) => openMaintenanceOccurrence(w, at) !== undefined);
}

// ---------------------------------------------------------------------------
// Per-service status with hysteresis, and alert decisions on transitions

/** A service's own health from its probes alone, after hysteresis. */
export type OwnHealth = 'healthy' | 'degraded' | 'unhealthy' | 'unknown';

/** One sweep's word on one service, as the per-service workflow receives it. */
export interface HealthObservation {
  /** The sweep's workflow id: a repeated delivery of the same sweep is ignored. */
  sweepId: string;
  /** Epoch ms the probe started. */
  at: number;
  verdict: ProbeVerdict;
  latencyMs: number;
  failureKind?: ProbeFailureKind;
  detail?: string;
  /** Failing dependencies at the root, from this sweep's graph (empty: none failing). */
  rootCauses?: string[];
  /** Everything depending on this service, for the alert text (a root cause only). */
  impacts?: string[];
  maintenance?: boolean;
  /**
   * For a `warn` on the served certificate: the smallest
   * `certificateExpiresAfter` threshold its remaining validity is under, ms
   * (each threshold crossed is notified once per warning incident).
   */
  certThresholdMs?: number;
  /** For `credential_rejected`: the credential the service refused (its id), named in the alert. */
  credentialId?: string;
  failureThreshold: number;
  successThreshold: number;
}

/** Figures the store computed for a service, carried for status readers. */
export interface HealthFigures {
  p50Ms?: number;
  p95Ms?: number;
  p99Ms?: number;
  /** Share of failed probes and calls over 24h, 0..1. */
  errorRate24h?: number;
  /** Availability in percent, [0, 100]; undefined when no measured time. */
  availability: { '1h'?: number; '24h'?: number; '7d'?: number; '30d'?: number };
  slaAvailability?: number;
  /** Epoch ms the figures were computed. */
  computedAt: number;
}

/** The durable state of one service (the `service/<id>` workflow's state; survives continue-as-new). */
export interface ServiceHealthState {
  serviceId: string;
  status: HealthStatus;
  own: OwnHealth;
  /** Epoch ms `status` last changed. */
  since: number;
  failStreak: number;
  /** Consecutive failures with no failing dependency: only these raise an alert. */
  rootlessFailStreak: number;
  successStreak: number;
  inconclusiveStreak: number;
  rootCauses: string[];
  impacts: string[];
  last?: Omit<HealthObservation, 'failureThreshold' | 'successThreshold' | 'rootCauses' | 'impacts'>;
  /** Alert state: open between a TRIGGERED and its RESOLVED; `seq` numbers every alert sent. */
  alert: { open: boolean; seq: number; openedAt?: number; rootCause?: string };
  /** Warning state (a `degraded` service), apart from the failure alert; absent until the first observation that tracks it. */
  warning?: WarningAlertState;
  /** Last few sweep ids applied (duplicate delivery guard). */
  recentSweeps: string[];
  figures?: HealthFigures;
  observations: number;
}

/**
 * The warning incident of a service (its own identity: alert ids
 * `health/<serviceId>/warning#<seq>`): open between a WARNING and its RESOLVED.
 */
export interface WarningAlertState {
  open: boolean;
  /** Numbers every warning alert sent (WARNING, threshold notices, RESOLVED). */
  seq: number;
  /** The `seq` of the WARNING that opened the incident: its id is the incident id. */
  openedSeq?: number;
  /** Epoch ms the incident opened. */
  openedAt?: number;
  /** Consecutive `warn` verdicts with no failing dependency. */
  warnStreak: number;
  /** Consecutive `pass` verdicts (not `warn`): `successThreshold` of them resolve the warning. */
  passStreak: number;
  /** Smallest certificate threshold notified in the open incident, ms. */
  certThresholdMs?: number;
}

/** An alert to deliver (no secrets: ids, statuses and one-line details only). */
export interface Alert {
  /**
   * Stable id, also the receivers' idempotency key: `<source>/<serviceId>#<seq>`
   * (health, breaker), `rotation/<credentialId>#<runId>/<status>` (rotation).
   */
  id: string;
  /**
   * TRIGGERED opens a failure incident, WARNING opens (or adds a notice to) a
   * warning incident (a `degraded` service), RESOLVED closes either.
   */
  kind: 'TRIGGERED' | 'WARNING' | 'RESOLVED';
  /**
   * The incident this alert belongs to, the same for its TRIGGERED (or
   * WARNING) and RESOLVED: PagerDuty's `dedup_key`, the e-mail thread.
   * Absent on alerts decided before it existed: {@link incidentIdOf} derives it.
   */
  incidentId?: string;
  source: 'health' | 'breaker' | 'rotation' | 'prober';
  /** The service concerned; for rotation alerts the credential's issuer (the credential id when the registry has no such credential). */
  serviceId: string;
  /** How loud: `critical` (rotation `needs_attention`: someone must act now) or `warning`; absent on health and breaker alerts. */
  severity?: AlertSeverity;
  /** Epoch ms of the transition. */
  at: number;
  /** One line for humans, e.g. `billing-api is unhealthy (timeout)`. */
  summary: string;
  /** The service at the root of the problem (this one for health alerts). */
  rootCause?: string;
  /** Services depending on the root cause, now impacted. */
  impacted?: string[];
  failureKind?: string;
  detail?: string;
  /** For RESOLVED: how long the problem lasted, ms. */
  durationMs?: number;
  // Rotation alerts (source `rotation`); references only, never a secret value.
  /** The rotated credential. */
  credentialId?: string;
  /** The rotation's workflow id (`rotation/<credentialId>`); the run id is in `id`. */
  workflowId?: string;
  /** How the rotation ended: `rolled_back`, `needs_attention`, `failed`, or `completed` with PREVIOUS not revoked. */
  status?: 'completed' | 'rolled_back' | 'needs_attention' | 'failed';
  /** Why it did not complete, one line. */
  cause?: string;
  /** The version the run minted, and the one that was CURRENT when it started. */
  versionId?: string;
  previousVersionId?: string;
  /** Each service's state at the end: which version a consumer holds (by label), its last step, status and error. */
  services?: AlertServiceState[];
  /** What to do, for a human: which services to check and the command to run. */
  action?: string;
}

export type AlertSeverity = 'critical' | 'warning';

/** True for the alerts of a warning incident (WARNING and its RESOLVED), not of a failure. */
export function isWarningAlert(alert: Pick<Alert, 'id' | 'kind'>): boolean {
  return alert.kind === 'WARNING' || /\/warning#\d+$/.test(alert.id);
}

/**
 * The incident an alert belongs to (`alert.incidentId` when set):
 * - health: the id of the alert that opened it (`health/<id>#<n>` for a
 *   TRIGGERED; a RESOLVED `#<n>` closes `#<n-1>`, as the reducer numbers them);
 * - breaker: `breaker/<serviceId>` (one incident open per breaker at a time);
 * - rotation: `rotation/<credentialId>#<runId>` (the id without its status).
 * Stable across retries and continue-as-new: it is a function of the alert.
 */
export function incidentIdOf(alert: Pick<Alert, 'id' | 'kind' | 'source' | 'serviceId' | 'incidentId'>): string {
  if (alert.incidentId) return alert.incidentId;
  if (alert.source === 'breaker') return `breaker/${alert.serviceId}`;
  if (alert.source === 'rotation') return alert.id.replace(/\/[^/#]*$/, '');
  const m = /^(.*#)(\d+)$/.exec(alert.id);
  if (alert.kind === 'RESOLVED' && m) return `${m[1]}${Number(m[2]) - 1}`;
  return alert.id;
}

/** One service's state in a rotation alert. */
export interface AlertServiceState {
  id: string;
  role: 'issuer' | 'consumer';
  step: string;
  status: string;
  /** Consumers: the version held, by label (`current`, `pending`, `unknown`). */
  holds?: string;
  error?: string;
}

/** A fresh state for `serviceId`: status unknown, no alert open. */
export function initialServiceHealth(serviceId: string, now: number): ServiceHealthState {
  return {
    serviceId,
    status: 'unknown',
    own: 'unknown',
    since: now,
    failStreak: 0,
    rootlessFailStreak: 0,
    successStreak: 0,
    inconclusiveStreak: 0,
    rootCauses: [],
    impacts: [],
    alert: { open: false, seq: 0 },
    recentSweeps: [],
    observations: 0,
  };
}

const RECENT_SWEEPS = 16;

/**
 * Applies one observation: hysteresis, then status, then the alert decision.
 *
 * Hysteresis (like Gatus' failure-threshold/success-threshold): `own` becomes
 * unhealthy after `failureThreshold` consecutive failures and healthy (or
 * degraded) again after `successThreshold` consecutive passes. A service not
 * judged yet (`own` unknown) is judged by its first conclusive result, either
 * way: healthy on a first pass, unhealthy on a first failure (thresholds guard
 * a known status against one blip; with nothing known there is nothing to
 * guard, and a status of `unknown` while the sweep says `unhealthy` misleads).
 * `failureThreshold` consecutive
 * inconclusive results turn a healthy service `unknown` (a missing result is
 * never read as healthy); they never clear `unhealthy`.
 *
 * Status: `maintenance` during a window; else `impacted` when this sweep
 * names failing dependencies; else `own`.
 *
 * Alerts, on transitions only (never during maintenance): TRIGGERED once when
 * `failureThreshold` consecutive failures had no failing dependency and no
 * alert is open; RESOLVED once when an open alert's service reaches
 * `successThreshold` consecutive passes. A duplicate sweep id changes nothing.
 *
 * Warnings (a `degraded` service: certificate expiring, health+json `warn`,
 * slower than `degradedResponseTime`), apart from the failure alert, with
 * their own incident (`health/<id>/warning#<n>`): WARNING once after
 * `failureThreshold` consecutive `warn` verdicts with no failing dependency;
 * while it is open, one more WARNING (same incident) each time the
 * certificate crosses a lower `certificateExpiresAfter` threshold, never
 * twice for one threshold; RESOLVED once after `successThreshold`
 * consecutive `pass` verdicts (a failure in between keeps it open: the
 * failure alert speaks for that time).
 *
 * @param opts.warnings false: no warning state or alerts, as before they
 *   existed (the workflow passes false when replaying runs made without them); default true.
 * @param opts.firstFailureDecides false: a service not judged yet waits for
 *   `failureThreshold` failures before `unhealthy`, as before (the workflow
 *   passes false when replaying runs made under that rule); default true.
 * @returns the next state (a new object) and the alerts to send (0 or 1).
 */
export function applyObservation(
  state: ServiceHealthState,
  obs: HealthObservation,
  opts: { firstFailureDecides?: boolean; warnings?: boolean } = {},
): { state: ServiceHealthState; alerts: Alert[] } {
  if (state.recentSweeps.includes(obs.sweepId)) return { state, alerts: [] };
  const s: ServiceHealthState = {
    ...state,
    alert: { ...state.alert },
    recentSweeps: [...state.recentSweeps, obs.sweepId].slice(-RECENT_SWEEPS),
    observations: state.observations + 1,
  };
  const rootCauses = obs.rootCauses ?? [];
  if (obs.verdict === 'fail') {
    s.failStreak++;
    s.rootlessFailStreak = rootCauses.length ? 0 : s.rootlessFailStreak + 1;
    s.successStreak = 0;
    s.inconclusiveStreak = 0;
    if (s.failStreak >= obs.failureThreshold || (s.own === 'unknown' && opts.firstFailureDecides !== false)) s.own = 'unhealthy';
  } else if (obs.verdict === 'pass' || obs.verdict === 'warn') {
    s.successStreak++;
    s.failStreak = 0;
    s.rootlessFailStreak = 0;
    s.inconclusiveStreak = 0;
    const up: OwnHealth = obs.verdict === 'pass' ? 'healthy' : 'degraded';
    if (s.own !== 'unhealthy' || s.successStreak >= obs.successThreshold) s.own = up;
  } else {
    s.inconclusiveStreak++;
    s.successStreak = 0;
    if (s.inconclusiveStreak >= obs.failureThreshold && s.own !== 'unhealthy') s.own = 'unknown';
  }
  s.rootCauses = rootCauses;
  s.impacts = obs.impacts ?? [];
  const last: ServiceHealthState['last'] = { sweepId: obs.sweepId, at: obs.at, verdict: obs.verdict, latencyMs: obs.latencyMs };
  if (obs.failureKind) last.failureKind = obs.failureKind;
  if (obs.detail) last.detail = obs.detail;
  if (obs.maintenance) last.maintenance = true;
  s.last = last;
  const status: HealthStatus = obs.maintenance ? 'maintenance' : rootCauses.length ? 'impacted' : s.own;
  if (status !== s.status) {
    s.status = status;
    s.since = obs.at;
  }

  const alerts: Alert[] = [];
  if (!obs.maintenance) {
    if (!s.alert.open && s.rootlessFailStreak >= obs.failureThreshold) {
      s.alert = { open: true, seq: s.alert.seq + 1, openedAt: obs.at, rootCause: s.serviceId };
      const impacted = s.impacts;
      const rejected = obs.failureKind === 'credential_rejected' ? obs.credentialId : undefined;
      alerts.push({
        id: `health/${s.serviceId}#${s.alert.seq}`,
        incidentId: `health/${s.serviceId}#${s.alert.seq}`,
        kind: 'TRIGGERED',
        source: 'health',
        serviceId: s.serviceId,
        at: obs.at,
        summary: `${s.serviceId} is unhealthy${obs.failureKind ? ` (${obs.failureKind}${rejected ? `: ${rejected}` : ''})` : ''}${impacted.length ? `; ${impacted.length} dependent service(s) impacted` : ''}`,
        rootCause: s.serviceId,
        impacted,
        ...(obs.failureKind ? { failureKind: obs.failureKind } : {}),
        ...(obs.detail ? { detail: obs.detail } : {}),
        // The managed credential was refused: name it, and the command that replaces it.
        ...(rejected
          ? { credentialId: rejected, action: `${s.serviceId} refused credential ${rejected}; if it was revoked or expired outside the agent, run \`integration-agent rotate ${rejected}\`` }
          : {}),
      });
    } else if (s.alert.open && s.successStreak >= obs.successThreshold) {
      const openedAt = s.alert.openedAt ?? obs.at;
      s.alert = { open: false, seq: s.alert.seq + 1 };
      alerts.push({
        id: `health/${s.serviceId}#${s.alert.seq}`,
        incidentId: `health/${s.serviceId}#${s.alert.seq - 1}`,
        kind: 'RESOLVED',
        source: 'health',
        serviceId: s.serviceId,
        at: obs.at,
        summary: `${s.serviceId} recovered after ${Math.max(0, Math.round((obs.at - openedAt) / 1000))}s`,
        rootCause: s.serviceId,
        durationMs: Math.max(0, obs.at - openedAt),
      });
    }
  }
  if (opts.warnings !== false) alerts.push(...applyWarning(s, obs));
  return { state: s, alerts };
}

/** The warning half of {@link applyObservation}: updates `s.warning` (a fresh object) and returns its alerts (0 or 1). */
function applyWarning(s: ServiceHealthState, obs: HealthObservation): Alert[] {
  const w: WarningAlertState = { ...(s.warning ?? { open: false, seq: 0, warnStreak: 0, passStreak: 0 }) };
  s.warning = w;
  const rootless = !obs.rootCauses?.length;
  if (obs.verdict === 'warn' && rootless) {
    w.warnStreak++;
    w.passStreak = 0;
  } else if (obs.verdict === 'pass') {
    w.passStreak++;
    w.warnStreak = 0;
  } else if (obs.verdict !== 'inconclusive') {
    w.warnStreak = 0;
    w.passStreak = 0;
  }
  if (obs.maintenance) return [];
  const base = { source: 'health' as const, serviceId: s.serviceId, at: obs.at, rootCause: s.serviceId, severity: 'warning' as const };
  const degraded = (): Alert => ({
    ...base,
    id: `health/${s.serviceId}/warning#${w.seq}`,
    incidentId: `health/${s.serviceId}/warning#${w.openedSeq}`,
    kind: 'WARNING',
    summary: `${s.serviceId} is degraded${obs.failureKind ? ` (${obs.failureKind})` : ''}${obs.detail ? `: ${obs.detail}` : ''}`,
    ...(obs.failureKind ? { failureKind: obs.failureKind } : {}),
    ...(obs.detail ? { detail: obs.detail } : {}),
  });
  if (!w.open && w.warnStreak >= obs.failureThreshold) {
    w.open = true;
    w.seq++;
    w.openedSeq = w.seq;
    w.openedAt = obs.at;
    if (obs.certThresholdMs !== undefined) w.certThresholdMs = obs.certThresholdMs;
    else delete w.certThresholdMs;
    return [degraded()];
  }
  if (w.open && obs.verdict === 'warn' && rootless && obs.certThresholdMs !== undefined && (w.certThresholdMs === undefined || obs.certThresholdMs < w.certThresholdMs)) {
    w.seq++;
    w.certThresholdMs = obs.certThresholdMs;
    return [degraded()];
  }
  if (w.open && w.passStreak >= obs.successThreshold) {
    const openedAt = w.openedAt ?? obs.at;
    const incidentId = `health/${s.serviceId}/warning#${w.openedSeq}`;
    w.open = false;
    w.seq++;
    delete w.openedSeq;
    delete w.openedAt;
    delete w.certThresholdMs;
    return [
      {
        ...base,
        id: `health/${s.serviceId}/warning#${w.seq}`,
        incidentId,
        kind: 'RESOLVED',
        summary: `${s.serviceId} is no longer degraded after ${Math.max(0, Math.round((obs.at - openedAt) / 1000))}s`,
        durationMs: Math.max(0, obs.at - openedAt),
      },
    ];
  }
  return [];
}

/**
 * True when further passing observations (no failing dependency, no
 * maintenance) cannot change anything that matters: healthy, no failure
 * counted, no alert open. A sender may then skip passes and report the
 * latest skipped one later as `skippedPassAt` (see `applySkippedPass`).
 */
export function isSteady(state: ServiceHealthState): boolean {
  return (
    state.status === 'healthy' &&
    state.own === 'healthy' &&
    state.failStreak === 0 &&
    state.rootlessFailStreak === 0 &&
    state.inconclusiveStreak === 0 &&
    state.successStreak >= 1 &&
    !state.alert.open &&
    !state.warning?.open &&
    state.rootCauses.length === 0
  );
}

/**
 * Applies a pass a sender skipped at `at` (epoch ms) because it believed the
 * service steady, unless the state has seen a later observation. With one
 * sender this changes only counters; with several, it keeps a pass that came
 * after another sender's failure from being lost (which could otherwise join
 * two failures that were not consecutive into one streak).
 */
export function applySkippedPass(state: ServiceHealthState, at: number, thresholds: { failureThreshold: number; successThreshold: number }): ServiceHealthState {
  if ((state.last?.at ?? -Infinity) >= at) return state;
  return applyObservation(state, { sweepId: `skipped@${at}`, at, verdict: 'pass', latencyMs: state.last?.latencyMs ?? 0, ...thresholds }).state;
}

/**
 * When no observation arrives for `staleAfterMs` (no sweeps ran), the status
 * is no longer known: it becomes `unknown`. An open alert stays open (nothing
 * says the problem ended). Returns the state unchanged when not stale.
 */
export function markStale(state: ServiceHealthState, now: number, staleAfterMs: number): ServiceHealthState {
  const lastAt = state.last?.at ?? state.since;
  if (now - lastAt < staleAfterMs || state.status === 'unknown') return state;
  return { ...state, status: 'unknown', since: now };
}

// ---------------------------------------------------------------------------
// Availability

/** A stretch of time a service spent in one availability class (epoch ms, `[from, to)`). */
export interface AvailabilitySpan {
  from: number;
  to: number;
  /** `up`: pass or warn; `down`: fail; `excluded`: maintenance or inconclusive. */
  state: 'up' | 'down' | 'excluded';
}

/** The availability class of one probe result. */
export function availabilityClass(r: Pick<ProbeResult, 'verdict' | 'maintenance'>): AvailabilitySpan['state'] {
  if (r.maintenance || r.verdict === 'inconclusive') return 'excluded';
  return r.verdict === 'fail' ? 'down' : 'up';
}

/**
 * Availability over the window `[now - windowMs, now)`:
 * `100 * up / (up + down)`, where up and down are the measured times of the
 * spans clipped to the window; excluded time and gaps (no span) count for
 * neither. Overlapping spans (a clock that jumped back) are counted once,
 * the later-starting span winning the overlap, so the result always lies in
 * [0, 100]. Undefined when nothing was measured in the window.
 */
export function availability(spans: readonly AvailabilitySpan[], now: number, windowMs: number): number | undefined {
  const lo = now - windowMs;
  const sorted = spans
    .filter((s) => Number.isFinite(s.from) && Number.isFinite(s.to) && s.to > s.from)
    .slice()
    .sort((a, b) => a.from - b.from || a.to - b.to);
  let up = 0;
  let down = 0;
  for (let i = 0; i < sorted.length; i++) {
    const s = sorted[i]!;
    const nextFrom = i + 1 < sorted.length ? sorted[i + 1]!.from : Infinity;
    const from = Math.max(s.from, lo);
    const to = Math.min(s.to, now, nextFrom);
    if (to <= from) continue;
    if (s.state === 'up') up += to - from;
    else if (s.state === 'down') down += to - from;
  }
  if (up + down <= 0) return undefined;
  return Math.min(100, Math.max(0, (100 * up) / (up + down)));
}

/** The windows availability is reported over. */
export const AVAILABILITY_WINDOWS = { '1h': 3_600_000, '24h': 86_400_000, '7d': 7 * 86_400_000, '30d': 30 * 86_400_000 } as const;
