/**
 * `publishSweep`: after a sweep has judged every service, record the results
 * in the health store (long history) and hand each service's observation, with
 * its fresh figures, to its `service/<id>` workflow by signal-with-start
 * (which does not wait for the workflow to run).
 *
 * Once this process has sent a service `successThreshold` consecutive plain
 * passes (no failing dependency, no maintenance), its workflow is steady
 * (healthy, nothing counted, no alert open) whatever state it was in before;
 * while passes go on, they are not sent — they could change nothing — except
 * as a keepalive every `keepaliveMs`, and the next message carries the latest
 * skipped pass. At
 * 1,000 services this takes a steady sweep from 1,000 workflow updates to the
 * few that matter (figures in docs/health.md).
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { Context } from '@temporalio/activity';
import pLimit from 'p-limit';
import { workflowIds } from '../domain/constants';
import type { HealthFigures, HealthStatus, ProbeResult } from '../domain/health';
import { healthShardWorkflowId, shardOf, type ShardNotable, type ShardObservations } from '../domain/health-shard';
import { healthObservationSignal, type ServiceObservationSignal } from '../workflows/service-health';
import { healthShardObservationsSignal } from '../workflows/health-shard';
import type { HealthMetrics } from './health-metrics';
import type { HealthHistory } from '../state/types';

export interface HealthPublishDeps {
  /** The health history (the state backend's `health`). */
  history: HealthHistory;
  /** Client used to signal the per-service workflows; without one, results are only recorded. */
  client?: Client;
  /** Task queue the per-service workflows run on; default: this activity's own task queue. */
  taskQueue?: string;
  /** Recompute a service's figures at most this often, ms; default 60000. */
  figuresEveryMs?: number;
  /** Signals in flight at once; default 50. */
  signalConcurrency?: number;
  /** Clock for figures, epoch ms; default Date.now. */
  now?: () => number;
  /** Prometheus metrics to update (see `registerHealthMetrics`). */
  metrics?: HealthMetrics;
  /**
   * A steady service (healthy, nothing counted, no alert open) whose probe
   * passes again is not signalled, except at least this often, ms (jittered
   * +-25% per service); default 120000. 0 signals every observation.
   */
  keepaliveMs?: number;
}

/** One service of a sweep, as published. */
export interface PublishItem {
  result: ProbeResult;
  /** The sweep's dependency-aware status. */
  status: HealthStatus;
  rootCauses?: string[];
  impacts?: string[];
  failureThreshold: number;
  successThreshold: number;
  /** How long the result stands for in availability, ms (twice the check interval). */
  validityMs: number;
  slaAvailability?: number;
}

export interface PublishSweepInput {
  sweepId: string;
  /** Every service of the registry the sweep snapshotted (the metrics of any other are dropped). */
  items: PublishItem[];
  /** Passed to the per-service workflows: status turns unknown after this long without a sweep, ms. */
  staleAfterMs?: number;
}

/** One shard's part of a sweep, as `publishShards` takes it. */
export interface ShardPageItem {
  shard: number;
  /** The shard's services in the sweep's registry, in order. */
  ids: string[];
  /** One character per id (see `ShardObservations.verdicts`). */
  verdicts: string;
  /** Latency per id, ms (for the metrics; not sent to the shard). */
  latencies: number[];
  thresholds: [number, number];
  thresholdsOf?: Record<string, [number, number]>;
  /** Details of the services whose result is more than a plain pass, with the sweep's status of each. */
  notable?: Record<string, ShardNotable & { status: HealthStatus }>;
}

export interface PublishShardsInput {
  sweepId: string;
  /** Epoch ms the sweep's probes started. */
  at: number;
  /** Status turns unknown after this long without a sweep, ms. */
  staleAfterMs: number;
  shards: ShardPageItem[];
  /** The shards `[from, to)` this page speaks for: one in the range but not in `shards` has no member left. */
  shardRange?: [number, number];
  /** A page of the sweep gave no ids: shards keep members not listed. */
  partial?: boolean;
  /** Results not yet in the health history (Make checks); the probe pages recorded theirs. */
  record?: { result: ProbeResult; validityMs: number }[];
  /** Availability targets (`sla.availability`) of the page's services that set one. */
  sla?: Record<string, number>;
}

export function createHealthPublishActivities(deps: HealthPublishDeps) {
  const now = deps.now ?? Date.now;
  const every = deps.figuresEveryMs ?? 60_000;
  const limit = pLimit(deps.signalConcurrency ?? 50);
  const figuresLimit = pLimit(8);
  const lastFigures = new Map<string, HealthFigures>();
  const keepaliveMs = deps.keepaliveMs ?? 120_000;
  if (!(keepaliveMs >= 0)) throw new RangeError(`createHealthPublishActivities: keepaliveMs must be >= 0, got ${keepaliveMs}`);
  /** What this process last learnt of each service's workflow (process-local; see applySkippedPass for several workers). */
  const known = new Map<string, { steady: boolean; passRun: number; lastSweepId: string; sentAt: number; figuresAt?: number; skippedPassAt?: number }>();
  const jitter = (id: string) => {
    let h = 2166136261;
    for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 16777619);
    return 0.75 + ((h >>> 0) % 1000) / 2000;
  };
  if (!deps.history) throw new RangeError('createHealthPublishActivities: deps.history (the state backend\'s health history) is required');
  const s = deps.history;

  /** Figures last sent to a shard per service (process-local): unchanged figures are not sent again. */
  const sentFigures = new Map<string, string>();
  /**
   * Figures compared at 2 significant digits (the HDR histograms' own precision; availability
   * near 100 % to 0.001 %): a percentile drifting by less than 1 % is not history written again.
   */
  const sameFigures = (f: HealthFigures) =>
    JSON.stringify([f.p50Ms, f.p95Ms, f.p99Ms, f.errorRate24h, f.availability['1h'], f.availability['24h'], f.availability['7d'], f.availability['30d'], f.slaAvailability].map((v) => (v === undefined ? null : Number(v.toPrecision(v >= 99 && v <= 100 ? 6 : 2)))));
  /**
   * What this process last sent each shard: while every member passes plainly, the shard
   * is steady in this process's view after `successThreshold` such messages in a row, and
   * further all-pass sweeps are not sent except as a keepalive; the next message carries
   * the latest skipped sweep (`skippedPassAt`).
   */
  /** Services this process has put into the metrics (to name those a page's shards no longer hold). */
  const inMetrics = new Set<string>();
  /** Shards this process has told (or found) to hold no member. */
  const emptyKnown = new Set<string>();
  const shardsKnown = new Map<string, { members: string; plainRun: number; sentAt: number; lastSweepId: string; skippedPassAt?: number }>();

  return {
    /**
     * Publishes one page of a sweep to its shards (`healthShard` workflows, by
     * signal-with-start): for each shard one message with its members, one
     * verdict character each, the details of notable results, and the figures
     * that changed since this process last sent them (recomputed at most every
     * `figuresEveryMs`). Updates the Prometheus metrics. Idempotent per sweep:
     * a shard ignores a sweep id it has applied.
     */
    async publishShards(input: PublishShardsInput): Promise<{ shards: number; skipped: number; services: number; figures: number }> {
      if (input.record?.length) {
        const v = new Map(input.record.map((r) => [r.result.serviceId, r.validityMs]));
        await s.recordProbes(
          input.record.map((r) => r.result),
          (id) => v.get(id)!,
        );
      }
      const t = now();
      let services = 0;
      let figuresSent = 0;
      let skippedShards = 0;
      if (deps.metrics) {
        for (const sh of input.shards) {
          sh.ids.forEach((id, i) => {
            const code = sh.verdicts[i];
            if (code === '-') return;
            const n = sh.notable?.[id];
            const verdict = code === 'p' ? 'pass' : code === 'w' ? 'warn' : code === 'f' ? 'fail' : 'inconclusive';
            const status: HealthStatus = n?.status ?? (verdict === 'pass' ? 'healthy' : verdict === 'warn' ? 'degraded' : verdict === 'fail' ? 'unhealthy' : 'unknown');
            deps.metrics!.observe({ serviceId: id, verdict, latencyMs: sh.latencies[i] ?? 0, startedAt: n?.at ?? input.at }, status);
            inMetrics.add(id);
          });
        }
        // A page names whole shards: a service of these shards it does not name has left the
        // registry, and its series go; services of other shards are other pages' business.
        const pageShards = new Set(input.shards.map((sh) => sh.shard));
        if (input.shardRange) for (let k = input.shardRange[0]; k < input.shardRange[1]; k++) pageShards.add(k);
        const keep = new Set<string>();
        for (const sh of input.shards) for (const id of sh.ids) keep.add(id);
        for (const id of inMetrics) {
          if (keep.has(id)) continue;
          if (!input.partial && pageShards.has(shardOf(id))) inMetrics.delete(id);
          else keep.add(id);
        }
        deps.metrics.sweepPublished(keep, input.at);
      }
      const client = deps.client;
      let taskQueue = deps.taskQueue;
      if (!taskQueue) {
        try {
          taskQueue = Context.current().info.taskQueue;
        } catch {
          throw new Error('publishShards: no taskQueue given and not running as an activity: pass taskQueue in HealthPublishDeps');
        }
      }
      await Promise.all(
        input.shards.map((sh) =>
          limit(async () => {
            const figures: Record<string, HealthFigures> = {};
            await Promise.all(
              sh.ids.map((id) =>
                figuresLimit(async () => {
                  const prev = lastFigures.get(id);
                  let f = prev;
                  if (!prev || t - prev.computedAt >= every) {
                    f = await s.figures(id, t, input.sla?.[id]);
                    lastFigures.set(id, f);
                    deps.metrics?.setFigures(id, f);
                  }
                  if (sentFigures.get(id) !== sameFigures(f!)) figures[id] = f!;
                }),
              ),
            );
            services += sh.ids.length;
            if (!client) return;
            const shardId = healthShardWorkflowId(taskQueue!, sh.shard);
            emptyKnown.delete(shardId);
            const members = JSON.stringify([sh.ids, sh.thresholds, sh.thresholdsOf ?? null]);
            const k = shardsKnown.get(shardId);
            const plain = !sh.notable && /^[pP]*$/.test(sh.verdicts) && Object.keys(figures).length === 0 && !input.partial;
            const need = Math.max(1, sh.thresholds[1], ...Object.values(sh.thresholdsOf ?? {}).map((t) => t[1]));
            if (plain && k && k.members === members && keepaliveMs > 0 && k.plainRun >= need && t - k.sentAt < keepaliveMs * jitter(shardId)) {
              k.skippedPassAt = Math.max(k.skippedPassAt ?? 0, input.at);
              skippedShards++;
              return;
            }
            const msg: ShardObservations = { sweepId: input.sweepId, at: input.at, ids: sh.ids, verdicts: sh.verdicts, thresholds: sh.thresholds, staleAfterMs: Math.max(input.staleAfterMs, Math.ceil(2.5 * keepaliveMs)) };
            if (sh.thresholdsOf && Object.keys(sh.thresholdsOf).length) msg.thresholdsOf = sh.thresholdsOf;
            if (sh.notable && Object.keys(sh.notable).length) {
              msg.notable = {};
              for (const [id, { status: _status, ...n }] of Object.entries(sh.notable)) msg.notable[id] = n;
            }
            if (Object.keys(figures).length) msg.figures = figures;
            if (input.partial) msg.partial = true;
            if (k?.skippedPassAt !== undefined) msg.skippedPassAt = k.skippedPassAt;
            await client.workflow.signalWithStart('healthShard', {
              workflowId: shardId,
              taskQueue: taskQueue!,
              args: [{ shard: sh.shard }],
              signal: healthShardObservationsSignal,
              signalArgs: [msg],
            });
            for (const [id, f] of Object.entries(figures)) sentFigures.set(id, sameFigures(f));
            figuresSent += Object.keys(figures).length;
            const passRun = !plain ? 0 : k?.lastSweepId === input.sweepId ? k.plainRun : (k?.members === members ? (k?.plainRun ?? 0) : 0) + 1;
            shardsKnown.set(shardId, { members, plainRun: passRun, sentAt: t, lastSweepId: input.sweepId });
          }),
        ),
      );
      // Shards of the range with no member left: told once per process (a plain signal: an
      // empty shard is not started), so services that left the registry leave `status`.
      if (client && input.shardRange && !input.partial) {
        const named = new Set(input.shards.map((sh) => sh.shard));
        const empty: number[] = [];
        for (let k = input.shardRange[0]; k < input.shardRange[1]; k++) {
          const shardId = healthShardWorkflowId(taskQueue!, k);
          if (!named.has(k) && !emptyKnown.has(shardId)) empty.push(k);
        }
        await Promise.all(
          empty.map((k) =>
            limit(async () => {
              const shardId = healthShardWorkflowId(taskQueue!, k);
              const msg: ShardObservations = { sweepId: input.sweepId, at: input.at, ids: [], verdicts: '', thresholds: [3, 2] };
              try {
                await client.workflow.getHandle(shardId).signal(healthShardObservationsSignal, msg);
              } catch (err) {
                if (!(err instanceof WorkflowNotFoundError)) throw err;
              }
              emptyKnown.add(shardId);
              shardsKnown.delete(shardId);
            }),
          ),
        );
      }
      return { shards: input.shards.length, skipped: skippedShards, services, figures: figuresSent };
    },

    /**
     * Records a sweep's results and signals every service's workflow.
     * Idempotent per sweep: the workflows ignore a sweep id they have seen;
     * the store extends spans, so a repeated record adds no up/down time
     * (latency samples may count twice on a retry).
     */
    async publishSweep(input: PublishSweepInput): Promise<{ recorded: number; signalled: number; skipped: number }> {
      const validity = new Map(input.items.map((i) => [i.result.serviceId, i.validityMs]));
      await s.recordProbes(
        input.items.map((i) => i.result),
        (id) => validity.get(id)!,
      );
      const t = now();
      // A sweep's items are the whole registry as it saw it: a service not among them has left it.
      const inSweep = new Set(input.items.map((i) => i.result.serviceId));
      for (const id of lastFigures.keys()) if (!inSweep.has(id)) lastFigures.delete(id);
      if (deps.metrics) {
        for (const i of input.items) deps.metrics.observe(i.result, i.status);
        if (input.items.length > 0) deps.metrics.sweepPublished(inSweep, input.items.reduce((m, i) => Math.min(m, i.result.startedAt), Infinity));
      }
      /** The service's figures, recomputed at most every `figuresEveryMs`. */
      const figuresOf = (item: PublishItem): HealthFigures => lastFigures.get(item.result.serviceId)!;
      // A few reads at once: on PostgreSQL each service's figures are a round trip or three.
      await Promise.all(
        input.items.map((item) =>
          figuresLimit(async () => {
            const id = item.result.serviceId;
            const prev = lastFigures.get(id);
            if (prev && t - prev.computedAt < every) return;
            const f = await s.figures(id, t, item.slaAvailability);
            lastFigures.set(id, f);
            deps.metrics?.setFigures(id, f);
          }),
        ),
      );
      const client = deps.client;
      if (!client) {
        return { recorded: input.items.length, signalled: 0, skipped: 0 };
      }
      let taskQueue = deps.taskQueue;
      if (!taskQueue) {
        try {
          taskQueue = Context.current().info.taskQueue;
        } catch {
          throw new Error('publishSweep: no taskQueue given and not running as an activity: pass taskQueue in HealthPublishDeps');
        }
      }
      let signalled = 0;
      let skipped = 0;
      const staleAfterMs = Math.max(input.staleAfterMs ?? 0, Math.ceil(2.5 * keepaliveMs));
      await Promise.all(
        input.items.map((item) =>
          limit(async () => {
            const r = item.result;
            const k = known.get(r.serviceId);
            const plainPass = r.verdict === 'pass' && !r.maintenance && !item.rootCauses?.length;
            if (plainPass && k?.steady && t - k.sentAt < keepaliveMs * jitter(r.serviceId)) {
              k.skippedPassAt = r.startedAt;
              skipped++;
              return;
            }
            const obs: ServiceObservationSignal = {
              sweepId: input.sweepId,
              at: r.startedAt,
              verdict: r.verdict,
              latencyMs: r.latencyMs,
              failureThreshold: item.failureThreshold,
              successThreshold: item.successThreshold,
            };
            if (r.failureKind) obs.failureKind = r.failureKind;
            if (r.detail) obs.detail = r.detail;
            if (r.credentialId && r.failureKind === 'credential_rejected') obs.credentialId = r.credentialId;
            if (r.certThresholdMs !== undefined) obs.certThresholdMs = r.certThresholdMs;
            if (r.maintenance) obs.maintenance = true;
            if (item.rootCauses?.length) obs.rootCauses = item.rootCauses;
            if (item.impacts?.length) obs.impacts = item.impacts;
            if (staleAfterMs > 0) obs.staleAfterMs = staleAfterMs;
            if (k?.skippedPassAt !== undefined) obs.skippedPassAt = k.skippedPassAt;
            const f = figuresOf(item);
            if (f.computedAt !== k?.figuresAt) obs.figures = f;
            await client.workflow.signalWithStart('serviceHealth', {
              workflowId: workflowIds.service(r.serviceId),
              taskQueue: taskQueue!,
              args: [{ serviceId: r.serviceId }],
              signal: healthObservationSignal,
              signalArgs: [obs],
            });
            // After successThreshold consecutive plain passes the workflow is steady whatever
            // state it was in (property-tested: test/health/domain.test.ts).
            const passRun = !plainPass ? 0 : k?.lastSweepId === input.sweepId ? k.passRun : (k?.passRun ?? 0) + 1;
            known.set(r.serviceId, {
              steady: keepaliveMs > 0 && passRun >= Math.max(1, item.successThreshold),
              passRun,
              lastSweepId: input.sweepId,
              sentAt: t,
              figuresAt: f.computedAt,
            });
            signalled++;
          }),
        ),
      );
      return { recorded: input.items.length, signalled, skipped };
    },
  };
}

export type HealthPublishActivities = ReturnType<typeof createHealthPublishActivities>;
