/**
 * The dashboard's one gatherer: polls the fleet through a {@link FleetSource}
 * on a fixed cadence and keeps the latest snapshot, the short history the
 * page charts, and the subscribers (server-sent event streams) to tell what
 * changed. However many browsers are open, Temporal sees one poller: pages
 * read the snapshot this object holds, never the source.
 *
 * Only what the page shows is kept, and no secret value ever enters it: the
 * source's views carry ids, labels, statuses, figures and times.
 */
import pLimit from 'p-limit';
import type { BreakerInfo, BreakerSummary, CredentialSummary, RotationView, ServiceHealthView } from '../client';
import type { HealthStatus } from '../domain/health';
import type { Registry } from '../domain/registry';
import type { FleetSource } from './source';

/** One service as the page shows it (short keys: 10,000 of them go to each new page). */
export interface ServiceRow {
  id: string;
  status: HealthStatus;
  /** Epoch ms the status last changed; 0 when unknown. */
  since: number;
  rootCause?: string;
  /** Every failing service at the root of its dependencies, when more than one. */
  rootCauses?: string[];
  impacts: string[];
  dependsOn: string[];
  owner?: string;
  tags: string[];
  p50?: number;
  p95?: number;
  p99?: number;
  /** Availability in percent per window. */
  avail: { '1h'?: number; '24h'?: number; '7d'?: number; '30d'?: number };
  /** The SLA's availability target, percent. */
  sla?: number;
  /** Availability over 24 h below the SLA. */
  belowSla: boolean;
  breaker?: string;
  alertOpen: boolean;
  /** A warning incident is open (WARNING sent, not yet RESOLVED). */
  warningOpen?: boolean;
  lastProbe?: { at: number; verdict: string; latencyMs: number; failureKind?: string; detail?: string };
  workflowId: string;
}

/** A rotation as the page shows it: `progress` is the CLI progress bar's `progress` query. */
export interface RotationRow {
  workflowId: string;
  runId: string;
  executionStatus: string;
  /** The outcome once ended (completed, rolled_back, needs_attention, failed), else the running phase. */
  status: string;
  phase?: string;
  versionId?: string;
  batches?: string[][];
  services?: Array<{ id: string; role?: string; batch?: number; step: string; status: string; holds?: string; error?: string }>;
  graceEndsAt?: number;
  cause?: string;
}

export interface CredentialRow {
  id: string;
  issuer?: string;
  consumers: string[];
  current: string | null;
  pending: string | null;
  previous: string | null;
  /** Epoch ms the CURRENT version was created; age = now - this. */
  currentCreatedAt?: number;
  /** The registry's rotation interval, ms. */
  scheduleMs?: number;
  /** Next scheduled rotation, epoch ms. */
  nextRunAt?: number;
  schedulePaused?: boolean;
  rotation?: RotationRow;
}

export interface FleetSummary {
  services: number;
  byStatus: Record<HealthStatus, number>;
  belowSla: number;
  openBreakers: number;
  runningRotations: number;
  rotationsNeedingAttention: number;
}

export interface FleetSnapshot {
  /** Increases with every gather that changed something. */
  version: number;
  /** Epoch ms of the gather. */
  at: number;
  namespace: string;
  /** Temporal Web UI base URL for deep links, when known. */
  uiUrl?: string;
  sweepIntervalMs?: number;
  sweepPaused?: boolean;
  summary: FleetSummary;
  services: ServiceRow[];
  credentials: CredentialRow[];
  /** Reads that failed in the last gather, one line each (the page shows them). */
  errors: string[];
  /** Epoch ms of the last gather whose health read succeeded (0: none yet); older than `staleAfterMs` means the page shows old data. */
  readAt: number;
  /** The gatherer's poll period and the age of `readAt` past which the page marks itself stale, ms. */
  pollMs: number;
  staleAfterMs: number;
  /** The server's clock when this snapshot was served (the page measures `readAt`'s age against it). */
  serverNow?: number;
}

/** What changed since `from`: rows to replace, ids gone, and the small parts whole. */
export interface FleetDelta {
  from: number;
  version: number;
  at: number;
  services: ServiceRow[];
  removed: string[];
  summary: FleetSummary;
  credentials: CredentialRow[];
  sweepIntervalMs?: number;
  sweepPaused?: boolean;
  errors: string[];
  readAt: number;
}

export interface ServiceHistory {
  /** p50/p95/p99 in ms as the health store computed them (rolling 24 h), at each computation, oldest first. */
  latency: Array<{ at: number; p50?: number; p95?: number; p99?: number }>;
  /** Recent probe results, oldest first. */
  results: Array<{ at: number; verdict: string; latencyMs: number }>;
}

export interface ServiceDetail {
  service: ServiceRow;
  breaker?: Pick<BreakerInfo, 'state' | 'generation' | 'openUntilMs' | 'running' | 'workflowId'> & {
    failureRate: number;
    slowCallRate: number;
    calls: number;
    transitions: Array<{ at: number; from: string; to: string; reason: string }>;
  };
  history: ServiceHistory;
  /** Open alerts concerning this service. */
  alerts: Array<{ source: string; summary: string; since?: number }>;
  /** Credentials this service issues or consumes. */
  credentials: string[];
}

export interface GathererOptions {
  namespace: string;
  uiUrl?: string;
  /** Time between two gathers of health, breakers and rotations, ms; default 1000. */
  pollMs?: number;
  /** Time between two reads of the credential store and the Schedules, ms; default 15000 (each is a state-read workflow). */
  slowEveryMs?: number;
  /** Latency points kept per service; default 120. */
  latencyPoints?: number;
  /** Probe results kept per service (the uptime bar); default 60. */
  uptimeSlots?: number;
  /** Called when a gather fails as a whole (the last snapshot stays). */
  onError?: (err: unknown) => void;
}

const EMPTY_BY_STATUS = (): Record<HealthStatus, number> => ({ healthy: 0, degraded: 0, unhealthy: 0, impacted: 0, unknown: 0, maintenance: 0 });
const ATTENTION = new Set(['needs_attention', 'failed', 'rolled_back']);
const ENDED_BADLY = new Set(['FAILED', 'TERMINATED', 'TIMED_OUT', 'CANCELLED']);

/** With no stream open and no request for this long, ms, the gatherer polls at its slow rate. */
const IDLE_AFTER_MS = 60_000;

/** How long one breaker read serves every page asking for the same service's detail, ms. */
const BREAKER_CACHE_MS = 1000;

const oneLine = (err: unknown) => ((err as Error)?.message ?? String(err)).split('\n')[0]!;

/** The shared poller behind every page. */
export class FleetGatherer {
  private readonly pollMs: number;
  /** Age of the last good health read past which the page says it shows old data: 3 polls, at least 10 s. */
  private readonly staleAfterMs: number;
  private readAt = 0;
  private readonly slowEveryMs: number;
  private readonly latencyPoints: number;
  private readonly uptimeSlots: number;
  private current: FleetSnapshot;
  private rowJson = new Map<string, string>();
  private credJson = '';
  private readonly latency = new Map<string, ServiceHistory['latency']>();
  private readonly results = new Map<string, ServiceHistory['results']>();
  private readonly listeners = new Set<(d: FleetDelta) => void>();
  private credentials: CredentialSummary[] = [];
  private schedules = new Map<string, { nextRunAt?: number; paused: boolean }>();
  private sweep: { intervalMs?: number; paused?: boolean } = {};
  private readonly createdAt = new Map<string, number>();
  private lastSlow = -Infinity;
  private lastRotationStatus = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private idleWait = false;
  private lastDemand = Date.now();
  private loop: (() => Promise<void>) | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Breaker reads for the detail, shared by every page for {@link BREAKER_CACHE_MS}. */
  private readonly breakerReads = new Map<string, { at: number; read: Promise<BreakerInfo> }>();
  private firstGather: Promise<void>;
  private resolveFirst!: () => void;

  constructor(
    readonly source: FleetSource,
    private readonly opts: GathererOptions,
  ) {
    this.pollMs = opts.pollMs ?? 1000;
    // setTimeout takes at most 2^31-1 ms; an hour is already a page nobody would call live.
    if (!Number.isFinite(this.pollMs) || this.pollMs < 50 || this.pollMs > 3_600_000) throw new RangeError(`--poll must be from 50ms to 1h, got ${opts.pollMs}ms`);
    this.staleAfterMs = Math.max(3 * this.pollMs, 10_000);
    this.slowEveryMs = opts.slowEveryMs ?? 15_000;
    this.latencyPoints = opts.latencyPoints ?? 120;
    this.uptimeSlots = opts.uptimeSlots ?? 60;
    this.current = {
      version: 0,
      at: 0,
      namespace: opts.namespace,
      uiUrl: opts.uiUrl,
      summary: { services: 0, byStatus: EMPTY_BY_STATUS(), belowSla: 0, openBreakers: 0, runningRotations: 0, rotationsNeedingAttention: 0 },
      services: [],
      credentials: [],
      errors: [],
      readAt: 0,
      pollMs: this.pollMs,
      staleAfterMs: this.staleAfterMs,
    };
    this.firstGather = new Promise((r) => (this.resolveFirst = r));
  }

  /**
   * Starts polling (the first gather at once). With no page open or asking
   * for {@link IDLE_AFTER_MS}, it polls only every `slowEveryMs` until
   * {@link touch} says someone looks again (a `dev` left running with no
   * browser costs Temporal almost nothing).
   */
  start(): void {
    if (this.loop) return;
    const loop = (this.loop = async () => {
      if (this.stopped) return;
      this.timer = undefined;
      this.idleWait = false;
      const t0 = Date.now();
      this.running = this.gather()
        .catch((err) => this.opts.onError?.(err))
        .finally(() => this.resolveFirst());
      await this.running;
      this.running = undefined;
      if (this.stopped) return;
      const idle = this.listeners.size === 0 && Date.now() - this.lastDemand > IDLE_AFTER_MS;
      this.idleWait = idle;
      this.timer = setTimeout(loop, Math.max(0, (idle ? this.slowEveryMs : this.pollMs) - (Date.now() - t0)));
    });
    void loop();
  }

  /** Someone looks (a request or a stream): poll at the normal rate again, at once when idle. */
  touch(): void {
    this.lastDemand = Date.now();
    if (this.idleWait && this.timer && this.loop) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.idleWait = false;
      void this.loop();
    }
  }

  /** Stops polling; waits for a gather in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.listeners.clear();
    await this.running;
  }

  /** Resolves after the first gather ended (successfully or not). */
  ready(): Promise<void> {
    return this.firstGather;
  }

  /** The latest snapshot (the same object until the next change). */
  snapshot(): FleetSnapshot {
    return this.current;
  }

  /** Calls `fn` with every change from now on; returns the unsubscribe function. */
  subscribe(fn: (d: FleetDelta) => void): () => void {
    this.listeners.add(fn);
    this.touch();
    return () => this.listeners.delete(fn);
  }

  /** How many streams listen (for tests and the log). */
  get subscribers(): number {
    return this.listeners.size;
  }

  /** One service's detail: its row, breaker with transitions, history, open alerts. Undefined for an id the fleet lacks. */
  async detail(serviceId: string): Promise<ServiceDetail | undefined> {
    const service = this.current.services.find((s) => s.id === serviceId);
    if (!service) return undefined;
    const out: ServiceDetail = {
      service,
      history: { latency: this.latency.get(serviceId) ?? [], results: this.results.get(serviceId) ?? [] },
      alerts: [],
      credentials: this.current.credentials.filter((c) => c.issuer === serviceId || c.consumers.includes(serviceId)).map((c) => c.id),
    };
    if (service.warningOpen) out.alerts.push({ source: 'health', summary: `warning: ${serviceId} is or was degraded (not resolved yet)` });
    if (service.alertOpen) out.alerts.push({ source: 'health', summary: `${serviceId} is ${service.status}${service.rootCause && service.rootCause !== serviceId ? ` (root cause: ${service.rootCause})` : ''}`, since: service.since || undefined });
    if (service.warningOpen) out.alerts.push({ source: 'health', summary: `${serviceId}: warning${service.lastProbe?.verdict === 'warn' && service.lastProbe.detail ? ` (${service.lastProbe.detail})` : ''}` });
    try {
      const b = await this.breakerRead(serviceId);
      out.breaker = {
        state: b.state,
        generation: b.generation,
        openUntilMs: b.openUntilMs,
        running: b.running,
        workflowId: b.workflowId,
        failureRate: b.rates.failureRate,
        slowCallRate: b.rates.slowCallRate,
        calls: b.rates.calls,
        transitions: b.transitions.slice(-10).map((t) => ({ at: t.atMs, from: String(t.from), to: String(t.to), reason: String(t.reason) })),
      };
      if (b.running && (b.state === 'OPEN' || b.state === 'FORCED_OPEN')) {
        const last = b.transitions[b.transitions.length - 1];
        out.alerts.push({ source: 'breaker', summary: `breaker ${b.state}${last ? ` (${last.reason})` : ''}`, since: last?.atMs });
      }
    } catch (err) {
      out.alerts.push({ source: 'dashboard', summary: `breaker state unavailable: ${oneLine(err)}` });
    }
    return out;
  }

  /** The breaker of `serviceId`, read at most once per {@link BREAKER_CACHE_MS} however many pages ask. */
  private breakerRead(serviceId: string): Promise<BreakerInfo> {
    const now = Date.now();
    const hit = this.breakerReads.get(serviceId);
    if (hit && now - hit.at < BREAKER_CACHE_MS) return hit.read;
    const read = this.source.breaker(serviceId);
    this.breakerReads.set(serviceId, { at: now, read });
    read.catch(() => this.breakerReads.delete(serviceId));
    if (this.breakerReads.size > 1000) for (const [k, v] of this.breakerReads) if (now - v.at >= BREAKER_CACHE_MS) this.breakerReads.delete(k);
    return read;
  }

  /** One gather: reads the source, rebuilds the snapshot, tells subscribers what changed. */
  async gather(): Promise<void> {
    const errors: string[] = [];
    const now = Date.now();
    const registry = this.source.registry();
    const slow = now - this.lastSlow >= this.slowEveryMs;
    const [health, breakers] = await Promise.all([
      this.source.health().catch((err) => (errors.push(`health: ${oneLine(err)}`), undefined)),
      this.source.breakers().catch((err) => (errors.push(`breakers: ${oneLine(err)}`), [] as BreakerSummary[])),
    ]);
    const credentialIds = new Set<string>([...(registry?.credentials.map((c) => c.id) ?? []), ...this.credentials.map((c) => c.credentialId)]);
    const rotations = await this.rotations([...credentialIds], errors);
    const rotationEnded = [...rotations].some(([id, r]) => r && this.lastRotationStatus.get(id) !== r.executionStatus);
    for (const [id, r] of rotations) if (r) this.lastRotationStatus.set(id, r.executionStatus);
    if (slow || rotationEnded) {
      this.lastSlow = now;
      await this.readSlow(registry, errors);
    }
    if (health) this.readAt = now;
    const services = this.serviceRows(registry, health ?? this.previousViews(), breakers);
    const credentials = this.credentialRows(registry, rotations);
    await this.fillVersionAges(credentials);
    this.publish(now, services, credentials, errors);
  }

  private previousViews(): ServiceHealthView[] {
    // The health read failed: keep the last rows' statuses rather than blank the page.
    return this.current.services.map((s) => ({
      serviceId: s.id,
      workflowId: s.workflowId,
      status: s.status,
      since: s.since ? new Date(s.since).toISOString() : '',
      rootCauses: s.rootCause ? [s.rootCause] : [],
      impacts: s.impacts,
      alertOpen: s.alertOpen,
      ...(s.warningOpen ? { warningOpen: true } : {}),
    }));
  }

  private async rotations(ids: string[], errors: string[]): Promise<Map<string, RotationView | undefined>> {
    const limit = pLimit(8);
    const out = new Map<string, RotationView | undefined>();
    await Promise.all(
      ids.map((id) =>
        limit(async () => {
          try {
            out.set(id, await this.source.rotation(id));
          } catch (err) {
            errors.push(`rotation ${id}: ${oneLine(err)}`);
            const prev = this.current.credentials.find((c) => c.id === id)?.rotation;
            out.set(id, prev ? ({ credentialId: id, workflowId: prev.workflowId, runId: prev.runId, executionStatus: prev.executionStatus } as RotationView) : undefined);
          }
        }),
      ),
    );
    return out;
  }

  /** The store's credentials and the Schedules: state-read workflows, so not every poll. */
  private async readSlow(registry: Registry | undefined, errors: string[]): Promise<void> {
    await Promise.all([
      this.source.credentials().then(
        (c) => void (this.credentials = c),
        (err) => void errors.push(`credentials: ${oneLine(err)}`),
      ),
      this.source.sweepSchedule().then(
        (s) => void (this.sweep = s ? { intervalMs: s.intervalMs, paused: s.paused } : {}),
        (err) => void errors.push(`sweep schedule: ${oneLine(err)}`),
      ),
      ...(registry?.credentials ?? [])
        .filter((c) => c.schedule !== undefined)
        .map((c) =>
          this.source.rotationSchedule(c.id).then(
            (s) => void (s ? this.schedules.set(c.id, { nextRunAt: s.nextRunsMs[0], paused: s.paused }) : this.schedules.delete(c.id)),
            (err) => void errors.push(`rotation schedule ${c.id}: ${oneLine(err)}`),
          ),
        ),
    ]);
  }

  private serviceRows(registry: Registry | undefined, health: ServiceHealthView[], breakers: BreakerSummary[]): ServiceRow[] {
    const byId = new Map(health.map((h) => [h.serviceId, h]));
    const breakerOf = new Map(breakers.map((b) => [b.serviceId, b.state]));
    const specs = new Map((registry?.services ?? []).map((s) => [s.id, s]));
    // The registry decides the fleet when known (a service not swept yet is `unknown`); otherwise whatever reports health.
    const ids = registry ? [...specs.keys()] : [...byId.keys()];
    const rows: ServiceRow[] = [];
    for (const id of ids) {
      const h = byId.get(id);
      const spec = specs.get(id);
      const f = h?.figures;
      const sla = f?.slaAvailability ?? spec?.sla?.availability;
      const a24 = f?.availability['24h'];
      const row: ServiceRow = {
        id,
        status: h?.status ?? 'unknown',
        since: h?.since ? Date.parse(h.since) || 0 : 0,
        impacts: h?.impacts ?? [],
        dependsOn: spec?.dependsOn ?? [],
        tags: spec?.tags ?? [],
        avail: f?.availability ?? {},
        belowSla: a24 !== undefined && sla !== undefined && a24 < sla,
        alertOpen: h?.alertOpen ?? false,
        ...(h?.warningOpen ? { warningOpen: true } : {}),
        workflowId: h?.workflowId ?? `service/${id}`,
      };
      if (h?.rootCause) row.rootCause = h.rootCause;
      if (h && h.rootCauses.length > 1) row.rootCauses = h.rootCauses;
      if (h?.warningOpen) row.warningOpen = true;
      if (spec?.owner) row.owner = spec.owner;
      if (f?.p50Ms !== undefined) row.p50 = f.p50Ms;
      if (f?.p95Ms !== undefined) row.p95 = f.p95Ms;
      if (f?.p99Ms !== undefined) row.p99 = f.p99Ms;
      if (sla !== undefined) row.sla = sla;
      const b = breakerOf.get(id);
      if (b) row.breaker = b;
      const p = h?.lastProbe;
      if (p) {
        row.lastProbe = { at: p.at, verdict: p.verdict, latencyMs: p.latencyMs };
        if (p.failureKind) row.lastProbe.failureKind = p.failureKind;
        if (p.detail) row.lastProbe.detail = p.detail;
        this.remember(this.results, id, { at: p.at, verdict: p.verdict, latencyMs: p.latencyMs }, this.uptimeSlots);
      }
      if (f && (f.p50Ms !== undefined || f.p95Ms !== undefined || f.p99Ms !== undefined)) {
        this.remember(this.latency, id, { at: f.computedAt, p50: f.p50Ms, p95: f.p95Ms, p99: f.p99Ms }, this.latencyPoints);
      }
      rows.push(row);
    }
    return rows;
  }

  /** Appends `point` unless the last one has the same `at` (the same probe or figures seen again). */
  private remember<T extends { at: number }>(map: Map<string, T[]>, id: string, point: T, max: number): void {
    let list = map.get(id);
    if (!list) map.set(id, (list = []));
    const last = list[list.length - 1];
    if (last && last.at >= point.at) return;
    list.push(point);
    if (list.length > max) list.splice(0, list.length - max);
  }

  private credentialRows(registry: Registry | undefined, rotations: Map<string, RotationView | undefined>): CredentialRow[] {
    const stored = new Map(this.credentials.map((c) => [c.credentialId, c]));
    const specs = new Map((registry?.credentials ?? []).map((c) => [c.id, c]));
    const ids = [...new Set([...specs.keys(), ...stored.keys()])].sort();
    return ids.map((id) => {
      const spec = specs.get(id);
      const s = stored.get(id);
      const row: CredentialRow = { id, consumers: spec?.consumers ?? [], current: s?.current ?? null, pending: s?.pending ?? null, previous: s?.previous ?? null };
      if (spec?.issuer) row.issuer = spec.issuer;
      if (spec?.schedule !== undefined) row.scheduleMs = spec.schedule;
      const sch = this.schedules.get(id);
      if (sch) {
        if (sch.nextRunAt !== undefined) row.nextRunAt = sch.nextRunAt;
        row.schedulePaused = sch.paused;
      }
      const r = rotations.get(id);
      if (r) row.rotation = rotationRow(r);
      return row;
    });
  }

  private async fillVersionAges(rows: CredentialRow[]): Promise<void> {
    await Promise.all(
      rows.map(async (row) => {
        if (!row.current) return;
        const key = `${row.id}\u0000${row.current}`;
        let at = this.createdAt.get(key);
        if (at === undefined) {
          try {
            at = await this.source.versionCreatedAt(row.id, row.current);
          } catch {
            at = undefined; // tried again next gather
          }
          if (at !== undefined) this.createdAt.set(key, at);
        }
        if (at !== undefined) row.currentCreatedAt = at;
      }),
    );
  }

  private publish(at: number, services: ServiceRow[], credentials: CredentialRow[], errors: string[]): void {
    const summary: FleetSummary = { services: services.length, byStatus: EMPTY_BY_STATUS(), belowSla: 0, openBreakers: 0, runningRotations: 0, rotationsNeedingAttention: 0 };
    const changed: ServiceRow[] = [];
    const nextJson = new Map<string, string>();
    for (const s of services) {
      summary.byStatus[s.status]++;
      if (s.belowSla) summary.belowSla++;
      if (s.breaker === 'OPEN' || s.breaker === 'FORCED_OPEN') summary.openBreakers++;
      const j = JSON.stringify(s);
      nextJson.set(s.id, j);
      if (this.rowJson.get(s.id) !== j) changed.push(s);
    }
    const removed = [...this.rowJson.keys()].filter((id) => !nextJson.has(id));
    for (const c of credentials) {
      if (c.rotation?.executionStatus === 'RUNNING') summary.runningRotations++;
      else if (c.rotation && (ATTENTION.has(c.rotation.status) || ENDED_BADLY.has(c.rotation.executionStatus))) summary.rotationsNeedingAttention++;
    }
    const credJson = JSON.stringify(credentials);
    const prev = this.current;
    const same =
      changed.length === 0 &&
      removed.length === 0 &&
      credJson === this.credJson &&
      JSON.stringify(errors) === JSON.stringify(prev.errors) &&
      this.sweep.intervalMs === prev.sweepIntervalMs &&
      this.sweep.paused === prev.sweepPaused &&
      this.readAt === prev.readAt &&
      prev.version > 0;
    if (same) return;
    this.rowJson = nextJson;
    this.credJson = credJson;
    this.current = {
      version: prev.version + 1,
      at,
      namespace: prev.namespace,
      uiUrl: prev.uiUrl,
      sweepIntervalMs: this.sweep.intervalMs,
      sweepPaused: this.sweep.paused,
      summary,
      services,
      credentials,
      errors,
      readAt: this.readAt,
      pollMs: this.pollMs,
      staleAfterMs: this.staleAfterMs,
    };
    const delta: FleetDelta = {
      from: prev.version,
      version: this.current.version,
      at,
      services: changed,
      removed,
      summary,
      credentials,
      sweepIntervalMs: this.sweep.intervalMs,
      sweepPaused: this.sweep.paused,
      errors,
      readAt: this.readAt,
    };
    for (const fn of this.listeners) {
      try {
        fn(delta);
      } catch (err) {
        this.opts.onError?.(err);
      }
    }
  }
}

function rotationRow(r: RotationView): RotationRow {
  const row: RotationRow = { workflowId: r.workflowId, runId: r.runId, executionStatus: r.executionStatus, status: r.executionStatus.toLowerCase() };
  const p = r.progress;
  if (p) {
    row.status = 'running';
    row.phase = p.phase;
    if (p.versionId) row.versionId = p.versionId;
    row.batches = p.batches;
    row.services = p.services.map((s) => ({ id: s.id, role: s.role, batch: s.batch, step: s.step, status: s.status, ...(s.holds ? { holds: s.holds } : {}), ...(s.error ? { error: s.error } : {}) }));
    if (p.graceEndsAt !== undefined) row.graceEndsAt = p.graceEndsAt;
    if (p.cause) row.cause = p.cause;
  }
  const res = r.result;
  if (res) {
    row.status = res.status;
    row.phase = res.status;
    if (res.versionId) row.versionId = res.versionId;
    row.services = res.services.map((s) => ({ id: s.id, step: s.step, status: s.status, ...(s.holds ? { holds: s.holds } : {}), ...(s.error ? { error: s.error } : {}) }));
    if (res.cause) row.cause = res.cause;
  }
  return row;
}
