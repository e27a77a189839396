/**
 * What a worker checks of its cluster before it polls, and what `doctor`
 * reports: the namespace's search attributes (created when the server lets
 * us, otherwise the exact commands to run), and the other processes polling
 * the task queue, whose identities carry the fingerprints of their codec keys
 * (the encrypting one first), their state instance id and where they count
 * cluster-wide limits (`host:pid codec=<fp1>+<fp2> state=<id8> limits=<store>`).
 *
 * Each function makes a bounded number of calls, each under its own deadline,
 * and returns findings; the caller decides whether a finding stops a worker or
 * is printed by `doctor`. Nothing here logs or exits.
 */
import { createHash } from 'node:crypto';
import type { ConnectionLike } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { SEARCH_ATTRIBUTES, type SearchAttributeName } from '../domain/constants';

/** Deadline of each call to the server unless told otherwise. */
export const DEFAULT_CALL_TIMEOUT_MS = 10_000;
/**
 * A poller last seen longer ago than this is taken for gone. The server
 * remembers pollers for minutes; an idle live worker re-polls at least once
 * per long poll (about 60 s).
 */
export const LIVE_POLLER_WINDOW_MS = 70_000;

/**
 * The parts of a worker identity `host:pid codec=<fp1>+<fp2> state=<id8> limits=<store>`.
 *
 * Identities of this version always state `limits=` and list every codec key
 * they hold after `codec=`, the encrypting one first. Earlier ones
 * (`host:pid codec=<fingerprint> state=<id8>`) named only the encrypting key:
 * for them `codecKeys` stays undefined (what else they hold is unknown).
 */
export interface WorkerIdentity {
  /** `host:pid`: stable per process, the breaker quorum reporter id. */
  process: string;
  /** Fingerprint of the encrypting codec key (`k` + 16 hex), when the poller says. */
  codec?: string;
  /** Fingerprints of every codec key the poller holds, the encrypting one first, when it lists them. */
  codecKeys?: string[];
  /** First 8 characters of the state instance id, when the poller says. */
  state?: string;
  /** Where the poller counts cluster-wide limits ({@link limitsStore}), when it says. */
  limits?: string;
}

/**
 * Formats a worker's Temporal identity. `state` is shortened to its first 8
 * characters; `codecKeys` (when given) are written after the encrypting key,
 * joined by `+`.
 */
export function formatWorkerIdentity(id: WorkerIdentity): string {
  const keys = id.codec || id.codecKeys?.length ? [...new Set([...(id.codec ? [id.codec] : []), ...(id.codecKeys ?? [])])] : [];
  return [id.process, keys.length ? `codec=${keys.join('+')}` : '', id.state ? `state=${id.state.slice(0, 8)}` : '', id.limits ? `limits=${id.limits}` : ''].filter(Boolean).join(' ');
}

/**
 * Parses an identity written by {@link formatWorkerIdentity} (or by an earlier
 * version, see {@link WorkerIdentity}); any other identity is all `process`.
 */
export function parseWorkerIdentity(identity: string): WorkerIdentity {
  const parts = identity.trim().split(/\s+/);
  const out: WorkerIdentity = { process: parts[0] ?? '' };
  for (const p of parts.slice(1)) {
    if (p.startsWith('codec=')) {
      const keys = p.slice(6).split('+').filter(Boolean);
      if (keys.length === 0) continue;
      out.codec = keys[0];
      if (keys.length > 1) out.codecKeys = keys;
    } else if (p.startsWith('state=')) out.state = p.slice(6);
    else if (p.startsWith('limits=')) out.limits = p.slice(7);
    else out.process += ` ${p}`;
  }
  // Stating its limits store marks an identity of this version: its one key is all it holds.
  if (out.limits && out.codec && !out.codecKeys) out.codecKeys = [out.codec];
  return out;
}

/**
 * Where a process with this configuration counts cluster-wide limits, as
 * its identity states it (the choice of src/state/admission `openClusterLimiter`):
 * `redis:<8 hex>` when `redisUrl` is set (SHA-256 of its `host:port/db`,
 * lower-cased, default port 6379 and db 0: never the user or password),
 * else `pg` when `databaseUrl` is (the state database, which `state=` names),
 * else `local` (per process).
 */
export function limitsStore(config: { databaseUrl?: string; redisUrl?: string }): string {
  if (config.redisUrl) {
    let where: string;
    try {
      const u = new URL(config.redisUrl);
      const db = /^\/(\d+)/.exec(u.pathname)?.[1] ?? '0';
      where = `${u.hostname.toLowerCase()}:${u.port || '6379'}/${Number(db)}`;
    } catch {
      where = config.redisUrl.replace(/^.*@/, ''); // unparsable (the store will refuse it at start): still no credentials
    }
    return `redis:${createHash('sha256').update(where).digest('hex').slice(0, 8)}`;
  }
  return config.databaseUrl ? 'pg' : 'local';
}

/** What a {@link limitsStore} label means, for messages. */
export function describeLimitsStore(label: string): string {
  if (label === 'local') return 'per process (no INTEGRATION_AGENT_REDIS_URL nor INTEGRATION_AGENT_DATABASE_URL)';
  if (label === 'pg') return 'in the PostgreSQL database of INTEGRATION_AGENT_DATABASE_URL';
  if (label.startsWith('redis:')) return `in the Redis server of INTEGRATION_AGENT_REDIS_URL (${label})`;
  return label;
}

/** How to rotate codec keys without a worker ever writing what another cannot read. */
export const CODEC_KEY_ROTATION_ORDER =
  'To rotate codec keys: first add the new key to INTEGRATION_AGENT_CODEC_KEYS on every worker and client as a decryption key, listed after the current one ("current:…,new:…"), and restart them; ' +
  'then make it first everywhere ("new:…,current:…"); drop the old key only once no workflow history needs it.';

/** Time-bound `fn`: the call fails with DEADLINE_EXCEEDED after `timeoutMs`. */
function bounded<T>(connection: ConnectionLike, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  return connection.withDeadline(Date.now() + timeoutMs, fn);
}

const firstLine = (err: unknown) => {
  const e = err as { details?: string; message?: string };
  return String(e?.details || e?.message || err).split('\n')[0]!;
};

/** The server behind a connection, as `doctor` shows it. */
export interface ServerInfo {
  reachable: boolean;
  /** Server version when the server tells (`getSystemInfo`). */
  serverVersion?: string;
  /** Whether the namespace answers `describeNamespace`. */
  namespaceFound: boolean;
  /** The server said the namespace does not exist (gRPC NOT_FOUND), as opposed to another failure. */
  namespaceMissing?: boolean;
  /** What failed, when something did. */
  error?: string;
}

/**
 * Whether the server answers and knows the namespace.
 * @param opts.timeoutMs deadline of each call (default {@link DEFAULT_CALL_TIMEOUT_MS}).
 */
export async function describeServer(connection: ConnectionLike, namespace: string, opts: { timeoutMs?: number } = {}): Promise<ServerInfo> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  let serverVersion: string | undefined;
  try {
    const info = await bounded(connection, timeoutMs, () => connection.workflowService.getSystemInfo({}));
    serverVersion = info.serverVersion || undefined;
  } catch (err) {
    return { reachable: false, namespaceFound: false, error: firstLine(err) };
  }
  try {
    await bounded(connection, timeoutMs, () => connection.workflowService.describeNamespace({ namespace }));
    return { reachable: true, serverVersion, namespaceFound: true };
  } catch (err) {
    return { reachable: true, serverVersion, namespaceFound: false, ...((err as { code?: number }).code === 5 ? { namespaceMissing: true } : {}), error: firstLine(err) };
  }
}

/** The search-attribute check's findings. */
export interface SearchAttributeReport {
  namespace: string;
  /** Ours that the namespace has, with the right type. */
  present: SearchAttributeName[];
  /** Ours that the namespace lacks (after creation, when it was attempted and worked: empty). */
  missing: SearchAttributeName[];
  /** Ours this check created. */
  created: SearchAttributeName[];
  /** Ours present with another type than Keyword: rename or recreate them by hand. */
  wrongType: { name: SearchAttributeName; type: string }[];
  /** Why listing or creating failed (server's words, first line), when it did. */
  error?: string;
  /** Whether the list itself could be read; when false, `present`/`missing` are unknown (both empty). */
  listed: boolean;
  /** One shell command per missing attribute: `temporal operator search-attribute create --namespace NS --name X --type Keyword`. */
  commands: string[];
}

const KEYWORD = temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
const typeName = (t: number | null | undefined) => (temporal.api.enums.v1.IndexedValueType[t ?? 0] ?? String(t)).replace(/^INDEXED_VALUE_TYPE_/, '');

/** The commands an operator runs to create `names` in `namespace` (one line each). */
export function searchAttributeCommands(namespace: string, names: readonly string[]): string[] {
  return names.map((n) => `temporal operator search-attribute create --namespace ${namespace} --name ${n} --type ${SEARCH_ATTRIBUTES[n as SearchAttributeName] ?? 'Keyword'}`);
}

async function listCustom(connection: ConnectionLike, namespace: string, timeoutMs: number): Promise<Record<string, number>> {
  const r = await bounded(connection, timeoutMs, () => connection.operatorService.listSearchAttributes({ namespace }));
  return Object.fromEntries(Object.entries(r.customAttributes ?? {}).map(([k, v]) => [k, Number(v)]));
}

/**
 * Lists the namespace's custom search attributes against {@link SEARCH_ATTRIBUTES}
 * and, when `create` is set, adds the missing ones (OperatorService
 * AddSearchAttributes), then waits (bounded) until the server lists them.
 *
 * @param opts.create try to create missing attributes (worker start; `doctor` only reports).
 * @param opts.timeoutMs deadline of each call (default {@link DEFAULT_CALL_TIMEOUT_MS}).
 * @returns findings; never throws for server errors (they land in `error`).
 */
export async function checkSearchAttributes(
  connection: ConnectionLike,
  namespace: string,
  opts: { create?: boolean; timeoutMs?: number } = {},
): Promise<SearchAttributeReport> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const ours = Object.keys(SEARCH_ATTRIBUTES) as SearchAttributeName[];
  const report: SearchAttributeReport = { namespace, present: [], missing: [], created: [], wrongType: [], listed: false, commands: [] };
  let custom: Record<string, number>;
  try {
    custom = await listCustom(connection, namespace, timeoutMs);
  } catch (err) {
    report.error = `cannot list the search attributes of namespace ${namespace}: ${firstLine(err)}`;
    return report;
  }
  report.listed = true;
  for (const name of ours) {
    if (!(name in custom)) report.missing.push(name);
    else if (custom[name] !== KEYWORD) report.wrongType.push({ name, type: typeName(custom[name]) });
    else report.present.push(name);
  }
  if (opts.create && report.missing.length > 0) {
    const wanted = [...report.missing];
    try {
      await bounded(connection, timeoutMs, () =>
        connection.operatorService.addSearchAttributes({ namespace, searchAttributes: Object.fromEntries(wanted.map((n) => [n, KEYWORD])) }),
      );
      // The frontend serves attributes from a cache: wait (bounded) until it lists them.
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const now = await listCustom(connection, namespace, timeoutMs);
        if (wanted.every((n) => n in now)) break;
        if (Date.now() > deadline) throw new Error(`created, but the server still does not list ${wanted.filter((n) => !(n in now)).join(', ')} after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 200));
      }
      report.created = wanted;
      report.present.push(...wanted);
      report.missing = [];
    } catch (err) {
      // Another worker starting at the same moment may have created them first ("already exists"): look again.
      const now = await listCustom(connection, namespace, timeoutMs).catch(() => ({}) as Record<string, number>);
      if (wanted.every((n) => now[n] === KEYWORD)) {
        report.present.push(...wanted);
        report.missing = [];
      } else report.error = `cannot create search attributes ${wanted.join(', ')} in namespace ${namespace}: ${firstLine(err)}`;
    }
  }
  report.commands = searchAttributeCommands(namespace, report.missing);
  return report;
}

/** Whether the report leaves workflows unable to upsert their attributes. */
export function searchAttributesProblem(report: SearchAttributeReport): string | undefined {
  if (report.missing.length > 0) {
    return [
      `namespace ${report.namespace} lacks the search attribute${report.missing.length > 1 ? 's' : ''} ${report.missing.join(', ')}, which this project's workflows set (their workflow tasks would fail with BadSearchAttributes and never progress)${report.error ? `; ${report.error}` : ''}.`,
      'Create them as an operator of that namespace, then start the worker:',
      ...report.commands.map((c) => `  ${c}`),
      '(Temporal Cloud: tcld namespace search-attributes add, or the Cloud UI, with the same names and type Keyword.)',
    ].join('\n');
  }
  if (report.wrongType.length > 0) {
    return `namespace ${report.namespace} has ${report.wrongType.map((w) => `${w.name} as ${w.type}`).join(', ')}; this project needs them as Keyword. Remove and recreate them (temporal operator search-attribute remove/create), or use another namespace.`;
  }
  return undefined;
}

/** One process polling a task queue, as the server saw it. */
export interface Poller extends WorkerIdentity {
  /** The identity as reported. */
  identity: string;
  /** Which kinds of tasks it polls. */
  kinds: ('workflow' | 'activity')[];
  /** Milliseconds since the server last saw it poll. */
  lastSeenMsAgo?: number;
}

/**
 * The pollers of a task queue seen within `windowMs` (workflow and activity task queues, merged by identity).
 * @param opts.windowMs pollers seen longer ago are dropped (default {@link LIVE_POLLER_WINDOW_MS}).
 * @param opts.timeoutMs deadline of each call.
 * @throws the server's error when the task queue cannot be described.
 */
export async function listPollers(
  connection: ConnectionLike,
  namespace: string,
  taskQueue: string,
  opts: { windowMs?: number; timeoutMs?: number; now?: number } = {},
): Promise<Poller[]> {
  const windowMs = opts.windowMs ?? LIVE_POLLER_WINDOW_MS;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const T = temporal.api.enums.v1.TaskQueueType;
  const byIdentity = new Map<string, Poller>();
  for (const [kind, type] of [
    ['workflow', T.TASK_QUEUE_TYPE_WORKFLOW],
    ['activity', T.TASK_QUEUE_TYPE_ACTIVITY],
  ] as const) {
    const r = await bounded(connection, timeoutMs, () =>
      connection.workflowService.describeTaskQueue({
        namespace,
        taskQueue: { name: taskQueue, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
        taskQueueType: type,
      }),
    );
    const now = opts.now ?? Date.now();
    for (const p of r.pollers ?? []) {
      const identity = p.identity ?? '';
      const seenAt = p.lastAccessTime?.seconds != null ? Number(p.lastAccessTime.seconds) * 1000 + Math.floor((p.lastAccessTime.nanos ?? 0) / 1e6) : undefined;
      const ago = seenAt === undefined ? undefined : Math.max(0, now - seenAt);
      if (ago !== undefined && ago > windowMs) continue;
      const known = byIdentity.get(identity);
      if (known) {
        known.kinds.push(kind);
        if (ago !== undefined && (known.lastSeenMsAgo === undefined || ago < known.lastSeenMsAgo)) known.lastSeenMsAgo = ago;
      } else byIdentity.set(identity, { identity, ...parseWorkerIdentity(identity), kinds: [kind], lastSeenMsAgo: ago });
    }
  }
  return [...byIdentity.values()].sort((a, b) => a.identity.localeCompare(b.identity));
}

/** This process, as the agreement check compares it with the pollers. */
export interface SelfIdentity {
  /** This process's identity (pollers with the very same identity are this process). */
  identity?: string;
  /** Fingerprint of this process's encrypting codec key. */
  codec: string;
  /** Fingerprints of every key this process decrypts with (a poller encrypting with any of them is readable here). */
  codecFingerprints: ReadonlySet<string>;
  /** This process's state instance id (full or first 8 characters), when known. */
  state?: string;
  /** Where this process counts cluster-wide limits ({@link limitsStore}), when known. */
  limits?: string;
}

/**
 * A disagreement between this process and a poller: `codec`, the poller
 * encrypts with a key this process lacks; `codec-unheld`, the poller lacks
 * the key this process encrypts with; `state`, another state instance;
 * `limits`, another store for cluster-wide limits.
 */
export interface Disagreement {
  kind: 'codec' | 'codec-unheld' | 'state' | 'limits';
  poller: Poller;
  /** What is wrong and what to do, in one paragraph. */
  message: string;
}

const seen = (p: Poller) => (p.lastSeenMsAgo === undefined ? '' : ` (last seen ${Math.round(p.lastSeenMsAgo / 1000)} s ago)`);

/**
 * Which live pollers of `taskQueue` this process cannot work beside: one
 * encrypting with a codec key this process does not hold (its payloads
 * would fail to decode here), one that does not hold the key this process
 * encrypts with (ours would fail to decode there: a rotation done in the
 * wrong order), one on another state instance (two embedded data dirs on one
 * task queue diverge), or one counting cluster-wide limits in another store
 * (each store would admit the full limit). Pollers that do not say (older
 * versions, other programs) are not judged on what they do not say.
 */
export function disagreements(self: SelfIdentity, pollers: readonly Poller[], taskQueue: string): Disagreement[] {
  const out: Disagreement[] = [];
  const myState = self.state?.slice(0, 8);
  for (const p of pollers) {
    if (self.identity && p.identity === self.identity) continue;
    if (p.codec && p.codec !== self.codec && !self.codecFingerprints.has(p.codec)) {
      out.push({
        kind: 'codec',
        poller: p,
        message:
          `another worker polls task queue "${taskQueue}" with a different codec key: "${p.identity}"${seen(p)} encrypts with codec=${p.codec}, this process with codec=${self.codec} and does not hold ${p.codec}. ` +
          `Two processes with different keys on one task queue fail each other's workflow tasks (the payloads cannot be decoded). ` +
          `Every worker and client must share INTEGRATION_AGENT_CODEC_KEYS (and INTEGRATION_AGENT_MASTER_KEY): set the same values everywhere and restart; ` +
          `if that worker has stopped, start this one again after ${Math.round(LIVE_POLLER_WINDOW_MS / 1000)} s.`,
      });
    }
    if (p.codecKeys && self.codec && !p.codecKeys.includes(self.codec)) {
      out.push({
        kind: 'codec-unheld',
        poller: p,
        message:
          `another worker polls task queue "${taskQueue}" without the key this process encrypts with: "${p.identity}"${seen(p)} holds codec=${p.codecKeys.join('+')} only, and this process encrypts with ${self.codec}: ` +
          `every payload written here would fail to decode there. ${CODEC_KEY_ROTATION_ORDER} ` +
          `Until every worker holds ${self.codec}, start this one with the current key first.`,
      });
    }
    if (myState && p.state && p.state !== myState) {
      out.push({
        kind: 'state',
        poller: p,
        message:
          `another worker polls task queue "${taskQueue}" on another state store: "${p.identity}"${seen(p)} has state=${p.state}, this process state=${myState}. ` +
          `Workers on separate embedded data dirs would each keep their own credential versions and audit trail and diverge. ` +
          `Set INTEGRATION_AGENT_DATABASE_URL (PostgreSQL) to the same database on every worker, or give each embedded data dir's deployment a Temporal namespace of its own (TEMPORAL_NAMESPACE): workflow ids (service/<id>, breaker/<id>, rotation/<id>) are unique per namespace, so a separate task queue alone is not enough.`,
      });
    }
    if (self.limits && p.limits && p.limits !== self.limits) {
      out.push({
        kind: 'limits',
        poller: p,
        message:
          `another worker polls task queue "${taskQueue}" counting cluster-wide limits elsewhere: "${p.identity}"${seen(p)} counts limits in limits=${p.limits}, this process in limits=${self.limits} ` +
          `(${describeLimitsStore(p.limits)}, against ${describeLimitsStore(self.limits)}). ` +
          `Each store admits the full rate limits, maxConcurrent and Make organisation limit, so a service would receive them several times over. ` +
          `Set INTEGRATION_AGENT_REDIS_URL and INTEGRATION_AGENT_DATABASE_URL the same on every worker (both set, or the same one, or neither) and restart.`,
      });
    }
  }
  return out;
}
