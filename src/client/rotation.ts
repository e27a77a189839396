/**
 * The rotation facade for other programs: start, watch, cancel and await
 * `rotateCredential` runs, and keep one Temporal Schedule per credential that
 * has `schedule` in the registry.
 *
 * One rotation per credential at a time is enforced by Temporal itself: the
 * workflow id is `rotation/<credentialId>` and a start while one runs fails by
 * the id-conflict policy (FAIL); we turn that into {@link RotationAlreadyRunningError}.
 */
import { randomUUID } from 'node:crypto';
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import { DEFAULT_TASK_QUEUE, workflowIds } from '../domain/constants';
import { oneLine, type RotateCredentialInput, type RotationResult } from '../domain/rotation';
import type { Registry } from '../domain/registry';
import { endGracePeriodSignal, progressQuery, type RotationProgress } from '../workflows/rotation';
import { queryWorkflow } from './query';

export type { RotationProgress } from '../workflows/rotation';
export type { RotationResult, RotateCredentialInput } from '../domain/rotation';

/** A rotation of the same credential is running; `workflowId`/`runId` name it. */
export class RotationAlreadyRunningError extends Error {
  constructor(
    readonly credentialId: string,
    readonly workflowId: string,
    readonly runId: string | undefined,
  ) {
    super(`rotation of ${credentialId} is already running (workflow id ${workflowId}, run id ${runId ?? 'unknown'}); wait for it, watch it with \`integration-agent credentials status ${credentialId}\`, or cancel it with \`integration-agent credentials cancel ${credentialId}\``);
    this.name = 'RotationAlreadyRunningError';
  }
}

export interface StartRotationOptions extends RotateCredentialInput {
  /** Task queue of the workers (default `integration-agent`). */
  taskQueue?: string;
  /**
   * Ask the server to hand the first workflow task straight back in the start
   * response (eager workflow start), saving its trip through the task queue.
   * Only for a starter in a worker's own process: `client` must be built on
   * that worker's `NativeConnection` (`new Client({ connection: worker.connection })`)
   * and the worker must poll `taskQueue`; the SDK refuses it on a plain
   * `Connection`. The server falls back to an ordinary start when the worker
   * has no free slot or eager start is off (`system.enableEagerWorkflowStart`).
   */
  requestEagerStart?: boolean;
}

export interface StartedRotation {
  credentialId: string;
  workflowId: string;
  runId: string;
  handle: WorkflowHandle;
  /** True when the server started it eagerly on this process's worker (see `requestEagerStart`). */
  eagerlyStarted: boolean;
}

function validate(opts: StartRotationOptions): void {
  if (typeof opts?.credentialId !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(opts.credentialId)) {
    throw new RangeError(`credentialId: expected a registry credential id (lowercase slug), got ${JSON.stringify(opts?.credentialId)}`);
  }
  if (opts.gracePeriodMs !== undefined && (!Number.isFinite(opts.gracePeriodMs) || opts.gracePeriodMs < 0)) {
    throw new RangeError(`gracePeriodMs: expected a number of ms >= 0, got ${opts.gracePeriodMs}`);
  }
}

/**
 * Starts `rotateCredential` (id `rotation/<credentialId>`; a dry run gets its
 * own id `rotation/<credentialId>/dry-run/<uuid>` so it never blocks a real one).
 *
 * @throws RotationAlreadyRunningError when a rotation of that credential runs.
 * @throws RangeError on a bad option.
 */
export async function startRotation(client: Client, opts: StartRotationOptions): Promise<StartedRotation> {
  validate(opts);
  const { taskQueue = DEFAULT_TASK_QUEUE, requestEagerStart, ...rest } = opts;
  const input: RotateCredentialInput = {
    credentialId: rest.credentialId,
    ...(rest.force ? { force: true } : {}),
    ...(rest.dryRun ? { dryRun: true } : {}),
    ...(rest.gracePeriodMs !== undefined ? { gracePeriodMs: rest.gracePeriodMs } : {}),
  };
  const workflowId = input.dryRun ? `${workflowIds.rotation(input.credentialId)}/dry-run/${randomUUID()}` : workflowIds.rotation(input.credentialId);
  try {
    const handle = await client.workflow.start('rotateCredential', {
      taskQueue,
      workflowId,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      ...(requestEagerStart ? { requestEagerStart: true } : {}),
    });
    return { credentialId: input.credentialId, workflowId, runId: handle.firstExecutionRunId, handle, eagerlyStarted: handle.eagerlyStarted };
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      let runId: string | undefined;
      try {
        runId = (await client.workflow.getHandle(workflowId).describe()).runId;
      } catch {
        runId = undefined;
      }
      throw new RotationAlreadyRunningError(input.credentialId, workflowId, runId);
    }
    throw err;
  }
}

export interface RotationView {
  credentialId: string;
  workflowId: string;
  runId: string;
  /** Temporal's execution status: RUNNING, COMPLETED, FAILED, CANCELLED, TERMINATED, TIMED_OUT, CONTINUED_AS_NEW. */
  executionStatus: string;
  /** Live progress while running (the `progress` query). */
  progress?: RotationProgress;
  /** The result once completed. */
  result?: RotationResult;
}

/**
 * The latest rotation of a credential: its execution status, progress and result.
 * @returns undefined when the credential was never rotated (no workflow `rotation/<id>`).
 * @throws NoWorkerError (naming the workflow, its task queue and the command that starts a worker) when the
 *   rotation runs and no worker polls its task queue to answer the `progress` query.
 */
export async function getRotation(client: Client, credentialId: string): Promise<RotationView | undefined> {
  const workflowId = workflowIds.rotation(credentialId);
  const handle = client.workflow.getHandle(workflowId);
  let desc;
  try {
    desc = await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
  const view: RotationView = { credentialId, workflowId, runId: desc.runId, executionStatus: desc.status.name };
  if (desc.status.name === 'RUNNING') {
    // The workflow's own task queue (from the describe): no worker on it is a NoWorkerError naming it, at once.
    view.progress = await queryWorkflow(client, workflowId, progressQuery, [], { taskQueue: desc.taskQueue });
  } else if (desc.status.name === 'COMPLETED') {
    view.result = heldAfterPromotion((await handle.result()) as RotationResult);
  }
  return view;
}

/**
 * Runs before the fix recorded consumers that took the new version as holding
 * `pending` even once it was promoted. In a `completed` run the new version is
 * CURRENT, so such a consumer holds `current`.
 */
function heldAfterPromotion(r: RotationResult): RotationResult {
  if (r.status !== 'completed' || r.dryRun || !r.services.some((s) => s.holds === 'pending')) return r;
  return { ...r, services: r.services.map((s) => (s.holds === 'pending' ? { ...s, holds: 'current' } : s)) };
}

/**
 * Requests cancellation of the running rotation of `credentialId`. Before
 * finish the saga compensates (`rolled_back`); during the grace period it
 * ends `completed` without revoking PREVIOUS.
 * @returns false when no rotation of it is running.
 */
export async function cancelRotation(client: Client, credentialId: string): Promise<boolean> {
  const handle = client.workflow.getHandle(workflowIds.rotation(credentialId));
  try {
    const d = await handle.describe();
    if (d.status.name !== 'RUNNING') return false;
    await handle.cancel();
    return true;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

/** Ends the grace period of the running rotation now (PREVIOUS is revoked at once). */
export async function endGracePeriod(client: Client, credentialId: string): Promise<void> {
  await client.workflow.getHandle(workflowIds.rotation(credentialId)).signal(endGracePeriodSignal);
}

/**
 * Starts a rotation and waits for its result, polling `progress` every
 * `pollMs` (default 500) for `onProgress`.
 *
 * @returns the result; a workflow that failed outright (a bug, a termination)
 *   comes back as `status: 'failed'` with the cause.
 * @throws RotationAlreadyRunningError as {@link startRotation}.
 */
export async function rotate(
  client: Client,
  opts: StartRotationOptions,
  watch: { onProgress?: (p: RotationProgress) => void; pollMs?: number } = {},
): Promise<RotationResult> {
  const started = await startRotation(client, opts);
  let done = false;
  const poll = (async () => {
    if (!watch.onProgress) return;
    while (!done) {
      try {
        const p = await queryWorkflow(client, started.workflowId, progressQuery, [], { precheck: false });
        if (!done) watch.onProgress(p);
      } catch {
        // The query fails while the first task has not run yet, or after the end; keep waiting.
      }
      await new Promise((r) => setTimeout(r, watch.pollMs ?? 500));
    }
  })();
  try {
    return (await started.handle.result()) as RotationResult;
  } catch (err) {
    const cause = err instanceof WorkflowFailedError ? oneLine(err.cause ?? err) : oneLine(err);
    return { credentialId: opts.credentialId, workflowId: started.workflowId, status: 'failed', services: [], cause };
  } finally {
    done = true;
    await poll;
  }
}

/** Schedule id of a credential's rotation schedule. */
export const rotationScheduleId = (credentialId: string) => `rotation-schedule/${credentialId}`;

/**
 * Makes the Temporal Schedules match the registry: one schedule per credential
 * with `schedule` (an interval), starting `scheduledRotation` (which runs
 * `rotateCredential` as child `rotation/<id>`, so the one-at-a-time rule
 * holds for scheduled runs too); overlapping runs are skipped. Schedules of
 * credentials that lost their `schedule` are deleted.
 *
 * @returns the schedule ids created, updated and deleted.
 */
export async function applyRotationSchedules(
  client: Client,
  registry: Registry,
  opts: { taskQueue?: string } = {},
): Promise<{ created: string[]; updated: string[]; deleted: string[] }> {
  const taskQueue = opts.taskQueue ?? DEFAULT_TASK_QUEUE;
  const wanted = new Map(registry.credentials.filter((c) => c.schedule !== undefined && c.schedule > 0).map((c) => [rotationScheduleId(c.id), c]));
  const out = { created: [] as string[], updated: [] as string[], deleted: [] as string[] };
  for (const [scheduleId, c] of wanted) {
    const action = {
      type: 'startWorkflow' as const,
      workflowType: 'scheduledRotation',
      args: [{ credentialId: c.id }],
      taskQueue,
      workflowId: `${rotationScheduleId(c.id)}/run`,
    };
    const spec = { intervals: [{ every: c.schedule! }] };
    try {
      await client.schedule.create({
        scheduleId,
        spec,
        action,
        policies: { overlap: ScheduleOverlapPolicy.SKIP },
        memo: { credentialId: c.id, registryVersion: registry.versionHash },
      });
      out.created.push(scheduleId);
    } catch (err) {
      if (!(err instanceof ScheduleAlreadyRunning)) throw err;
      await client.schedule.getHandle(scheduleId).update((prev) => ({ ...prev, spec, action }));
      out.updated.push(scheduleId);
    }
  }
  for await (const s of client.schedule.list()) {
    if (s.scheduleId.startsWith('rotation-schedule/') && !wanted.has(s.scheduleId)) {
      try {
        await client.schedule.getHandle(s.scheduleId).delete();
        out.deleted.push(s.scheduleId);
      } catch (err) {
        if (!(err instanceof ScheduleNotFoundError)) throw err;
      }
    }
  }
  return out;
}

/** A credential's rotation Schedule as readers show it. */
export interface RotationScheduleInfo {
  scheduleId: string;
  paused: boolean;
  /** The interval between rotations, ms (the registry's `schedule`). */
  intervalMs?: number;
  /** The next start times, epoch ms (up to three). */
  nextRunsMs: number[];
}

/**
 * Describes the rotation Schedule of `credentialId` (id `rotation-schedule/<id>`),
 * as {@link applyRotationSchedules} keeps it.
 * @returns undefined when the credential has no schedule.
 */
export async function describeRotationSchedule(client: Client, credentialId: string): Promise<RotationScheduleInfo | undefined> {
  const scheduleId = rotationScheduleId(credentialId);
  try {
    const d = await client.schedule.getHandle(scheduleId).describe();
    const every = d.spec.intervals?.[0]?.every;
    const info: RotationScheduleInfo = { scheduleId, paused: d.state.paused, nextRunsMs: d.info.nextActionTimes.slice(0, 3).map((t) => t.getTime()) };
    if (every !== undefined) info.intervalMs = Number(every);
    return info;
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return undefined;
    throw err;
  }
}
