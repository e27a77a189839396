/**
 * Make.com workflows:
 *
 * - `runMakeScenario` (a step any workflow can await) and `makeScenarioRun`
 *   (the same as a workflow of its own): start a scenario run and follow its
 *   execution to the end, however long it takes. Make's responsive mode waits
 *   at most 40 s and then answers with a time-out that carries no execution
 *   id; this step starts the run non-responsive and polls the execution
 *   instead, with durable timers between polls.
 * - `deliverWebhook`: one event to several subscribers (plain HTTP endpoints
 *   and Make hooks) in parallel; per subscriber, retries with full-jitter
 *   backoff, failover to its next endpoint after each failure, the same
 *   `Idempotency-Key` on every attempt, and a dead-letter record with the last
 *   error after the final attempt.
 * - `redeliverWebhookDeadLetter` and `webhookDeadLetters`: redeliver one dead
 *   letter (same key, so receivers can drop a duplicate) and list them.
 */
import { ApplicationFailure, defineQuery, proxyActivities, setHandler, sleep, workflowInfo } from '@temporalio/workflow';
import type { MakeActivities, WebhookDeadLetter } from '../activities/make';
import {
  EndpointFailover,
  makeExecutionOutcome,
  webhookBackoffMs,
  webhookIdempotencyKey,
  webhookRetryPolicy,
  type WebhookRetryPolicy,
} from '../domain/make';

// ---------------------------------------------------------------------------
// Scenario runs
// ---------------------------------------------------------------------------

export interface RunMakeScenarioInput {
  /** Registry service (type make) whose organization holds the scenario. */
  serviceId: string;
  scenarioId: number;
  /** Scenario inputs. */
  data?: Record<string, unknown>;
  /** First wait between execution polls, ms; grows x1.5 up to `maxPollIntervalMs`. Default 2000. */
  pollIntervalMs?: number;
  /** Longest wait between polls, ms. Default 30000. */
  maxPollIntervalMs?: number;
  /** Give up following after this long, ms (the run itself goes on in Make). Default 3600000 (1 h). */
  timeoutMs?: number;
  /** Throw when the execution ends in ERROR; default true. */
  failOnError?: boolean;
}

export interface MakeScenarioRunResult {
  serviceId: string;
  scenarioId: number;
  executionId: string;
  outcome: 'success' | 'warning' | 'error';
  outputs?: Record<string, unknown>;
  error?: { message?: string; name?: string };
  /** Workflow time from start to the terminal status, ms. */
  durationMs: number;
  polls: number;
}

function positive(name: string, v: number | undefined, dflt: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isFinite(x) || x <= 0) throw ApplicationFailure.nonRetryable(`invalid ${name} ${String(v)}: must be a number of ms > 0`, 'InvalidOption');
  return x;
}

const scenarioActs = proxyActivities<MakeActivities>({
  startToCloseTimeout: '60s',
  // Only a 429 is retryable for a start (see startMakeScenarioRun); reads retry freely.
  retry: { maximumAttempts: 5, initialInterval: '2s', maximumInterval: '60s' },
});

/**
 * Runs a Make scenario and follows its execution to its end (a workflow step:
 * call it from any workflow).
 *
 * @returns the terminal outcome with the scenario's outputs.
 * @throws ApplicationFailure `MakeScenarioFailed` when the execution ends in ERROR
 *   (unless `failOnError: false`), `MakeScenarioTimeout` when it is still running
 *   after `timeoutMs`, `InvalidOption` for bad options.
 */
export async function runMakeScenario(input: RunMakeScenarioInput): Promise<MakeScenarioRunResult> {
  if (!input?.serviceId) throw ApplicationFailure.nonRetryable('runMakeScenario: serviceId is required', 'InvalidOption');
  if (!Number.isInteger(input.scenarioId) || input.scenarioId <= 0) throw ApplicationFailure.nonRetryable(`invalid scenarioId ${String(input.scenarioId)}: must be a positive integer`, 'InvalidOption');
  let interval = positive('pollIntervalMs', input.pollIntervalMs, 2_000);
  const maxInterval = positive('maxPollIntervalMs', input.maxPollIntervalMs, 30_000);
  const timeoutMs = positive('timeoutMs', input.timeoutMs, 3_600_000);
  const t0 = Date.now();
  const { executionId } = await scenarioActs.startMakeScenarioRun({ serviceId: input.serviceId, scenarioId: input.scenarioId, data: input.data });
  let polls = 0;
  for (;;) {
    const e = await scenarioActs.getMakeScenarioExecution({ serviceId: input.serviceId, scenarioId: input.scenarioId, executionId });
    polls++;
    const outcome = makeExecutionOutcome(e.status);
    if (outcome) {
      const result: MakeScenarioRunResult = { serviceId: input.serviceId, scenarioId: input.scenarioId, executionId, outcome, durationMs: Date.now() - t0, polls };
      if (e.outputs !== undefined) result.outputs = e.outputs;
      if (e.error) result.error = e.error;
      if (outcome === 'error' && input.failOnError !== false) {
        throw ApplicationFailure.nonRetryable(
          `Make scenario ${input.scenarioId} (service ${input.serviceId}) execution ${executionId} ended in ERROR${e.error?.message ? `: ${e.error.message}` : ''}`,
          'MakeScenarioFailed',
          result,
        );
      }
      return result;
    }
    if (Date.now() - t0 + interval > timeoutMs) {
      throw ApplicationFailure.nonRetryable(
        `Make scenario ${input.scenarioId} (service ${input.serviceId}) execution ${executionId} is still ${e.status} after ${Date.now() - t0} ms; it goes on in Make — follow it there or raise timeoutMs`,
        'MakeScenarioTimeout',
        { executionId },
      );
    }
    await sleep(interval);
    interval = Math.min(maxInterval, Math.round(interval * 1.5));
  }
}

/** Query of `makeScenarioRun`: the execution id once known. */
export const makeScenarioRunStatusQuery = defineQuery<{ executionId?: string; state: 'starting' | 'running' | 'done' }>('makeScenarioRunStatus');

/** `runMakeScenario` as a workflow of its own (suggested id `make-run/<serviceId>/<scenarioId>/<key>`). */
export async function makeScenarioRun(input: RunMakeScenarioInput): Promise<MakeScenarioRunResult> {
  let state: 'starting' | 'running' | 'done' = 'starting';
  setHandler(makeScenarioRunStatusQuery, () => ({ state }));
  state = 'running';
  try {
    return await runMakeScenario(input);
  } finally {
    state = 'done';
  }
}

// ---------------------------------------------------------------------------
// Webhook delivery
// ---------------------------------------------------------------------------

export interface WebhookSubscriber {
  /** Stable subscriber id (part of the idempotency key and the dead letter). */
  id: string;
  /** Plain HTTP(S) endpoints, in failover order. */
  endpoints?: string[];
  /** Make hooks of a registry make service; their addresses (read from the Make API) follow `endpoints`. */
  makeHooks?: { serviceId: string; hookIds: number[] };
  /** Overrides the event's retry policy for this subscriber. */
  retry?: Partial<WebhookRetryPolicy>;
}

export interface DeliverWebhookInput {
  /** Unique per event (suggested workflow id `webhook/<eventId>`). */
  eventId: string;
  /** The JSON body sent to every subscriber. */
  payload: unknown;
  subscribers: WebhookSubscriber[];
  /** Default retry policy (src/domain/make.ts DEFAULT_WEBHOOK_RETRY). */
  retry?: Partial<WebhookRetryPolicy>;
  /** Deadline of one POST, ms. Default 10000. */
  attemptTimeoutMs?: number;
}

export interface SubscriberDelivery {
  subscriberId: string;
  delivered: boolean;
  attempts: number;
  /** The endpoint that accepted the event. */
  endpoint?: string;
  status?: number;
  lastError?: string;
  /** Set when the delivery failed for good. */
  deadLetterId?: number;
}

export interface DeliverWebhookResult {
  eventId: string;
  delivered: number;
  failed: number;
  subscribers: SubscriberDelivery[];
}

/** Query of `deliverWebhook` and `redeliverWebhookDeadLetter`: per subscriber, attempts so far and the outcome once known. */
export const webhookDeliveryProgressQuery = defineQuery<SubscriberDelivery[]>('webhookDeliveryProgress');

const webhookActs = proxyActivities<MakeActivities>({
  startToCloseTimeout: '60s',
  // One POST per activity: the workflow owns retries, so Temporal only
  // re-runs an attempt whose worker died (the idempotency key covers it).
  retry: { maximumAttempts: 2, initialInterval: '1s' },
});

const storeActs = proxyActivities<MakeActivities>({ startToCloseTimeout: '30s', retry: { maximumAttempts: 10, initialInterval: '1s', maximumInterval: '30s' } });

function validUrl(u: unknown): boolean {
  if (typeof u !== 'string') return false;
  const m = /^(https?):\/\/[^\s/?#]+/i.exec(u);
  return m !== null;
}

/** Checks the input; throws a non-retryable `InvalidOption` naming the field. */
function validate(input: DeliverWebhookInput): void {
  const bad = (msg: string) => {
    throw ApplicationFailure.nonRetryable(`deliverWebhook: ${msg}`, 'InvalidOption');
  };
  if (!input || typeof input.eventId !== 'string' || !input.eventId) bad('eventId must be a non-empty string');
  if (!Array.isArray(input.subscribers) || input.subscribers.length === 0) bad('subscribers must list at least one subscriber');
  const seen = new Set<string>();
  input.subscribers.forEach((s, i) => {
    if (!s || typeof s.id !== 'string' || !s.id) bad(`subscribers[${i}].id must be a non-empty string`);
    if (seen.has(s.id)) bad(`subscribers[${i}].id "${s.id}" is used twice`);
    seen.add(s.id);
    (s.endpoints ?? []).forEach((u, j) => validUrl(u) || bad(`subscribers[${i}].endpoints[${j}] must be an http:// or https:// URL, got ${JSON.stringify(u)}`));
    const hooks = s.makeHooks?.hookIds ?? [];
    if (s.makeHooks && (!s.makeHooks.serviceId || hooks.length === 0)) bad(`subscribers[${i}].makeHooks needs serviceId and at least one hook id`);
    if ((s.endpoints?.length ?? 0) + hooks.length === 0) bad(`subscribers[${i}] ("${s.id}") has no endpoints and no makeHooks`);
  });
  if (input.attemptTimeoutMs !== undefined) positive('attemptTimeoutMs', input.attemptTimeoutMs, 10_000);
}

interface DeliveryJob {
  eventId: string;
  payload: unknown;
  subscriberId: string;
  endpoints: string[];
  policy: WebhookRetryPolicy;
  idempotencyKey: string;
  timeoutMs: number;
  progress: SubscriberDelivery;
  redeliveryOf?: number;
}

/**
 * Delivers to one subscriber: attempt n goes to the next live endpoint after
 * each failure (wrapping round); an endpoint that refuses for good (e.g. 404,
 * 410) is dropped, and the next one is tried at once; between other failures
 * the subscriber waits a full-jitter backoff. After the final attempt (or when
 * no endpoint is left) a dead letter records the last error.
 */
async function deliverOne(job: DeliveryJob): Promise<SubscriberDelivery> {
  const p = job.progress;
  const failover = new EndpointFailover(job.endpoints.length);
  let retries = 0;
  for (let attempt = 1; attempt <= job.policy.maximumAttempts && failover.remaining > 0; attempt++) {
    const url = job.endpoints[failover.current()!]!;
    p.attempts = attempt;
    let r: { ok: boolean; status?: number; error?: string; permanent?: boolean };
    try {
      r = await webhookActs.postWebhook({ url, eventId: job.eventId, payload: job.payload, idempotencyKey: job.idempotencyKey, attempt, timeoutMs: job.timeoutMs });
    } catch (err) {
      r = { ok: false, error: `delivery activity failed: ${(err as Error).message}`.slice(0, 300) };
    }
    if (r.ok) {
      p.delivered = true;
      p.endpoint = url;
      if (r.status !== undefined) p.status = r.status;
      delete p.lastError;
      if (job.redeliveryOf !== undefined) await storeActs.resolveWebhookDeadLetter({ id: job.redeliveryOf, by: workflowInfo().workflowId });
      return p;
    }
    p.lastError = r.error ?? 'delivery failed';
    if (r.status !== undefined) p.status = r.status;
    failover.failed(r.permanent === true);
    // An endpoint that refused for good is dropped and the next one is tried at once.
    if (r.permanent) continue;
    if (attempt < job.policy.maximumAttempts && failover.remaining > 0) {
      retries++;
      await sleep(webhookBackoffMs(retries, job.policy, Math.random()));
    }
  }
  p.deadLetterId = await storeActs.recordWebhookDeadLetter({
    eventId: job.eventId,
    subscriberId: job.subscriberId,
    endpoints: job.endpoints,
    payload: job.payload,
    idempotencyKey: job.idempotencyKey,
    attempts: p.attempts,
    lastError: p.lastError ?? 'no endpoint accepted the event',
    workflowId: workflowInfo().workflowId,
    redeliveryOf: job.redeliveryOf,
  });
  return p;
}

/**
 * Delivers one event to every subscriber (in parallel).
 * @returns per subscriber: delivered or not, attempts, the accepting endpoint, the dead letter id.
 * @throws ApplicationFailure `InvalidOption` for bad input (nothing is sent).
 */
export async function deliverWebhook(input: DeliverWebhookInput): Promise<DeliverWebhookResult> {
  validate(input);
  const base = webhookRetryPolicyOrFail(input.retry, 'retry');
  const timeoutMs = input.attemptTimeoutMs ?? 10_000;
  const progress: SubscriberDelivery[] = input.subscribers.map((s) => ({ subscriberId: s.id, delivered: false, attempts: 0 }));
  setHandler(webhookDeliveryProgressQuery, () => progress);

  const results = await Promise.all(
    input.subscribers.map(async (s, i): Promise<SubscriberDelivery> => {
      const policy = s.retry ? webhookRetryPolicyOrFail({ ...base, ...s.retry }, `subscribers[${i}].retry`) : base;
      const idempotencyKey = webhookIdempotencyKey(input.eventId, s.id);
      let endpoints = [...(s.endpoints ?? [])];
      if (s.makeHooks) {
        try {
          endpoints = endpoints.concat(await storeActs.resolveMakeHookUrls({ serviceId: s.makeHooks.serviceId, hookIds: s.makeHooks.hookIds }));
        } catch (err) {
          if (endpoints.length === 0) {
            const p = progress[i]!;
            p.lastError = `Make hooks of ${s.makeHooks.serviceId} could not be resolved: ${(err as Error).message}`.slice(0, 300);
            p.deadLetterId = await storeActs.recordWebhookDeadLetter({
              eventId: input.eventId,
              subscriberId: s.id,
              endpoints: [],
              payload: input.payload,
              idempotencyKey,
              attempts: 0,
              lastError: p.lastError,
              workflowId: workflowInfo().workflowId,
            });
            return p;
          }
        }
      }
      return deliverOne({ eventId: input.eventId, payload: input.payload, subscriberId: s.id, endpoints, policy, idempotencyKey, timeoutMs, progress: progress[i]! });
    }),
  );
  const delivered = results.filter((r) => r.delivered).length;
  return { eventId: input.eventId, delivered, failed: results.length - delivered, subscribers: results };
}

function webhookRetryPolicyOrFail(p: Partial<WebhookRetryPolicy> | undefined, where: string): WebhookRetryPolicy {
  try {
    return webhookRetryPolicy(p);
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`deliverWebhook: ${where}: ${(err as Error).message}`, 'InvalidOption');
  }
}

export interface RedeliverInput {
  /** Dead letter id. */
  id: number;
  retry?: Partial<WebhookRetryPolicy>;
  attemptTimeoutMs?: number;
}

/**
 * Redelivers one dead letter to the endpoints it was meant for, with the same
 * idempotency key. On success the dead letter is marked resolved; on failure
 * it is updated with the new attempts and last error.
 */
export async function redeliverWebhookDeadLetter(input: RedeliverInput): Promise<SubscriberDelivery & { eventId: string }> {
  const d = await storeActs.getWebhookDeadLetter({ id: input.id });
  if (d.resolvedAt !== undefined) {
    throw ApplicationFailure.nonRetryable(`dead letter ${d.id} was already delivered by ${d.resolvedBy ?? 'an earlier redelivery'}`, 'AlreadyResolved');
  }
  if (d.endpoints.length === 0) {
    throw ApplicationFailure.nonRetryable(`dead letter ${d.id} has no endpoints to deliver to (its Make hooks could not be resolved); deliver the event again with deliverWebhook`, 'NoEndpoints');
  }
  const progress: SubscriberDelivery = { subscriberId: d.subscriberId, delivered: false, attempts: 0 };
  setHandler(webhookDeliveryProgressQuery, () => [progress]);
  const r = await deliverOne({
    eventId: d.eventId,
    payload: d.payload,
    subscriberId: d.subscriberId,
    endpoints: d.endpoints,
    policy: webhookRetryPolicyOrFail(input.retry, 'retry'),
    idempotencyKey: d.idempotencyKey,
    timeoutMs: positive('attemptTimeoutMs', input.attemptTimeoutMs, 10_000),
    progress,
    redeliveryOf: d.id,
  });
  return { ...r, eventId: d.eventId };
}

/** Lists dead letters (a short workflow so any client, on any host, reads the worker's store). */
export async function webhookDeadLetters(input: { state?: 'open' | 'resolved' | 'all'; limit?: number } = {}): Promise<WebhookDeadLetter[]> {
  return storeActs.listWebhookDeadLetters(input);
}
