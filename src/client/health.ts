/**
 * Typed client facade for health: run a sweep now, read one service's status
 * or all of them, and manage the Temporal Schedule that runs sweeps
 * (overlap SKIP, short catch-up window).
 */
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  WorkflowNotFoundError,
  type Client,
  type ScheduleDescription,
  type ScheduleOptionsAction,
} from '@temporalio/client';
import pLimit from 'p-limit';
import { DEFAULT_TASK_QUEUE, workflowIds } from '../domain/constants';
import { NoWorkerError, pollingTaskQueues, startWorkerHint } from './connect';
import { queryWorkflow } from './query';
import { resultOf } from './failure';
import type { HealthFigures, HealthStatus, ServiceHealthState } from '../domain/health';
import { serviceHealthQuery } from '../workflows/service-health';
import { healthShardQuery } from '../workflows/health-shard';
import { proberStateQuery } from '../workflows/prober';
import { healthShardWorkflowId, shardOf } from '../domain/health-shard';
import type { HealthSweepInput, HealthSweepResult } from '../workflows/sweep';
import type { HealthMonitorInput } from '../workflows/monitor';

export type { HealthSweepResult, SweepServiceResult } from '../workflows/sweep';

/** The Schedule's id unless told otherwise. */
export const DEFAULT_SWEEP_SCHEDULE_ID = 'health-sweep';

const SERVICE_ID = /^[a-z0-9][a-z0-9-]*$/;
function checkServiceId(serviceId: string): void {
  if (typeof serviceId !== 'string' || !SERVICE_ID.test(serviceId)) {
    throw new RangeError(`invalid service id ${JSON.stringify(serviceId)}: use the registry id (lowercase letters, digits and "-")`);
  }
}

function checkInt(name: string, v: number | undefined, min: number, max: number): void {
  if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw new RangeError(`${name} must be an integer in ${min}..${max}, got ${v}`);
}

/**
 * Runs one `healthSweep` now (id `sweep/<now ISO>`) and waits for its result.
 * @param opts.concurrency probes in flight, 1..1000 (default 50).
 * @param opts.requestEagerStart start it eagerly on this process's worker: only
 *   with a client on that worker's NativeConnection (see `StartRotationOptions.requestEagerStart`).
 * @throws RangeError for a bad option; WorkflowRunFailedError (a WorkflowFailedError whose message names the
 *   sweep, the failed step and its root cause) when the sweep fails.
 */
export async function runSweep(
  client: Client,
  opts: { taskQueue?: string; concurrency?: number; chunkSize?: number; workflowId?: string; requestEagerStart?: boolean } = {},
): Promise<HealthSweepResult> {
  checkInt('concurrency', opts.concurrency, 1, 1000);
  checkInt('chunkSize', opts.chunkSize, 1, 1000);
  const input: HealthSweepInput = {};
  if (opts.concurrency !== undefined) input.concurrency = opts.concurrency;
  if (opts.chunkSize !== undefined) input.chunkSize = opts.chunkSize;
  const workflowId = opts.workflowId ?? workflowIds.sweep(new Date());
  return resultOf(
    workflowId,
    client.workflow.execute('healthSweep', {
      taskQueue: opts.taskQueue ?? DEFAULT_TASK_QUEUE,
      workflowId,
      args: [input],
      ...(opts.requestEagerStart ? { requestEagerStart: true } : {}),
    }) as Promise<HealthSweepResult>,
  );
}

/** One service's durable health, as `getHealth`/`listHealth` return it. */
export interface ServiceHealthView {
  serviceId: string;
  workflowId: string;
  status: HealthStatus;
  /** ISO time the status last changed. */
  since: string;
  rootCause?: string;
  rootCauses: string[];
  impacts: string[];
  alertOpen: boolean;
  /** A warning incident (the service is or was degraded, WARNING sent, RESOLVED not yet) is open. */
  warningOpen?: boolean;
  lastProbe?: ServiceHealthState['last'];
  figures?: HealthFigures;
}

function toView(s: ServiceHealthState, workflowId = workflowIds.service(s.serviceId)): ServiceHealthView {
  const v: ServiceHealthView = {
    serviceId: s.serviceId,
    workflowId,
    status: s.status,
    since: new Date(s.since).toISOString(),
    rootCauses: s.rootCauses,
    impacts: s.impacts,
    alertOpen: s.alert.open,
  };
  if (s.warning?.open) v.warningOpen = true;
  if (s.rootCauses[0]) v.rootCause = s.rootCauses[0];
  if (s.last) v.lastProbe = s.last;
  if (s.figures) v.figures = s.figures;
  return v;
}

/**
 * The durable health of one service: a query of its shard
 * (`health/<taskQueue>/<shard>`, src/domain/health-shard.ts), else of a
 * `service/<serviceId>` workflow of an earlier version.
 * @param opts.taskQueue the workers' task queue (shards are per task queue); default `integration-agent`.
 * @param opts.queryTimeoutMs per-query deadline, ms; default 5000.
 * @returns undefined when no sweep has reported on the service yet.
 * @throws RangeError for a malformed id; NoWorkerError (naming the shard, its task queue and the command
 *   that starts a worker) when no worker polls the shard's task queue; client errors when Temporal cannot be reached.
 */
export async function getHealth(client: Client, serviceId: string, opts: { taskQueue?: string; queryTimeoutMs?: number } = {}): Promise<ServiceHealthView | undefined> {
  checkServiceId(serviceId);
  const taskQueue = opts.taskQueue ?? DEFAULT_TASK_QUEUE;
  const shardId = healthShardWorkflowId(taskQueue, shardOf(serviceId));
  const q = { timeoutMs: opts.queryTimeoutMs };
  try {
    // The whole shard (~80 services at 10,000) in one query without arguments; by id beyond a page.
    // The first query checks the shard exists (else the legacy workflow is read) and that a worker polls its queue.
    let page = await queryWorkflow(client, shardId, healthShardQuery, [], q);
    if (page.total > page.services.length) page = await queryWorkflow(client, shardId, healthShardQuery, [{ ids: [serviceId] }], { ...q, precheck: false, taskQueue });
    const s = page.services.find((x) => x.serviceId === serviceId);
    if (s) return toView(s, shardId);
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
  }
  try {
    return toView(await queryWorkflow(client, workflowIds.service(serviceId), serviceHealthQuery, [], q));
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
}

/**
 * Every service the health shards hold, sorted by id: the running
 * `healthShard` workflows (of `opts.taskQueue` when given) found through
 * visibility, each queried for its services in pages of 500 (16 queries at
 * a time): ~130 queries for any fleet size. A shard whose task queue nobody
 * polls, or that does not answer within `queryTimeoutMs`, is missing from the
 * answer and named in the error thrown after the others were read... (see
 * `ListHealthError`). With no shard at all (a deployment of an earlier
 * version), reads the per-service `serviceHealth` workflows as before.
 * @param opts.queryTimeoutMs per-query deadline, ms; default 5000.
 * @throws ListHealthError naming the shards that did not answer, with the rows of the others.
 */
export async function listHealth(client: Client, opts: { queryTimeoutMs?: number; taskQueue?: string } = {}): Promise<ServiceHealthView[]> {
  const queryTimeoutMs = opts.queryTimeoutMs ?? 5000;
  checkInt('queryTimeoutMs', queryTimeoutMs, 1, 600_000);
  const shards: { workflowId: string; taskQueue: string }[] = [];
  const tq = opts.taskQueue ? ` AND TaskQueue = "${opts.taskQueue.replace(/["\\]/g, '')}"` : '';
  for await (const wf of client.workflow.list({ query: `WorkflowType = "healthShard" AND ExecutionStatus = "Running"${tq}` })) shards.push({ workflowId: wf.workflowId, taskQueue: wf.taskQueue });
  if (shards.length > 0) {
    const polled = await pollingTaskQueues(client, shards.map((f) => f.taskQueue));
    const limit = pLimit(16);
    const missing: string[] = [];
    const unpolled = new Set<string>();
    const rows = await Promise.all(
      shards.map((f) =>
        limit(async (): Promise<ServiceHealthView[]> => {
          if (!polled.has(f.taskQueue)) {
            missing.push(`${f.workflowId} (no worker polls its task queue)`);
            unpolled.add(f.taskQueue);
            return [];
          }
          const out: ServiceHealthView[] = [];
          const q = { timeoutMs: queryTimeoutMs, precheck: false, taskQueue: f.taskQueue };
          try {
            for (let offset = 0; ; offset += 500) {
              // The first page without arguments (one query for a shard of up to 500 services).
              const page = await (offset === 0 ? queryWorkflow(client, f.workflowId, healthShardQuery, [], q) : queryWorkflow(client, f.workflowId, healthShardQuery, [{ offset, limit: 500 }], q));
              for (const s of page.services) out.push(toView(s, f.workflowId));
              if (offset + 500 >= page.total) break;
            }
          } catch (err) {
            if (err instanceof NoWorkerError) {
              missing.push(`${f.workflowId} (no worker polls its task queue)`);
              unpolled.add(f.taskQueue);
            } else missing.push(`${f.workflowId} (${(err as Error).message.split('\n')[0]})`);
            return [];
          }
          return out;
        }),
      ),
    );
    const views = rows.flat().sort((a, b) => a.serviceId.localeCompare(b.serviceId));
    if (missing.length) throw new ListHealthError(missing, views, { unpolledTaskQueues: [...unpolled], namespace: client.options.namespace });
    return views;
  }
  const found: { workflowId: string; status: HealthStatus; taskQueue: string }[] = [];
  for await (const wf of client.workflow.list({ query: `WorkflowType = "serviceHealth" AND ExecutionStatus = "Running"` })) {
    const sa = wf.searchAttributes?.HealthStatus;
    found.push({ workflowId: wf.workflowId, taskQueue: wf.taskQueue, status: ((Array.isArray(sa) ? sa[0] : sa) as HealthStatus | undefined) ?? 'unknown' });
  }
  // A query to a workflow whose task queue nobody polls would wait out its deadline: query only polled ones.
  const polled = await pollingTaskQueues(client, found.map((f) => f.taskQueue));
  const limit = pLimit(16);
  const views = await Promise.all(
    found.map((f) =>
      limit(async (): Promise<ServiceHealthView> => {
        try {
          if (!polled.has(f.taskQueue)) throw new Error('no worker polls its task queue');
          return toView(await queryWorkflow(client, f.workflowId, serviceHealthQuery, [], { timeoutMs: queryTimeoutMs, precheck: false, taskQueue: f.taskQueue }));
        } catch {
          const serviceId = f.workflowId.replace(/^service\//, '');
          return { serviceId, workflowId: f.workflowId, status: f.status, since: '', rootCauses: [], impacts: [], alertOpen: false };
        }
      }),
    ),
  );
  return views.sort((a, b) => a.serviceId.localeCompare(b.serviceId));
}

/** Some health shards did not answer: `rows` holds the services of the others. */
export class ListHealthError extends Error {
  /**
   * @param missing one entry per shard: its workflow id and why (`(no worker polls task queue "q")`, or the query's error).
   * @param noWorker the task queues of those shards that no worker polls, and the namespace: the message then says how to start a worker on the first.
   */
  constructor(
    readonly missing: string[],
    readonly rows: ServiceHealthView[],
    noWorker: { unpolledTaskQueues: string[]; namespace: string } = { unpolledTaskQueues: [], namespace: 'default' },
  ) {
    const [tq] = noWorker.unpolledTaskQueues;
    const what = tq === undefined ? 'Check that a worker runs and is not overloaded, then retry.' : `No worker polls task queue "${tq}" in namespace ${noWorker.namespace}: ${startWorkerHint(tq, noWorker.namespace)}.`;
    super(`${missing.length} health shard(s) did not answer, their services are missing: ${missing.slice(0, 3).join('; ')}${missing.length > 3 ? '; ...' : ''}. ${what}`);
    this.name = 'ListHealthError';
  }
}

/**
 * What the Schedule runs: `continuous` (default) starts a `healthMonitor`
 * window every interval, in which every service is probed at its own
 * `healthCheck.interval` and results are published as they come;
 * `sweep` starts a `healthSweep` every interval (every service probed once
 * per sweep, published when the slowest probe returns).
 */
export type MonitoringMode = 'continuous' | 'sweep';

export interface SweepScheduleOptions {
  scheduleId?: string;
  taskQueue?: string;
  /** `continuous` (default) or `sweep`: see {@link MonitoringMode}. */
  mode?: MonitoringMode;
  /** Time between sweeps (mode sweep) or the window's length (mode continuous), ms; default 30000 / 60000 (min 1000). */
  intervalMs?: number;
  /** Probes in flight per sweep, 1..1000; default 50. */
  concurrency?: number;
  /** How late a missed sweep may still start (e.g. after server downtime), ms; default 60000. */
  catchupWindowMs?: number;
  /** Create (or leave) the schedule paused. */
  paused?: boolean;
  /** Free text shown in the UI. */
  note?: string;
}

/**
 * Creates the sweep Schedule, or updates it in place when it exists. Runs
 * `healthSweep` every `intervalMs` with overlap policy SKIP (a sweep still
 * running makes the next one skip, never pile up) and a short catch-up window.
 * Scheduled runs get ids `sweep-<scheduled time>` (Temporal appends the time).
 * @returns `created` or `updated`, and the schedule id.
 * @throws RangeError naming the option for bad values.
 */
export async function applySweepSchedule(client: Client, opts: SweepScheduleOptions = {}): Promise<{ scheduleId: string; result: 'created' | 'updated' }> {
  const scheduleId = opts.scheduleId ?? DEFAULT_SWEEP_SCHEDULE_ID;
  const mode = opts.mode ?? 'continuous';
  if (mode !== 'continuous' && mode !== 'sweep') throw new RangeError(`mode must be continuous or sweep, got ${JSON.stringify(mode)}`);
  const intervalMs = opts.intervalMs ?? (mode === 'continuous' ? 60_000 : 30_000);
  checkInt('intervalMs', intervalMs, 1000, 86_400_000);
  checkInt('concurrency', opts.concurrency, 1, 1000);
  const catchupWindowMs = opts.catchupWindowMs ?? 60_000;
  checkInt('catchupWindowMs', catchupWindowMs, 1000, 86_400_000);
  let action: ScheduleOptionsAction;
  let overlap: ScheduleOverlapPolicy;
  if (mode === 'continuous') {
    const input: HealthMonitorInput = { windowMs: intervalMs };
    if (opts.concurrency !== undefined) input.concurrency = opts.concurrency;
    action = {
      type: 'startWorkflow',
      workflowType: 'healthMonitor',
      workflowId: 'monitor',
      taskQueue: opts.taskQueue ?? DEFAULT_TASK_QUEUE,
      args: [input],
      // A window ends one probe timeout after its end at most; one that cannot finish within 10 windows is abandoned.
      workflowExecutionTimeout: intervalMs * 10 + 120_000,
    };
    // Windows overlap by the length of their last probes (each starts only its own window's probes).
    overlap = ScheduleOverlapPolicy.ALLOW_ALL;
  } else {
    const input: HealthSweepInput = { intervalMs };
    if (opts.concurrency !== undefined) input.concurrency = opts.concurrency;
    action = {
      type: 'startWorkflow',
      workflowType: 'healthSweep',
      workflowId: 'sweep',
      taskQueue: opts.taskQueue ?? DEFAULT_TASK_QUEUE,
      args: [input],
      // A sweep that cannot finish within 10 intervals is abandoned; the next one starts fresh.
      workflowExecutionTimeout: intervalMs * 10,
    };
    overlap = ScheduleOverlapPolicy.SKIP;
  }
  const spec = { intervals: [{ every: intervalMs }] };
  const policies = { overlap, catchupWindow: catchupWindowMs, pauseOnFailure: false };
  try {
    await client.schedule.create({
      scheduleId,
      spec,
      action,
      policies,
      state: { paused: opts.paused ?? false, note: opts.note ?? (mode === 'continuous' ? 'continuous health monitoring (integration-agent schedule apply)' : 'health sweeps (integration-agent schedule apply)') },
    });
    return { scheduleId, result: 'created' };
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  await client.schedule.getHandle(scheduleId).update((prev) => ({
    ...prev,
    spec,
    action,
    policies,
    state: { ...prev.state, ...(opts.paused !== undefined ? { paused: opts.paused } : {}), ...(opts.note ? { note: opts.note } : {}) },
  }));
  return { scheduleId, result: 'updated' };
}

/** What `schedule describe` shows. */
export interface SweepScheduleInfo {
  scheduleId: string;
  paused: boolean;
  note?: string;
  /** What each run does (from the action's workflow type). */
  mode?: MonitoringMode;
  intervalMs?: number;
  taskQueue?: string;
  concurrency?: number;
  overlap: string;
  catchupWindowMs: number;
  /** Next start times, ISO. */
  nextRuns: string[];
  /** Most recent actions: scheduled time and workflow id. */
  recentRuns: { scheduledAt: string; workflowId: string }[];
  runningWorkflows: string[];
}

function describeToInfo(scheduleId: string, d: ScheduleDescription): SweepScheduleInfo {
  const interval = d.spec.intervals?.[0]?.every;
  const action = d.action.type === 'startWorkflow' ? d.action : undefined;
  const info: SweepScheduleInfo = {
    scheduleId,
    paused: d.state.paused,
    overlap: String(d.policies.overlap),
    catchupWindowMs: Number(d.policies.catchupWindow),
    nextRuns: d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString()),
    recentRuns: d.info.recentActions.slice(-5).map((a) => ({ scheduledAt: a.scheduledAt.toISOString(), workflowId: a.action.workflow.workflowId })),
    runningWorkflows: d.info.runningActions.map((a) => a.workflow.workflowId),
  };
  if (d.state.note) info.note = d.state.note;
  if (interval !== undefined) info.intervalMs = Number(interval);
  if (action) {
    info.taskQueue = action.taskQueue;
    info.mode = action.workflowType === 'healthMonitor' ? 'continuous' : 'sweep';
    const arg = (action.args?.[0] ?? {}) as HealthSweepInput;
    if (arg.concurrency !== undefined) info.concurrency = arg.concurrency;
  }
  return info;
}

async function withSchedule<T>(client: Client, scheduleId: string, fn: (h: ReturnType<Client['schedule']['getHandle']>) => Promise<T>): Promise<T> {
  try {
    return await fn(client.schedule.getHandle(scheduleId));
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) {
      throw new ScheduleNotFoundError(`no schedule "${scheduleId}": create it with \`integration-agent schedule apply\``, scheduleId);
    }
    throw err;
  }
}

/** Describes the sweep schedule. @throws ScheduleNotFoundError naming the id and the fix. */
export function describeSweepSchedule(client: Client, scheduleId = DEFAULT_SWEEP_SCHEDULE_ID): Promise<SweepScheduleInfo> {
  return withSchedule(client, scheduleId, async (h) => {
    const info = describeToInfo(scheduleId, await h.describe());
    if (info.mode === 'continuous' && info.runningWorkflows.length === 0) {
      // Under overlap ALLOW_ALL the schedule does not track its running actions: ask visibility
      // (eventually consistent: a window started in the last second may be missing).
      const id = scheduleId.replace(/["\\]/g, '');
      for await (const wf of client.workflow.list({ query: `TemporalScheduledById = "${id}" AND ExecutionStatus = "Running"` })) info.runningWorkflows.push(wf.workflowId);
    }
    return info;
  });
}

/** Pauses the sweep schedule (running sweeps finish). */
export function pauseSweepSchedule(client: Client, scheduleId = DEFAULT_SWEEP_SCHEDULE_ID, note = 'paused by integration-agent schedule pause'): Promise<void> {
  return withSchedule(client, scheduleId, (h) => h.pause(note));
}

/** Resumes the sweep schedule. */
export function resumeSweepSchedule(client: Client, scheduleId = DEFAULT_SWEEP_SCHEDULE_ID, note = 'resumed by integration-agent schedule resume'): Promise<void> {
  return withSchedule(client, scheduleId, (h) => h.unpause(note));
}

/** Starts one sweep now through the schedule (overlap policy still applies). */
export function triggerSweepSchedule(client: Client, scheduleId = DEFAULT_SWEEP_SCHEDULE_ID): Promise<void> {
  return withSchedule(client, scheduleId, (h) => h.trigger());
}

/** A worker process whose own network is down (docs/health.md, "The prober's own health"). */
export interface OfflineProber {
  /** The process, `host:pid`. */
  identity: string;
  taskQueue: string;
  /** `prober/<taskQueue>/<identity>`. */
  workflowId: string;
  /** When it went offline, ISO time. */
  since: string;
  /** The open incident (the TRIGGERED alert's id). */
  incidentId: string;
}

/**
 * The worker processes now offline: their `proberHealth` workflows with an
 * open incident (visibility lists the running ones; each is queried). A
 * prober whose workflow does not answer within `queryTimeoutMs` is left out:
 * this is a hint beside the fleet's status, not the status itself.
 */
export async function listOfflineProbers(client: Client, opts: { taskQueue?: string; queryTimeoutMs?: number } = {}): Promise<OfflineProber[]> {
  const queryTimeoutMs = opts.queryTimeoutMs ?? 5000;
  checkInt('queryTimeoutMs', queryTimeoutMs, 1, 600_000);
  const tq = opts.taskQueue ? ` AND TaskQueue = "${opts.taskQueue.replace(/["\\]/g, '')}"` : '';
  const probers: { workflowId: string; taskQueue: string }[] = [];
  for await (const wf of client.workflow.list({ query: `WorkflowType = "proberHealth" AND ExecutionStatus = "Running"${tq}` })) probers.push({ workflowId: wf.workflowId, taskQueue: wf.taskQueue });
  // A prober on a queue nobody polls cannot answer (it would wait out its deadline): left out at once.
  const polled = await pollingTaskQueues(client, probers.map((p) => p.taskQueue));
  const limit = pLimit(16);
  const found = await Promise.all(
    probers.filter((p) => polled.has(p.taskQueue)).map(({ workflowId, taskQueue }) =>
      limit(async (): Promise<OfflineProber | undefined> => {
        try {
          const { state } = await queryWorkflow(client, workflowId, proberStateQuery, [], { timeoutMs: queryTimeoutMs, precheck: false, taskQueue });
          if (!state.open) return undefined;
          return { identity: state.identity, taskQueue: state.taskQueue, workflowId, since: new Date(state.open.since).toISOString(), incidentId: state.open.incidentId };
        } catch {
          return undefined;
        }
      }),
    ),
  );
  return found.filter((p): p is OfflineProber => p !== undefined).sort((a, b) => (a.identity < b.identity ? -1 : 1));
}
