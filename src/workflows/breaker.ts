/**
 * `circuitBreaker`: one long-lived entity workflow per service (id
 * `breaker/<serviceId>`) holding that service's breaker for every worker
 * process and agent. The rules live in the pure reducer `src/domain/breaker`;
 * this file only wires messages, the OPEN -> HALF_OPEN timer, the
 * `BreakerState` search attribute, transition alerts and continue-as-new.
 *
 * Started lazily: gates and clients use signal-with-start (outcomes) or
 * update-with-start (permits, operator commands) with conflict policy
 * USE_EXISTING, so whoever needs it first creates it.
 */
import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  defineUpdate,
  log,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { BreakerActivities } from '../activities/breaker';
import type { createAlertActivities } from '../activities/alerts';
import {
  breakerAlert,
  breakerStateSearchValue,
  breakerView,
  initialBreakerState,
  newTransitions,
  nextDeadlineMs,
  permitDecision,
  reduceBreaker,
  resolveBreakerOptions,
  retryAfterMs,
  type BreakerEvent,
  type BreakerStateName,
  type BreakerOptions,
  type BreakerState,
  type BreakerTransition,
  type BreakerView,
  type PermitDecision,
  type ReportedOutcome,
} from '../domain/breaker';

/** Workflow input. On continue-as-new, `state` carries everything (options included). */
export interface BreakerWorkflowInput {
  serviceId: string;
  /** Options for a new breaker (validated by the starter; see `resolveBreakerOptions`). Ignored when `state` is given. */
  options?: Partial<BreakerOptions>;
  state?: BreakerState;
  /** Transitions not yet reported (metrics, alert) when the previous run continued as new; oldest first. */
  undelivered?: BreakerTransition[];
  /** Continue-as-new once history reaches this many events (default 2000), even before the server suggests it. */
  maxHistoryEvents?: number;
  /** ... or this many bytes (default 4 MiB). */
  maxHistoryBytes?: number;
}

/** Outcomes from one reporter (a worker process or agent), oldest first. */
export interface OutcomeBatch {
  /** Stable id of the reporting process (quorum counts distinct reporters). */
  reporter: string;
  outcomes: ReportedOutcome[];
}

export interface PermitRequest {
  /** Unique per trial call (a retried request with the same id gets the same answer). */
  permitId: string;
  reporter: string;
}

export interface OperatorRequest {
  /** Why, for the transition record and alert (no secrets). */
  note?: string;
}

/** Outcomes in batches. A signal, not an update: reporters must never wait on the breaker. */
export const recordOutcomesSignal = defineSignal<[OutcomeBatch]>('recordOutcomes');
/**
 * A HALF_OPEN trial permit. An update, not a signal, because the caller needs
 * the answer and the count must be decided by one writer: this is what keeps
 * concurrent trials at or under the permitted number.
 */
export const acquirePermitUpdate = defineUpdate<PermitDecision, [PermitRequest]>('acquirePermit');
/** The full state: state, generation, window counts and rates, OPEN end, last transitions. */
export const breakerStateQuery = defineQuery<BreakerView>('breakerState');
/**
 * Just what a gate needs to decide (tens of bytes, where the full state
 * carries the window): every gate asks this twice a second per service.
 */
export const breakerStatusQuery = defineQuery<BreakerStatus>('breakerStatus');

export interface BreakerStatus {
  state: BreakerStateName;
  generation: number;
  /** See `retryAfterMs` in src/domain/breaker. */
  retryAfterMs: number;
  chainId: string;
}
export const forceOpenUpdate = defineUpdate<BreakerView, [OperatorRequest]>('forceOpen');
export const forceCloseUpdate = defineUpdate<BreakerView, [OperatorRequest]>('forceClose');
export const resetUpdate = defineUpdate<BreakerView, [OperatorRequest]>('reset');
export const disableUpdate = defineUpdate<BreakerView, [OperatorRequest]>('disable');
/** New options for a running breaker (the registry changed); the validator rejects bad ones with a RangeError naming the option. */
export const configureUpdate = defineUpdate<BreakerView, [ConfigureRequest]>('configure');

export interface ConfigureRequest {
  options: Partial<BreakerOptions>;
}

export const BREAKER_STATE_KEY = defineSearchAttributeKey('BreakerState', SearchAttributeType.KEYWORD);
export const SERVICE_ID_KEY = defineSearchAttributeKey('ServiceId', SearchAttributeType.KEYWORD);

export const DEFAULT_MAX_HISTORY_EVENTS = 2000;
export const DEFAULT_MAX_HISTORY_BYTES = 4 * 1024 * 1024;

const { breakerTransitioned } = proxyActivities<BreakerActivities>({
  startToCloseTimeout: '10s',
  retry: { maximumAttempts: 3, initialInterval: '1s' },
});
const { deliverAlert } = proxyActivities<Pick<ReturnType<typeof createAlertActivities>, 'deliverAlert'>>({
  startToCloseTimeout: '30s',
  heartbeatTimeout: '20s',
  // A receiver may be down for a while; keep trying for an hour (the alert is also in history and the query).
  scheduleToCloseTimeout: '1h',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m' },
});

function validatePermitRequest(req: PermitRequest): void {
  if (!req || typeof req !== 'object') throw new TypeError('acquirePermit: expected { permitId, reporter }');
  if (typeof req.permitId !== 'string' || req.permitId.length === 0 || req.permitId.length > 200) {
    throw new TypeError(`acquirePermit: permitId must be a string of 1..200 chars, got ${JSON.stringify(req.permitId)}`);
  }
  if (typeof req.reporter !== 'string' || req.reporter.length === 0 || req.reporter.length > 200) {
    throw new TypeError(`acquirePermit: reporter must be a string of 1..200 chars, got ${JSON.stringify(req.reporter)}`);
  }
}

function validateOperatorRequest(req: OperatorRequest | undefined): void {
  if (req === undefined || req === null) return;
  if (typeof req !== 'object') throw new TypeError('breaker operator command: expected { note? }');
  if (req.note !== undefined && (typeof req.note !== 'string' || req.note.length > 500)) {
    throw new TypeError('breaker operator command: note must be a string of at most 500 chars');
  }
}

/** Keeps only well-formed outcomes: a signal cannot be refused, so bad entries are dropped (and logged). */
function wellFormed(batch: OutcomeBatch): ReportedOutcome[] {
  if (!batch || typeof batch.reporter !== 'string' || !Array.isArray(batch.outcomes)) return [];
  return batch.outcomes.filter(
    (o) =>
      o !== null &&
      typeof o === 'object' &&
      typeof o.ok === 'boolean' &&
      typeof o.latencyMs === 'number' &&
      Number.isFinite(o.latencyMs) &&
      typeof o.startedAt === 'number' &&
      (o.generation === undefined || Number.isInteger(o.generation)) &&
      (o.status === undefined || typeof o.status === 'number') &&
      (o.permitId === undefined || typeof o.permitId === 'string'),
  );
}

export async function circuitBreaker(input: BreakerWorkflowInput): Promise<void> {
  const maxEvents = input.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS;
  const maxBytes = input.maxHistoryBytes ?? DEFAULT_MAX_HISTORY_BYTES;
  let state: BreakerState;
  try {
    state = input.state ?? initialBreakerState(input.serviceId, input.options ?? {}, Date.now());
  } catch (err) {
    // Starters validate options; if bad ones still arrive, fail this run visibly rather than retry a task forever.
    throw ApplicationFailure.nonRetryable(`breaker/${input.serviceId}: ${(err as Error).message}`, 'InvalidBreakerOptions');
  }
  // Identifies this breaker's continue-as-new chain: a breaker terminated and started again restarts at generation 0.
  const chainId = workflowInfo().firstExecutionRunId;
  let deadline = nextDeadlineMs(state);
  let deadlineChanged = false;
  // Transitions to report, oldest first; the head stays until reported, so a
  // continue-as-new while it is in flight carries it over (receivers dedupe by alert id).
  const undelivered: BreakerTransition[] = [...(input.undelivered ?? [])];
  let delivering = false;
  const deliver = async (): Promise<void> => {
    delivering = true;
    while (undelivered.length > 0) {
      const t = undelivered[0]!;
      try {
        await breakerTransitioned(t);
      } catch (err) {
        log.warn('breaker transition not counted', { serviceId: t.serviceId, generation: t.generation, error: String(err) });
      }
      const alert = breakerAlert(t);
      if (alert) {
        try {
          await deliverAlert(alert);
        } catch (err) {
          // Alerting must never stop the breaker; the transition stays in history and the query.
          log.warn('breaker alert not delivered', { serviceId: t.serviceId, alertId: alert.id, error: String(err) });
        }
      }
      undelivered.shift();
    }
    delivering = false;
  };
  const report = (ts: BreakerTransition[]): void => {
    undelivered.push(...ts);
    if (!delivering && undelivered.length > 0) void deliver();
  };

  const current = workflowInfo().typedSearchAttributes;
  // Values are lower_snake_case (`half_open`), like every search attribute's. Where only
  // the value changed, older histories replay (the SDK does not compare upserted values).
  // A run continued from one that wrote the upper-case value (`CLOSED`) upserts the new
  // value here: an upsert that run did not make before, hence `patched`.
  const carried = current.get(BREAKER_STATE_KEY);
  const shown = breakerStateSearchValue(state.state);
  const relabel = carried === state.state && carried !== shown && patched('breaker-state-lower-case');
  if (current.get(SERVICE_ID_KEY) !== state.serviceId || (carried !== shown && carried !== state.state) || relabel) {
    upsertSearchAttributes([
      { key: SERVICE_ID_KEY, value: state.serviceId },
      { key: BREAKER_STATE_KEY, value: breakerStateSearchValue(state.state) },
    ]);
  }

  // Runs begun before an aborted HALF_OPEN trial freed its slot at once kept it
  // until the permit expired; freeing it earlier changes their timers and
  // permit answers, so they keep the old rule (until their continue-as-new).
  const legacy = patched('breaker-aborted-trial-frees-slot') ? undefined : { abortedTrialKeepsSlot: true };
  const apply = (event: BreakerEvent): void => {
    const next = reduceBreaker(state, event, Date.now(), legacy);
    const changes = newTransitions(state, next);
    state = next;
    if (changes.length > 0) {
      upsertSearchAttributes([{ key: BREAKER_STATE_KEY, value: breakerStateSearchValue(state.state) }]);
      report(changes);
    }
    const d = nextDeadlineMs(state);
    if (d !== deadline) {
      deadline = d;
      deadlineChanged = true;
    }
  };

  setHandler(recordOutcomesSignal, (batch) => {
    const outcomes = wellFormed(batch);
    if (outcomes.length !== (batch?.outcomes?.length ?? 0)) {
      log.warn('breaker dropped malformed outcomes', { serviceId: state.serviceId, dropped: (batch?.outcomes?.length ?? 0) - outcomes.length });
    }
    if (outcomes.length > 0) apply({ type: 'outcomes', reporter: batch.reporter, outcomes });
  });
  setHandler(
    acquirePermitUpdate,
    (req) => {
      apply({ type: 'acquirePermit', permitId: req.permitId, reporter: req.reporter });
      return { ...permitDecision(state, req.permitId, Date.now()), chainId };
    },
    { validator: validatePermitRequest },
  );
  setHandler(breakerStateQuery, () => ({ ...breakerView(state, Date.now()), chainId }));
  setHandler(breakerStatusQuery, () => ({ state: state.state, generation: state.generation, retryAfterMs: retryAfterMs(state, Date.now()), chainId }));
  const operator = (type: 'forceOpen' | 'forceClose' | 'reset' | 'disable') => (req: OperatorRequest | undefined) => {
    apply({ type, note: req?.note });
    return { ...breakerView(state, Date.now()), chainId };
  };
  setHandler(forceOpenUpdate, operator('forceOpen'), { validator: validateOperatorRequest });
  setHandler(forceCloseUpdate, operator('forceClose'), { validator: validateOperatorRequest });
  setHandler(resetUpdate, operator('reset'), { validator: validateOperatorRequest });
  setHandler(disableUpdate, operator('disable'), { validator: validateOperatorRequest });
  setHandler(
    configureUpdate,
    (req) => {
      apply({ type: 'configure', options: resolveBreakerOptions(req.options) });
      return { ...breakerView(state, Date.now()), chainId };
    },
    {
      validator: (req) => {
        if (!req || typeof req !== 'object' || !req.options || typeof req.options !== 'object') throw new TypeError('configure: expected { options }');
        resolveBreakerOptions(req.options);
      },
    },
  );

  const historyFull = (): boolean => {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength >= maxEvents || info.historySize >= maxBytes;
  };

  report([]); // transitions carried over from the previous run

  for (;;) {
    deadlineChanged = false;
    // The timer is created only when the deadline changes, not per signal, to keep history small.
    const timeoutMs = deadline === undefined ? undefined : Math.max(1, deadline - Date.now());
    const wake = () => deadlineChanged || historyFull();
    const woken = timeoutMs === undefined ? (await condition(wake), true) : await condition(wake, timeoutMs);
    if (!woken) apply({ type: 'tick' });
    if (historyFull()) {
      await condition(allHandlersFinished);
      // Signals that arrive while this task completes fail the continue-as-new
      // command on the server, which replays the task with them: none is lost.
      await continueAsNew<typeof circuitBreaker>({
        serviceId: state.serviceId,
        state,
        undelivered,
        maxHistoryEvents: input.maxHistoryEvents,
        maxHistoryBytes: input.maxHistoryBytes,
      });
    }
  }
}
