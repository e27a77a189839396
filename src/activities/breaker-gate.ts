/**
 * The per-process gate in front of every call to a service: a cached view of
 * each service's breaker workflow (`breaker/<serviceId>`).
 *
 * - CLOSED / DISABLED / OPEN are decided from the cache, with no Temporal
 *   round trip (the hot path allocates nothing: a pre-resolved permit promise).
 *   The cache is refreshed by querying the breaker every `refreshIntervalMs`
 *   (default 500 ms, so every process sees a trip within about 1 s), and at
 *   once after a local failure has been sent.
 * - HALF_OPEN asks the breaker for a trial permit through the `acquirePermit`
 *   update (update-with-start), because only the breaker can count trials.
 * - Outcomes are buffered and sent in batches with signal-with-start (which
 *   also starts the breaker lazily): every `flushIntervalMs`, when
 *   `maxBatchSize` is reached, and at once for failures and trial results.
 * - A rejected call fails fast with {@link BreakerOpenError}, carrying
 *   `retryAfterMs`, the time until the next trial.
 *
 * If Temporal cannot be reached the gate fails open with the last state it
 * knew (CLOSED when it never knew one): the breaker protects the service, it
 * must not add an outage of its own.
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { WithStartWorkflowOperation, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { resolveBreakerOptions, type BreakerOptions, type BreakerStateName, type PermitDecision, type ReportedOutcome } from '../domain/breaker';
import { workflowIds } from '../domain/constants';
import type { CallOutcome } from '../domain/outcome';
import { acquirePermitUpdate, breakerStatusQuery, circuitBreaker, recordOutcomesSignal, type BreakerStatus, type BreakerWorkflowInput } from '../workflows/breaker';
import type { BreakerMetrics } from './breaker-metrics';
import type { CallGate, CallPermit, OutcomeSink } from './ports';

/**
 * Thrown by {@link BreakerGate.admit} when the breaker does not admit a call.
 * `retryAfterMs` is the time until the next trial: use it as the activity's
 * next retry delay ({@link BreakerOpenError.toApplicationFailure}).
 */
export class BreakerOpenError extends Error {
  override readonly name = 'BreakerOpenError';
  constructor(
    readonly serviceId: string,
    readonly state: BreakerStateName,
    readonly generation: number,
    /** Milliseconds until the breaker may admit a trial call. */
    readonly retryAfterMs: number,
  ) {
    super(
      `circuit breaker of service "${serviceId}" is ${state}: call rejected; ` +
        (state === 'FORCED_OPEN' ? 'an operator opened it (integration-agent breaker close ' + serviceId + ')' : `next trial in ${Math.ceil(retryAfterMs)}ms`),
    );
  }

  /** A retryable ApplicationFailure (type `BreakerOpenError`) whose next retry waits `retryAfterMs`. */
  toApplicationFailure(): ApplicationFailure {
    return ApplicationFailure.create({
      message: this.message,
      type: 'BreakerOpenError',
      nextRetryDelay: Math.max(1, Math.ceil(this.retryAfterMs)),
      details: [{ serviceId: this.serviceId, state: this.state, generation: this.generation, retryAfterMs: this.retryAfterMs }],
    });
  }
}

const UPDATE_RETRY_DELAYS_MS = [20, 50, 100, 200, 400, 800];

/**
 * Whether an update failed only because the breaker was between workflow
 * tasks: a continue-as-new (or any task) failed with buffered messages and the
 * server aborted the in-flight update (`WorkflowNotReadyFailure` /
 * MultiOperationExecutionFailure, gRPC FAILED_PRECONDITION or ABORTED). The
 * update was not applied, and sending it again is safe.
 */
export function isUpdateNotReady(err: unknown): boolean {
  for (let e = err as { code?: unknown; message?: unknown; details?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    const text = `${String(e.message ?? '')} ${String(e.details ?? '')}`;
    if ((e.code === 9 || e.code === 10) && /Update-with-Start could not be executed|workflow task failure|not ready|aborted/i.test(text)) return true;
  }
  return false;
}

/**
 * Runs an update (with or without start), sending it again while
 * {@link isUpdateNotReady} (at most 6 times, 20 ms..800 ms apart). Use only
 * for idempotent updates: permit requests (same permitId, same permit) and
 * operator commands.
 */
export async function retryUpdateWhileNotReady<T>(send: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await send();
    } catch (err) {
      if (attempt >= UPDATE_RETRY_DELAYS_MS.length || !isUpdateNotReady(err)) throw err;
      await new Promise((r) => setTimeout(r, UPDATE_RETRY_DELAYS_MS[attempt]));
    }
  }
}

/**
 * Asks a service's breaker for a HALF_OPEN trial permit (update-with-start:
 * starts the breaker with `input` if it is not running). Idempotent per
 * `permitId`; retried across continue-as-new.
 * @returns the decision: granted (with a permitId in HALF_OPEN, without one in CLOSED/DISABLED) or denied with retryAfterMs.
 */
export function requestPermit(
  client: Client,
  req: { taskQueue: string; input: BreakerWorkflowInput; permitId: string; reporter: string },
): Promise<PermitDecision> {
  return retryUpdateWhileNotReady(() =>
    client.workflow.executeUpdateWithStart(acquirePermitUpdate, {
      args: [{ permitId: req.permitId, reporter: req.reporter }],
      startWorkflowOperation: new WithStartWorkflowOperation(circuitBreaker, {
        workflowId: workflowIds.breaker(req.input.serviceId),
        taskQueue: req.taskQueue,
        args: [req.input],
        workflowIdConflictPolicy: 'USE_EXISTING',
      }),
    }),
  );
}

export interface BreakerGateOptions {
  /** Temporal client (with the project's data converter). */
  client: Client;
  /** Task queue the breaker workflows run on (used when the gate starts one). */
  taskQueue: string;
  /** Stable id of this process, counted by the breaker's quorum; default `<hostname>:<pid>:<random>`. */
  reporter?: string;
  /** The registry's `circuitBreaker` options of a service, used when the gate starts its breaker. */
  optionsFor?: (serviceId: string) => Partial<BreakerOptions> | undefined;
  /** How often cached states are re-queried, ms, 20..1000. Default 500. */
  refreshIntervalMs?: number;
  /** How long successes may wait in the buffer, ms, 1..10 000. Default 100. */
  flushIntervalMs?: number;
  /** Outcomes per signal, 1..5000. Default 500. */
  maxBatchSize?: number;
  /** Outcomes kept per service while the breaker cannot be reached, oldest dropped first, >= maxBatchSize. Default 10 000. */
  maxBufferedOutcomes?: number;
  /** Trial-permit updates in flight at once per service from this process, 1..100. Default 5. */
  maxConcurrentPermitRequests?: number;
  /**
   * Deadline of each state query, ms, 100..60 000, counted from when the query
   * is sent (it starts when the query gets one of `maxConcurrentQueries`
   * slots). The first call to a service waits about this, at most. Default 2000.
   */
  queryTimeoutMs?: number;
  /**
   * State queries in flight at once from this gate, 1..1000; the others wait
   * their turn, first calls to a service ahead of refreshes. Default 16.
   */
  maxConcurrentQueries?: number;
  /** Tries of one refresh before it counts as failed (then `onError`, and the failure metric), 1..10. Default 3. */
  refreshAttempts?: number;
  /** Deadline of each outcome batch sent, ms, 100..600 000; a failed batch is kept and sent again. Default 10 000. */
  sendTimeoutMs?: number;
  /** Services not admitted for this long stop being refreshed while their breaker is CLOSED, ms. Default 60 000. */
  idleAfterMs?: number;
  metrics?: BreakerMetrics;
  /** Called with errors talking to Temporal (the gate itself never throws them at callers). */
  onError?: (err: unknown, serviceId: string) => void;
}

interface Entry {
  serviceId: string;
  workflowId: string;
  known: boolean;
  state: BreakerStateName;
  generation: number;
  /** Local clock: when the cached OPEN ends. */
  openUntilMs: number;
  /** Local clock: a full HALF_OPEN said "not before"; rejected locally until then. */
  denyUntilMs: number;
  fetchedAtMs: number;
  lastUsedMs: number;
  refreshing?: Promise<void>;
  /** The refresh in flight waits for a query slot: a newer one would only queue behind it. */
  waitingForSlot: boolean;
  refreshStartedMs: number;
  refreshSeq: number;
  /** The newest query whose answer was applied (answers to older queries are dropped). */
  appliedSeq: number;
  /** The breaker chain the cached generation belongs to. */
  chainId?: string;
  /** A refresh was asked for while one was in flight: run another after it. */
  refreshAgain: boolean;
  /** Re-query after the current flush completes (a local failure was sent). */
  refreshAfterFlush: boolean;
  freePermit: Promise<CallPermit>;
  /** The permit `freePermit` resolves with (for admitNow). */
  freePermitValue: CallPermit;
  freePermitGeneration: number;
  buffer: ReportedOutcome[];
  flushing: boolean;
  urgent: boolean;
  flushTimer?: NodeJS.Timeout;
  permitRequests: number;
}

function intOption(name: string, v: number | undefined, dflt: number, lo: number, hi: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`BreakerGate option ${name} must be an integer in ${lo}..${hi}, got ${JSON.stringify(v)}`);
  return v;
}

/** The per-process breaker gate; implements {@link CallGate} and {@link OutcomeSink}. */
export class BreakerGate implements CallGate, OutcomeSink {
  readonly reporter: string;
  private readonly client: Client;
  private readonly taskQueue: string;
  private readonly refreshIntervalMs: number;
  private readonly flushIntervalMs: number;
  private readonly maxBatchSize: number;
  private readonly maxBuffered: number;
  private readonly maxPermitRequests: number;
  private readonly idleAfterMs: number;
  private readonly queryTimeoutMs: number;
  private readonly maxConcurrentQueries: number;
  private readonly refreshAttempts: number;
  private queriesInFlight = 0;
  /** Queries waiting for a slot, in turn. */
  private readonly queryQueue: Array<() => void> = [];
  private readonly sendTimeoutMs: number;
  private readonly entries = new Map<string, Entry>();
  private readonly refreshTimer: NodeJS.Timeout;
  private closed = false;

  /** @throws RangeError naming a bad option and its value. */
  constructor(private readonly opts: BreakerGateOptions) {
    if (!opts?.client) throw new RangeError('BreakerGate option client is required');
    if (typeof opts.taskQueue !== 'string' || opts.taskQueue.length === 0) throw new RangeError(`BreakerGate option taskQueue must be a non-empty string, got ${JSON.stringify(opts.taskQueue)}`);
    this.client = opts.client;
    this.taskQueue = opts.taskQueue;
    this.reporter = opts.reporter ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.refreshIntervalMs = intOption('refreshIntervalMs', opts.refreshIntervalMs, 500, 20, 1000);
    this.flushIntervalMs = intOption('flushIntervalMs', opts.flushIntervalMs, 100, 1, 10_000);
    this.maxBatchSize = intOption('maxBatchSize', opts.maxBatchSize, 500, 1, 5000);
    this.maxBuffered = intOption('maxBufferedOutcomes', opts.maxBufferedOutcomes, 10_000, this.maxBatchSize, 10_000_000);
    this.maxPermitRequests = intOption('maxConcurrentPermitRequests', opts.maxConcurrentPermitRequests, 5, 1, 100);
    this.queryTimeoutMs = intOption('queryTimeoutMs', opts.queryTimeoutMs, 2000, 100, 60_000);
    this.maxConcurrentQueries = intOption('maxConcurrentQueries', opts.maxConcurrentQueries, 16, 1, 1000);
    this.refreshAttempts = intOption('refreshAttempts', opts.refreshAttempts, 3, 1, 10);
    this.sendTimeoutMs = intOption('sendTimeoutMs', opts.sendTimeoutMs, 10_000, 100, 600_000);
    this.idleAfterMs = intOption('idleAfterMs', opts.idleAfterMs, 60_000, 1000, 86_400_000);
    this.refreshTimer = setInterval(() => this.refreshAll(), this.refreshIntervalMs);
    this.refreshTimer.unref();
  }

  /**
   * Admits a call to `serviceId` or rejects it.
   * @returns a permit; call `permit.report(outcome)` exactly once when the call ends
   *   (and do not also pass that outcome to {@link record}).
   * @throws BreakerOpenError (as a rejected promise) when OPEN, FORCED_OPEN, or HALF_OPEN with no trial slot.
   */
  admit(serviceId: string): Promise<CallPermit> {
    const e = this.entries.get(serviceId);
    if (e === undefined || !e.known) return this.admitUnknown(serviceId);
    const now = Date.now();
    e.lastUsedMs = now;
    switch (e.state) {
      case 'CLOSED':
      case 'DISABLED':
        return e.freePermit;
      case 'OPEN':
        if (now < e.openUntilMs) return this.reject(e, e.openUntilMs - now);
        return this.acquireTrial(e);
      case 'FORCED_OPEN':
        return this.reject(e, 1000);
      case 'HALF_OPEN':
        if (now < e.denyUntilMs) return this.reject(e, e.denyUntilMs - now);
        return this.acquireTrial(e);
    }
  }

  /**
   * The permit of a known CLOSED (or DISABLED) breaker, at once; undefined
   * when {@link admit} has to decide (unknown service, OPEN, HALF_OPEN,
   * FORCED_OPEN). The coordinator's hot path: no promise per call.
   */
  admitNow(serviceId: string): CallPermit | undefined {
    const e = this.entries.get(serviceId);
    if (e === undefined || !e.known || (e.state !== 'CLOSED' && e.state !== 'DISABLED')) return undefined;
    e.lastUsedMs = Date.now();
    return e.freePermitValue;
  }

  /**
   * OutcomeSink: buffers the outcome of a call that did not go through
   * {@link admit}. Outcomes carrying a `generation` were admitted by a gate,
   * whose permit reports the call's final outcome; they are skipped here, so
   * the coordinator may pass this gate as both its gate and its sink without
   * counting a call twice (per-endpoint attempts of one call count once).
   * Never throws.
   */
  record(outcome: CallOutcome): void {
    if (outcome.generation !== undefined) return;
    this.enqueue(outcome, undefined);
  }

  /** Sends every buffered outcome now. Resolves when sent (or failed and re-buffered). */
  async flush(): Promise<void> {
    await Promise.all([...this.entries.values()].map((e) => this.flushEntry(e)));
  }

  /** The cached state of a service (undefined before its first use), for metrics and tests. */
  cached(serviceId: string): { state: BreakerStateName; generation: number; fetchedAtMs: number } | undefined {
    const e = this.entries.get(serviceId);
    return e?.known ? { state: e.state, generation: e.generation, fetchedAtMs: e.fetchedAtMs } : undefined;
  }

  /** Re-queries a service's breaker now. */
  async refresh(serviceId: string): Promise<void> {
    await this.refreshEntry(this.entry(serviceId));
  }

  /** Stops refreshing and sends what is buffered. The gate must not be used afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.refreshTimer);
    for (const e of this.entries.values()) if (e.flushTimer) clearTimeout(e.flushTimer);
    await this.flush();
    await Promise.all([...this.entries.values()].map((e) => e.refreshing));
  }

  // -- internals -------------------------------------------------------------

  private entry(serviceId: string): Entry {
    let e = this.entries.get(serviceId);
    if (!e) {
      e = {
        serviceId,
        workflowId: workflowIds.breaker(serviceId),
        known: false,
        state: 'CLOSED',
        generation: 0,
        openUntilMs: 0,
        denyUntilMs: 0,
        fetchedAtMs: 0,
        lastUsedMs: Date.now(),
        refreshAfterFlush: false,
        refreshAgain: false,
        waitingForSlot: false,
        refreshStartedMs: 0,
        refreshSeq: 0,
        appliedSeq: 0,
        freePermit: undefined as unknown as Promise<CallPermit>,
        freePermitValue: undefined as unknown as CallPermit,
        freePermitGeneration: -1,
        buffer: [],
        flushing: false,
        urgent: false,
        permitRequests: 0,
      };
      this.setFreePermit(e);
      this.entries.set(serviceId, e);
    }
    return e;
  }

  private setFreePermit(e: Entry): void {
    if (e.freePermitGeneration === e.generation) return;
    const generation = e.generation;
    const permit: CallPermit = { generation, report: (o) => this.enqueue(o, undefined, generation) };
    e.freePermit = Promise.resolve(permit);
    e.freePermitValue = permit;
    e.freePermitGeneration = generation;
  }

  private async admitUnknown(serviceId: string): Promise<CallPermit> {
    const e = this.entry(serviceId);
    e.lastUsedMs = Date.now();
    // A caller waits: one try, ahead of the background refreshes; the next refresh tries again.
    await this.refreshEntry(e, true);
    e.known = true; // fail open with CLOSED if the first query failed
    return this.admit(serviceId);
  }

  private reject(e: Entry, retryAfterMs: number): Promise<never> {
    this.opts.metrics?.observeRejected(e.serviceId, e.state);
    return Promise.reject(new BreakerOpenError(e.serviceId, e.state, e.generation, retryAfterMs));
  }

  private workflowInput(serviceId: string): BreakerWorkflowInput {
    return { serviceId, options: resolveBreakerOptions(this.opts.optionsFor?.(serviceId) ?? {}) };
  }

  private async acquireTrial(e: Entry): Promise<CallPermit> {
    if (e.permitRequests >= this.maxPermitRequests) return this.reject(e, 1000);
    e.permitRequests++;
    const permitId = randomUUID();
    let decision: PermitDecision;
    try {
      decision = await requestPermit(this.client, { taskQueue: this.taskQueue, input: this.workflowInput(e.serviceId), permitId, reporter: this.reporter });
    } catch (err) {
      // Cannot reach the breaker: reject this trial and try again soon rather than flooding a recovering service.
      this.opts.onError?.(err, e.serviceId);
      return this.reject(e, 1000);
    } finally {
      e.permitRequests--;
    }
    const now = Date.now();
    this.learn(e, decision.state, decision.generation, decision.granted ? 0 : decision.retryAfterMs, now, decision.chainId);
    if (!decision.granted) {
      if (decision.state === 'HALF_OPEN') e.denyUntilMs = now + decision.retryAfterMs;
      return this.reject(e, decision.retryAfterMs);
    }
    if (decision.permitId === undefined) return e.freePermit;
    const generation = decision.generation;
    let reported = false;
    return {
      generation,
      report: (o) => {
        if (reported) return;
        reported = true;
        this.enqueue(o, permitId, generation);
      },
    };
  }

  private learn(e: Entry, state: BreakerStateName, generation: number, retryAfterMs: number, now: number, chainId: string | undefined): void {
    const sameChain = chainId === e.chainId || chainId === undefined || e.chainId === undefined;
    if (e.known && sameChain && generation < e.generation) return; // an older answer raced a newer one
    if (chainId !== undefined) e.chainId = chainId;
    if (generation !== e.generation || !sameChain) e.denyUntilMs = 0;
    e.known = true;
    e.fetchedAtMs = now;
    e.state = state;
    e.generation = generation;
    e.openUntilMs = state === 'OPEN' ? now + retryAfterMs : 0;
    this.setFreePermit(e);
    this.opts.metrics?.observeState(e.serviceId, state);
  }

  /**
   * Re-reads the breakers in use, and every breaker last seen other than
   * CLOSED even when idle: so the state gauge a process exports is never
   * stuck at OPEN (or HALF_OPEN, FORCED_OPEN, DISABLED) after the breaker
   * moved on; only CLOSED can be stale, the lowest value across workers.
   */
  private refreshAll(): void {
    if (this.closed) return;
    const now = Date.now();
    for (const e of this.entries.values()) {
      if (now - e.lastUsedMs <= this.idleAfterMs || (e.known && e.state !== 'CLOSED')) void this.refreshEntry(e);
    }
  }

  /**
   * Queries the breaker, trying up to `refreshAttempts` times (full-jitter
   * backoff, 50 ms doubling, at most `refreshIntervalMs`), or once, ahead of
   * the queue, when a caller waits (`forCaller`); a refresh that gets no
   * answer goes to `onError` and the refresh-failures metric once. A query
   * still unanswered after `refreshIntervalMs` (a breaker busy with its first
   * task can hold one for a second or more) does not hold the next one back:
   * answers are ordered by generation.
   */
  private refreshEntry(e: Entry, forCaller = false): Promise<void> {
    const now = Date.now();
    if (e.refreshing && (e.waitingForSlot || now - e.refreshStartedMs < this.refreshIntervalMs)) return e.refreshing;
    e.refreshStartedMs = now;
    const seq = ++e.refreshSeq;
    const attempts = forCaller ? 1 : this.refreshAttempts;
    e.refreshing = (async () => {
      try {
        for (let attempt = 1; ; attempt++) {
          let view: BreakerStatus;
          try {
            view = await this.queryStatus(e, forCaller);
          } catch (err) {
            if (err instanceof WorkflowNotFoundError) {
              // Not started yet, or terminated: the next breaker starts CLOSED at generation 0 in a new chain.
              if (seq > e.appliedSeq) {
                e.appliedSeq = seq;
                e.chainId = undefined;
                e.known = false;
                this.learn(e, 'CLOSED', 0, 0, Date.now(), undefined);
              }
              return;
            }
            if (attempt >= attempts || this.closed) {
              this.opts.metrics?.observeRefreshFailure(e.serviceId);
              this.opts.onError?.(err, e.serviceId);
              return;
            }
            // Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"), so a fleet of gates does not retry in step.
            await new Promise((r) => setTimeout(r, Math.random() * Math.min(this.refreshIntervalMs, 50 * 2 ** (attempt - 1))));
            continue;
          }
          if (seq > e.appliedSeq) {
            e.appliedSeq = seq;
            this.learn(e, view.state, view.generation, view.retryAfterMs, Date.now(), view.chainId);
          }
          return;
        }
      } finally {
        if (e.refreshSeq === seq) e.refreshing = undefined;
      }
    })();
    return e.refreshing;
  }

  /**
   * One `breakerStatus` query, once a slot among `maxConcurrentQueries` is
   * free (a tick refreshing thousands of services sends them a few at a time,
   * each with its whole deadline, instead of all at once on one connection).
   *
   * Why each try needs its own deadline: the connection's gRPC retry
   * interceptor (Temporal's default) retries RESOURCE_EXHAUSTED and
   * UNAVAILABLE after 1 s or more with the call's first, absolute deadline, so
   * under load a retry starts after it and fails at once with
   * `DEADLINE_EXCEEDED: Deadline exceeded after 0.000s, waiting for metadata
   * filters`, hiding the rate limit that caused it. The deadline's unit is
   * right (`withDeadline` takes epoch ms or a Date), and the query is sent in
   * the same tick the deadline is computed (test/breaker/gate.test.ts).
   */
  private async queryStatus(e: Entry, urgent: boolean): Promise<BreakerStatus> {
    if (this.queriesInFlight < this.maxConcurrentQueries) this.queriesInFlight++;
    else {
      e.waitingForSlot = true;
      await new Promise<void>((r) => (urgent ? this.queryQueue.unshift(r) : this.queryQueue.push(r))); // the slot is handed over
      e.waitingForSlot = false;
    }
    try {
      return await this.client.withDeadline(Date.now() + this.queryTimeoutMs, () => this.client.workflow.getHandle(e.workflowId).query(breakerStatusQuery));
    } finally {
      const next = this.queryQueue.shift();
      if (next) next();
      else this.queriesInFlight--;
    }
  }

  /** Re-reads the state after what this process just sent, even if a query is already in flight. */
  private requestRefresh(e: Entry): void {
    if (!e.refreshing) {
      void this.refreshEntry(e);
      return;
    }
    if (e.refreshAgain) return;
    e.refreshAgain = true;
    void e.refreshing.then(() => {
      e.refreshAgain = false;
      return this.refreshEntry(e);
    });
  }

  private enqueue(o: CallOutcome, permitId: string | undefined, generation = o.generation): void {
    if (this.closed) return;
    const e = this.entry(o.serviceId);
    const r: ReportedOutcome = { ok: o.ok, latencyMs: o.latencyMs, startedAt: o.startedAt };
    if (generation !== undefined) r.generation = generation;
    if (o.status !== undefined) r.status = o.status;
    if (o.failureKind !== undefined) r.failureKind = o.failureKind;
    if (permitId !== undefined) r.permitId = permitId;
    if (o.reporter && o.reporter !== this.reporter) r.reporter = o.reporter;
    e.buffer.push(r);
    if (e.buffer.length > this.maxBuffered) e.buffer.splice(0, e.buffer.length - this.maxBuffered);
    if (!o.ok || permitId !== undefined) {
      // Failures and trial results move the breaker: send them now and re-read the state.
      e.urgent = true;
      e.refreshAfterFlush = true;
      this.scheduleFlush(e, 0);
    } else if (e.buffer.length >= this.maxBatchSize) {
      this.scheduleFlush(e, 0);
    } else {
      this.scheduleFlush(e, this.flushIntervalMs);
    }
  }

  private scheduleFlush(e: Entry, delayMs: number): void {
    if (e.flushing) return; // the running flush picks the buffer up when done
    if (e.flushTimer) {
      if (delayMs > 0) return;
      clearTimeout(e.flushTimer);
    }
    e.flushTimer = setTimeout(() => {
      e.flushTimer = undefined;
      void this.flushEntry(e);
    }, delayMs);
    e.flushTimer.unref?.();
  }

  private async flushEntry(e: Entry): Promise<void> {
    if (e.flushing || e.buffer.length === 0) return;
    if (e.flushTimer) {
      clearTimeout(e.flushTimer);
      e.flushTimer = undefined;
    }
    e.flushing = true;
    let failed = false;
    try {
      while (e.buffer.length > 0) {
        const outcomes = e.buffer.splice(0, this.maxBatchSize);
        const refresh = e.refreshAfterFlush;
        e.refreshAfterFlush = false;
        e.urgent = false;
        try {
          await this.client.withDeadline(Date.now() + this.sendTimeoutMs, () =>
            this.client.workflow.signalWithStart(circuitBreaker, {
              workflowId: e.workflowId,
              taskQueue: this.taskQueue,
              args: [this.workflowInput(e.serviceId)],
              signal: recordOutcomesSignal,
              signalArgs: [{ reporter: this.reporter, outcomes }],
            }),
          );
        } catch (err) {
          this.opts.onError?.(err, e.serviceId);
          e.buffer.unshift(...outcomes);
          if (e.buffer.length > this.maxBuffered) e.buffer.splice(0, e.buffer.length - this.maxBuffered);
          e.refreshAfterFlush ||= refresh;
          failed = true;
          break;
        }
        if (refresh || e.refreshAfterFlush) {
          e.refreshAfterFlush = false;
          this.requestRefresh(e);
        }
      }
    } finally {
      e.flushing = false;
    }
    if (!this.closed && e.buffer.length > 0) this.scheduleFlush(e, failed ? Math.max(1000, this.flushIntervalMs) : e.urgent ? 0 : this.flushIntervalMs);
  }
}
