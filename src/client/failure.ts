/**
 * One line a user can act on for a workflow that failed: which workflow,
 * which step inside it (activity or child workflow), the root cause's own
 * message, and what to do when the cause is one we recognise (a payload over
 * Temporal's size limit, a timeout, no worker). Every CLI command that waits
 * for a workflow reports its failures through {@link describeWorkflowFailure},
 * so a failed `sweep` says more than "Workflow execution failed".
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancelledFailure,
  ChildWorkflowFailure,
  TerminatedFailure,
  TimeoutFailure,
  WorkflowFailedError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';

/** Temporal's wrapper messages, which say nothing the failure's type does not. */
const WRAPPER = /^(Activity task failed|Activity task timed out|Child Workflow execution failed|Workflow execution failed|Workflow Update failed|Update failed)$/;

/**
 * A failed workflow run that knows its id: a WorkflowFailedError (callers'
 * `instanceof` checks and `.cause` chains keep working) whose `message` is
 * {@link describeWorkflowFailure}'s line.
 */
export class WorkflowRunFailedError extends WorkflowFailedError {
  constructor(
    readonly workflowId: string,
    failure: WorkflowFailedError,
  ) {
    super(describeWorkflowFailure(failure, workflowId), failure.cause, failure.retryState);
    Object.defineProperty(this, 'name', { value: 'WorkflowRunFailedError' });
  }
}

/**
 * Awaits a workflow's result; a WorkflowFailedError becomes a
 * {@link WorkflowRunFailedError} naming `workflowId`. Other errors pass through.
 */
export async function resultOf<T>(workflowId: string, result: Promise<T>): Promise<T> {
  try {
    return await result;
  } catch (err) {
    if (err instanceof WorkflowFailedError && !(err instanceof WorkflowRunFailedError)) throw new WorkflowRunFailedError(workflowId, err);
    throw err;
  }
}

/** True for the SDK's errors that carry a workflow's (or update's) failure chain. */
export function isWorkflowFailure(err: unknown): err is WorkflowFailedError | WorkflowUpdateFailedError {
  return err instanceof WorkflowFailedError || err instanceof WorkflowUpdateFailedError || (err as Error | undefined)?.name === 'WorkflowFailedError' || (err as Error | undefined)?.name === 'WorkflowUpdateFailedError';
}

/**
 * What to do about a root cause we recognise, or undefined.
 * The payload limit is the frontend's `limit.blobSize.error` (2 MiB by
 * default; Temporal docs, "Temporal Platform limits"): the server refuses a
 * larger result, input or signal, and the SDK reports it as a failed task.
 */
export function hintFor(rootMessage: string, root?: Error): string | undefined {
  if (/blob ?size|payload size|size limit|exceeds? .*limit|larger than max|message larger/i.test(rootMessage)) {
    return "a payload exceeds Temporal's size limit (2 MiB by default, the server's limit.blobSize.error): pass less data through this step (fewer services per page, a smaller registry), or raise the server's limit";
  }
  if (root instanceof TimeoutFailure || /timed out|timeout/i.test(rootMessage)) {
    return 'a step did not finish in time: check that workers of the task queue are running and reach what the step calls (their logs say why)';
  }
  return undefined;
}

/**
 * Describes a failure chain in one line:
 * `workflow <id> failed: activity <type> (attempt limit reached): <root message>; <hint>`.
 * @param err a WorkflowFailedError, WorkflowUpdateFailedError, or any error (then its first line).
 * @param workflowId the run's workflow id, when the caller knows it.
 * @returns at most ~600 characters, no stack, no payload contents.
 */
export function describeWorkflowFailure(err: unknown, workflowId?: string): string {
  if (err instanceof WorkflowRunFailedError && workflowId === undefined) return err.message;
  const where: string[] = [];
  let root: Error | undefined = err instanceof Error ? err : undefined;
  let e: unknown = isWorkflowFailure(err) ? err.cause : err;
  let terminal: string | undefined;
  while (e instanceof Error) {
    root = e;
    if (e instanceof ActivityFailure) {
      const retry = e.retryState === 'MAXIMUM_ATTEMPTS_REACHED' ? ', attempt limit reached' : e.retryState === 'TIMEOUT' ? ', retry horizon reached' : '';
      where.push(`activity ${e.activityType}${retry}`);
    } else if (e instanceof ChildWorkflowFailure) {
      where.push(`child workflow ${e.workflowType} ${e.execution.workflowId}`);
    } else if (e instanceof TimeoutFailure) {
      terminal = `timed out (${e.timeoutType ?? 'timeout'})`;
    } else if (e instanceof TerminatedFailure) {
      terminal = `terminated${e.message && e.message !== 'Terminated' ? `: ${e.message}` : ''}`;
    } else if (e instanceof CancelledFailure) {
      terminal = 'cancelled';
    }
    e = (e as { cause?: unknown }).cause;
  }
  const rootMessage = firstLine(root?.message ?? String(err));
  const cause =
    terminal && (root instanceof TimeoutFailure || root instanceof TerminatedFailure || root instanceof CancelledFailure)
      ? terminal
      : WRAPPER.test(rootMessage)
        ? (terminal ?? 'failed')
        : root instanceof ApplicationFailure && root.type && root.type !== 'Error' && !rootMessage.includes(root.type)
          ? `${rootMessage} (${root.type})`
          : rootMessage;
  const head = workflowId ? `workflow ${workflowId} failed` : 'workflow failed';
  const hint = hintFor(rootMessage, root);
  return [head, ...where, cause].join(': ').slice(0, 500) + (hint ? `; ${hint}` : '');
}

/** The first line of the innermost error's message in a failure chain (WorkflowFailedError → ActivityFailure → ApplicationFailure). */
export function rootCauseMessage(err: unknown): string {
  let e = err as (Error & { cause?: unknown }) | undefined;
  while (e?.cause instanceof Error) e = e.cause as Error & { cause?: unknown };
  return firstLine(e?.message ?? String(err));
}

function firstLine(s: string): string {
  return s.split('\n')[0]!.trim();
}
