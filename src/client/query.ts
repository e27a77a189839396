/**
 * The one way the client reads a workflow by query: every query of
 * src/client goes through {@link queryWorkflow}, so a workflow that no worker
 * can answer for is reported as a {@link NoWorkerError} naming the workflow,
 * its task queue, the namespace and the command that starts a worker, at once,
 * instead of Temporal's raw query error after a wait.
 */
import { WorkflowNotFoundError, type Client, type QueryDefinition } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { LIVE_POLLER_WINDOW_MS } from '../worker/cluster-check';
import { NoWorkerError, startWorkerHint } from './connect';

/** Default deadline of one query, ms (a worker answers from its cache in milliseconds). */
export const DEFAULT_QUERY_TIMEOUT_MS = 5_000;

/** Deadline of the poller check made after a query failed, ms. */
const POLLER_CHECK_TIMEOUT_MS = 5_000;

/**
 * A query got no answer within its deadline although its task queue lists a
 * worker seen polling lately (within {@link LIVE_POLLER_WINDOW_MS}): the
 * worker stopped a moment ago (Temporal lists a poller for minutes after its
 * last poll), or it runs but is stuck or overloaded. The message names the
 * workflow, the queue, the namespace, the last poller, and both ways out.
 * `cause` is the client's error.
 */
export class WorkflowQueryTimeoutError extends Error {
  override readonly name = 'WorkflowQueryTimeoutError';
  /** What to do, without the first clause (for wrappers such as BreakerQueryTimeoutError). */
  readonly advice: string;
  constructor(
    readonly workflowId: string,
    readonly query: string,
    readonly taskQueue: string,
    readonly namespace: string,
    readonly timeoutMs: number,
    /** The most recent poller: its identity (`host:pid ...`) and how long ago it polled, ms. */
    readonly lastPoller: { identity: string; lastSeenMsAgo?: number },
    options?: { cause?: unknown },
  ) {
    const seen = lastPoller.lastSeenMsAgo === undefined ? '' : ` ${Math.round(lastPoller.lastSeenMsAgo / 1000)}s ago`;
    const advice =
      `its task queue "${taskQueue}" in namespace ${namespace} last saw worker ${lastPoller.identity.split(/\s+/)[0]} poll${seen}; ` +
      `if that worker stopped, ${startWorkerHint(taskQueue, namespace)}; if it runs, its logs say why it does not answer`;
    super(`workflow ${workflowId} did not answer its ${query} query within ${timeoutMs}ms: ${advice}`, options);
    this.advice = advice;
  }
}

export interface QueryWorkflowOptions {
  /** Deadline of the query, ms; default {@link DEFAULT_QUERY_TIMEOUT_MS}. With the check before it, the check counts in. */
  timeoutMs?: number;
  /**
   * Check before the query that a worker polls the workflow's task queue
   * (describe the workflow unless `taskQueue` is given, then describe the
   * queue: two short calls), so an unpolled queue fails at once rather than
   * after `timeoutMs`. Default true; `false` for callers that checked a whole
   * list's queues at once (`pollingTaskQueues`). The server's no-poller
   * answers are recognised after the query either way.
   */
  precheck?: boolean;
  /** The workflow's task queue when the caller knows it for sure: saves the describe. */
  taskQueue?: string;
}

/**
 * Queries workflow `workflowId` with `def` and `args`, within `opts.timeoutMs`.
 *
 * What Temporal answers a query no worker can take (seen on the dev server,
 * Temporal Server 1.29.1, and in this project's CI): on a task queue that was
 * never polled, nothing until the call's deadline, then DEADLINE_EXCEEDED
 * ("query timed out before a worker could process it"; ~30 s, the server's
 * own bound, when the client sets no deadline); on a queue whose worker
 * stopped, FAILED_PRECONDITION "no poller seen for task queue recently,
 * worker may be down" (the matching service's fast fail), or a timeout. The
 * SDK wraps both as `ServiceError("Failed to query Workflow")` with the gRPC
 * error as `cause`. Temporal keeps a queue's pollers for a few minutes after
 * the last poll, so the check before the query does not see a worker that
 * stopped just now: the answers after it are recognised too.
 *
 * @returns the query's result.
 * Hence: before the query, no worker seen polling the workflow's queue within
 * {@link LIVE_POLLER_WINDOW_MS} is a NoWorkerError at once; after it, the
 * no-poller answer, or no answer in time with no such worker, is a
 * NoWorkerError too, and no answer in time while a worker was seen lately is
 * a {@link WorkflowQueryTimeoutError}.
 *
 * @throws NoWorkerError (with `workflowId`, `taskQueue`, `namespace`, and the
 *   gRPC error as `cause` when there was one) when no worker polls the
 *   workflow's task queue; WorkflowQueryTimeoutError (the gRPC error as
 *   `cause`) when no answer came in time from a queue with a recent poller;
 *   WorkflowNotFoundError when the workflow does not exist; any other error
 *   of the query as it came (QueryRejectedError, QueryNotRegisteredError, ...).
 */
export async function queryWorkflow<R, A extends any[]>(client: Client, workflowId: string, def: QueryDefinition<R, A>, args: A, opts: QueryWorkflowOptions = {}): Promise<R> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000) throw new RangeError(`query option timeoutMs must be an integer in 1..600000 (ms), got ${JSON.stringify(opts.timeoutMs)}`);
  const namespace = client.options.namespace;
  const handle = client.workflow.getHandle(workflowId);
  const deadline = Date.now() + timeoutMs;
  let taskQueue = opts.taskQueue;
  try {
    return await client.connection.withDeadline(deadline, async () => {
      if (opts.precheck !== false) {
        taskQueue ??= (await handle.describe()).taskQueue;
        if ((await livePollers(client, taskQueue))?.length === 0) throw new NoWorkerError(taskQueue, namespace, { workflowId, query: def.name });
      }
      return await handle.query(def, ...args);
    });
  } catch (err) {
    if (err instanceof NoWorkerError || err instanceof WorkflowNotFoundError) throw err;
    const noPoller = isNoPollerAnswer(err);
    if (!noPoller && !isDeadlineExceeded(err) && Date.now() < deadline) throw err;
    // No answer in time, or the server's no-poller answer: name the queue, and say "no worker" only when it is so.
    let found: Error | undefined;
    try {
      await client.connection.withDeadline(Date.now() + POLLER_CHECK_TIMEOUT_MS, async () => {
        taskQueue ??= (await handle.describe()).taskQueue;
        const pollers = noPoller ? [] : await livePollers(client, taskQueue);
        if (pollers?.length === 0) found = new NoWorkerError(taskQueue, namespace, { workflowId, query: def.name, cause: err });
        else if (pollers) found = new WorkflowQueryTimeoutError(workflowId, def.name, taskQueue, namespace, timeoutMs, pollers[0]!, { cause: err });
      });
    } catch {
      // The check itself failed (Temporal unreachable...): the query's own error says more.
    }
    throw found ?? err;
  }
}

/**
 * The workers polling `taskQueue`'s workflow tasks (where queries go) seen
 * within {@link LIVE_POLLER_WINDOW_MS}, most recent first; undefined when the
 * queue cannot be described (then nothing is claimed about it).
 */
async function livePollers(client: Client, taskQueue: string): Promise<Array<{ identity: string; lastSeenMsAgo?: number }> | undefined> {
  let r;
  try {
    r = await client.workflowService.describeTaskQueue({
      namespace: client.options.namespace,
      taskQueue: { name: taskQueue, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
      taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    });
  } catch {
    return undefined;
  }
  const now = Date.now();
  return (r.pollers ?? [])
    .map((p) => {
      const at = p.lastAccessTime?.seconds != null ? Number(p.lastAccessTime.seconds) * 1000 + Math.floor((p.lastAccessTime.nanos ?? 0) / 1e6) : undefined;
      return at === undefined ? { identity: p.identity ?? '' } : { identity: p.identity ?? '', lastSeenMsAgo: Math.max(0, now - at) };
    })
    .filter((p) => p.lastSeenMsAgo === undefined || p.lastSeenMsAgo <= LIVE_POLLER_WINDOW_MS)
    .sort((a, b) => (a.lastSeenMsAgo ?? 0) - (b.lastSeenMsAgo ?? 0));
}

/** The gRPC status codes on an error's `cause` chain (the SDK's ServiceError wraps the gRPC error). */
function grpcCauses(err: unknown): Array<{ code?: unknown; details?: unknown; message?: unknown }> {
  const out: Array<{ code?: unknown; details?: unknown; message?: unknown }> = [];
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && typeof e === 'object' && depth < 5; e = e.cause as typeof e, depth++) out.push(e);
  return out;
}

/** FAILED_PRECONDITION (9) "no poller seen for task queue recently, worker may be down". */
function isNoPollerAnswer(err: unknown): boolean {
  return grpcCauses(err).some((e) => e.code === 9 && /no poller/i.test(`${String(e.details ?? '')} ${String(e.message ?? '')}`));
}

/** DEADLINE_EXCEEDED (4) anywhere on the chain: the client's deadline, or the server's own. */
function isDeadlineExceeded(err: unknown): boolean {
  return grpcCauses(err).some((e) => e.code === 4);
}
