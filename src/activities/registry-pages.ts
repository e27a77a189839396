/**
 * The registry by reference, for sweeps of any size: a sweep learns only the
 * registry's version hash and size (`registryRef`), then each probe activity
 * reads its own page of services from the worker's registry
 * (`probeRegistryPage`), checks the version, probes them, records the
 * results in the health history, and answers in a compact form (one
 * character per verdict, details only for results that say more than a
 * pass). No payload grows with the fleet: a page is at most 1,000 services.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { effectiveHealthCheck, probeTarget, type ProbeResult } from '../domain/health';
import { VERDICT_CODES } from '../domain/health-shard';
import type { Registry } from '../domain/registry';
import type { HealthHistory } from '../state/types';
import type { ProbeBatchInput } from './probes';
import type { VersionedRegistry } from './registry';

/** Most services one page may hold (bounds the activity's input and result). */
export const MAX_REGISTRY_PAGE = 1000;

/** What a sweep needs to know of the registry before probing: a reference, not the services. */
export interface RegistryRef {
  versionHash: string;
  /** Services in the registry (pages are index ranges of `services`). */
  services: number;
  /** The longest `healthCheck.timeout` of any service, ms (bounds the probe activities' deadlines). */
  maxTimeoutMs: number;
  /** Ids of `type: make` services (checked through Make's API, not probed over HTTP). */
  make: string[];
}

export interface ProbeRegistryPageInput {
  registryVersion: string;
  /** Index range `[from, to)` of the registry's services. */
  from: number;
  to: number;
  /** Probes in flight at once in this activity. */
  concurrency: number;
  /** The sweep interval, ms: a result stands for 2 x max(check interval, this) in availability. */
  intervalMs: number;
  /** Leave `type: make` services unprobed (verdict `-`): the sweep checks them through Make's API. */
  skipMake?: boolean;
}

/** One page of probe results, compact. */
export interface ProbeRegistryPage {
  /** The page's service ids, in registry order. */
  ids: string[];
  /** `dependsOn` of the page's services that have any. */
  dependsOn?: Record<string, string[]>;
  /** One character per id: `p` pass, `P` pass with HTTP 200, `w` warn, `f` fail, `i` inconclusive, `-` not probed here. */
  verdicts: string;
  /** Latency per id, ms, rounded to 0.1. */
  latencies: number[];
  /** Earliest probe start, epoch ms. */
  at: number;
  /** Full results of the services whose result says more than a plain pass. */
  notable?: Record<string, ProbeResult>;
  /** failureThreshold and successThreshold per id, when any differs from [3, 2]. */
  thresholds?: Record<string, [number, number]>;
  /** `sla.availability` of the services that set one. */
  sla?: Record<string, number>;
}

/** Is this result more than a plain pass (so its details must travel)? */
export function isNotable(r: ProbeResult): boolean {
  return r.verdict !== 'pass' || r.maintenance === true || r.failureKind !== undefined || r.detail !== undefined || r.certDaysLeft !== undefined || (r.status !== undefined && r.status !== 200);
}

export interface RegistryPageDeps {
  registry: VersionedRegistry;
  /** The probe activity's batch prober (heartbeats and resumes its results). */
  probe(input: ProbeBatchInput): Promise<ProbeResult[]>;
  history: HealthHistory;
}

function registryOf(deps: RegistryPageDeps, versionHash: string): Registry {
  const r = deps.registry.byVersion(versionHash);
  if (!r) {
    throw ApplicationFailure.nonRetryable(
      `registry version ${versionHash} is not known to this worker (its registry is ${deps.registry.current().versionHash}): the registry changed during the sweep; the next sweep reads the new one`,
      'RegistryVersionGone',
    );
  }
  return r;
}

export function createRegistryPageActivities(deps: RegistryPageDeps) {
  return {
    /** The registry in force now, by reference: version hash, size, longest timeout, Make services. */
    async registryRef(): Promise<RegistryRef> {
      const r = deps.registry.current();
      let maxTimeoutMs = 0;
      for (const s of r.services) maxTimeoutMs = Math.max(maxTimeoutMs, effectiveHealthCheck(s).timeout);
      return { versionHash: r.versionHash, services: r.services.length, maxTimeoutMs: maxTimeoutMs || 2000, make: r.services.filter((s) => s.type === 'make').map((s) => s.id) };
    },

    /**
     * The ids (and `dependsOn`) of services `[from, to)` of registry version
     * `registryVersion`, without probing: names the services of a page whose
     * probe activity failed, so the sweep reports them `unknown`.
     * @throws non-retryable `RegistryVersionGone` (see probeRegistryPage).
     */
    async registryPageIds(input: { registryVersion: string; from: number; to: number }): Promise<Pick<ProbeRegistryPage, 'ids' | 'dependsOn' | 'thresholds' | 'sla'>> {
      if (!(input.to > input.from && input.to - input.from <= MAX_REGISTRY_PAGE)) {
        throw ApplicationFailure.nonRetryable(`registryPageIds: a page is 1..${MAX_REGISTRY_PAGE} services, got [${input.from}, ${input.to})`, 'InvalidPage');
      }
      const services = registryOf(deps, input.registryVersion).services.slice(input.from, input.to);
      const out: Pick<ProbeRegistryPage, 'ids' | 'dependsOn' | 'thresholds' | 'sla'> = { ids: services.map((s) => s.id) };
      for (const s of services) {
        if (s.sla?.availability !== undefined) (out.sla ??= {})[s.id] = s.sla.availability;
        if (s.dependsOn.length) (out.dependsOn ??= {})[s.id] = s.dependsOn;
        const c = effectiveHealthCheck(s);
        if (c.failureThreshold !== 3 || c.successThreshold !== 2) (out.thresholds ??= {})[s.id] = [c.failureThreshold, c.successThreshold];
      }
      return out;
    },

    /**
     * Probes services `[from, to)` of registry version `registryVersion`,
     * records every result in the health history and returns them compact.
     * @throws non-retryable `RegistryVersionGone` when this worker no longer
     *   has that version (the registry changed during the sweep);
     *   RangeError for a page over {@link MAX_REGISTRY_PAGE}.
     */
    async probeRegistryPage(input: ProbeRegistryPageInput): Promise<ProbeRegistryPage> {
      if (!(input.to > input.from && input.to - input.from <= MAX_REGISTRY_PAGE)) {
        throw ApplicationFailure.nonRetryable(`probeRegistryPage: a page is 1..${MAX_REGISTRY_PAGE} services, got [${input.from}, ${input.to})`, 'InvalidPage');
      }
      const registry = registryOf(deps, input.registryVersion);
      const services = registry.services.slice(input.from, input.to);
      const probed = services.filter((s) => !(input.skipMake && s.type === 'make'));
      const results = probed.length ? await deps.probe({ targets: probed.map((s) => probeTarget(s)), concurrency: input.concurrency }) : [];
      const checks = new Map(services.map((s) => [s.id, effectiveHealthCheck(s)]));
      await deps.history.recordProbes(results, (id) => 2 * Math.max(checks.get(id)!.interval, input.intervalMs));
      const byId = new Map(results.map((r) => [r.serviceId, r]));
      const at = results.reduce((m, r) => Math.min(m, r.startedAt), results[0]?.startedAt ?? Date.now());
      const page: ProbeRegistryPage = { ids: [], verdicts: '', latencies: [], at };
      const notable: Record<string, ProbeResult> = {};
      const dependsOn: Record<string, string[]> = {};
      const thresholds: Record<string, [number, number]> = {};
      for (const s of services) {
        page.ids.push(s.id);
        if (s.dependsOn.length) dependsOn[s.id] = s.dependsOn;
        const c = checks.get(s.id)!;
        if (c.failureThreshold !== 3 || c.successThreshold !== 2) thresholds[s.id] = [c.failureThreshold, c.successThreshold];
        if (s.sla?.availability !== undefined) (page.sla ??= {})[s.id] = s.sla.availability;
        const r = byId.get(s.id);
        page.verdicts += !r ? '-' : r.verdict === 'pass' && r.status === 200 ? 'P' : VERDICT_CODES[r.verdict];
        page.latencies.push(r ? Math.round(r.latencyMs * 10) / 10 : 0);
        if (r && isNotable(r)) notable[s.id] = r;
      }
      if (Object.keys(notable).length) page.notable = notable;
      if (Object.keys(dependsOn).length) page.dependsOn = dependsOn;
      if (Object.keys(thresholds).length) page.thresholds = thresholds;
      return page;
    },
  };
}

export type RegistryPageActivities = ReturnType<typeof createRegistryPageActivities>;
