/**
 * Health state in shards: every service's durable status, hysteresis counters
 * and alert decision live in one of {@link HEALTH_SHARDS} `healthShard`
 * workflows per task queue (`health/<taskQueue>/<shard>`), chosen by a hash
 * of the service id. A sweep sends each shard one message per pass: its
 * members in order, one verdict character each, and details only for the
 * services whose result says more than "pass" (failures, warnings,
 * maintenance, failing dependencies) or whose figures changed. The rules are
 * `applyObservation`'s (src/domain/health.ts), applied service by service.
 *
 * Why shards and not one workflow per service: measured in docs/health.md
 * ("Status state at scale") — a cached workflow costs a V8 context's worth of
 * memory whatever it holds, and a pass per service per sweep was a signal
 * (and ~0.9 KB of history) each; a shard costs the same per workflow but holds
 * ~80 services at 10,000, and a pass costs one character.
 *
 * Pure: no clock, no I/O (workflow code imports it).
 */
import {
  applyObservation,
  applySkippedPass,
  initialServiceHealth,
  markStale,
  type Alert,
  type HealthFigures,
  type HealthObservation,
  type HealthStatus,
  type ProbeVerdict,
  type ServiceHealthState,
} from './health';

/**
 * Shards per task queue. Fixed: a service's shard must not move while its
 * state lives there. 128 keeps a shard's state (carried across
 * continue-as-new, answered by one query) near 300 KB at 100,000 services
 * (~780 per shard at ~350 B), below the 512 KB payload warning.
 */
export const HEALTH_SHARDS = 128;

/** FNV-1a 32-bit of a string (UTF-16 code units), as an unsigned integer. */
export function fnv1a(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** The shard (0..HEALTH_SHARDS-1) holding `serviceId`'s state. */
export function shardOf(serviceId: string, shards = HEALTH_SHARDS): number {
  return fnv1a(serviceId) % shards;
}

/** Workflow id of a shard: `health/<taskQueue>/<shard>` (one set of shards per task queue, i.e. per deployment). */
export function healthShardWorkflowId(taskQueue: string, shard: number): string {
  return `health/${taskQueue}/${shard}`;
}

/** One character per verdict in {@link ShardObservations.verdicts}; `-` = no result this pass (left as it is). */
export const VERDICT_CODES: Readonly<Record<ProbeVerdict, string>> = { pass: 'p', warn: 'w', fail: 'f', inconclusive: 'i' };
const CODE_VERDICTS: Readonly<Record<string, ProbeVerdict>> = { p: 'pass', w: 'warn', f: 'fail', i: 'inconclusive' };

/**
 * Details of one service's observation beyond its verdict (only sent when
 * there are some): the optional fields of {@link HealthObservation}, with
 * `at` (default the message's `at`) and `latencyMs` optional too.
 */
export type ShardNotable = Partial<
  Pick<HealthObservation, 'at' | 'latencyMs' | 'failureKind' | 'detail' | 'rootCauses' | 'impacts' | 'maintenance' | 'certThresholdMs' | 'credentialId'>
>;

/** One sweep's word on every member of a shard (signal `healthShardObservations`). */
export interface ShardObservations {
  /** The sweep's workflow id: a message of a sweep already applied is ignored (retried publish). */
  sweepId: string;
  /** Epoch ms the sweep started: the time of the observations without a `notable.at`. */
  at: number;
  /** Every service of this shard in the sweep's registry, in order; a service held but not listed has left the registry and is dropped. */
  ids: string[];
  /** One character per id: `p` pass, `w` warn, `f` fail, `i` inconclusive, `-` no result. */
  verdicts: string;
  /** failureThreshold and successThreshold of most members. */
  thresholds: [number, number];
  /** Members whose thresholds differ from `thresholds`. */
  thresholdsOf?: Record<string, [number, number]>;
  /** Details for members whose result is more than a plain pass. */
  notable?: Record<string, ShardNotable>;
  /** Fresh figures, only for members whose figures changed since the sender last sent them. */
  figures?: Record<string, HealthFigures>;
  /** Status turns `unknown` when no message arrives for this long, ms. */
  staleAfterMs?: number;
  /** Some of the sweep's pages gave no ids (a probe activity failed): members not listed are kept, not dropped. */
  partial?: boolean;
  /**
   * The latest sweep start (epoch ms) at which the sender skipped this shard
   * because every member passed and the shard was steady in its view: applied
   * first, as a pass, to every member that has seen nothing later (`applySkippedPass`).
   */
  skippedPassAt?: number;
}

/** A shard's state (carried across continue-as-new). */
export interface HealthShardState {
  shard: number;
  /** Per service; `recentSweeps` is kept empty (the shard deduplicates whole messages). */
  services: Record<string, ServiceHealthState>;
  /** Last few sweep ids applied. */
  recentSweeps: string[];
  /** Epoch ms of the latest message applied. */
  lastMessageAt?: number;
  staleAfterMs: number;
  /** Latest `seq` applied per monitor lane ({@link ShardResults}); absent until the first. */
  senders?: Record<string, number>;
}

const RECENT = 16;

/** Copies a message's details of one service into its observation (only the fields set; a credential only with `credential_rejected`). */
function withNotable(obs: HealthObservation, n: ShardNotable | undefined): void {
  if (!n) return;
  if (n.failureKind) obs.failureKind = n.failureKind;
  if (n.detail) obs.detail = n.detail;
  if (n.rootCauses?.length) obs.rootCauses = n.rootCauses;
  if (n.impacts?.length) obs.impacts = n.impacts;
  if (n.maintenance) obs.maintenance = true;
  if (n.certThresholdMs !== undefined) obs.certThresholdMs = n.certThresholdMs;
  if (n.credentialId && n.failureKind === 'credential_rejected') obs.credentialId = n.credentialId;
}

/** An empty shard. */
export function initialShardState(shard: number, staleAfterMs = 300_000): HealthShardState {
  return { shard, services: {}, recentSweeps: [], staleAfterMs };
}

/**
 * Applies one sweep's message: each listed member's observation through
 * `applyObservation` (a member not held yet starts from `initialServiceHealth`),
 * members not listed are dropped, a `-` verdict leaves the member as it is.
 * A pass without details keeps the member's previous latency in `last`.
 * @param now epoch ms (workflow time) for new members' `since`.
 * @returns the next state and the alerts decided (in member order).
 */
export function applyShardObservations(state: HealthShardState, msg: ShardObservations, now: number): { state: HealthShardState; alerts: Alert[] } {
  if (state.recentSweeps.includes(msg.sweepId)) return { state, alerts: [] };
  const services: Record<string, ServiceHealthState> = msg.partial ? { ...state.services } : {};
  const alerts: Alert[] = [];
  for (let i = 0; i < msg.ids.length; i++) {
    const id = msg.ids[i]!;
    let prev = state.services[id] ?? initialServiceHealth(id, now);
    if (msg.skippedPassAt !== undefined && state.services[id]) {
      const [f, s] = msg.thresholdsOf?.[id] ?? msg.thresholds;
      prev = { ...applySkippedPass(prev, msg.skippedPassAt, { failureThreshold: f, successThreshold: s }), recentSweeps: [] };
    }
    const verdict = CODE_VERDICTS[msg.verdicts[i] ?? '-'];
    const figures = msg.figures?.[id];
    if (!verdict) {
      services[id] = figures ? { ...prev, figures } : prev;
      continue;
    }
    const n = msg.notable?.[id];
    const [failureThreshold, successThreshold] = msg.thresholdsOf?.[id] ?? msg.thresholds;
    const obs: HealthObservation = { sweepId: msg.sweepId, at: n?.at ?? msg.at, verdict, latencyMs: n?.latencyMs ?? prev.last?.latencyMs ?? 0, failureThreshold, successThreshold };
    withNotable(obs, n);
    const r = applyObservation(prev, obs);
    const next = { ...r.state, recentSweeps: [] };
    services[id] = figures ? { ...next, figures } : next;
    alerts.push(...r.alerts);
  }
  return {
    state: {
      ...state,
      services,
      recentSweeps: [...state.recentSweeps, msg.sweepId].slice(-RECENT),
      lastMessageAt: msg.at,
      staleAfterMs: msg.staleAfterMs && msg.staleAfterMs > 0 ? msg.staleAfterMs : state.staleAfterMs,
    },
    alerts,
  };
}

/** `markStale` for every member: with no message for `staleAfterMs`, statuses turn `unknown`. */
export function markShardStale(state: HealthShardState, now: number): HealthShardState {
  let changed = false;
  const services: Record<string, ServiceHealthState> = {};
  for (const [id, s] of Object.entries(state.services)) {
    const m = markStale(s, now, state.staleAfterMs);
    if (m !== s) changed = true;
    services[id] = m;
  }
  return changed ? { ...state, services } : state;
}

/** Count of members per status. */
export function shardCounts(state: HealthShardState): Record<HealthStatus, number> {
  const counts = { healthy: 0, degraded: 0, unhealthy: 0, impacted: 0, unknown: 0, maintenance: 0 } as Record<HealthStatus, number>;
  for (const s of Object.values(state.services)) counts[s.status]++;
  return counts;
}

/**
 * Results a monitor lane publishes as they come (signal `healthShardResults`):
 * only the services it has something to say about, each with its own time.
 * Unlike {@link ShardObservations} (one sweep's word on every member), a
 * member not listed is left as it is, unless `members` is given.
 */
export interface ShardResults {
  /** The lane attempt that sent it (`<monitor workflow id>/lane-<i>#<attempt>`): with `seq`, a repeated message is ignored. */
  sender: string;
  /** Increases with every message of one sender to one shard. */
  seq: number;
  /** Epoch ms the message was sent (the shard's staleness clock). */
  at: number;
  /** Service ids of the results, in the order they were taken (an id may repeat). */
  ids: string[];
  /** One character per result: `p` pass, `w` warn, `f` fail, `i` inconclusive. */
  verdicts: string;
  /** Epoch ms each probe started. */
  ats: number[];
  /** Latency per result, ms. */
  latencies: number[];
  /** failureThreshold and successThreshold of most services. */
  thresholds: [number, number];
  thresholdsOf?: Record<string, [number, number]>;
  /** Details of results that say more than a plain pass, by index into `ids`. */
  notable?: Record<number, ShardNotable>;
  /** Every service of this shard in the sender's registry: members not listed are dropped. */
  members?: string[];
  /** Services whose probe is overdue: status `unknown` with this detail (e.g. "no result for 12 s"), no alert. */
  overdue?: Record<string, string>;
  /** Fresh figures of services whose figures changed since the sender last sent them. */
  figures?: Record<string, HealthFigures>;
  /** Status turns `unknown` when no message arrives for this long, ms. */
  staleAfterMs?: number;
}

/** Senders remembered per shard (a few windows' lanes). */
const RECENT_SENDERS = 16;

/**
 * Applies a lane's results: each result through `applyObservation` in order
 * (a member not held yet starts from `initialServiceHealth`), skipping a
 * result older than the member's latest (two windows' lanes overlap for the
 * length of a probe timeout); `members` drops the services not listed;
 * `overdue` turns members `unknown` (no alert: nothing says the service is down).
 * A message whose (sender, seq) was applied already is ignored.
 * @param now epoch ms (workflow time) for new members' `since`.
 * @returns the next state and the alerts decided (in result order).
 */
export function applyShardResults(state: HealthShardState, msg: ShardResults, now: number): { state: HealthShardState; alerts: Alert[] } {
  const senders = state.senders ?? {};
  if ((senders[msg.sender] ?? -1) >= msg.seq) return { state, alerts: [] };
  let services: Record<string, ServiceHealthState> = { ...state.services };
  if (msg.members) {
    const keep = new Set(msg.members);
    services = Object.fromEntries(Object.entries(services).filter(([id]) => keep.has(id)));
  }
  // Overdue marks first: a result in the same message came after the sender decided them.
  for (const [id, detail] of Object.entries(msg.overdue ?? {})) {
    const s = services[id];
    if (!s || s.status === 'unknown') continue;
    services[id] = { ...s, status: 'unknown', since: msg.at, last: s.last ? { ...s.last, detail } : { sweepId: `${msg.sender}#${msg.seq}`, at: msg.at, verdict: 'inconclusive', latencyMs: 0, detail } };
  }
  const alerts: Alert[] = [];
  for (let i = 0; i < msg.ids.length; i++) {
    const id = msg.ids[i]!;
    const verdict = CODE_VERDICTS[msg.verdicts[i] ?? '-'];
    if (!verdict) continue;
    const at = msg.ats[i] ?? msg.at;
    const prev = services[id] ?? initialServiceHealth(id, now);
    if (prev.last && prev.last.at > at) continue;
    const n = msg.notable?.[i];
    const [failureThreshold, successThreshold] = msg.thresholdsOf?.[id] ?? msg.thresholds;
    const obs: HealthObservation = { sweepId: `${msg.sender}#${msg.seq}/${i}`, at, verdict, latencyMs: msg.latencies[i] ?? 0, failureThreshold, successThreshold };
    withNotable(obs, n);
    const r = applyObservation(prev, obs);
    services[id] = { ...r.state, recentSweeps: [] };
    alerts.push(...r.alerts);
  }
  for (const [id, f] of Object.entries(msg.figures ?? {})) {
    const s = services[id];
    if (s) services[id] = { ...s, figures: f };
  }
  const nextSenders = { ...senders, [msg.sender]: msg.seq };
  const names = Object.keys(nextSenders);
  if (names.length > RECENT_SENDERS) for (const name of names.slice(0, names.length - RECENT_SENDERS)) delete nextSenders[name];
  return {
    state: {
      ...state,
      services,
      senders: nextSenders,
      lastMessageAt: Math.max(state.lastMessageAt ?? 0, msg.at),
      staleAfterMs: msg.staleAfterMs && msg.staleAfterMs > 0 ? msg.staleAfterMs : state.staleAfterMs,
    },
    alerts,
  };
}
