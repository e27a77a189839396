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
import type { ProbeRegistryPage } from '../activities/registry-pages';
import type { PublishShardsInput, ShardPageItem } from '../activities/health-publish';
import { HEALTH_SHARDS, shardOf, VERDICT_CODES, type ShardNotable } from '../domain/health-shard';
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
  /** Every service, or beyond MAX_RESULT_SERVICES services only those not healthy (see `omitted`). */
  services: SweepServiceResult[];
  counts: Record<HealthStatus, number>;
  /** Services counted in `counts` but not listed in `services` (healthy ones of a large fleet). */
  omitted?: number;
  /** Pages of services whose probe activity failed (their services have no result in this sweep). */
  probeFailures?: string[];
}

export const DEFAULT_SWEEP_CONCURRENCY = 50;
/** Probes in flight inside one activity by default (a lane). */
export const DEFAULT_ACTIVITY_CONCURRENCY = 25;
/** Most services one activity probes by default (bounds a retry's and a heartbeat's size). */
export const DEFAULT_MAX_CHUNK = 250;

const { registryRef, registryPageIds } = proxyActivities<Activities>({ startToCloseTimeout: '30s', retry: { maximumAttempts: 5, nonRetryableErrorTypes: ['RegistryVersionGone', 'InvalidPage'] } });
const { publishShards } = proxyActivities<Activities>({ startToCloseTimeout: '2m', retry: { maximumAttempts: 3 } });
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
  // The registry by reference and the status state in shards (issue 16): no payload grows with
  // the fleet. `patched`: sweeps begun before it snapshotted the whole registry; they replay that way.
  if (patched('sweep-by-reference')) return sweepByReference(input, { concurrency, chunkOpt, perActivityOpt, intervalMs });
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

/**
 * A fleet of at most this many services gets every service in a sweep
 * result's `services`; a larger one only those not healthy (at most
 * MAX_RESULT_SERVICES), the healthy ones counted in `omitted`: a healthy
 * service listed costs ~70 B of history per sweep, and `status` reads every
 * service anyway.
 */
export const LIST_ALL_UP_TO = 250;
/** Most entries in a sweep result's `services` (keeps the result under ~200 KB at any fleet size). */
export const MAX_RESULT_SERVICES = 2000;
/** Impacted services listed per root cause in results and alerts (the count is in the summary). */
export const MAX_IMPACTS_LISTED = 200;
/** Services per `publishShards` page (whole shards; bounds its input). */
const PUBLISH_PAGE = 1000;

/**
 * The sweep with the registry by reference: `registryRef` (version hash and
 * size), probe pages that read their services themselves
 * (`probeRegistryPage`: one character per verdict, details only for results
 * that say more than a pass), the dependency graph from the pages' ids and
 * `dependsOn`, then `publishShards` in pages of whole shards.
 */
async function sweepByReference(
  input: HealthSweepInput,
  o: { concurrency: number; chunkOpt?: number; perActivityOpt?: number; intervalMs: number },
): Promise<HealthSweepResult> {
  const t0 = Date.now();
  const ref = await registryRef();
  const makeIds = new Set(ref.make);
  const perActivity = Math.min(o.perActivityOpt ?? DEFAULT_ACTIVITY_CONCURRENCY, o.concurrency, o.chunkOpt ?? Infinity);
  const lanes = Math.max(1, Math.floor(o.concurrency / perActivity));
  const chunkSize = o.chunkOpt ?? Math.max(1, Math.min(DEFAULT_MAX_CHUNK, Math.ceil(ref.services / lanes)));
  const ranges: [number, number][] = [];
  for (let i = 0; i < ref.services; i += chunkSize) ranges.push([i, Math.min(ref.services, i + chunkSize)]);
  const pages: (ProbeRegistryPage | undefined)[] = new Array(ranges.length);
  const failures: string[] = [];
  let unnamed = 0;
  let next = 0;
  const lane = async () => {
    while (next < ranges.length) {
      const k = next++;
      const [from, to] = ranges[k]!;
      const inside = Math.min(perActivity, to - from);
      const { probeRegistryPage } = proxyActivities<Activities>({
        startToCloseTimeout: Math.ceil((to - from) / inside) * ref.maxTimeoutMs + 15_000,
        heartbeatTimeout: ref.maxTimeoutMs + 10_000,
        retry: { maximumAttempts: 3, initialInterval: '1s', nonRetryableErrorTypes: ['RegistryVersionGone', 'InvalidPage'] },
      });
      try {
        pages[k] = await probeRegistryPage({ registryVersion: ref.versionHash, from, to, concurrency: inside, intervalMs: o.intervalMs, skipMake: makeIds.size > 0 });
      } catch (err) {
        // The prober failed, not the services: their results are missing (never healthy), and
        // shards keep the members this sweep could not name.
        const cause = (err as { cause?: Error }).cause ?? (err as Error);
        const why = `no probe result: ${cause.message}`.slice(0, 200);
        try {
          const named = await registryPageIds({ registryVersion: ref.versionHash, from, to });
          const n = named.ids.length;
          pages[k] = { ...named, verdicts: 'i'.repeat(n), latencies: new Array<number>(n).fill(0), at: Date.now(), notable: Object.fromEntries(named.ids.map((id) => [id, inconclusiveResult(id, Date.now(), why)])) };
        } catch {
          failures.push(`services ${from}..${to - 1}: ${why}`);
          unnamed += to - from;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(lanes, ranges.length) }, lane));

  // Every service the pages named, in registry order, with its compact result.
  const ids: string[] = [];
  const nodes: { id: string; dependsOn: readonly string[] }[] = [];
  const verdictOf = new Map<string, ProbeVerdict | undefined>();
  const latencyOf = new Map<string, number>();
  const startOf = new Map<string, number>();
  const notable = new Map<string, ProbeResult>();
  const thresholdsOf = new Map<string, [number, number]>();
  const http200 = new Set<string>();
  const slaOf = new Map<string, number>();
  for (const p of pages) {
    if (!p) continue;
    p.ids.forEach((id, i) => {
      ids.push(id);
      nodes.push({ id, dependsOn: p.dependsOn?.[id] ?? [] });
      const code = p.verdicts[i];
      if (code === 'P') http200.add(id);
      verdictOf.set(id, code === 'p' || code === 'P' ? 'pass' : code === 'w' ? 'warn' : code === 'f' ? 'fail' : code === 'i' ? 'inconclusive' : undefined);
      latencyOf.set(id, p.latencies[i] ?? 0);
      const n = p.notable?.[id];
      startOf.set(id, n?.startedAt ?? p.at);
      if (n) notable.set(id, n);
      const th = p.thresholds?.[id];
      if (th) thresholdsOf.set(id, th);
      const sla = p.sla?.[id];
      if (sla !== undefined) slaOf.set(id, sla);
    });
  }
  const record: { result: ProbeResult; validityMs: number }[] = [];
  if (makeIds.size > 0) {
    // Make's per-minute API limit can make these checks slow: a generous deadline, heartbeats per service.
    const { probeMakeServices } = proxyActivities<Activities>({ startToCloseTimeout: '5m', heartbeatTimeout: '60s', retry: { maximumAttempts: 3, initialInterval: '1s' } });
    const unhealthyServices = ids.filter((id) => verdictOf.get(id) === 'fail');
    const wanted = ids.filter((id) => makeIds.has(id));
    let made: ProbeResult[];
    try {
      made = wanted.length ? await probeMakeServices({ serviceIds: wanted, unhealthyServices }) : [];
    } catch (err) {
      const cause = (err as { cause?: Error }).cause ?? (err as Error);
      made = wanted.map((id) => inconclusiveResult(id, Date.now(), `no Make check result: ${cause.message}`.slice(0, 200)));
    }
    for (const r of made) {
      verdictOf.set(r.serviceId, r.verdict);
      latencyOf.set(r.serviceId, Math.round(r.latencyMs * 10) / 10);
      startOf.set(r.serviceId, r.startedAt);
      notable.set(r.serviceId, r);
      record.push({ result: r, validityMs: 2 * o.intervalMs });
    }
  }

  const results = new Map<string, Pick<ProbeResult, 'verdict' | 'maintenance'>>();
  for (const id of ids) {
    const v = verdictOf.get(id);
    if (v) results.set(id, { verdict: v, ...(notable.get(id)?.maintenance ? { maintenance: true } : {}) });
  }
  const classified = classifySweep(nodes, results);
  const counts = { healthy: 0, degraded: 0, unhealthy: 0, impacted: 0, unknown: 0, maintenance: 0 } as Record<HealthStatus, number>;
  const services: SweepServiceResult[] = [];
  const listAll = ids.length <= LIST_ALL_UP_TO;
  let omitted = 0;
  for (const id of ids) {
    const c = classified.get(id)!;
    counts[c.status]++;
    if (!listAll && (c.status === 'healthy' || services.length >= MAX_RESULT_SERVICES)) {
      omitted++;
      continue;
    }
    const r = notable.get(id);
    const out: SweepServiceResult = { id, status: c.status, verdict: verdictOf.get(id) ?? 'inconclusive', latencyMs: latencyOf.get(id) ?? 0 };
    if (c.rootCauses?.length) {
      out.rootCause = c.rootCauses[0]!;
      out.rootCauses = c.rootCauses;
    }
    if (c.impacts?.length) out.impacts = c.impacts.slice(0, MAX_IMPACTS_LISTED);
    if (r?.failureKind) out.failureKind = r.failureKind;
    if (r?.detail) out.detail = r.detail;
    else if (!verdictOf.get(id)) out.detail = 'no probe result';
    if (r?.status !== undefined) out.httpStatus = r.status;
    else if (http200.has(id)) out.httpStatus = 200;
    if (r?.certDaysLeft !== undefined) out.certDaysLeft = r.certDaysLeft;
    services.push(out);
  }
  // Services of failed pages are unknown, though unnamed.
  counts.unknown += unnamed;

  if (input.publish !== false && ids.length > 0) {
    // Pages of whole shards, each shard's members in registry order.
    const byShard = new Map<number, string[]>();
    for (const id of ids) {
      const k = shardOf(id);
      (byShard.get(k) ?? byShard.set(k, []).get(k)!).push(id);
    }
    const staleAfterMs = 3 * o.intervalMs + 60_000;
    const at = ids.reduce((m, id) => Math.min(m, startOf.get(id) ?? Infinity), Infinity);
    const pagesOut: PublishShardsInput[] = [];
    let page: PublishShardsInput | undefined;
    let size = 0;
    // Contiguous shard ranges covering every shard, so a shard left empty (its services left
    // the registry) is told so by the page whose range holds it.
    for (let k = 0; k < HEALTH_SHARDS; k++) {
      const members = byShard.get(k) ?? [];
      if (!page || (members.length > 0 && size + members.length > PUBLISH_PAGE)) {
        if (page) page.shardRange![1] = k;
        page = { sweepId: workflowInfo().workflowId, at: Number.isFinite(at) ? at : t0, staleAfterMs, shards: [], shardRange: [k, HEALTH_SHARDS] };
        if (failures.length) page.partial = true;
        pagesOut.push(page);
        size = 0;
      }
      if (members.length === 0) continue;
      size += members.length;
      const item: ShardPageItem = { shard: k, ids: members, verdicts: '', latencies: [], thresholds: [3, 2] };
      for (const id of members) {
        const v = verdictOf.get(id);
        item.verdicts += v ? VERDICT_CODES[v] : '-';
        item.latencies.push(latencyOf.get(id) ?? 0);
        const th = thresholdsOf.get(id);
        if (th) (item.thresholdsOf ??= {})[id] = th;
        const sla = slaOf.get(id);
        if (sla !== undefined) (page.sla ??= {})[id] = sla;
        const c = classified.get(id)!;
        const r = notable.get(id);
        if (r || c.rootCauses?.length || c.impacts?.length) {
          const n: ShardNotable & { status: HealthStatus } = { status: c.status, at: startOf.get(id) ?? t0, latencyMs: latencyOf.get(id) ?? 0 };
          if (r?.failureKind) n.failureKind = r.failureKind;
          if (r?.detail) n.detail = r.detail;
          if (r?.maintenance) n.maintenance = true;
          if (r?.certThresholdMs !== undefined) n.certThresholdMs = r.certThresholdMs;
          if (r?.credentialId && r.failureKind === 'credential_rejected') n.credentialId = r.credentialId;
          if (c.rootCauses?.length) n.rootCauses = c.rootCauses;
          if (c.impacts?.length) n.impacts = c.impacts.slice(0, MAX_IMPACTS_LISTED);
          (item.notable ??= {})[id] = n;
        }
      }
      page.shards.push(item);
    }
    const forPage = new Set<string>();
    for (const p of pagesOut) {
      forPage.clear();
      for (const sh of p.shards) for (const id of sh.ids) forPage.add(id);
      const rec = record.filter((r) => forPage.has(r.result.serviceId));
      if (rec.length) p.record = rec;
    }
    // A few pages at once: each signals its shards (50 at a time on the worker).
    let nextPage = 0;
    const publisher = async () => {
      while (nextPage < pagesOut.length) await publishShards(pagesOut[nextPage++]!);
    };
    await Promise.all(Array.from({ length: Math.min(4, pagesOut.length) }, publisher));
  }

  const result: HealthSweepResult = {
    workflowId: workflowInfo().workflowId,
    registryVersion: ref.versionHash,
    startedAt: new Date(t0).toISOString(),
    durationMs: Date.now() - t0,
    services,
    counts,
  };
  if (omitted > 0) result.omitted = omitted;
  if (failures.length) result.probeFailures = failures.slice(0, 20);
  return result;
}
