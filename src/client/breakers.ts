/**
 * Typed client facade for the circuit breakers (one `circuitBreaker` workflow
 * per service, id `breaker/<serviceId>`): read them, list them, and the
 * operator commands. Operator commands use update-with-start, so an operator
 * can force open the breaker of a service no call has reached yet.
 *
 * Ids: these functions check an id's form, not that the registry has it.
 * Without `registry` in the options, `forceOpen(client, 'biling-api')` starts
 * a FORCED_OPEN breaker for a service that does not exist, and `getBreaker`
 * shows a fresh CLOSED view (`running: false`) for any id. Pass `registry`,
 * or check first with `requireRegistryId(client, 'service', id)`
 * (./registry-lookup: asks a worker for its registry), as the CLI does.
 */
import { WithStartWorkflowOperation, WorkflowNotFoundError, type Client } from '@temporalio/client';
import pLimit from 'p-limit';
import { retryUpdateWhileNotReady } from '../activities/breaker-gate';
import { breakerStateFromSearchValue, breakerView, initialBreakerState, resolveBreakerOptions, type BreakerOptions, type BreakerStateName, type BreakerView } from '../domain/breaker';
import { DEFAULT_TASK_QUEUE, workflowIds } from '../domain/constants';
import { lookupRegistryId, UnknownIdError } from '../domain/ids';
import { NoWorkerError, pollingTaskQueues } from './connect';
import { queryWorkflow, WorkflowQueryTimeoutError } from './query';
import type { Registry } from '../domain/registry';
import {
  breakerStateQuery,
  circuitBreaker,
  configureUpdate,
  disableUpdate,
  forceCloseUpdate,
  forceOpenUpdate,
  resetUpdate,
  type OperatorRequest,
} from '../workflows/breaker';

export interface BreakerInfo extends BreakerView {
  /** False when no breaker workflow runs for the service yet (the view is then a fresh CLOSED one). */
  running: boolean;
  workflowId: string;
}

const SERVICE_ID = /^[a-z0-9][a-z0-9-]*$/;

function checkServiceId(serviceId: string): void {
  if (typeof serviceId !== 'string' || !SERVICE_ID.test(serviceId)) {
    throw new RangeError(`invalid service id ${JSON.stringify(serviceId)}: use the registry id (lowercase letters, digits and "-")`);
  }
}

/** Default deadline of {@link getBreaker}'s query, ms. */
export const DEFAULT_BREAKER_QUERY_TIMEOUT_MS = 5_000;

/**
 * A breaker workflow gave no answer to a query within its deadline: its
 * worker stopped a moment ago, is stuck or overloaded, or Temporal is
 * unreachable (no worker at all is a NoWorkerError). `cause` is the client's
 * error; when it is a WorkflowQueryTimeoutError, the message ends with its
 * advice (the task queue, its last poller, the command that starts a worker).
 */
export class BreakerQueryTimeoutError extends Error {
  override readonly name = 'BreakerQueryTimeoutError';
  constructor(
    readonly workflowId: string,
    readonly timeoutMs: number,
    options?: { cause?: unknown },
  ) {
    super(
      `breaker workflow ${workflowId} did not answer its state query within ${timeoutMs}ms: ` +
        (options?.cause instanceof WorkflowQueryTimeoutError
          ? options.cause.advice
          : `check that a worker runs on its task queue (temporal workflow describe --workflow-id ${workflowId}) and that Temporal is reachable`),
      options,
    );
  }
}

function isDeadlineExceeded(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (e.code === 4) return true; // gRPC DEADLINE_EXCEEDED
  }
  return false;
}

/**
 * The full state of a service's breaker (query `breakerState`), within
 * `opts.timeoutMs` (default {@link DEFAULT_BREAKER_QUERY_TIMEOUT_MS}).
 * @returns a view with `running: false` (CLOSED, generation 0) when the breaker has not started
 *   (for any well-formed id: check the id against the registry first, see the module comment).
 * @throws RangeError for a malformed service id or timeout; {@link BreakerQueryTimeoutError}
 *   (naming the workflow id) when no answer comes in time; NoWorkerError (naming the workflow, its task queue
 *   and the command that starts a worker) when no worker polls the breaker's task queue; other client errors
 *   when Temporal refuses the query.
 */
export async function getBreaker(client: Client, serviceId: string, opts: { timeoutMs?: number } = {}): Promise<BreakerInfo> {
  checkServiceId(serviceId);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_BREAKER_QUERY_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000) throw new RangeError(`getBreaker option timeoutMs must be an integer in 1..600000 (ms), got ${JSON.stringify(opts.timeoutMs)}`);
  const workflowId = workflowIds.breaker(serviceId);
  const deadline = Date.now() + timeoutMs;
  try {
    const view = await queryWorkflow(client, workflowId, breakerStateQuery, [], { timeoutMs });
    return { ...view, running: true, workflowId };
  } catch (err) {
    if (err instanceof NoWorkerError) throw err;
    // Past its deadline a query can also end with another status than DEADLINE_EXCEEDED (the server's own
    // context ending first, e.g. CANCELLED or UNKNOWN under load): no answer came in time either way.
    const pastDeadline = Date.now() >= deadline && !(err instanceof WorkflowNotFoundError);
    if (isDeadlineExceeded(err) || pastDeadline) throw new BreakerQueryTimeoutError(workflowId, timeoutMs, { cause: err });
    if (!(err instanceof WorkflowNotFoundError)) throw err;
    const now = Date.now();
    return { ...breakerView(initialBreakerState(serviceId, {}, now), now), running: false, workflowId };
  }
}

export interface BreakerSummary {
  serviceId: string;
  workflowId: string;
  state: BreakerStateName;
  generation: number;
  /** Percent, over the current window. */
  failureRate: number;
  slowCallRate: number;
  calls: number;
  /** OPEN: epoch ms when the next trial is allowed. */
  openUntilMs?: number;
  /** The last transition, if any. */
  lastTransition?: BreakerView['transitions'][number];
}

/**
 * Every running breaker, sorted by service id: listed through visibility
 * (`WorkflowType = "circuitBreaker"`), then each queried for its exact state
 * (8 at a time, 5 s deadline) when a worker polls its task queue; one on an
 * unpolled queue, or that does not answer, is reported with its `BreakerState`
 * search attribute.
 */
export async function listBreakers(client: Client): Promise<BreakerSummary[]> {
  const found: Array<{ workflowId: string; taskQueue: string; state: BreakerStateName }> = [];
  for await (const wf of client.workflow.list({ query: `WorkflowType = "circuitBreaker" AND ExecutionStatus = "Running"` })) {
    const sa = wf.searchAttributes?.BreakerState;
    found.push({ workflowId: wf.workflowId, taskQueue: wf.taskQueue, state: breakerStateFromSearchValue(Array.isArray(sa) ? sa[0] : sa) ?? 'CLOSED' });
  }
  // A query to a breaker whose task queue nobody polls would hang until its deadline: query only polled ones.
  const polled = await pollingTaskQueues(client, found.map((f) => f.taskQueue));
  const limit = pLimit(8);
  const rows = await Promise.all(
    found.map((f) =>
      limit(async (): Promise<BreakerSummary> => {
        const serviceId = f.workflowId.replace(/^breaker\//, '');
        try {
          if (!polled.has(f.taskQueue)) throw new Error('no worker polls its task queue');
          const v = await queryWorkflow(client, f.workflowId, breakerStateQuery, [], { timeoutMs: 5_000, precheck: false, taskQueue: f.taskQueue });
          return summarize(serviceId, f.workflowId, v);
        } catch {
          return { serviceId, workflowId: f.workflowId, state: f.state, generation: -1, failureRate: 0, slowCallRate: 0, calls: 0 };
        }
      }),
    ),
  );
  return rows.sort((a, b) => a.serviceId.localeCompare(b.serviceId));
}

function summarize(serviceId: string, workflowId: string, v: BreakerView): BreakerSummary {
  return {
    serviceId,
    workflowId,
    state: v.state,
    generation: v.generation,
    failureRate: v.rates.failureRate,
    slowCallRate: v.rates.slowCallRate,
    calls: v.rates.calls,
    openUntilMs: v.openUntilMs,
    lastTransition: v.transitions[v.transitions.length - 1],
  };
}

export interface OperatorOptions extends OperatorRequest {
  /** Task queue to start the breaker on if it is not running; default the project's. */
  taskQueue?: string;
  /** Options for a breaker started by this command (normally the registry's). */
  options?: Partial<BreakerOptions>;
  /**
   * The registry the workers follow: when given, a service it lacks is refused
   * with an UnknownIdError (did-you-mean) unless its breaker already runs, and
   * a breaker started here takes the registry's options (unless `options` is given).
   */
  registry?: Registry;
}

/** Whether the breaker workflow of `serviceId` is running. */
export async function breakerRunning(client: Client, serviceId: string): Promise<boolean> {
  checkServiceId(serviceId);
  try {
    return (await client.workflow.getHandle(workflowIds.breaker(serviceId)).describe()).status.name === 'RUNNING';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

async function operate(
  client: Client,
  serviceId: string,
  update: typeof forceOpenUpdate,
  opts: OperatorOptions,
): Promise<BreakerView> {
  checkServiceId(serviceId);
  let options = opts.options;
  if (opts.registry && !(await breakerRunning(client, serviceId))) {
    const found = lookupRegistryId(opts.registry, 'service', serviceId);
    if (!found.known) throw new UnknownIdError(found);
    options ??= opts.registry.services.find((s) => s.id === serviceId)?.circuitBreaker;
  }
  const input = { serviceId, options: resolveBreakerOptions(options ?? {}) };
  return retryUpdateWhileNotReady(() =>
    client.workflow.executeUpdateWithStart(update, {
      args: [{ note: opts.note }],
      startWorkflowOperation: new WithStartWorkflowOperation(circuitBreaker, {
        workflowId: workflowIds.breaker(serviceId),
        taskQueue: opts.taskQueue ?? DEFAULT_TASK_QUEUE,
        args: [input],
        workflowIdConflictPolicy: 'USE_EXISTING',
      }),
    }),
  );
}

/** FORCED_OPEN: every call is rejected until {@link forceClose} or {@link reset}. Returns the new state. */
export function forceOpen(client: Client, serviceId: string, opts: OperatorOptions = {}): Promise<BreakerView> {
  return operate(client, serviceId, forceOpenUpdate, opts);
}

/** CLOSED with an empty window (the consecutive-trip count is kept). Returns the new state. */
export function forceClose(client: Client, serviceId: string, opts: OperatorOptions = {}): Promise<BreakerView> {
  return operate(client, serviceId, forceCloseUpdate, opts);
}

/** CLOSED with an empty window and the consecutive-trip count cleared (the wait starts from its base again). */
export function reset(client: Client, serviceId: string, opts: OperatorOptions = {}): Promise<BreakerView> {
  return operate(client, serviceId, resetUpdate, opts);
}

/** DISABLED: every call admitted, nothing recorded, until {@link forceClose} or {@link reset}. */
export function disable(client: Client, serviceId: string, opts: OperatorOptions = {}): Promise<BreakerView> {
  return operate(client, serviceId, disableUpdate, opts);
}

/**
 * Gives a breaker new options (e.g. after a registry change), starting it with
 * them if it is not running. Not a transition: the state and generation stay;
 * the window is emptied when its shape (type, size, duration, slow-call
 * duration, failure statuses) changes.
 * @throws RangeError naming a bad option and its value (checked here and by the workflow's validator).
 */
export async function configureBreaker(client: Client, serviceId: string, options: Partial<BreakerOptions>, opts: { taskQueue?: string } = {}): Promise<BreakerView> {
  checkServiceId(serviceId);
  const resolved = resolveBreakerOptions(options);
  return retryUpdateWhileNotReady(() =>
    client.workflow.executeUpdateWithStart(configureUpdate, {
      args: [{ options: resolved }],
      startWorkflowOperation: new WithStartWorkflowOperation(circuitBreaker, {
        workflowId: workflowIds.breaker(serviceId),
        taskQueue: opts.taskQueue ?? DEFAULT_TASK_QUEUE,
        args: [{ serviceId, options: resolved }],
        workflowIdConflictPolicy: 'USE_EXISTING',
      }),
    }),
  );
}

/**
 * After a registry reload: sends `configure` to every running breaker whose
 * service's `circuitBreaker` options changed (a removed key means the
 * defaults). Breakers not running are left alone; they start with the new
 * options when first used. Call from the registry watcher's reload hook.
 * @returns the service ids whose breakers were reconfigured.
 */
export async function reconfigureBreakers(
  client: Client,
  previous: Pick<Registry, 'services'>,
  next: Pick<Registry, 'services'>,
): Promise<string[]> {
  const before = new Map(previous.services.map((s) => [s.id, JSON.stringify(resolveBreakerOptions(s.circuitBreaker ?? {}))]));
  const changed = next.services.filter((s) => {
    const was = before.get(s.id);
    return was !== undefined && was !== JSON.stringify(resolveBreakerOptions(s.circuitBreaker ?? {}));
  });
  const limit = pLimit(8);
  const done = await Promise.all(
    changed.map((s) =>
      limit(async () => {
        try {
          await retryUpdateWhileNotReady(() =>
            client.workflow.getHandle(workflowIds.breaker(s.id)).executeUpdate(configureUpdate, { args: [{ options: resolveBreakerOptions(s.circuitBreaker ?? {}) }] }),
          );
          return s.id;
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) return undefined;
          throw err;
        }
      }),
    ),
  );
  return done.filter((x): x is string => x !== undefined);
}
