/**
 * `ProberHealth`: one per worker process (a prober is a process). Every probe
 * path hands it its results (`judge`): it keeps the latest result per service
 * for the rule's window, applies the rule of src/domain/prober-health.ts,
 * probes the canaries when the rule says so (at most every `canaryEveryMs`,
 * one probe round at a time), and while the process is offline returns its
 * connection-level failures turned `inconclusive`, so they are neither
 * downtime nor alerts. Mode changes are reported to the process's
 * `proberHealth` workflow (signal-with-start), which decides and delivers the
 * one "prober offline" alert and its RESOLVED.
 *
 * Used by `probeServices` (and through it `probeRegistryPage`); a
 * long-running lane activity calls the same instance's `judge`.
 */
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { Gauge, type Registry as MetricsRegistry } from 'prom-client';
import { healthCheckSchema, type Registry, type ServiceSpec } from '../domain/registry';
import { probeTarget, type ProbeResult, type ProbeTarget } from '../domain/health';
import {
  assessProber,
  checkCanaryUrl,
  describeAssessment,
  isConnectionFailure,
  nextProberMode,
  proberRule,
  proberWorkflowId,
  wantsCanaries,
  type CanaryOutcome,
  type ProberAssessment,
  type ProberMode,
  type ProberReport,
  type ProberRule,
  type ProberSample,
} from '../domain/prober-health';
import { proberReportSignal, type ProberWorkflowInput } from '../workflows/prober';
import type { RegistrySource } from './registry';

/** Canary probes give up after this long, ms: a canary is near the prober (a resolver, a gateway) or it is no canary. */
export const CANARY_TIMEOUT_MS = 2_000;
/**
 * The window is read in full at most this often, ms (a decision in between
 * reuses the last reading): bounds the rule's cost when results come one at
 * a time, delaying a change of mode by at most this much.
 */
export const ASSESS_EVERY_MS = 250;
/** The alert's canary line without canaries: says what that leaves open and where to fix it. */
export const NO_CANARIES = 'none configured, so an outage of most of the fleet at once cannot be told from this prober\'s (set INTEGRATION_AGENT_PROBER_CANARIES or the registry\'s prober.canaries)';
/** While offline, the mode is reported again this often, ms (the workflow resolves an incident whose prober went silent). */
export const PROBER_KEEPALIVE_MS = 60_000;

/** This process's prober state for Prometheus (the scrape's instance names the process). */
export interface ProberMetrics {
  /** `integration_agent_prober_offline`: 1 while offline. */
  offline: Gauge;
  /** `integration_agent_prober_connection_failure_ratio`: share of the window's hosts failed at the connection level, 0..1. */
  connectionFailureRatio: Gauge;
}

/** Registers {@link ProberMetrics} on `registry` (once per process). */
export function registerProberMetrics(registry: MetricsRegistry): ProberMetrics {
  return {
    offline: new Gauge({ name: 'integration_agent_prober_offline', help: "1 while this worker's own network looks down (its connection-level failures are inconclusive), else 0", registers: [registry] }),
    connectionFailureRatio: new Gauge({
      name: 'integration_agent_prober_connection_failure_ratio',
      help: "Share of the hosts this worker probed in the prober rule's window whose every counted result failed at the connection level (0..1)",
      registers: [registry],
    }),
  };
}

export interface ProberHealthOptions {
  /** This process, as alerts name it: `host:pid` (the worker's reporter id). */
  identity: string;
  /** The task queue of the `proberHealth` workflow; default the task queue of the first activity that calls `judge`. */
  taskQueue?: string;
  /** The registry in force: a service's hosts and `dependsOn` are read from it. */
  registry: RegistrySource;
  /** Canary URLs (`tcp://host:port`, `http(s)://…`); none: the rule alone decides. */
  canaries?: readonly string[];
  /** Probes one canary target (the worker's probe engine, so canaries take the probes' path). */
  probe(t: ProbeTarget): Promise<ProbeResult>;
  /** Signals the process's `proberHealth` workflow; none: modes are kept but never alerted (tests of the rule alone). */
  client?: Client;
  /** Thresholds (src/domain/prober-health.ts, DEFAULT_PROBER_RULE). @throws RangeError when out of range. */
  rule?: Partial<ProberRule>;
  /** Clock, epoch ms; default Date.now. */
  now?: () => number;
  /** Told when a report could not reach Temporal (retried on the next `judge`). */
  onError?: (err: unknown) => void;
  /** Gauges to keep current ({@link registerProberMetrics}). */
  metrics?: ProberMetrics;
}

/** A window entry, updated in place when its service is probed again. */
type MutableSample = { -readonly [K in keyof ProberSample]: ProberSample[K] };

interface ServiceFacts {
  hosts: string[];
  dependsOn: readonly string[];
  /** A `dns` probe: its `dns` failures (NXDOMAIN, SERVFAIL, REFUSED) are the resolver's answers, not silence. */
  dnsProbe: boolean;
}

/** Did this result reach nothing (a connection-level failure that is not a resolver's answer)? */
function reachedNothing(r: ProbeResult, f: ServiceFacts | undefined): boolean {
  return isConnectionFailure(r) && !(f?.dnsProbe && r.failureKind === 'dns');
}

/** The hosts a service's probe connects to: each URL's host; a `dns` probe's resolver when it names one. */
export function probedHosts(s: ServiceSpec): string[] {
  const t = probeTarget(s);
  if (t.check.type === 'dns' && t.check.resolver) return [t.check.resolver.replace(/^\[([^\]]+)\].*$|:\d+$/, '$1').toLowerCase()];
  const hosts = new Set<string>();
  for (const u of t.urls ?? [t.url]) {
    try {
      hosts.add(new URL(u).hostname.toLowerCase());
    } catch {
      // The registry checked the URLs; an unreadable one counts for no host.
    }
  }
  return [...hosts];
}

export class ProberHealth {
  readonly identity: string;
  private readonly rule: ProberRule;
  private readonly now: () => number;
  /** The option's canaries; the registry's `prober.canaries` are added to them at each decision. */
  private readonly configured: readonly string[];
  /** The canaries in force, rebuilt when the registry's list changes (`key`: that list; undefined before the first decision). */
  private canaryTargets: { key?: string; urls: string[]; targets: ProbeTarget[] } = { urls: [], targets: [] };
  /** The latest conclusive sample per service (stale ones pruned every quarter window). */
  private readonly window = new Map<string, MutableSample>();
  private prunedAt = 0;
  /** When the window was last read in full, epoch ms. */
  private assessedAt = -Infinity;
  /** Samples in the window that failed at the connection level. */
  private connectionFailures = 0;
  private readonly facts = new WeakMap<Registry, Map<string, ServiceFacts>>();
  private taskQueue?: string;
  private currentMode: ProberMode = 'online';
  private lastAssessment: ProberAssessment = { hostsProbed: 0, hostsFailed: 0, share: 0, kinds: {}, explained: 0 };
  private canary?: { at: number; outcome: CanaryOutcome; lines: string };
  private canaryRound?: Promise<{ at: number; outcome: CanaryOutcome; lines: string }>;
  /** Decisions one at a time: two pages judged at once must not both open (or close) the same spell. */
  private deciding: Promise<unknown> = Promise.resolve();
  private reported: { mode: ProberMode; at: number } = { mode: 'online', at: 0 };
  private reporting: Promise<void> = Promise.resolve();

  constructor(private readonly opts: ProberHealthOptions) {
    this.identity = opts.identity;
    this.rule = proberRule(opts.rule);
    this.now = opts.now ?? Date.now;
    this.configured = opts.canaries ?? [];
    for (const c of this.configured) {
      const problem = checkCanaryUrl(c);
      if (problem) throw new RangeError(`prober canaries: ${problem}`);
    }
    this.taskQueue = opts.taskQueue;
  }

  /** `online` or `offline` (this process's results are inconclusive while offline). */
  get mode(): ProberMode {
    return this.currentMode;
  }

  /** The window as last judged, in one line (for logs and the alert). */
  get evidence(): string {
    return describeAssessment(this.lastAssessment);
  }

  /**
   * Feeds `results` to the window, decides the mode, and returns them judged:
   * while offline, every connection-level failure becomes `inconclusive`
   * (detail `prober offline: <kind>: <detail>`); passes and other failures
   * stand (the service answered). Same length and order as `results`.
   * @param registry the registry the results were probed from; default the current one.
   */
  async judge(results: ProbeResult[], registry: Registry = this.opts.registry.current()): Promise<ProbeResult[]> {
    if (!this.taskQueue && this.opts.client) {
      try {
        this.taskQueue = Context.current().info.taskQueue;
      } catch {
        // Not in an activity: the task queue must come from the options (reports wait until then).
      }
    }
    const facts = this.factsOf(registry);
    for (const r of results) {
      const f = facts.get(r.serviceId);
      if (!f || r.verdict === 'inconclusive') continue;
      const prev = this.window.get(r.serviceId);
      if (prev && prev.at > r.startedAt) continue;
      // A failure inside a maintenance window is planned: evidence of nothing about the prober.
      if (r.maintenance && r.verdict === 'fail') {
        if (prev) this.forget(r.serviceId, prev);
        continue;
      }
      const failureKind = r.failureKind && !(f.dnsProbe && r.failureKind === 'dns') ? r.failureKind : undefined;
      if (prev) {
        // Updated in place (the hot path: one sample per service, no allocation once the fleet was seen).
        if (isConnectionFailure(prev)) this.connectionFailures--;
        prev.at = r.startedAt;
        prev.verdict = r.verdict;
        prev.failureKind = failureKind;
        prev.hosts = f.hosts;
        prev.dependsOn = f.dependsOn;
        if (isConnectionFailure(prev)) this.connectionFailures++;
      } else {
        const sample: MutableSample = { serviceId: r.serviceId, hosts: f.hosts, dependsOn: f.dependsOn, at: r.startedAt, verdict: r.verdict, failureKind };
        this.window.set(r.serviceId, sample);
        if (isConnectionFailure(sample)) this.connectionFailures++;
      }
    }
    // Chained so decisions never interleave; a decision that throws (it should not) keeps the mode rather than stalling the chain.
    const decided = this.deciding.then(() => this.decide()).catch((err) => (this.opts.onError?.(err), this.currentMode));
    this.deciding = decided;
    const mode = await decided;
    this.report();
    if (mode === 'online') return results;
    return results.map((r) =>
      reachedNothing(r, facts.get(r.serviceId))
        ? { serviceId: r.serviceId, verdict: 'inconclusive', latencyMs: r.latencyMs, startedAt: r.startedAt, detail: `prober offline: ${r.failureKind}: ${r.detail ?? ''}`.trim(), ...(r.maintenance ? { maintenance: true } : {}) }
        : r,
    );
  }

  /** Waits for the reports sent so far (tests; shutdown). */
  async flush(): Promise<void> {
    await this.reporting;
  }

  /** The canaries in force: the option's, then the registry's (`prober.canaries`, checked when it loaded), without repeats. */
  private canaries(): { urls: string[]; targets: ProbeTarget[] } {
    const fromRegistry = this.opts.registry.current().prober?.canaries ?? [];
    const key = fromRegistry.join(',');
    if (key !== this.canaryTargets.key) {
      const urls = [...new Set([...this.configured, ...fromRegistry])];
      this.canaryTargets = { key, urls, targets: urls.map(canaryTarget) };
    }
    return this.canaryTargets;
  }

  private async decide(): Promise<ProberMode> {
    const now = this.now();
    const canaries = this.canaries();
    // Old samples leave the map at most every quarter window (the rule reads only the window anyway,
    // and the fast path below over-counts stale failures at worst, which only costs an assessment).
    if (now - this.prunedAt >= this.rule.windowMs / 4) {
      this.prunedAt = now;
      for (const [id, s] of this.window) if (s.at <= now - this.rule.windowMs) this.forget(id, s);
    }
    // Fast path, exact: a failed host needs a connection-level failure of its own, so with fewer
    // such samples than minHosts the rule can neither fire nor hold (a healthy fleet costs O(batch)).
    // Otherwise the window is read in full, at most every ASSESS_EVERY_MS: a lane judging one result
    // at a time would else read a 10,000-service window 10,000 times per pass.
    let a: ProberAssessment;
    if (this.connectionFailures < this.rule.minHosts) a = { hostsProbed: this.window.size, hostsFailed: 0, share: 0, kinds: {}, explained: 0 };
    else if (now - this.assessedAt < ASSESS_EVERY_MS && now >= this.assessedAt) a = this.lastAssessment;
    else {
      a = assessProber(this.window.values(), now, this.rule);
      this.assessedAt = now;
    }
    this.lastAssessment = a;
    let outcome: CanaryOutcome = canaries.urls.length ? 'untried' : 'none';
    if (wantsCanaries(this.currentMode, a, this.rule, canaries.urls.length > 0)) outcome = (await this.canaryOutcome(now, canaries)).outcome;
    const next = nextProberMode(this.currentMode, a, outcome, this.rule);
    this.currentMode = next;
    this.opts.metrics?.offline.set(next === 'offline' ? 1 : 0);
    this.opts.metrics?.connectionFailureRatio.set(a.share);
    return next;
  }

  /** The canaries' outcome, probing them when the last round is older than `canaryEveryMs` (one round at a time). */
  private async canaryOutcome(now: number, canaries: { urls: string[]; targets: ProbeTarget[] }): Promise<{ at: number; outcome: CanaryOutcome; lines: string }> {
    if (this.canary && now - this.canary.at < this.rule.canaryEveryMs) return this.canary;
    this.canaryRound ??= (async () => {
      const results = await Promise.all(canaries.targets.map((t) => this.opts.probe(t)));
      const answered = results.filter((r) => !isConnectionFailure(r));
      const lines = results.map((r, i) => `${canaries.urls[i]}: ${isConnectionFailure(r) ? `${r.failureKind} (${r.detail ?? ''})` : 'answered'}`).join('; ');
      return { at: now, outcome: answered.length ? 'answered' : 'silent', lines } as const;
    })().finally(() => (this.canaryRound = undefined));
    this.canary = await this.canaryRound;
    return this.canary;
  }

  private forget(id: string, s: MutableSample): void {
    this.window.delete(id);
    if (isConnectionFailure(s)) this.connectionFailures--;
  }

  /** Sends the mode to the workflow when it changed, or while offline every {@link PROBER_KEEPALIVE_MS}; never throws. */
  private report(): void {
    const client = this.opts.client;
    if (!client || !this.taskQueue) return;
    const now = this.now();
    const mode = this.currentMode;
    if (mode === this.reported.mode && !(mode === 'offline' && now - this.reported.at >= PROBER_KEEPALIVE_MS)) return;
    const taskQueue = this.taskQueue;
    const last = this.reported;
    this.reported = { mode, at: now };
    const r: ProberReport = {
      mode,
      at: now,
      evidence: describeAssessment(this.lastAssessment),
      canaries: this.canaryTargets.urls.length === 0 ? NO_CANARIES : this.canary ? this.canary.lines : 'not tried',
    };
    const input: ProberWorkflowInput = { taskQueue, identity: this.identity };
    this.reporting = this.reporting.then(() =>
      client.workflow
        .signalWithStart('proberHealth', { workflowId: proberWorkflowId(taskQueue, this.identity), taskQueue, args: [input], signal: proberReportSignal, signalArgs: [r] })
        .then(
          () => undefined,
          (err) => {
            // Sent again by the next judge: a prober cut off from Temporal reports when it is back.
            if (this.reported.at === now) this.reported = last;
            this.opts.onError?.(err);
          },
        ),
    );
  }

  private factsOf(registry: Registry): Map<string, ServiceFacts> {
    let m = this.facts.get(registry);
    if (!m) {
      m = new Map();
      for (const s of registry.services) if (s.type !== 'make') m.set(s.id, { hosts: probedHosts(s), dependsOn: s.dependsOn, dnsProbe: s.healthCheck?.type === 'dns' });
      this.facts.set(registry, m);
    }
    return m;
  }
}

/** A canary as a probe target: a TCP connect, or an HTTP request whose any answer counts (only connection-level failures say "silent"). */
function canaryTarget(url: string): ProbeTarget {
  const type = url.startsWith('tcp:') ? 'tcp' : 'http';
  return { id: `canary:${url}`, url, check: healthCheckSchema.parse({ type, timeout: `${CANARY_TIMEOUT_MS}ms` }), maintenance: [] };
}
