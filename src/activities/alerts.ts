/**
 * Alert delivery: `deliverAlert(alert)` posts one alert to every configured
 * webhook, as generic JSON or as a Slack-compatible body (Slack incoming
 * webhooks: `{ text, blocks }`, https://api.slack.com/messaging/webhooks).
 *
 * It runs as its own activity, scheduled by the per-service health workflow
 * (or the breaker workflow) after the transition is recorded, or by
 * `deliverRotationAlert` for a rotation that did not complete, so a slow or
 * failing receiver never delays a sweep or a rotation's result; Temporal retries it. Each request
 * carries `Idempotency-Key: <alert.id>` so a receiver can drop a repeat after
 * a retry. Webhook URLs are secrets (Slack's embed a token): they never appear
 * in errors, logs or history; webhooks are named by `name` or index.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { request } from 'undici';
import type { Alert } from '../domain/health';
import { toApplicationFailure, type CoordinatorError } from './coordinator';
import { httpStatusError, httpTransportError } from './providers/http-failure';

export interface AlertWebhook {
  /** Name used in errors and logs instead of the URL; default `webhook-<index>`. */
  name?: string;
  url: string;
  /** `json` (default): the alert object; `slack`: a Slack incoming-webhook body. */
  format?: 'json' | 'slack';
  /** Per-request timeout, ms; default 5000. */
  timeoutMs?: number;
}

export interface AlertDeps {
  webhooks: AlertWebhook[];
}

/** The generic JSON body: the alert plus a schema version and ISO time. */
export function jsonAlertBody(alert: Alert): Record<string, unknown> {
  return { schema: 'integration-agent.alert/v1', ...alert, atIso: new Date(alert.at).toISOString() };
}

/**
 * A Slack-compatible body (`text` fallback plus Block Kit sections). A
 * rotation alert leads with its severity (`CRITICAL` for needs_attention)
 * and lists each service's state and what to do.
 */
export function slackAlertBody(alert: Alert): { text: string; blocks: unknown[] } {
  if (alert.source === 'rotation') return slackRotationBody(alert);
  const icon = alert.kind === 'TRIGGERED' ? ':red_circle:' : ':large_green_circle:';
  const text = `${icon} ${alert.kind}: ${alert.summary}`;
  const fields: string[] = [];
  if (alert.rootCause) fields.push(`*Root cause:* \`${alert.rootCause}\``);
  if (alert.impacted?.length) fields.push(`*Impacted (${alert.impacted.length}):* ${alert.impacted.map((s) => `\`${s}\``).join(', ')}`);
  if (alert.detail) fields.push(`*Detail:* ${alert.detail}`);
  fields.push(`*At:* ${new Date(alert.at).toISOString()} · *Alert:* ${alert.id}`);
  return {
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `*${text}*` } },
      { type: 'section', text: { type: 'mrkdwn', text: fields.join('\n') } },
    ],
  };
}

const SLACK_MAX_SERVICES = 10;

function slackRotationBody(alert: Alert): { text: string; blocks: unknown[] } {
  const critical = alert.severity === 'critical';
  const text = `${critical ? ':rotating_light: CRITICAL' : ':warning: WARNING'}: ${alert.summary}`;
  const fields: string[] = [`*Severity:* ${alert.severity ?? 'warning'} · *Credential:* \`${alert.credentialId}\` · *Status:* \`${alert.status}\``];
  if (alert.cause) fields.push(`*Cause:* ${alert.cause}`);
  if (alert.action) fields.push(`*What to do:* ${alert.action}`);
  // Failed services first; Slack caps a section at 3000 characters, so long fleets are cut (the JSON body has them all).
  const all = [...(alert.services ?? [])].sort((a, b) => Number(b.status === 'failed') - Number(a.status === 'failed'));
  const services = all
    .slice(0, SLACK_MAX_SERVICES)
    .map((s) => `• \`${s.id}\` (${s.role}): ${s.step} ${s.status}${s.holds ? `, holds ${s.holds}` : ''}${s.error ? ` — ${s.error.slice(0, 200)}` : ''}`);
  if (all.length > SLACK_MAX_SERVICES) services.push(`… and ${all.length - SLACK_MAX_SERVICES} more (\`integration-agent credentials status ${alert.credentialId}\`)`);
  fields.push(`*At:* ${new Date(alert.at).toISOString()} · *Alert:* ${alert.id}`);
  return {
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `*${text}*` } },
      { type: 'section', text: { type: 'mrkdwn', text: fields.join('\n') } },
      ...(services.length ? [{ type: 'section', text: { type: 'mrkdwn', text: `*Services:*\n${services.join('\n')}` } }] : []),
    ],
  };
}

/**
 * Parses the `ALERT_WEBHOOKS` configuration: comma-separated
 * `[format=]url` items, e.g. `slack=https://hooks.slack.com/...,https://ops.example/alerts`.
 * @throws RangeError naming the item (by position, never the URL) when it is not an http(s) URL.
 */
export function parseAlertWebhooks(text: string | undefined): AlertWebhook[] {
  if (!text?.trim()) return [];
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((item, i) => {
      const m = /^(json|slack)=(.*)$/.exec(item);
      const url = m ? m[2]! : item;
      let ok = false;
      try {
        ok = ['http:', 'https:'].includes(new URL(url).protocol);
      } catch {
        ok = false;
      }
      if (!ok) throw new RangeError(`alert webhook #${i + 1}: expected [json=|slack=]http(s)://... (value not shown: webhook URLs are secrets)`);
      return { name: `webhook-${i + 1}`, url, format: (m?.[1] as 'json' | 'slack' | undefined) ?? 'json' };
    });
}

export function createAlertActivities(deps: AlertDeps) {
  deps.webhooks.forEach((w, i) => {
    if (w.timeoutMs !== undefined && !(w.timeoutMs > 0)) throw new RangeError(`alert webhook ${w.name ?? `#${i + 1}`}: timeoutMs must be > 0, got ${w.timeoutMs}`);
  });
  return {
    /**
     * Delivers one alert to every webhook. Webhooks already delivered in an
     * earlier attempt (heartbeat details) are skipped on retry.
     * @returns how many webhooks accepted it.
     * @throws ApplicationFailure, judged per webhook as `callService` judges a
     *   call: non-retryable (`AlertRejected`) when every failed receiver refused
     *   for good (400, 401, 403, 404, 422, other 4xx, 501); otherwise retryable
     *   (`AlertDeliveryFailed`) with `nextRetryDelay` = the longest
     *   `Retry-After` asked (capped) or full-jitter backoff.
     */
    async deliverAlert(alert: Alert): Promise<{ delivered: number; webhooks: number }> {
      let ctx: Context | undefined;
      try {
        ctx = Context.current();
      } catch {
        ctx = undefined;
      }
      const done = new Set<number>((ctx?.info.heartbeatDetails as { done?: number[] } | undefined)?.done ?? []);
      const failures: string[] = [];
      // Each failed webhook's verdict, from the function every HTTP call of the project goes through.
      const verdicts: ApplicationFailure[] = [];
      const attempt = ctx?.info.attempt ?? 1;
      const verdict = (cause: CoordinatorError) => verdicts.push(toApplicationFailure(cause, { attempt, method: 'POST', idempotencyKey: alert.id }));
      await Promise.all(
        deps.webhooks.map(async (w, i) => {
          if (done.has(i)) return;
          const name = w.name ?? `webhook-${i + 1}`;
          // Named, never addressed: webhook URLs are secrets.
          const where = { serviceId: name, method: 'POST', path: '(webhook)' };
          const body = w.format === 'slack' ? slackAlertBody(alert) : jsonAlertBody(alert);
          try {
            const res = await request(w.url, {
              method: 'POST',
              headers: { 'content-type': 'application/json', 'idempotency-key': alert.id, 'user-agent': 'integration-agent-alerts' },
              body: JSON.stringify(body),
              signal: AbortSignal.timeout(w.timeoutMs ?? 5000),
            });
            await res.body.dump();
            if (res.statusCode >= 200 && res.statusCode < 300) {
              done.add(i);
              ctx?.heartbeat({ done: [...done] });
              return;
            }
            verdict(httpStatusError({ ...where, status: res.statusCode, headers: res.headers }));
            failures.push(`${name}: HTTP ${res.statusCode}`);
          } catch (err) {
            const e = err as { name?: string; code?: string };
            // The only abort here is the request's own timeout: a timeout, retried as one.
            const timedOut = e.name === 'TimeoutError' || e.name === 'AbortError';
            verdict(httpTransportError(err, { ...where, ...(timedOut ? { code: 'ETIMEDOUT' } : {}) }));
            failures.push(`${name}: ${e.name === 'TimeoutError' ? `no answer within ${w.timeoutMs ?? 5000}ms` : (e.code ?? e.name ?? 'network error')}`);
          }
        }),
      );
      if (failures.length) {
        const msg = `alert ${alert.id} not delivered to ${failures.join('; ')}`;
        const retryable = verdicts.filter((f) => !f.nonRetryable);
        if (retryable.length === 0) throw ApplicationFailure.nonRetryable(msg, 'AlertRejected');
        // The receiver that asked to wait longest sets the delay (the ones already done are skipped on retry).
        const delays = retryable.map((f) => f.nextRetryDelay).filter((d): d is number => typeof d === 'number');
        throw ApplicationFailure.create({ message: msg, type: 'AlertDeliveryFailed', nonRetryable: false, ...(delays.length ? { nextRetryDelay: Math.max(...delays) } : {}) });
      }
      return { delivered: done.size, webhooks: deps.webhooks.length };
    },
  };
}

export type AlertActivities = ReturnType<typeof createAlertActivities>;
