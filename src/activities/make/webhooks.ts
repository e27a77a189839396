/**
 * Webhook delivery activities for the `deliverWebhook` workflow: one POST per
 * attempt (the workflow owns retries, backoff and failover, so each attempt
 * and its endpoint are visible in history), Make hook addresses read from the
 * Make API, and the dead-letter store in the embedded database.
 *
 * Each POST carries `Idempotency-Key` (the same for every attempt and
 * endpoint of one event and subscriber; IETF draft-ietf-httpapi-idempotency-key-header)
 * and `X-Webhook-Event-Id`, so receivers can drop duplicates.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { request } from 'undici';
import { isPermanentWebhookStatus } from '../../domain/make';
import { openDatabase, type Db } from '../db';
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

/** A delivery that failed after the final attempt. */
export interface WebhookDeadLetter {
  id: number;
  eventId: string;
  subscriberId: string;
  /** The endpoints tried, in order. */
  endpoints: string[];
  idempotencyKey: string;
  attempts: number;
  lastError: string;
  /** Workflow that gave up (`webhook/<eventId>`). */
  workflowId: string;
  /** Epoch ms. */
  createdAt: number;
  updatedAt: number;
  /** Set once a redelivery succeeded. */
  resolvedAt?: number;
  resolvedBy?: string;
}

export interface RecordDeadLetterInput {
  eventId: string;
  subscriberId: string;
  endpoints: string[];
  payload: unknown;
  idempotencyKey: string;
  attempts: number;
  lastError: string;
  workflowId: string;
  /** When this was a redelivery of a dead letter, its id: that record is updated instead of a new one. */
  redeliveryOf?: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS webhook_dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL,
  subscriber_id TEXT NOT NULL,
  endpoints TEXT NOT NULL,
  payload TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  workflow_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  resolved_at INTEGER,
  resolved_by TEXT,
  UNIQUE (workflow_id, subscriber_id)
);
CREATE INDEX IF NOT EXISTS webhook_dead_letters_open ON webhook_dead_letters (resolved_at, id);
`;

interface Row {
  id: number;
  event_id: string;
  subscriber_id: string;
  endpoints: string;
  payload: string;
  idempotency_key: string;
  attempts: number;
  last_error: string;
  workflow_id: string;
  created_at: number;
  updated_at: number;
  resolved_at: number | null;
  resolved_by: string | null;
}

function toDeadLetter(r: Row): WebhookDeadLetter {
  const d: WebhookDeadLetter = {
    id: r.id,
    eventId: r.event_id,
    subscriberId: r.subscriber_id,
    endpoints: JSON.parse(r.endpoints) as string[],
    idempotencyKey: r.idempotency_key,
    attempts: r.attempts,
    lastError: r.last_error,
    workflowId: r.workflow_id,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
  if (r.resolved_at !== null) d.resolvedAt = r.resolved_at;
  if (r.resolved_by !== null) d.resolvedBy = r.resolved_by;
  return d;
}

/** The dead-letter table in the embedded database (created on first use). */
export class DeadLetterStore {
  constructor(private readonly db: Db) {
    db.exec(SCHEMA);
  }

  /** Records (or, for a redelivery, updates) a dead letter; idempotent per workflow and subscriber. @returns its id. */
  record(input: RecordDeadLetterInput, now: number): number {
    if (input.redeliveryOf !== undefined) {
      const r = this.db
        .prepare('UPDATE webhook_dead_letters SET attempts = attempts + ?, last_error = ?, updated_at = ? WHERE id = ? AND resolved_at IS NULL')
        .run(input.attempts, input.lastError, now, input.redeliveryOf);
      if (r.changes === 1 || this.get(input.redeliveryOf)) return input.redeliveryOf;
    }
    this.db
      .prepare(
        `INSERT OR IGNORE INTO webhook_dead_letters
           (event_id, subscriber_id, endpoints, payload, idempotency_key, attempts, last_error, workflow_id, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(input.eventId, input.subscriberId, JSON.stringify(input.endpoints), JSON.stringify(input.payload ?? null), input.idempotencyKey, input.attempts, input.lastError, input.workflowId, now, now);
    const row = this.db.prepare('SELECT id FROM webhook_dead_letters WHERE workflow_id = ? AND subscriber_id = ?').get(input.workflowId, input.subscriberId) as { id: number };
    return row.id;
  }

  get(id: number): WebhookDeadLetter | undefined {
    const r = this.db.prepare('SELECT * FROM webhook_dead_letters WHERE id = ?').get(id) as Row | undefined;
    return r && toDeadLetter(r);
  }

  /** The stored payload of a dead letter (for redelivery). */
  payload(id: number): unknown {
    const r = this.db.prepare('SELECT payload FROM webhook_dead_letters WHERE id = ?').get(id) as { payload: string } | undefined;
    return r ? JSON.parse(r.payload) : undefined;
  }

  /** Marks a dead letter delivered. @returns false when it does not exist. */
  resolve(id: number, by: string, now: number): boolean {
    this.db.prepare('UPDATE webhook_dead_letters SET resolved_at = COALESCE(resolved_at, ?), resolved_by = COALESCE(resolved_by, ?), updated_at = ? WHERE id = ?').run(now, by, now, id);
    return this.get(id) !== undefined;
  }

  /** Dead letters, newest first. */
  list(opts: { state?: 'open' | 'resolved' | 'all'; limit?: number } = {}): WebhookDeadLetter[] {
    const state = opts.state ?? 'open';
    const where = state === 'open' ? 'WHERE resolved_at IS NULL' : state === 'resolved' ? 'WHERE resolved_at IS NOT NULL' : '';
    const limit = opts.limit ?? 100;
    return (this.db.prepare(`SELECT * FROM webhook_dead_letters ${where} ORDER BY id DESC LIMIT ?`).all(limit) as Row[]).map(toDeadLetter);
  }
}

export interface WebhookDeps {
  dataDir: string;
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
  let store: DeadLetterStore | undefined;
  const dead = () => (store ??= new DeadLetterStore(openDatabase(deps.dataDir)));
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
      const d = dead().get(input.id);
      if (!d) throw ApplicationFailure.nonRetryable(`no webhook dead letter ${input.id}: list them with "integration-agent webhooks dead-letters"`, 'UnknownDeadLetter');
      return { ...d, payload: dead().payload(input.id) };
    },
  };
}
