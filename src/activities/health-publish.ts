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
import type { Client } from '@temporalio/client';
import { Context } from '@temporalio/activity';
import pLimit from 'p-limit';
import { workflowIds } from '../domain/constants';
import type { HealthFigures, HealthStatus, ProbeResult } from '../domain/health';
import { healthObservationSignal, type ServiceObservationSignal } from '../workflows/service-health';
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

  return {
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
