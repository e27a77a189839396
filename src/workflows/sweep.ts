/**
 * `healthSweep`: one pass over every service in the registry snapshot. Probes
 * run in chunk activities (each probing its services in parallel and
 * heartbeating results as they come), at most `concurrency` probes in flight overall;
 * the dependency graph then turns failures into `unhealthy` roots and
 * `impacted` dependents. Started by the Temporal Schedule (`schedule apply`)
 * or on demand by `runSweep`.
 */
import { ApplicationFailure, patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  classifySweep,
  inconclusiveResult,
  probeTarget,
  type HealthStatus,
  type ProbeFailureKind,
  type ProbeResult,
  type ProbeTarget,
  type ProbeVerdict,
} from '../domain/health';

export interface HealthSweepInput {
  /** Probes in flight at once, 1..1000; default 50. */
  concurrency?: number;
  /**
   * Services per probe activity, 1..1000; default min(250, ceil(services / lanes)).
   * 1 = one activity per service (measured slower: see docs/health.md).
   */
  chunkSize?: number;
  /** Probes in flight inside one activity, 1..1000; default min(25, concurrency, chunkSize). */
  activityConcurrency?: number;
  /** Record the results (history store, per-service status workflows); default true. */
  publish?: boolean;
  /** The schedule's interval, ms (set by `schedule apply`); results stand for twice this in availability. Default 30000. */
  intervalMs?: number;
}

/** One service in a sweep's result. */
export interface SweepServiceResult {
  id: string;
  status: HealthStatus;
  verdict: ProbeVerdict;
  latencyMs: number;
  /** For `impacted`: the first failing service at the root of its dependencies. */
  rootCause?: string;
  rootCauses?: string[];
  /** For an `unhealthy` root cause: every service depending on it. */
  impacts?: string[];
  failureKind?: ProbeFailureKind;
  detail?: string;
  httpStatus?: number;
  certDaysLeft?: number;
}

export interface HealthSweepResult {
  workflowId: string;
  registryVersion: string;
  /** ISO time the sweep started (workflow time). */
  startedAt: string;
  /** Sweep wall time, ms (workflow time). */
  durationMs: number;
  services: SweepServiceResult[];
  counts: Record<HealthStatus, number>;
}

export const DEFAULT_SWEEP_CONCURRENCY = 50;
/** Probes in flight inside one activity by default (a lane). */
export const DEFAULT_ACTIVITY_CONCURRENCY = 25;
/** Most services one activity probes by default (bounds a retry's and a heartbeat's size). */
export const DEFAULT_MAX_CHUNK = 250;

const { snapshotRegistry } = proxyActivities<Activities>({ startToCloseTimeout: '30s', retry: { maximumAttempts: 5 } });
const { publishSweep } = proxyActivities<Activities>({ startToCloseTimeout: '2m', retry: { maximumAttempts: 3 } });

function intOption(name: string, value: unknown, dflt: number, max: number): number {
  if (value === undefined) return dflt;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw ApplicationFailure.nonRetryable(`healthSweep: option ${name} must be an integer in 1..${max}, got ${JSON.stringify(value)}`, 'InvalidOption');
  }
  return value;
}

/** Splits targets into chunks of `size`. */
function chunk<T>(xs: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += size) out.push(xs.slice(i, i + size));
  return out;
}

export async function healthSweep(input: HealthSweepInput = {}): Promise<HealthSweepResult> {
  const concurrency = intOption('concurrency', input.concurrency, DEFAULT_SWEEP_CONCURRENCY, 1000);
  const chunkOpt = input.chunkSize === undefined ? undefined : intOption('chunkSize', input.chunkSize, 1, 1000);
  const perActivityOpt = input.activityConcurrency === undefined ? undefined : intOption('activityConcurrency', input.activityConcurrency, 1, 1000);
  const intervalMs = intOption('intervalMs', input.intervalMs, 30_000, 86_400_000);
  const t0 = Date.now();
  const registry = await snapshotRegistry();
  const targets: ProbeTarget[] = registry.services.map((s) => probeTarget(s));
  // Make services are checked through Make's API (token, connections, scenarios, hooks), after
  // the others so a scenario can be marked impacted by the services its connections stand for.
  // `patched`: sweeps begun before this change probed them over plain HTTP; they replay that way.
  const makeIds = registry.services.filter((s) => s.type === 'make').map((s) => s.id);
  const makeAware = makeIds.length > 0 && patched('make-health-checks');
  const probed = makeAware ? targets.filter((t) => !makeIds.includes(t.id)) : targets;
  // Lanes: activities in flight at once, each keeping `perActivity` probes busy
  // (a pool, not rounds), so the sweep pays one activity round trip per lane
  // rather than one per probe.
  const perActivity = Math.min(perActivityOpt ?? DEFAULT_ACTIVITY_CONCURRENCY, concurrency, chunkOpt ?? Infinity);
  const lanes = Math.max(1, Math.floor(concurrency / perActivity));
  const chunkSize = chunkOpt ?? Math.max(1, Math.min(DEFAULT_MAX_CHUNK, Math.ceil(probed.length / lanes)));
  const chunks = chunk(probed, chunkSize);
  const results = new Map<string, ProbeResult>();

  let next = 0;
  const lane = async () => {
    while (next < chunks.length) {
      const batch = chunks[next++]!;
      const maxTimeoutMs = Math.max(...batch.map((t) => t.check.timeout));
      const inside = Math.min(perActivity, batch.length);
      // Each probe is bounded by its own timeout; the activity gets its rounds' worth plus slack,
      // and heartbeats its results as they come (at most once a second).
      const { probeServices } = proxyActivities<Activities>({
        startToCloseTimeout: Math.ceil(batch.length / inside) * maxTimeoutMs + 15_000,
        heartbeatTimeout: maxTimeoutMs + 10_000,
        retry: { maximumAttempts: 3, initialInterval: '1s' },
      });
      try {
        for (const r of await probeServices({ targets: batch, concurrency: inside })) results.set(r.serviceId, r);
      } catch (err) {
        // The prober failed, not the services: their results are inconclusive, never healthy.
        const cause = (err as { cause?: Error }).cause ?? (err as Error);
        const why = `no probe result: ${cause.message}`.slice(0, 200);
        for (const t of batch) results.set(t.id, inconclusiveResult(t.id, Date.now(), why));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(lanes, chunks.length) }, lane));
  if (makeAware) {
    // Make's per-minute API limit can make these checks slow: a generous deadline, heartbeats per service.
    const { probeMakeServices } = proxyActivities<Activities>({ startToCloseTimeout: '5m', heartbeatTimeout: '60s', retry: { maximumAttempts: 3, initialInterval: '1s' } });
    const unhealthyServices = [...results.values()].filter((r) => r.verdict === 'fail').map((r) => r.serviceId);
    try {
      for (const r of await probeMakeServices({ serviceIds: makeIds, unhealthyServices })) results.set(r.serviceId, r);
    } catch (err) {
      const cause = (err as { cause?: Error }).cause ?? (err as Error);
      for (const id of makeIds) results.set(id, inconclusiveResult(id, Date.now(), `no Make check result: ${cause.message}`.slice(0, 200)));
    }
  }

  const classified = classifySweep(registry.services, results);
  const counts = { healthy: 0, degraded: 0, unhealthy: 0, impacted: 0, unknown: 0, maintenance: 0 } as Record<HealthStatus, number>;
  const services: SweepServiceResult[] = registry.services.map((s) => {
    const r = results.get(s.id) ?? inconclusiveResult(s.id, t0, 'no probe result');
    const c = classified.get(s.id)!;
    counts[c.status]++;
    const out: SweepServiceResult = { id: s.id, status: c.status, verdict: r.verdict, latencyMs: Math.round(r.latencyMs * 10) / 10 };
    if (c.rootCauses?.length) {
      out.rootCause = c.rootCauses[0]!;
      out.rootCauses = c.rootCauses;
    }
    if (c.impacts?.length) out.impacts = c.impacts;
    if (r.failureKind) out.failureKind = r.failureKind;
    if (r.detail) out.detail = r.detail;
    if (r.status !== undefined) out.httpStatus = r.status;
    if (r.certDaysLeft !== undefined) out.certDaysLeft = r.certDaysLeft;
    return out;
  });

  if (input.publish !== false) {
    const byId = new Map(targets.map((t) => [t.id, t]));
    await publishSweep({
      sweepId: workflowInfo().workflowId,
      staleAfterMs: 3 * intervalMs + 60_000,
      items: registry.services.map((s) => {
        const t = byId.get(s.id)!;
        const c = classified.get(s.id)!;
        return {
          result: results.get(s.id) ?? inconclusiveResult(s.id, t0, 'no probe result'),
          status: c.status,
          ...(c.rootCauses?.length ? { rootCauses: c.rootCauses } : {}),
          ...(c.impacts?.length ? { impacts: c.impacts } : {}),
          failureThreshold: t.check.failureThreshold,
          successThreshold: t.check.successThreshold,
          validityMs: 2 * Math.max(t.check.interval, intervalMs),
          ...(s.sla?.availability !== undefined ? { slaAvailability: s.sla.availability } : {}),
        };
      }),
    });
  }

  return {
    workflowId: workflowInfo().workflowId,
    registryVersion: registry.versionHash,
    startedAt: new Date(t0).toISOString(),
    durationMs: Date.now() - t0,
    services,
    counts,
  };
}
