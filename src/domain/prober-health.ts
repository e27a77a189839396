/**
 * The prober's own health, pure (docs/health.md, "The prober's own health").
 *
 * A prober is one worker process. When its own network breaks (a dead
 * interface, a broken resolver, a firewall dropping its egress), every target
 * it probes fails at once and in the same way: connection refused, no route,
 * DNS or connect timeouts everywhere. Read as the fleet's health, that is one
 * TRIGGERED per service and downtime for all of them, while the fleet is fine.
 * This module decides, from one process's recent results, when the prober
 * itself is the suspect, and what the alert decisions are; the process-side
 * object (src/activities/prober-health.ts) feeds it and probes the canaries,
 * the `proberHealth` workflow (src/workflows/prober.ts) holds the alert state.
 *
 * The rule (thresholds in {@link DEFAULT_PROBER_RULE}, all overridable):
 * 1. Window: the latest conclusive result of each service probed by this
 *    process within the last `windowMs` (30 s: a sweep or two at the default
 *    cadence, several passes of fast lanes).
 * 2. Unrelated: a failing service whose dependency (transitively, by
 *    `dependsOn`) also fails in the window is explained by it and counted
 *    neither way; the rest are grouped by **host** (a URL's host name; a
 *    `dns` probe's resolver): services on one host fail together for reasons
 *    of that host, so a host counts once.
 * 3. A host *failed at the connection level* when every counted result
 *    touching it failed with a connection-level kind ({@link CONNECTION_FAILURE_KINDS}:
 *    `connection_refused` (which includes no route: ENETUNREACH,
 *    EHOSTUNREACH, EADDRNOTAVAIL), `dns`, `timeout`). A host that answered
 *    anything (a pass, a warn, an HTTP 500, a TLS or protocol error) is reachable:
 *    the network to it works, whatever the service says. (The process side
 *    also drops failures inside maintenance windows, and reads a `dns`
 *    probe's `dns` failure as its resolver's answer.)
 * 4. **Suspect** when at least `minHosts` (3) hosts failed at the connection
 *    level and they are at least `suspectShare` (80 %) of the hosts in the
 *    window. Three, because one or two unrelated hosts down at once happens
 *    (a rack, a provider); 80 %, because a prober that still reaches a fifth
 *    of the fleet is not the one that is broken. A fleet on fewer than three
 *    hosts never makes its prober suspect: there the rule cannot tell, and
 *    each service alerts as before.
 * 5. Canaries decide a suspect: configured canary targets (addresses the
 *    prober's network must reach: the local resolver, the default gateway, a
 *    well-known endpoint) are probed; if **any** answers, the network works
 *    and the fleet really is down (results stand, services alert); if none
 *    answers, or none is configured, the prober is **offline**.
 * 6. Recovery, with hysteresis: an offline prober comes back when the share
 *    falls under `clearShare` (50 %) or fewer than `minHosts` hosts fail, or
 *    when a canary answers again (its network is back: what still fails is
 *    the fleet's own). Canaries are probed at most every `canaryEveryMs` (10 s).
 *
 * While offline, this process's connection-level failures are turned
 * `inconclusive` (availability excludes them; the shards' hysteresis reads
 * them as no result), and one "prober offline" alert names the process.
 */
import type { Alert, ProbeFailureKind, ProbeVerdict } from './health';

/**
 * Failure kinds that say the prober reached nothing (no answer of any kind
 * from the peer): refused or unroutable connections, names that did not
 * resolve, and timeouts (a blackholed network shows as timeouts). A reset
 * (kind `other`) is not among them: something answered.
 */
export const CONNECTION_FAILURE_KINDS: ReadonlySet<ProbeFailureKind> = new Set<ProbeFailureKind>(['connection_refused', 'dns', 'timeout']);

/**
 * Why `u` cannot be a canary (one line naming it), or undefined when it can: a
 * `tcp://host:port`, `http://` or `https://` URL with a host and no credentials.
 */
export function checkCanaryUrl(u: string): string | undefined {
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    return `"${u}" is not a URL (want tcp://host:port, http://… or https://…)`;
  }
  if (url.username || url.password) return `a canary URL carries no credentials (${url.protocol}//…@${url.host})`;
  if (!['tcp:', 'http:', 'https:'].includes(url.protocol)) return `"${u}": a canary is tcp://host:port, http://… or https://… (got ${url.protocol})`;
  if (!url.hostname) return `"${u}" has no host`;
  if (url.protocol === 'tcp:' && !url.port) return `"${u}": a tcp canary needs a port`;
  return undefined;
}

/** Thresholds of the rule; see the module comment for why each value. */
export interface ProberRule {
  /** Results older than this (by their start), ms, leave the window. Default 30,000. */
  windowMs: number;
  /** Fewest distinct hosts failed at the connection level for a suspect. Default 3. */
  minHosts: number;
  /** Share of the window's hosts failed at the connection level for a suspect, 0..1. Default 0.8. */
  suspectShare: number;
  /** An offline prober recovers when the share falls under this, 0..1 (at most `suspectShare`). Default 0.5. */
  clearShare: number;
  /** Canaries are probed at most this often, ms; a canary outcome younger than this is reused. Default 10,000. */
  canaryEveryMs: number;
}

export const DEFAULT_PROBER_RULE: Readonly<ProberRule> = Object.freeze({ windowMs: 30_000, minHosts: 3, suspectShare: 0.8, clearShare: 0.5, canaryEveryMs: 10_000 });

/**
 * The rule with `overrides` applied, checked.
 * @throws RangeError naming the option and the value given.
 */
export function proberRule(overrides: Partial<ProberRule> = {}): ProberRule {
  const r = { ...DEFAULT_PROBER_RULE, ...overrides };
  const bad = (name: keyof ProberRule, want: string) => new RangeError(`prober rule: ${name} must be ${want}, got ${String(r[name])}`);
  if (!(Number.isFinite(r.windowMs) && r.windowMs > 0)) throw bad('windowMs', 'a positive number of ms');
  if (!(Number.isInteger(r.minHosts) && r.minHosts >= 1)) throw bad('minHosts', 'an integer >= 1');
  if (!(r.suspectShare > 0 && r.suspectShare <= 1)) throw bad('suspectShare', 'in (0, 1]');
  if (!(r.clearShare > 0 && r.clearShare <= r.suspectShare)) throw bad('clearShare', `in (0, suspectShare=${r.suspectShare}]`);
  if (!(Number.isFinite(r.canaryEveryMs) && r.canaryEveryMs >= 0)) throw bad('canaryEveryMs', 'a number of ms >= 0');
  return r;
}

/** One probe result as the rule reads it. */
export interface ProberSample {
  serviceId: string;
  /** Hosts the probe connected to (lower case); a result without hosts is not counted. */
  hosts: readonly string[];
  /** The service's `dependsOn`. */
  dependsOn: readonly string[];
  /** Probe start, epoch ms. */
  at: number;
  verdict: ProbeVerdict;
  failureKind?: ProbeFailureKind;
}

/** What the window shows. */
export interface ProberAssessment {
  /** Distinct hosts with a counted result in the window. */
  hostsProbed: number;
  /** Of those, hosts where every counted result failed at the connection level. */
  hostsFailed: number;
  /** hostsFailed / hostsProbed; 0 when nothing was probed. */
  share: number;
  /** Counted connection-level failures per kind (services, not hosts). */
  kinds: Partial<Record<ProbeFailureKind, number>>;
  /** Failing services left out because a dependency of theirs fails too. */
  explained: number;
}

/** Does this sample say the prober reached nothing? */
export function isConnectionFailure(s: Pick<ProberSample, 'verdict' | 'failureKind'>): boolean {
  return s.verdict === 'fail' && s.failureKind !== undefined && CONNECTION_FAILURE_KINDS.has(s.failureKind);
}

/**
 * Reads the window: the latest conclusive sample per service started within
 * `(now - rule.windowMs, now]`, failures explained by a failing dependency
 * left out, grouped by host. O(samples + edges).
 */
export function assessProber(samples: Iterable<ProberSample>, now: number, rule: Pick<ProberRule, 'windowMs'>): ProberAssessment {
  const latest = new Map<string, ProberSample>();
  for (const s of samples) {
    if (s.verdict === 'inconclusive' || s.at <= now - rule.windowMs || s.at > now) continue;
    const prev = latest.get(s.serviceId);
    if (!prev || prev.at <= s.at) latest.set(s.serviceId, s);
  }
  const failing = (id: string) => latest.get(id)?.verdict === 'fail';
  // Explained: some dependency, transitively, fails in the window (cycles tolerated by the visited set).
  const explainedMemo = new Map<string, boolean>();
  const hasFailingDependency = (id: string): boolean => {
    const memo = explainedMemo.get(id);
    if (memo !== undefined) return memo;
    explainedMemo.set(id, false);
    const seen = new Set<string>([id]);
    const stack = [...(latest.get(id)?.dependsOn ?? [])];
    let found = false;
    while (stack.length && !found) {
      const d = stack.pop()!;
      if (seen.has(d)) continue;
      seen.add(d);
      if (failing(d)) found = true;
      else stack.push(...(latest.get(d)?.dependsOn ?? []));
    }
    explainedMemo.set(id, found);
    return found;
  };
  const hostFailed = new Map<string, boolean>();
  const kinds: Partial<Record<ProbeFailureKind, number>> = {};
  let explained = 0;
  for (const s of latest.values()) {
    if (s.hosts.length === 0) continue;
    if (s.verdict === 'fail' && hasFailingDependency(s.serviceId)) {
      explained++;
      continue;
    }
    const conn = isConnectionFailure(s);
    if (conn) kinds[s.failureKind!] = (kinds[s.failureKind!] ?? 0) + 1;
    for (const h of s.hosts) hostFailed.set(h, (hostFailed.get(h) ?? true) && conn);
  }
  let hostsFailed = 0;
  for (const f of hostFailed.values()) if (f) hostsFailed++;
  const hostsProbed = hostFailed.size;
  return { hostsProbed, hostsFailed, share: hostsProbed ? hostsFailed / hostsProbed : 0, kinds, explained };
}

/** Does the window make the prober suspect (canaries then decide)? */
export function isSuspect(a: ProberAssessment, rule: Pick<ProberRule, 'minHosts' | 'suspectShare'>): boolean {
  return a.hostsFailed >= rule.minHosts && a.share >= rule.suspectShare;
}

/** Does the window keep an offline prober offline (the hysteresis band)? */
export function stillOffline(a: ProberAssessment, rule: Pick<ProberRule, 'minHosts' | 'clearShare'>): boolean {
  return a.hostsFailed >= rule.minHosts && a.share >= rule.clearShare;
}

/** `online`: results stand. `offline`: this process's connection-level failures are inconclusive. */
export type ProberMode = 'online' | 'offline';

/**
 * What the canaries said: `none` configured, `answered` (at least one
 * reached), `silent` (none reached), or `untried` (not probed for this decision).
 */
export type CanaryOutcome = 'none' | 'answered' | 'silent' | 'untried';

/**
 * Should the canaries be probed before {@link nextProberMode} decides?
 * Online: when the window is suspect. Offline: while it stays in the band
 * (a canary answering ends an offline spell early). Never without canaries.
 */
export function wantsCanaries(mode: ProberMode, a: ProberAssessment, rule: ProberRule, haveCanaries: boolean): boolean {
  if (!haveCanaries) return false;
  return mode === 'online' ? isSuspect(a, rule) : stillOffline(a, rule);
}

/**
 * The next mode (rule steps 4-6 of the module comment).
 * - online -> offline when suspect and the canaries are `silent` or `none`;
 *   `untried` or `answered` keep it online.
 * - offline -> online when the window leaves the band, or a canary `answered`.
 */
export function nextProberMode(mode: ProberMode, a: ProberAssessment, canaries: CanaryOutcome, rule: ProberRule): ProberMode {
  if (mode === 'online') return isSuspect(a, rule) && (canaries === 'silent' || canaries === 'none') ? 'offline' : 'online';
  return !stillOffline(a, rule) || canaries === 'answered' ? 'online' : 'offline';
}

/** One line of evidence: `5 of 6 hosts failed at the connection level (connection_refused 4, dns 1); 1 failure explained by a dependency`. */
export function describeAssessment(a: ProberAssessment): string {
  const kinds = Object.entries(a.kinds)
    .sort(([x], [y]) => (x < y ? -1 : 1))
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  const explained = a.explained ? `; ${a.explained} failure(s) explained by a failing dependency` : '';
  return `${a.hostsFailed} of ${a.hostsProbed} hosts failed at the connection level${kinds ? ` (${kinds})` : ''}${explained}`;
}

// ---------------------------------------------------------------------------
// Alert decisions (the `proberHealth` workflow's state)

/** What a prober process reports to its workflow: a change of mode, with evidence. */
export interface ProberReport {
  mode: ProberMode;
  /** When the mode changed (or, for a keepalive, when it was reported), epoch ms. */
  at: number;
  /** The window, in one line ({@link describeAssessment}). */
  evidence: string;
  /** The canaries tried and what each said, one line (`tcp://10.0.0.1:53: connection refused`), or `none configured`. */
  canaries: string;
}

/** The alert state of one prober process, carried across continue-as-new. */
export interface ProberAlertState {
  /** The worker's task queue and identity (`host:pid`): the workflow id is `prober/<taskQueue>/<identity>`. */
  taskQueue: string;
  identity: string;
  /** The open incident: its TRIGGERED id and when it began. */
  open?: { incidentId: string; since: number };
  /** Latest report applied, epoch ms (older reports are ignored). */
  lastReportAt: number;
  /** Incidents opened by this workflow (with the start time, it makes alert ids unique). */
  opened: number;
}

/** `prober/<taskQueue>/<identity>`: the workflow holding one prober process's alert state. */
export function proberWorkflowId(taskQueue: string, identity: string): string {
  return `prober/${taskQueue}/${identity}`;
}

export function initialProberAlertState(taskQueue: string, identity: string): ProberAlertState {
  return { taskQueue, identity, lastReportAt: 0, opened: 0 };
}

/**
 * Applies one report: offline with no open incident opens one (one
 * TRIGGERED), online with one open closes it (one RESOLVED); anything else,
 * and reports older than the last applied, change nothing.
 *
 * Alert ids (the receivers' idempotency keys) are derived from the incident's
 * start and a counter: `prober/<taskQueue>/<identity>@<since>#<n>` and
 * `…/resolved`, so neither two incidents begun in the same millisecond nor a
 * workflow that ended and was started again for the same identity (the
 * counter restarts) reuse an id of an earlier incident.
 */
export function applyProberReport(state: ProberAlertState, r: ProberReport): { state: ProberAlertState; alerts: Alert[] } {
  if (r.at < state.lastReportAt) return { state, alerts: [] };
  const base = proberWorkflowId(state.taskQueue, state.identity);
  const who = `prober ${state.identity} (task queue ${state.taskQueue})`;
  if (r.mode === 'offline' && !state.open) {
    const incidentId = `${base}@${r.at}#${state.opened + 1}`;
    const alert: Alert = {
      id: incidentId,
      incidentId,
      kind: 'TRIGGERED',
      source: 'prober',
      serviceId: state.identity,
      at: r.at,
      summary: `${who} is offline: its probes reach nothing; its results are inconclusive, not downtime`,
      failureKind: 'prober_offline',
      detail: `${r.evidence}; canaries: ${r.canaries}`,
    };
    return { state: { ...state, lastReportAt: r.at, opened: state.opened + 1, open: { incidentId, since: r.at } }, alerts: [alert] };
  }
  if (r.mode === 'online' && state.open) {
    const alert: Alert = {
      id: `${state.open.incidentId}/resolved`,
      incidentId: state.open.incidentId,
      kind: 'RESOLVED',
      source: 'prober',
      serviceId: state.identity,
      at: r.at,
      summary: `${who} is back online`,
      detail: `${r.evidence}; canaries: ${r.canaries}`,
      durationMs: Math.max(0, r.at - state.open.since),
    };
    const { open: _closed, ...rest } = state;
    return { state: { ...rest, lastReportAt: r.at }, alerts: [alert] };
  }
  return { state: { ...state, lastReportAt: r.at }, alerts: [] };
}
