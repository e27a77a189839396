/**
 * Alert delivery: `deliverAlert(alert)` sends one alert to every configured
 * receiver (`ALERT_WEBHOOKS`, parsed by {@link parseAlertWebhooks}):
 * - `json`: the generic body ({@link jsonAlertBody});
 * - `slack`: a Slack incoming-webhook body (`{ text, blocks }`,
 *   https://api.slack.com/messaging/webhooks);
 * - `discord`: a Discord webhook body ({@link discordAlertBody});
 * - `teams`: a Microsoft Teams Workflows webhook message with an Adaptive Card
 *   ({@link teamsAlertBody});
 * - `pagerduty`: a PagerDuty Events API v2 event, trigger or resolve, with the
 *   incident id as `dedup_key` ({@link pagerDutyEvent});
 * - `smtp`: an e-mail through an SMTP server (nodemailer; {@link emailAlertMessage}).
 *
 * It runs as its own activity, scheduled by the per-service health workflow
 * (or the breaker workflow) after the transition is recorded, or by
 * `deliverRotationAlert` for a rotation that did not complete, so a slow or
 * failing receiver never delays a sweep or a rotation's result; Temporal retries it.
 *
 * Idempotency: the alert id is the receivers' idempotency key, the same on
 * every attempt. HTTP requests carry `Idempotency-Key: <alert.id>` and the id
 * in the body; an e-mail's `Message-ID` is derived from it. A receiver that
 * accepted an alert is recorded (heartbeat details) and skipped when the
 * activity is retried for another receiver. A request that timed out may
 * still have landed: it is retried with the same id, so a receiver that drops
 * repeated keys (PagerDuty by `dedup_key`, a mail client by `Message-ID`)
 * shows it once; set `timeout` above the receiver's slowest answer so a slow
 * receiver is never asked twice.
 *
 * Secrets: webhook URLs (Slack's, Discord's and Teams' embed a token), the
 * PagerDuty routing key and SMTP passwords never appear in errors, logs or
 * history; receivers are named by `name` or position.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { request } from 'undici';
import { createTransport } from 'nodemailer';
import { incidentIdOf, type Alert } from '../domain/health';
import { formatDuration } from '../domain/duration';
import { DEFAULT_ALERT_TIMEOUT_MS, MAX_ALERT_RETRY_FOR_MS, MAX_ALERT_TIMEOUT_MS, type AlertWebhook } from '../domain/alert-receivers';
import { toApplicationFailure, type CoordinatorError } from './coordinator';
import { httpStatusError, httpTransportError } from './providers/http-failure';

export {
  ALERT_FORMATS,
  DEFAULT_ALERT_TIMEOUT_MS,
  MAX_ALERT_RETRY_FOR_MS,
  MAX_ALERT_TIMEOUT_MS,
  PAGERDUTY_EVENTS_URL,
  parseAlertWebhooks,
  type AlertFormat,
  type AlertReceiver,
  type AlertWebhook,
} from '../domain/alert-receivers';

export interface AlertDeps {
  webhooks: AlertWebhook[];
}

/** The generic JSON body: the alert plus a schema version, its incident id and ISO time. */
export function jsonAlertBody(alert: Alert): Record<string, unknown> {
  return { schema: 'integration-agent.alert/v1', ...alert, incidentId: incidentIdOf(alert), atIso: new Date(alert.at).toISOString() };
}

/** The headline of an alert, without decoration: `TRIGGERED: <summary>`. */
function headline(alert: Alert): string {
  if (alert.source === 'rotation') return `${alert.severity === 'critical' ? 'CRITICAL' : 'WARNING'}: ${alert.summary}`;
  return `${alert.kind}: ${alert.summary}`;
}

/** Label/value lines shared by the chat and e-mail bodies (no secrets: ids, statuses, one-line details). */
function alertFacts(alert: Alert): { title: string; value: string }[] {
  const facts: { title: string; value: string }[] = [];
  if (alert.source === 'rotation') {
    facts.push({ title: 'Severity', value: alert.severity ?? 'warning' });
    if (alert.credentialId) facts.push({ title: 'Credential', value: alert.credentialId });
    if (alert.status) facts.push({ title: 'Status', value: alert.status });
    if (alert.cause) facts.push({ title: 'Cause', value: alert.cause });
    if (alert.action) facts.push({ title: 'What to do', value: alert.action });
  } else {
    if (alert.rootCause) facts.push({ title: 'Root cause', value: alert.rootCause });
    if (alert.impacted?.length) facts.push({ title: `Impacted (${alert.impacted.length})`, value: alert.impacted.join(', ') });
    if (alert.failureKind) facts.push({ title: 'Failure', value: alert.failureKind });
    if (alert.detail) facts.push({ title: 'Detail', value: alert.detail });
  }
  facts.push({ title: 'At', value: new Date(alert.at).toISOString() });
  facts.push({ title: 'Alert', value: alert.id });
  return facts;
}

/**
 * A Slack-compatible body (`text` fallback plus Block Kit sections). A
 * rotation alert leads with its severity (`CRITICAL` for needs_attention)
 * and lists each service's state and what to do.
 */
export function slackAlertBody(alert: Alert): { text: string; blocks: unknown[] } {
  if (alert.source === 'rotation') return slackRotationBody(alert);
  const icon = alert.kind === 'TRIGGERED' ? ':red_circle:' : alert.kind === 'WARNING' ? ':large_yellow_circle:' : ':large_green_circle:';
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

const cut = (s: string, max: number) => (s.length > max ? s.slice(0, max - 1) + '…' : s);

/** The alert's tone: red for failures and critical rotations, amber for warnings, green for RESOLVED. */
function tone(alert: Alert): 'bad' | 'warn' | 'good' {
  if (alert.kind === 'RESOLVED') return 'good';
  if (alert.kind === 'WARNING' || (alert.source === 'rotation' && alert.severity !== 'critical')) return 'warn';
  return 'bad';
}

/**
 * A Discord webhook body (https://discord.com/developers/docs/resources/webhook#execute-webhook):
 * one embed with the headline as title, the facts as fields and the alert id
 * in the footer, within Discord's limits (title 256, field name 256 and
 * value 1024 characters, 25 fields, 6000 characters per message). Mentions
 * are disabled (`allowed_mentions.parse: []`): an alert's text never pings anyone.
 */
export function discordAlertBody(alert: Alert): { content: string; embeds: unknown[]; allowed_mentions: { parse: string[] } } {
  const color = { bad: 0xd93025, warn: 0xf9ab00, good: 0x1e8e3e }[tone(alert)];
  const facts = alertFacts(alert).filter((f) => f.title !== 'Alert' && f.title !== 'At');
  const services = alert.source === 'rotation' ? (alert.services ?? []).map((s) => `${s.id} (${s.role}): ${s.step} ${s.status}${s.error ? ` — ${s.error}` : ''}`) : [];
  if (services.length) facts.push({ title: `Services (${services.length})`, value: services.join('\n') });
  return {
    content: cut(headline(alert), 2000),
    embeds: [
      {
        title: cut(headline(alert), 256),
        color,
        timestamp: new Date(alert.at).toISOString(),
        fields: facts.slice(0, 10).map((f) => ({ name: cut(f.title, 256), value: cut(f.value, 512), inline: false })),
        footer: { text: `Alert ${cut(alert.id, 200)}` },
      },
    ],
    allowed_mentions: { parse: [] },
  };
}

/**
 * A Microsoft Teams message for a Workflows webhook ("When a Teams webhook
 * request is received"; also accepted by the retired Office 365 connectors):
 * `{ type: 'message', attachments: [Adaptive Card 1.4] }` with the headline
 * and a FactSet (https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using).
 */
export function teamsAlertBody(alert: Alert): { type: 'message'; attachments: unknown[] } {
  const color = { bad: 'Attention', warn: 'Warning', good: 'Good' }[tone(alert)];
  const facts = alertFacts(alert);
  if (alert.source === 'rotation') for (const s of alert.services ?? []) facts.push({ title: s.id, value: `${s.role}: ${s.step} ${s.status}${s.error ? ` — ${s.error.slice(0, 200)}` : ''}` });
  return {
    type: 'message',
    attachments: [
      {
        contentType: 'application/vnd.microsoft.card.adaptive',
        contentUrl: null,
        content: {
          $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
          type: 'AdaptiveCard',
          version: '1.4',
          body: [
            { type: 'TextBlock', text: headline(alert), weight: 'Bolder', size: 'Medium', color, wrap: true },
            { type: 'FactSet', facts },
          ],
        },
      },
    ],
  };
}

/**
 * A PagerDuty Events API v2 event (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/,
 * .../resolve-events/): `trigger` for TRIGGERED and WARNING, `resolve` for
 * RESOLVED, `dedup_key` = the incident id, so PagerDuty drops a repeated
 * trigger of an open incident and the RESOLVED closes the incident its
 * TRIGGERED opened. `payload` (trigger only): `summary` (at most 1024
 * characters), `source` (the service), `severity` (`critical` for failures,
 * `warning` for warnings, a rotation alert's own severity), `timestamp`,
 * `component`, `group` (the alert source), `class` (the failure kind) and
 * `custom_details` (alert id, detail, impacted services).
 */
export function pagerDutyEvent(alert: Alert, routingKey: string): Record<string, unknown> {
  const dedup_key = cut(incidentIdOf(alert), 255);
  if (alert.kind === 'RESOLVED') return { routing_key: routingKey, event_action: 'resolve', dedup_key };
  const severity = alert.severity ?? (alert.kind === 'WARNING' ? 'warning' : 'critical');
  const details: Record<string, unknown> = { alert_id: alert.id };
  for (const f of alertFacts(alert)) if (f.title !== 'Alert' && f.title !== 'At') details[f.title.replace(/ \(\d+\)$/, '').toLowerCase().replace(/ /g, '_')] = f.value;
  return {
    routing_key: routingKey,
    event_action: 'trigger',
    dedup_key,
    payload: {
      summary: cut(alert.summary, 1024),
      source: alert.serviceId,
      severity,
      timestamp: new Date(alert.at).toISOString(),
      component: alert.rootCause ?? alert.serviceId,
      group: alert.source,
      ...(alert.failureKind ?? alert.status ? { class: alert.failureKind ?? alert.status } : {}),
      custom_details: details,
    },
    client: 'integration-agent',
  };
}

/** An RFC 5322 message id for an alert or incident id (characters outside `atext` become `_`). */
function messageId(id: string): string {
  return `<${id.replace(/[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]/g, '_').replace(/^\.+|\.+$/g, '') || 'alert'}@integration-agent>`;
}

/**
 * The e-mail for an alert: subject `[<kind>] <summary>`, a plain-text body of
 * the facts, `Message-ID` derived from the alert id (the same on a retry, so
 * a mail client can drop a repeat), and the incident's TRIGGERED (or
 * WARNING) as the thread (`In-Reply-To`/`References` on later alerts of the
 * incident); `X-Alert-Id` and `X-Incident-Id` headers for filters.
 */
export function emailAlertMessage(alert: Alert): { subject: string; text: string; messageId: string; headers: Record<string, string>; inReplyTo?: string; references?: string } {
  const incident = incidentIdOf(alert);
  const lines = [headline(alert), '', ...alertFacts(alert).map((f) => `${f.title}: ${f.value}`)];
  if (alert.source === 'rotation' && alert.services?.length) {
    lines.push('', 'Services:', ...alert.services.map((s) => `- ${s.id} (${s.role}): ${s.step} ${s.status}${s.holds ? `, holds ${s.holds}` : ''}${s.error ? ` — ${s.error}` : ''}`));
  }
  const out: ReturnType<typeof emailAlertMessage> = {
    subject: cut(`[${alert.source === 'rotation' ? (alert.severity ?? 'warning').toUpperCase() : alert.kind}] ${alert.summary}`, 200),
    text: lines.join('\n') + '\n',
    messageId: messageId(alert.id),
    headers: { 'X-Alert-Id': alert.id, 'X-Incident-Id': incident },
  };
  if (incident !== alert.id) {
    out.inReplyTo = messageId(incident);
    out.references = messageId(incident);
  }
  return out;
}

/** What the activity remembers across attempts (heartbeat details): receivers done and given up, by index. */
interface DeliveryProgress {
  done?: number[];
  gaveUp?: number[];
}

/** While requests are in flight, heartbeat this often so a slow receiver never trips the activity's heartbeat timeout (20 s). */
const HEARTBEAT_EVERY_MS = 5_000;

export function createAlertActivities(deps: AlertDeps) {
  deps.webhooks.forEach((w, i) => {
    const name = w.name ?? `#${i + 1}`;
    if (w.timeoutMs !== undefined && !(w.timeoutMs > 0 && w.timeoutMs <= MAX_ALERT_TIMEOUT_MS)) {
      throw new RangeError(`alert receiver ${name}: timeoutMs must be in (0, ${MAX_ALERT_TIMEOUT_MS}], got ${w.timeoutMs}`);
    }
    if (w.retryForMs !== undefined && !(w.retryForMs >= 0 && w.retryForMs <= MAX_ALERT_RETRY_FOR_MS)) {
      throw new RangeError(`alert receiver ${name}: retryForMs must be in [0, ${MAX_ALERT_RETRY_FOR_MS}], got ${w.retryForMs}`);
    }
    if (w.format === 'pagerduty' && !w.routingKey) throw new RangeError(`alert receiver ${name}: a pagerduty receiver needs routingKey`);
    if (w.format === 'smtp' && (!w.from || !w.to?.length)) throw new RangeError(`alert receiver ${name}: an smtp receiver needs from and to`);
  });

  /** Sends to one HTTP receiver; throws the coordinator's error for a failed answer or transport. */
  async function postTo(w: AlertWebhook, name: string, alert: Alert, timeoutMs: number): Promise<void> {
    // Named, never addressed: webhook URLs are secrets.
    const where = { serviceId: name, method: 'POST', path: '(webhook)' };
    const body =
      w.format === 'slack'
        ? slackAlertBody(alert)
        : w.format === 'discord'
          ? discordAlertBody(alert)
          : w.format === 'teams'
            ? teamsAlertBody(alert)
            : w.format === 'pagerduty'
              ? pagerDutyEvent(alert, w.routingKey!)
              : jsonAlertBody(alert);
    let res;
    try {
      res = await request(w.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': alert.id, 'user-agent': 'integration-agent-alerts' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const e = err as { name?: string };
      // The only abort here is the request's own timeout: a timeout, retried as one.
      const timedOut = e.name === 'TimeoutError' || e.name === 'AbortError';
      throw httpTransportError(err, { ...where, ...(timedOut ? { code: 'ETIMEDOUT' } : {}) });
    }
    // The body is read only to free the connection: an answer may echo the routing key or URL.
    await res.body.dump();
    if (res.statusCode >= 200 && res.statusCode < 300) return;
    throw httpStatusError({ ...where, status: res.statusCode, headers: res.headers });
  }

  /** Sends one e-mail; throws an ApplicationFailure (5xx answers and refused logins are not retried). */
  async function mailTo(w: AlertWebhook, name: string, alert: Alert, timeoutMs: number): Promise<void> {
    const u = new URL(w.url);
    const secure = u.protocol === 'smtps:';
    const transport = createTransport({
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port ? Number(u.port) : secure ? 465 : 587,
      secure,
      ...(u.username ? { auth: { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } } : {}),
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
      logger: false,
      debug: false,
    });
    const msg = emailAlertMessage(alert);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        transport.sendMail({ from: w.from, to: w.to, ...msg }),
        new Promise((_, reject) => (timer = setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })), timeoutMs))),
      ]);
    } catch (err) {
      const e = err as { code?: string; responseCode?: number };
      // Never the server's text: it may quote the login. The code and SMTP reply code say what happened.
      const what = `${e.code ?? 'error'}${e.responseCode ? ` ${e.responseCode}` : ''}`;
      const permanent = e.code === 'EAUTH' || e.code === 'EENVELOPE' || (e.responseCode !== undefined && e.responseCode >= 500);
      throw ApplicationFailure.create({ message: `${name}: SMTP ${what}`, type: permanent ? 'AlertRejected' : 'AlertDeliveryFailed', nonRetryable: permanent });
    } finally {
      clearTimeout(timer);
      transport.close();
    }
  }

  return {
    /**
     * Delivers one alert to every receiver. Receivers already delivered to,
     * or given up, in an earlier attempt (heartbeat details) are skipped on
     * retry; a receiver still failing `retryForMs` after the alert's first
     * attempt is given up.
     * @returns how many receivers accepted it.
     * @throws ApplicationFailure, judged per receiver as `callService` judges a
     *   call: non-retryable (`AlertRejected`) when every failed receiver refused
     *   for good (400, 401, 403, 404, 422, other 4xx, 501; SMTP 5xx or a
     *   refused login) or was given up (`AlertGivenUp`); otherwise retryable
     *   (`AlertDeliveryFailed`) with `nextRetryDelay` = the longest
     *   `Retry-After` asked (capped) or full-jitter backoff, cut to the
     *   nearest retry horizon.
     */
    async deliverAlert(alert: Alert): Promise<{ delivered: number; webhooks: number }> {
      let ctx: Context | undefined;
      try {
        ctx = Context.current();
      } catch {
        ctx = undefined;
      }
      const progress = (ctx?.info.heartbeatDetails as DeliveryProgress | undefined) ?? {};
      const done = new Set<number>(progress.done ?? []);
      const gaveUp = new Set<number>(progress.gaveUp ?? []);
      const heartbeat = () => ctx?.heartbeat({ done: [...done], gaveUp: [...gaveUp] } satisfies DeliveryProgress);
      const firstAttemptAt = ctx?.info.scheduledTimestampMs ?? Date.now();
      const failures: string[] = [];
      // Each failed receiver's verdict, from the function every HTTP call of the project goes through.
      const verdicts: { failure: ApplicationFailure; remainingMs: number }[] = [];
      const attempt = ctx?.info.attempt ?? 1;
      const pulse = ctx ? setInterval(heartbeat, HEARTBEAT_EVERY_MS) : undefined;
      try {
        await Promise.all(
          deps.webhooks.map(async (w, i) => {
            if (done.has(i) || gaveUp.has(i)) return;
            const name = w.name ?? `webhook-${i + 1}`;
            const timeoutMs = w.timeoutMs ?? DEFAULT_ALERT_TIMEOUT_MS;
            try {
              if (w.format === 'smtp') await mailTo(w, name, alert, timeoutMs);
              else await postTo(w, name, alert, timeoutMs);
              done.add(i);
              heartbeat();
            } catch (err) {
              const failure =
                err instanceof ApplicationFailure ? err : toApplicationFailure(err as CoordinatorError, { attempt, method: 'POST', idempotencyKey: alert.id });
              const c = err as Partial<CoordinatorError>;
              const why =
                err instanceof ApplicationFailure
                  ? err.message.slice(name.length + 2)
                  : c.status !== undefined
                    ? `HTTP ${c.status}`
                    : c.code === 'ETIMEDOUT'
                      ? `no answer within ${timeoutMs}ms (it may have landed: the retry carries the same id)`
                      : (c.code ?? c.name ?? 'network error');
              const remainingMs = firstAttemptAt + (w.retryForMs ?? MAX_ALERT_RETRY_FOR_MS) - Date.now();
              if (!failure.nonRetryable && remainingMs <= 0) {
                gaveUp.add(i);
                heartbeat();
                failures.push(`${name}: ${why}; given up after ${formatDuration(w.retryForMs ?? MAX_ALERT_RETRY_FOR_MS)} (retryFor)`);
                verdicts.push({ failure: ApplicationFailure.nonRetryable(why, 'AlertGivenUp'), remainingMs });
                return;
              }
              failures.push(`${name}: ${why}`);
              verdicts.push({ failure, remainingMs });
            }
          }),
        );
      } finally {
        clearInterval(pulse);
      }
      if (failures.length) {
        const msg = `alert ${alert.id} not delivered to ${failures.join('; ')}`;
        const retryable = verdicts.filter((v) => !v.failure.nonRetryable);
        if (retryable.length === 0) {
          throw ApplicationFailure.nonRetryable(msg, verdicts.every((v) => v.failure.type === 'AlertGivenUp') ? 'AlertGivenUp' : 'AlertRejected');
        }
        // The receiver that asked to wait longest sets the delay (the ones already done are skipped on retry),
        // cut so that no receiver is tried long after its horizon.
        const delays = retryable.map((v) => v.failure.nextRetryDelay).filter((d): d is number => typeof d === 'number');
        const horizon = Math.max(1_000, Math.min(...retryable.map((v) => v.remainingMs)));
        // (SMTP failures carry no delay of their own: exponential, 1 s doubling up to 5 min, as the workflows' retry policy.)
        const wanted = delays.length ? Math.max(...delays) : Math.min(300_000, 1_000 * 2 ** Math.min(attempt - 1, 20));
        throw ApplicationFailure.create({ message: msg, type: 'AlertDeliveryFailed', nonRetryable: false, nextRetryDelay: Math.min(wanted, horizon) });
      }
      return { delivered: done.size, webhooks: deps.webhooks.length };
    },
  };
}

export type AlertActivities = ReturnType<typeof createAlertActivities>;
