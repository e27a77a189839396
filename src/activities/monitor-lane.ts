/**
 * `monitorLane`: continuous monitoring for one window (src/domain/monitor.ts).
 * A long-running activity that owns the services of some health shards
 * (shard `k` belongs to lane `k mod lanes`), probes each one at the times of
 * its own grid inside the window (bounded concurrency; one probe per service
 * at a time) and publishes results to the shards as they come:
 *
 * - a result that says more than a plain pass (a failure, a warning, a
 *   failing dependency, maintenance), or that follows one, goes out at
 *   once by a `healthShardResults` signal to its shard (one message at a time
 *   per shard, in order; what comes meanwhile follows as soon as it is answered);
 * - plain passes are sent until the service is steady in this lane's view
 *   (`successThreshold` of them in a row), then not at all: they could change
 *   nothing, and history is written only when state changes. The first result
 *   of each service in a window is always sent; every shard also hears from
 *   its lane every `keepaliveMs` (its members, so services that left the
 *   registry are dropped, and its staleness clock);
 * - a service whose result is older than interval + timeout + margin (the
 *   lane could not keep up) is reported `overdue`: its shard turns it
 *   `unknown` ("no result for N s").
 *
 * Dependencies: a result's root causes are its failing transitive
 * dependencies (the rule of `classifySweep`), from this lane's own latest
 * verdicts and, for dependencies probed by other lanes, from their shards'
 * state (queried every `remoteEveryMs`, only for such dependencies).
 *
 * Results are recorded in the health history every second (availability,
 * percentiles); figures are recomputed per service at most every
 * `figuresEveryMs`, off the probing path, and sent only when they changed.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import pLimit from 'p-limit';
import { effectiveHealthCheck, isSteady, probeTarget, type HealthFigures, type HealthStatus, type ProbeResult, type ProbeTarget, type ProbeVerdict, type ServiceHealthState } from '../domain/health';
import { healthShardWorkflowId, shardOf, VERDICT_CODES, type ShardNotable, type ShardResults } from '../domain/health-shard';
import { laneOfShard, nextGridTime, overdueAfterMs } from '../domain/monitor';
import type { HealthCheck, Registry, ServiceSpec } from '../domain/registry';
import type { HealthHistory } from '../state/types';
import { healthShardQuery, healthShardResultsSignal } from '../workflows/health-shard';
import type { HealthMetrics } from './health-metrics';
import { isNotable } from './registry-pages';
import type { VersionedRegistry } from './registry';

/** Impacted services listed per root cause (as sweeps list them). */
const MAX_IMPACTS_LISTED = 200;

export interface MonitorLaneDeps {
  registry: VersionedRegistry;
  /** Probes one service and judges it; never throws (src/activities/probes: `createProber().probeOne`). */
  probe(target: ProbeTarget): Promise<ProbeResult>;
  history: HealthHistory;
  /** Signals the shards; without one (tests of the scheduling), results are only recorded. */
  client?: Client;
  /** The shards' task queue; default this activity's own. */
  taskQueue?: string;
  metrics?: HealthMetrics;
  /** Turns results inconclusive while this process's network is judged down (issue 15, the prober's own health). */
  judge?(results: ProbeResult[]): Promise<ProbeResult[]>;
  /** Clock, epoch ms; default Date.now. */
  now?: () => number;
  /** The housekeeping tick (plain passes, overdue marks, retries of failed sends), ms; default 250. */
  flushMs?: number;
  /** Most time a plain pass waits before it is sent, ms; default 5000. */
  passFlushMs?: number;
  /** Every shard hears from its lane at least this often, ms; default 60000. */
  keepaliveMs?: number;
  /** Recompute a service's figures at most this often, ms; default 60000. */
  figuresEveryMs?: number;
  /** Refresh the verdicts of dependencies probed by other lanes this often, ms; default 5000. */
  remoteEveryMs?: number;
}

export interface MonitorLaneInput {
  /** The monitor workflow's id (names the lane's messages). */
  monitorId: string;
  registryVersion: string;
  lane: number;
  lanes: number;
  /** The window, epoch ms: probes start at grid times in `[windowStart, windowEnd)`. */
  windowStart: number;
  windowEnd: number;
  /** Probes in flight at once in this lane. */
  concurrency: number;
  /** One pass instead of a window: every service probed once, now (a triggered run). */
  once?: boolean;
  /** Passed to the shards: status turns unknown when a shard hears nothing for this long, ms. */
  staleAfterMs: number;
}

/** What a lane did (the monitor workflow's result; small at any fleet size). */
export interface MonitorLaneResult {
  lane: number;
  services: number;
  probes: number;
  /** Messages sent to shards. */
  messages: number;
  /** Results sent in them (the others were plain passes of steady services). */
  resultsSent: number;
  /** Services' figures sent in them (only those that changed). */
  figuresSent: number;
  /** Probes that started later than their grid time by more than 10% of the interval (at least 100 ms). */
  late: number;
  /** Largest start delay after the grid time, ms. */
  maxLateMs: number;
  /** Occurrences dropped because the previous probe of the service was still waiting or running. */
  skipped: number;
  /** Times a service was reported overdue. */
  overdue: number;
  /** When the lane began after the window's start, ms (negative: before it, as it should). */
  beganMs: number;
  /** This process's event-loop delay while the lane ran, p99, ms (a busy prober starts probes late). */
  eventLoopDelayP99Ms: number;
}

interface Entry {
  id: string;
  verdict: ProbeVerdict;
  at: number;
  latencyMs: number;
  notable?: ShardNotable;
}

interface ShardOutbox {
  entries: Entry[];
  overdue: Record<string, string>;
  figures: Record<string, HealthFigures>;
  urgent: boolean;
  /** performance.now() of the oldest unsent entry. */
  since?: number;
  sentAt: number;
  seq: number;
  /** Sending now (one message at a time per shard, so they arrive in order). */
  busy: boolean;
  membersSent: boolean;
}

/** A min-heap of (time, id) (the lane's probe agenda). */
class Agenda {
  private readonly heap: { at: number; id: string }[] = [];
  get size(): number {
    return this.heap.length;
  }
  peek(): { at: number; id: string } | undefined {
    return this.heap[0];
  }
  push(at: number, id: string): void {
    const h = this.heap;
    h.push({ at, id });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]!.at <= h[i]!.at) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }
  pop(): { at: number; id: string } | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l]!.at < h[m]!.at) m = l;
        if (r < h.length && h[r]!.at < h[m]!.at) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }
}

function registryOf(registry: VersionedRegistry, versionHash: string): Registry {
  const r = registry.byVersion(versionHash);
  if (!r) {
    throw ApplicationFailure.nonRetryable(
      `registry version ${versionHash} is not known to this worker (its registry is ${registry.current().versionHash}): the registry changed; the monitor restarts the lane on the new one`,
      'RegistryVersionGone',
    );
  }
  return r;
}

/** Failing transitive dependencies of `id` that have no failing dependency of their own (classifySweep's root rule). */
function rootCausesOf(id: string, deps: ReadonlyMap<string, readonly string[]>, failing: (id: string) => boolean): string[] {
  const seen = new Set<string>([id]);
  const found: string[] = [];
  const stack = [...(deps.get(id) ?? [])];
  while (stack.length) {
    const d = stack.pop()!;
    if (seen.has(d)) continue;
    seen.add(d);
    if (failing(d)) found.push(d);
    stack.push(...(deps.get(d) ?? []));
  }
  if (found.length === 0) return [];
  const failingSet = new Set(found);
  const roots = found.filter((f) => {
    const inner = new Set<string>([f]);
    const st = [...(deps.get(f) ?? [])];
    while (st.length) {
      const d = st.pop()!;
      if (inner.has(d)) continue;
      inner.add(d);
      if (failingSet.has(d) || failing(d)) return false;
      st.push(...(deps.get(d) ?? []));
    }
    return true;
  });
  return (roots.length ? roots : [found.sort()[0]!]).sort();
}

/** A result's details for its shard (the fields set; a credential only with `credential_rejected`). */
function notableOf(r: ProbeResult): ShardNotable {
  const n: ShardNotable = {};
  if (r.failureKind) n.failureKind = r.failureKind;
  if (r.detail) n.detail = r.detail;
  if (r.maintenance) n.maintenance = true;
  if (r.certThresholdMs !== undefined) n.certThresholdMs = r.certThresholdMs;
  if (r.credentialId && r.failureKind === 'credential_rejected') n.credentialId = r.credentialId;
  return n;
}

/** Every service depending on `id`, transitively, sorted. */
function dependentsOf(id: string, dependents: ReadonlyMap<string, readonly string[]>): string[] {
  const all = new Set<string>();
  const stack = [id];
  while (stack.length) for (const m of dependents.get(stack.pop()!) ?? []) if (m !== id && !all.has(m)) (all.add(m), stack.push(m));
  return [...all].sort();
}

/** `1.5 s`, `12 s`: a duration for a one-line detail. */
function seconds(ms: number): string {
  return ms < 10_000 ? `${Number((ms / 1000).toFixed(1))} s` : `${Math.round(ms / 1000)} s`;
}

/**
 * Figures as compared before sending: latency percentiles and the error rate in 10 % steps (log
 * buckets), availability to 0.01 percentage points. Smaller drifts are not history written again
 * (at 10,000 services, figures sent on every change at 2 significant digits were most of the
 * history: 148 B per service per probe cycle).
 */
const sameFigures = (f: HealthFigures) =>
  JSON.stringify([
    ...[f.p50Ms, f.p95Ms, f.p99Ms, f.errorRate24h].map((v) => (v === undefined ? null : v <= 0 ? 0 : Math.round(Math.log(v) / Math.log(1.1)))),
    ...[f.availability['1h'], f.availability['24h'], f.availability['7d'], f.availability['30d'], f.slaAvailability].map((v) => (v === undefined ? null : Math.round(v * 100))),
  ]);

export function createMonitorLaneActivities(deps: MonitorLaneDeps) {
  const now = deps.now ?? Date.now;
  const flushMs = deps.flushMs ?? 250;
  const passFlushMs = deps.passFlushMs ?? 5_000;
  const keepaliveMs = deps.keepaliveMs ?? 60_000;
  const figuresEveryMs = deps.figuresEveryMs ?? 60_000;
  const remoteEveryMs = deps.remoteEveryMs ?? 5_000;
  /** Figures last sent per service by this process (unchanged figures are not sent again). */
  const sentFigures = new Map<string, string>();
  const figuresAt = new Map<string, number>();

  return {
    /**
     * Probes the lane's services at their own cadence for one window and
     * publishes the results as they come (see the module's doc).
     * @throws non-retryable `RegistryVersionGone` when this worker no longer
     *   has the registry version (the monitor restarts the lane on the new one);
     *   a cancellation error when cancelled (window cancelled, worker shutting down).
     */
    async monitorLane(input: MonitorLaneInput): Promise<MonitorLaneResult> {
      let ctx: Context | undefined;
      try {
        ctx = Context.current();
      } catch {
        ctx = undefined;
      }
      if (!(Number.isInteger(input.lanes) && input.lanes >= 1 && input.lane >= 0 && input.lane < input.lanes)) {
        throw ApplicationFailure.nonRetryable(`monitorLane: lane must be in 0..lanes-1, got ${input.lane} of ${input.lanes}`, 'InvalidOption');
      }
      const taskQueue = deps.taskQueue ?? ctx?.info.taskQueue;
      const registry = registryOf(deps.registry, input.registryVersion);
      const attempt = ctx?.info.attempt ?? 1;
      const sender = `${input.monitorId}/lane-${input.lane}#${attempt}`;
      const dependsOn = new Map<string, readonly string[]>();
      const dependents = new Map<string, string[]>();
      for (const s of registry.services) {
        if (s.dependsOn.length) dependsOn.set(s.id, s.dependsOn);
        for (const d of s.dependsOn) (dependents.get(d) ?? dependents.set(d, []).get(d)!).push(s.id);
      }
      const mine = new Map<string, { spec: ServiceSpec; target: ProbeTarget; check: HealthCheck; shard: number }>();
      const membersOf = new Map<number, string[]>();
      for (const s of registry.services) {
        const shard = shardOf(s.id);
        if (laneOfShard(shard, input.lanes) !== input.lane) continue;
        (membersOf.get(shard) ?? membersOf.set(shard, []).get(shard)!).push(s.id);
        // Make services are checked through Make's API once per window by the monitor workflow.
        if (s.type === 'make') continue;
        mine.set(s.id, { spec: s, target: probeTarget(s), check: effectiveHealthCheck(s), shard });
      }

      const stats: MonitorLaneResult = { lane: input.lane, services: mine.size, probes: 0, messages: 0, resultsSent: 0, figuresSent: 0, late: 0, maxLateMs: 0, skipped: 0, overdue: 0, beganMs: now() - input.windowStart, eventLoopDelayP99Ms: 0 };
      const loopDelay = monitorEventLoopDelay({ resolution: 20 });
      loopDelay.enable();
      const verdictOf = new Map<string, ProbeVerdict>();
      const remoteFailing = new Set<string>();
      const lastResultAt = new Map<string, number>();
      const overdueMarked = new Set<string>();
      const plainRun = new Map<string, number>();
      /** Services whose latest sent result was more than a plain pass (their next pass is news). */
      const notableSent = new Set<string>();
      const waiting = new Set<string>(); // queued or probing
      const outboxes = new Map<number, ShardOutbox>();
      const outboxOf = (shard: number): ShardOutbox => {
        let o = outboxes.get(shard);
        if (!o) outboxes.set(shard, (o = { entries: [], overdue: {}, figures: {}, urgent: false, sentAt: 0, seq: 0, busy: false, membersSent: false }));
        return o;
      };
      let toRecord: ProbeResult[] = [];
      let lastFlushError: unknown;
      /** The agenda is done: the final flush sends what is left. */
      let done = false;

      // The agenda: each service's first grid time in the window (a retried attempt starts from now).
      const agenda = new Agenda();
      const t0 = now();
      const from = input.once ? t0 : attempt === 1 ? input.windowStart : Math.max(input.windowStart, t0);
      for (const [id, m] of mine) {
        const first = input.once ? t0 : nextGridTime(id, m.check.interval, from);
        // Where the service stood before this window: its previous grid time (the last window's probe, or
        // this lane's previous attempt's). Not the lane's own start: a lane starts ahead of its window.
        lastResultAt.set(id, first - m.check.interval + m.check.timeout);
        if (first < input.windowEnd || input.once) agenda.push(first, id);
      }

      const limit = pLimit(Math.max(1, input.concurrency));
      const inFlight = new Set<Promise<void>>();
      let cancelled = false;
      const cancelledErr: { err?: unknown } = {};
      ctx?.cancelled.catch((err) => {
        cancelled = true;
        cancelledErr.err = err;
        wake();
      });
      let wakeUp: (() => void) | undefined;
      const wake = () => wakeUp?.();
      const sleep = (ms: number) =>
        new Promise<void>((resolve) => {
          const t = setTimeout(() => ((wakeUp = undefined), resolve()), Math.max(0, ms));
          wakeUp = () => {
            clearTimeout(t);
            wakeUp = undefined;
            resolve();
          };
        });

      const handle = (id: string, r: ProbeResult) => {
        const m = mine.get(id)!;
        lastResultAt.set(id, r.startedAt + r.latencyMs);
        verdictOf.set(id, r.verdict);
        toRecord.push(r);
        const rootCauses = dependsOn.has(id) ? rootCausesOf(id, dependsOn, (d) => verdictOf.get(d) === 'fail' || remoteFailing.has(d)) : [];
        const notable = notableOf(r);
        if (rootCauses.length) notable.rootCauses = rootCauses;
        else if (r.verdict === 'fail' && dependents.has(id)) notable.impacts = dependentsOf(id, dependents).slice(0, MAX_IMPACTS_LISTED);
        const isPlain = !isNotable(r) && rootCauses.length === 0;
        const run = plainRun.get(id) ?? 0;
        const wasOverdue = overdueMarked.delete(id);
        if (wasOverdue) delete outboxOf(m.shard).overdue[id];
        const status: HealthStatus = r.maintenance ? 'maintenance' : rootCauses.length ? 'impacted' : r.verdict === 'pass' ? 'healthy' : r.verdict === 'warn' ? 'degraded' : r.verdict === 'fail' ? 'unhealthy' : 'unknown';
        deps.metrics?.observe(r, status);
        plainRun.set(id, isPlain ? run + 1 : 0);
        if (isPlain && run >= m.check.successThreshold && !wasOverdue) return; // steady: nothing to say
        const o = outboxOf(m.shard);
        const e: Entry = { id, verdict: r.verdict, at: r.startedAt, latencyMs: Math.round(r.latencyMs * 10) / 10 };
        if (Object.keys(notable).length) e.notable = notable;
        o.entries.push(e);
        o.since ??= performance.now();
        // News goes out at once: a failure, a warning, or the first pass after either (recovery counts).
        if (!isPlain || notableSent.has(id) || wasOverdue) o.urgent = true;
        if (isPlain) notableSent.delete(id);
        else notableSent.add(id);
        if (o.urgent) sendSoon(m.shard);
      };

      /** Sends a shard's urgent results now (not at the next flush tick), and again if more came meanwhile. */
      const sendSoon = (shard: number): void => {
        const o = outboxOf(shard);
        if (o.busy || done) return;
        void flushShard(shard, false)
          .then(() => {
            if (o.urgent && o.entries.length) sendSoon(shard);
          })
          .catch((err) => {
            lastFlushError = err;
          });
      };

      const probeOne = async (id: string, dueAt: number) => {
        const m = mine.get(id)!;
        const startAt = now();
        const lateMs = startAt - dueAt;
        if (!input.once && lateMs > m.check.interval) {
          // The next occurrence is already on the agenda: this one is too stale to be worth a probe.
          stats.skipped++;
          waiting.delete(id);
          return;
        }
        if (lateMs > Math.max(100, m.check.interval / 10)) stats.late++;
        stats.maxLateMs = Math.max(stats.maxLateMs, lateMs);
        let r = await deps.probe(m.target);
        if (deps.judge) r = (await deps.judge([r]))[0] ?? r;
        stats.probes++;
        waiting.delete(id);
        handle(id, r);
      };

      const flushShard = async (shard: number, force: boolean): Promise<void> => {
        const o = outboxOf(shard);
        if (o.busy || !deps.client || !taskQueue) return;
        const t = performance.now();
        const members = !o.membersSent || now() - o.sentAt >= keepaliveMs;
        const pending = o.entries.length > 0 || Object.keys(o.figures).length > 0;
        const due = pending && (o.urgent || force || t - (o.since ?? t) >= passFlushMs);
        const has = due || Object.keys(o.overdue).length > 0;
        if (!has && !members) return;
        const entries = due ? o.entries.splice(0) : [];
        const overdue = o.overdue;
        const figures = due || members ? o.figures : {};
        o.overdue = {};
        if (due || members) o.figures = {};
        if (due) {
          o.urgent = false;
          o.since = undefined;
        }
        const msg: ShardResults = { sender, seq: ++o.seq, at: now(), ids: [], verdicts: '', ats: [], latencies: [], thresholds: [3, 2], staleAfterMs: input.staleAfterMs };
        const ths = new Map<string, [number, number]>();
        for (const e of entries) {
          const c = mine.get(e.id)!.check;
          ths.set(e.id, [c.failureThreshold, c.successThreshold]);
        }
        // The most common thresholds go in `thresholds`; the others per service.
        const counts = new Map<string, number>();
        for (const th of ths.values()) counts.set(th.join(), (counts.get(th.join()) ?? 0) + 1);
        const common = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
        if (common) msg.thresholds = common.split(',').map(Number) as [number, number];
        for (const [id, th] of ths) if (th.join() !== common) (msg.thresholdsOf ??= {})[id] = th;
        entries.forEach((e, i) => {
          msg.ids.push(e.id);
          msg.verdicts += VERDICT_CODES[e.verdict];
          msg.ats.push(e.at);
          msg.latencies.push(e.latencyMs);
          if (e.notable) (msg.notable ??= {})[i] = e.notable;
        });
        if (Object.keys(overdue).length) msg.overdue = overdue;
        if (Object.keys(figures).length) msg.figures = figures;
        if (members) msg.members = membersOf.get(shard) ?? [];
        o.busy = true;
        try {
          await deps.client.workflow.signalWithStart('healthShard', {
            workflowId: healthShardWorkflowId(taskQueue, shard),
            taskQueue,
            args: [{ shard }],
            signal: healthShardResultsSignal,
            signalArgs: [msg],
          });
          o.membersSent = true;
          o.sentAt = now();
          stats.messages++;
          stats.resultsSent += entries.length;
          stats.figuresSent += Object.keys(figures).length;
        } catch (err) {
          // Put it back for the next flush (same content, a new seq); the shard drops nothing twice.
          o.entries.unshift(...entries);
          Object.assign(o.overdue, overdue);
          Object.assign(o.figures, figures);
          o.since ??= t;
          if (entries.length) o.urgent = true;
          throw err;
        } finally {
          o.busy = false;
        }
      };

      const flushLimit = pLimit(16);
      const flushAll = async (force: boolean) => {
        const shards = new Set<number>([...outboxes.keys(), ...membersOf.keys()]);
        await Promise.all(
          [...shards].map((k) =>
            flushLimit(() =>
              flushShard(k, force).catch((err) => {
                lastFlushError = err;
              }),
            ),
          ),
        );
      };

      const recordNow = async () => {
        if (toRecord.length === 0) return;
        const batch = toRecord;
        toRecord = [];
        await deps.history.recordProbes(batch, (id) => 2 * (mine.get(id)?.check.interval ?? 30_000));
      };

      // Shards of this lane with no member left: told so (never created for it).
      if (deps.client && taskQueue) {
        const empty: number[] = [];
        for (let k = 0; k < 128; k++) if (laneOfShard(k, input.lanes) === input.lane && !membersOf.has(k)) empty.push(k);
        await Promise.all(
          empty.map((k) =>
            flushLimit(async () => {
              const msg: ShardResults = { sender, seq: 0, at: now(), ids: [], verdicts: '', ats: [], latencies: [], thresholds: [3, 2], members: [] };
              try {
                await deps.client!.workflow.getHandle(healthShardWorkflowId(taskQueue, k)).signal(healthShardResultsSignal, msg);
              } catch (err) {
                if (!(err instanceof WorkflowNotFoundError)) throw err;
              }
            }),
          ),
        );
      }

      const remoteDeps = new Set<string>();
      if (input.lanes > 1) for (const id of mine.keys()) for (const d of dependsOn.get(id) ?? []) if (!mine.has(d)) remoteDeps.add(d);
      const refreshRemote = async () => {
        if (!deps.client || !taskQueue || remoteDeps.size === 0) return;
        const byShard = new Map<number, string[]>();
        for (const d of remoteDeps) (byShard.get(shardOf(d)) ?? byShard.set(shardOf(d), []).get(shardOf(d))!).push(d);
        await Promise.all(
          [...byShard].map(([k, ids]) =>
            flushLimit(async () => {
              try {
                const page = await deps.client!.workflow.getHandle(healthShardWorkflowId(taskQueue, k)).query(healthShardQuery, { ids });
                const failing = new Set(page.services.filter((s: ServiceHealthState) => s.last?.verdict === 'fail' && s.status !== 'unknown').map((s) => s.serviceId));
                for (const id of ids) (failing.has(id) ? remoteFailing.add(id) : remoteFailing.delete(id));
              } catch {
                // Unknown dependencies impact nobody (classifySweep's rule): keep what we knew.
              }
            }),
          ),
        );
      };

      // Services already steady in their shard (healthy, nothing counted, no alert open): their plain
      // passes could change nothing there, so this lane sends none of them, not even a first one per
      // window (one query per shard at the lane's start; a shard that does not answer is taken as not steady).
      const learnSteady = async () => {
        if (!deps.client || !taskQueue) return;
        await Promise.all(
          [...membersOf.keys()].map((k) =>
            flushLimit(async () => {
              try {
                const h = deps.client!.workflow.getHandle(healthShardWorkflowId(taskQueue, k));
                for (let offset = 0; ; offset += 500) {
                  const page = await h.query(healthShardQuery, { offset, limit: 500 });
                  for (const st of page.services) {
                    const m = mine.get(st.serviceId);
                    if (m && isSteady(st)) plainRun.set(st.serviceId, m.check.successThreshold);
                  }
                  if (offset + 500 >= page.total) break;
                }
              } catch {
                // Not there yet (a new fleet) or not answering: this lane sends its first results.
              }
            }),
          ),
        );
      };

      // Figures: off the probing path, each service at most every figuresEveryMs; changed ones ride the next message.
      const figuresLimit = pLimit(4);
      const refreshFigures = async () => {
        const t = now();
        const due = [...mine.keys()].filter((id) => verdictOf.has(id) && t - (figuresAt.get(id) ?? 0) >= figuresEveryMs);
        await Promise.all(
          due.map((id) =>
            figuresLimit(async () => {
              const m = mine.get(id)!;
              const f = await deps.history.figures(id, t, m.spec.sla?.availability);
              figuresAt.set(id, t);
              deps.metrics?.setFigures(id, f);
              const key = sameFigures(f);
              if (sentFigures.get(id) !== key) {
                sentFigures.set(id, key);
                const o = outboxOf(m.shard);
                o.figures[id] = f;
                o.since ??= performance.now();
              }
            }),
          ),
        );
      };

      const checkOverdue = () => {
        const t = now();
        // Before the window's start the previous window's lane probes these services, after its end the
        // next one's: their overdue-ness is its call.
        if (t < input.windowStart || t >= input.windowEnd) return;
        for (const [id, m] of mine) {
          if (overdueMarked.has(id)) continue;
          const last = lastResultAt.get(id) ?? t0;
          const gap = t - last;
          if (gap > overdueAfterMs(m.check)) {
            overdueMarked.add(id);
            stats.overdue++;
            plainRun.set(id, 0);
            outboxOf(m.shard).overdue[id] = `no result for ${seconds(gap)} (interval ${seconds(m.check.interval)}, timeout ${seconds(m.check.timeout)}): the prober is behind`;
          }
        }
      };

      // Housekeeping on its own clock: flushes, history, overdue, heartbeats, figures, remote verdicts.
      let lastBeat = 0;
      let lastRecord = 0;
      let lastRemote = 0;
      let lastFigures = 0;
      let lastOverdue = 0;
      let figuresRunning = false;
      const housekeeping = (async () => {
        while (!done) {
          const t = performance.now();
          await flushAll(false);
          if (t - lastRecord >= 1000) {
            lastRecord = t;
            await recordNow().catch(() => undefined);
          }
          if (t - lastOverdue >= 1000) {
            lastOverdue = t;
            if (!input.once) checkOverdue();
          }
          if (t - lastRemote >= remoteEveryMs) {
            lastRemote = t;
            void refreshRemote();
          }
          if (t - lastFigures >= 5000 && !figuresRunning) {
            lastFigures = t;
            figuresRunning = true;
            void refreshFigures()
              .catch(() => undefined)
              .finally(() => (figuresRunning = false));
          }
          if (ctx && t - lastBeat >= 1000) {
            lastBeat = t;
            ctx.heartbeat({ probes: stats.probes, late: stats.late, overdue: stats.overdue, at: now() });
          }
          await new Promise((r) => setTimeout(r, flushMs));
        }
      })();

      await refreshRemote();
      await learnSteady();
      // The agenda loop.
      try {
        while (!cancelled) {
          const next = agenda.peek();
          if (!next) break;
          const t = now();
          if (next.at > t) {
            await sleep(next.at - t);
            continue;
          }
          agenda.pop();
          const m = mine.get(next.id)!;
          if (!input.once) {
            const after = nextGridTime(next.id, m.check.interval, next.at + 1);
            if (after < input.windowEnd) agenda.push(after, next.id);
          }
          if (waiting.has(next.id)) {
            stats.skipped++;
            continue;
          }
          waiting.add(next.id);
          const p = limit(() => probeOne(next.id, next.at)).catch(() => {
            waiting.delete(next.id);
          });
          inFlight.add(p);
          void p.finally(() => inFlight.delete(p));
        }
        await Promise.all([...inFlight]);
      } finally {
        done = true;
        await housekeeping;
        loopDelay.disable();
        stats.eventLoopDelayP99Ms = Math.round(loopDelay.percentile(99) / 1e6);
      }
      if (cancelled) {
        // Window cancelled or worker shutting down: what was learnt is still published.
        await flushAll(true).catch(() => undefined);
        await recordNow().catch(() => undefined);
        throw cancelledErr.err ?? new Error('monitorLane cancelled');
      }
      await refreshFigures().catch(() => undefined);
      await flushAll(true);
      await recordNow();
      if (lastFlushError && [...outboxes.values()].some((o) => o.entries.length > 0)) {
        throw new Error(`monitorLane: results could not be published to the health shards: ${(lastFlushError as Error).message}`);
      }
      return stats;
    },
  };
}

export type MonitorLaneActivities = ReturnType<typeof createMonitorLaneActivities>;

/**
 * `publishResults`: results probed elsewhere than in a lane (the monitor
 * workflow's once-per-window Make checks), recorded in the health history and
 * sent to their shards as one `healthShardResults` message per shard.
 */
export function createPublishResultsActivity(deps: Pick<MonitorLaneDeps, 'history' | 'client' | 'taskQueue' | 'registry'>) {
  return {
    async publishResults(input: { sender: string; results: ProbeResult[]; staleAfterMs: number }): Promise<{ messages: number }> {
      let taskQueue = deps.taskQueue;
      let attempt = 1;
      try {
        taskQueue ??= Context.current().info.taskQueue;
        attempt = Context.current().info.attempt;
      } catch {
        // not an activity (tests): taskQueue must be given
      }
      const checks = new Map(deps.registry.current().services.map((s) => [s.id, effectiveHealthCheck(s)]));
      await deps.history.recordProbes(input.results, (id) => 2 * (checks.get(id)?.interval ?? 30_000));
      if (!deps.client || !taskQueue) return { messages: 0 };
      const byShard = new Map<number, ProbeResult[]>();
      for (const r of input.results) (byShard.get(shardOf(r.serviceId)) ?? byShard.set(shardOf(r.serviceId), []).get(shardOf(r.serviceId))!).push(r);
      for (const [shard, rs] of byShard) {
        const msg: ShardResults = { sender: `${input.sender}#${attempt}`, seq: 1, at: Date.now(), ids: [], verdicts: '', ats: [], latencies: [], thresholds: [3, 2], staleAfterMs: input.staleAfterMs };
        rs.forEach((r, i) => {
          const c = checks.get(r.serviceId);
          if (c && (c.failureThreshold !== 3 || c.successThreshold !== 2)) (msg.thresholdsOf ??= {})[r.serviceId] = [c.failureThreshold, c.successThreshold];
          msg.ids.push(r.serviceId);
          msg.verdicts += VERDICT_CODES[r.verdict];
          msg.ats.push(r.startedAt);
          msg.latencies.push(Math.round(r.latencyMs * 10) / 10);
          if (isNotable(r)) {
            (msg.notable ??= {})[i] = notableOf(r);
          }
        });
        await deps.client.workflow.signalWithStart('healthShard', { workflowId: healthShardWorkflowId(taskQueue, shard), taskQueue, args: [{ shard }], signal: healthShardResultsSignal, signalArgs: [msg] });
      }
      return { messages: byShard.size };
    },
  };
}
