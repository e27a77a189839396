/**
 * Webhook delivery activities for the `deliverWebhook` workflow: one POST per
 * attempt (the workflow owns retries, backoff and failover, so each attempt
 * and its endpoint are visible in history), Make hook addresses read from the
 * Make API, and the dead letters in the state backend (src/state).
 *
 * Each POST carries `Idempotency-Key` (the same for every attempt and
 * endpoint of one event and subscriber; IETF draft-ietf-httpapi-idempotency-key-header)
 * and `X-Webhook-Event-Id`, so receivers can drop duplicates.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { request } from 'undici';
import { isPermanentWebhookStatus } from '../../domain/make';
import type { DeadLetterStore, RecordDeadLetterInput, WebhookDeadLetter } from '../../state/types';
import type { MakeClients } from './clients';
import { toMakeFailure } from './failure';

export interface PostWebhookInput {
  url: string;
  eventId: string;
  /** JSON body. */
  payload: unknown;
  idempotencyKey: string;
  /** 1-based attempt over all the subscriber's endpoints. */
  attempt: number;
  timeoutMs: number;
}

/** How one attempt ended. Never throws for a failed delivery: the workflow decides what comes next. */
export interface PostWebhookResult {
  ok: boolean;
  /** HTTP status, when a response arrived. */
  status?: number;
  /** One line: what failed (no response body beyond 200 characters). */
  error?: string;
  /** True when the endpoint will never accept this event (400, 401, 403, 404, 410, 413, 422). */
  permanent?: boolean;
  latencyMs: number;
}

export type { RecordDeadLetterInput, WebhookDeadLetter };

export interface WebhookDeps {
  /** The dead letters (the state backend's `deadLetters`). */
  deadLetters: DeadLetterStore;
  clients?: MakeClients;
  /** User-Agent of webhook POSTs; default `integration-agent`. */
  userAgent?: string;
}

function activityInfo(): { signal?: AbortSignal; attempt: number } {
  try {
    const c = Context.current();
    return { signal: c.cancellationSignal, attempt: c.info.attempt };
  } catch {
    return { attempt: 1 };
  }
}

export function createWebhookActivities(deps: WebhookDeps) {
  if (!deps.deadLetters) throw new RangeError('createWebhookActivities: deps.deadLetters (the state backend\'s dead-letter store) is required');
  const dead = () => deps.deadLetters;
  const userAgent = deps.userAgent ?? 'integration-agent';

  return {
    /**
     * One delivery attempt: `POST url` with the JSON payload, `Idempotency-Key`
     * and `X-Webhook-Event-Id`. A 2xx is delivered.
     * @returns how it ended (never throws for a failed delivery).
     */
    async postWebhook(input: PostWebhookInput): Promise<PostWebhookResult> {
      const { signal } = activityInfo();
      const t0 = performance.now();
      const signals = [AbortSignal.timeout(input.timeoutMs), ...(signal ? [signal] : [])];
      try {
        const res = await request(input.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'idempotency-key': input.idempotencyKey,
            'x-webhook-event-id': input.eventId,
            'x-webhook-attempt': String(input.attempt),
            'user-agent': userAgent,
          },
          body: JSON.stringify(input.payload ?? null),
          signal: AbortSignal.any(signals),
          headersTimeout: input.timeoutMs,
          bodyTimeout: input.timeoutMs,
        });
        const text = (await res.body.text()).replace(/\s+/g, ' ').trim().slice(0, 200);
        const latencyMs = performance.now() - t0;
        if (res.statusCode >= 200 && res.statusCode < 300) return { ok: true, status: res.statusCode, latencyMs };
        return {
          ok: false,
          status: res.statusCode,
          error: `POST ${new URL(input.url).origin}: HTTP ${res.statusCode}${text ? `: ${text}` : ''}`,
          permanent: isPermanentWebhookStatus(res.statusCode),
          latencyMs,
        };
      } catch (err) {
        if (signal?.aborted) throw err;
        const e = err as { code?: string; name?: string; message?: string; cause?: { code?: string } };
        const code = e.code ?? e.cause?.code ?? e.name;
        const timedOut = e.name === 'TimeoutError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
        let origin = input.url;
        try {
          origin = new URL(input.url).origin;
        } catch {
          /* keep as is */
        }
        return {
          ok: false,
          error: `POST ${origin}: ${timedOut ? `timeout after ${input.timeoutMs} ms` : `${code ?? 'error'}${e.message ? `: ${e.message.slice(0, 150)}` : ''}`}`,
          latencyMs: performance.now() - t0,
        };
      }
    },

    /**
     * The addresses of Make hooks (`GET /hooks/{id}` → `url`), in the order given.
     * @throws ApplicationFailure (non-retryable) when a hook has no address or is gone.
     */
    async resolveMakeHookUrls(input: { serviceId: string; hookIds: number[] }): Promise<string[]> {
      const { signal, attempt } = activityInfo();
      if (!deps.clients) throw ApplicationFailure.nonRetryable('Make hooks need the Make clients in the worker (createMakeActivities deps)', 'MakeNotConfigured');
      try {
        const { client } = await deps.clients.forService(input.serviceId, signal);
        const urls: string[] = [];
        for (const id of input.hookIds) {
          const h = await client.hook(id, signal);
          if (!h.url || h.gone) throw ApplicationFailure.nonRetryable(`Make hook ${id} of service ${input.serviceId} has no address${h.gone ? ' (gone)' : ''}`, 'MakeHookGone');
          urls.push(h.url);
        }
        return urls;
      } catch (err) {
        throw toMakeFailure(err, { attempt, method: 'GET' });
      }
    },

    /** Records a dead letter (idempotent per workflow and subscriber). @returns its id. */
    async recordWebhookDeadLetter(input: RecordDeadLetterInput): Promise<number> {
      return dead().record(input, Date.now());
    },

    /** Marks a dead letter delivered by `by` (a workflow id). */
    async resolveWebhookDeadLetter(input: { id: number; by: string }): Promise<boolean> {
      return dead().resolve(input.id, input.by, Date.now());
    },

    /** Dead letters, newest first; `state` default open, `limit` default 100 (max 1000). */
    async listWebhookDeadLetters(input: { state?: 'open' | 'resolved' | 'all'; limit?: number } = {}): Promise<WebhookDeadLetter[]> {
      const limit = input.limit ?? 100;
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw ApplicationFailure.nonRetryable(`invalid limit ${limit}: must be an integer in 1..1000`, 'InvalidOption');
      return dead().list({ state: input.state, limit });
    },

    /** One dead letter with its payload, for redelivery. @throws ApplicationFailure (non-retryable) when unknown. */
    async getWebhookDeadLetter(input: { id: number }): Promise<WebhookDeadLetter & { payload: unknown }> {
      const d = await dead().get(input.id);
      if (!d) throw ApplicationFailure.nonRetryable(`no webhook dead letter ${input.id}: list them with "integration-agent webhooks dead-letters"`, 'UnknownDeadLetter');
      return { ...d, payload: await dead().payload(input.id) };
    },
  };
}
