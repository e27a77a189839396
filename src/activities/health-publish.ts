/**
 * `publishSweep`: after a sweep has judged every service, record the results
 * in the health store (long history) and hand each service's observation, with
 * its fresh figures, to its `service/<id>` workflow by signal-with-start.
 */
import type { Client } from '@temporalio/client';
import { Context } from '@temporalio/activity';
import pLimit from 'p-limit';
import { workflowIds } from '../domain/constants';
import type { HealthFigures, HealthStatus, ProbeResult } from '../domain/health';
import { healthObservationSignal, type ServiceObservationSignal } from '../workflows/service-health';
import type { HealthMetrics } from './health-metrics';
import { openHealthStore, type HealthStore } from './health-store';

export interface HealthPublishDeps {
  /** Folder of the embedded database. */
  dataDir: string;
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
  items: PublishItem[];
  /** Passed to the per-service workflows: status turns unknown after this long without a sweep, ms. */
  staleAfterMs?: number;
}

export function createHealthPublishActivities(deps: HealthPublishDeps) {
  const now = deps.now ?? Date.now;
  const every = deps.figuresEveryMs ?? 60_000;
  const limit = pLimit(deps.signalConcurrency ?? 50);
  const lastFigures = new Map<string, HealthFigures>();
  let store: HealthStore | undefined;
  const getStore = () => (store ??= openHealthStore(deps.dataDir));

  return {
    /**
     * Records a sweep's results and signals every service's workflow.
     * Idempotent per sweep: the workflows ignore a sweep id they have seen;
     * the store extends spans, so a repeated record adds no up/down time
     * (latency samples may count twice on a retry).
     */
    async publishSweep(input: PublishSweepInput): Promise<{ recorded: number; signalled: number }> {
      const s = getStore();
      const validity = new Map(input.items.map((i) => [i.result.serviceId, i.validityMs]));
      s.recordProbes(
        input.items.map((i) => i.result),
        (id) => validity.get(id)!,
      );
      const t = now();
      if (deps.metrics) for (const i of input.items) deps.metrics.observe(i.result, i.status);
      const figuresOf = (item: PublishItem): HealthFigures | undefined => {
        const id = item.result.serviceId;
        const prev = lastFigures.get(id);
        if (prev && t - prev.computedAt < every) return undefined;
        const f = s.figures(id, t, item.slaAvailability);
        lastFigures.set(id, f);
        deps.metrics?.setFigures(id, f);
        return f;
      };
      const client = deps.client;
      if (!client) {
        for (const item of input.items) figuresOf(item);
        return { recorded: input.items.length, signalled: 0 };
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
      await Promise.all(
        input.items.map((item) =>
          limit(async () => {
            const r = item.result;
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
            if (r.maintenance) obs.maintenance = true;
            if (item.rootCauses?.length) obs.rootCauses = item.rootCauses;
            if (item.impacts?.length) obs.impacts = item.impacts;
            if (input.staleAfterMs) obs.staleAfterMs = input.staleAfterMs;
            const f = figuresOf(item);
            if (f) obs.figures = f;
            await client.workflow.signalWithStart('serviceHealth', {
              workflowId: workflowIds.service(r.serviceId),
              taskQueue: taskQueue!,
              args: [{ serviceId: r.serviceId }],
              signal: healthObservationSignal,
              signalArgs: [obs],
            });
            signalled++;
          }),
        ),
      );
      return { recorded: input.items.length, signalled };
    },
  };
}

export type HealthPublishActivities = ReturnType<typeof createHealthPublishActivities>;
