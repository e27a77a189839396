/**
 * Alert receivers as configured (`ALERT_WEBHOOKS`): the shape and its
 * parser, pure, so the worker's configuration (src/worker/config.ts)
 * validates them at start with everything else. Delivery is
 * src/activities/alerts.ts.
 */
import { formatDuration, tryParseDuration } from './duration';

/** The receiver formats `ALERT_WEBHOOKS` accepts. */
export const ALERT_FORMATS = ['json', 'slack', 'discord', 'teams', 'pagerduty', 'smtp'] as const;
export type AlertFormat = (typeof ALERT_FORMATS)[number];

/** PagerDuty's Events API v2 endpoint (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/). */
export const PAGERDUTY_EVENTS_URL = 'https://events.pagerduty.com/v2/enqueue';

/** Default per-request timeout, ms. */
export const DEFAULT_ALERT_TIMEOUT_MS = 5_000;
/**
 * Largest per-request timeout, ms: the delivery activity's start-to-close
 * timeout is 30 s in the workflows that schedule it, so a longer request
 * would be cut by Temporal (and then retried: a duplicate).
 */
export const MAX_ALERT_TIMEOUT_MS = 25_000;
/** Default and largest retry horizon, ms: the workflows' schedule-to-close timeout of the delivery activity (the breaker's is 1 h). */
export const MAX_ALERT_RETRY_FOR_MS = 86_400_000;

/** One alert receiver (named `AlertWebhook` for history: SMTP and PagerDuty receivers are not webhooks). */
export interface AlertWebhook {
  /** Name used in errors and logs instead of the URL; default `webhook-<index>`. */
  name?: string;
  /**
   * Where to send: the webhook URL (`json`, `slack`, `discord`, `teams`), the
   * Events API URL (`pagerduty`, default {@link PAGERDUTY_EVENTS_URL}), or an
   * `smtp://` / `smtps://` URL with the user and password (`smtp`). A secret.
   */
  url: string;
  /** Body format; default `json`. */
  format?: AlertFormat;
  /** Per-request timeout, ms, in (0, 25000]; default 5000. */
  timeoutMs?: number;
  /**
   * Retry horizon, ms: a delivery still failing this long after the alert's
   * first attempt is given up for this receiver (others go on); default and
   * at most 24 h (the breaker workflow stops at 1 h).
   */
  retryForMs?: number;
  /** `pagerduty`: the Events API v2 integration key (a secret). */
  routingKey?: string;
  /** `smtp`: the sender address. */
  from?: string;
  /** `smtp`: the recipients. */
  to?: string[];
}
/** A receiver of alerts; see {@link AlertWebhook}. */
export type AlertReceiver = AlertWebhook;

const OPTIONS: Record<string, readonly AlertFormat[]> = {
  name: ALERT_FORMATS,
  timeout: ALERT_FORMATS,
  retryFor: ALERT_FORMATS,
  url: ['pagerduty'],
  from: ['smtp'],
  to: ['smtp'],
};

const EMAIL = /^[^\s@<>,;]+@[^\s@<>,;]+$/;

/**
 * Parses the `ALERT_WEBHOOKS` configuration: comma-separated receivers, each
 * `[format=]target[;option=value]...`:
 * - `json=https://...` (the default format), `slack=`, `discord=`, `teams=`: the webhook URL;
 * - `pagerduty=<integration key>` (32 characters; option `url=` for another
 *   Events API v2 endpoint, e.g. `https://events.eu.pagerduty.com/v2/enqueue`);
 * - `smtp=smtp://user:password@host:587` (or `smtps://`, port 465) with
 *   `from=` and one `to=` per recipient.
 * Options for any receiver: `name=` (shown in logs and errors instead of the
 * URL), `timeout=` (per request, e.g. `10s`; default 5s, at most 25s),
 * `retryFor=` (retry horizon from the alert's first attempt, e.g. `2h`;
 * default and at most 24h). A `,` or `;` inside a URL or password must be
 * percent-encoded (`%2C`, `%3B`).
 *
 * @throws RangeError naming the receiver (`ALERT_WEBHOOKS receiver #<n>`, and
 *   its `name=`) and what to write instead; targets (URLs, keys, passwords) are never shown.
 */
export function parseAlertWebhooks(text: string | undefined): AlertWebhook[] {
  if (!text?.trim()) return [];
  const receivers = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((item, i): AlertWebhook => {
      const [head, ...opts] = item.split(';').map((s) => s.trim());
      const m = /^([a-z]+)=(.*)$/.exec(head!);
      const format = m && (ALERT_FORMATS as readonly string[]).includes(m[1]!) ? (m[1] as AlertFormat) : 'json';
      const target = m && format === m[1] ? m[2]!.trim() : head!;
      const options = new Map<string, string[]>();
      let where = `ALERT_WEBHOOKS receiver #${i + 1}`;
      for (const o of opts.filter(Boolean)) {
        const eq = o.indexOf('=');
        const key = eq > 0 ? o.slice(0, eq).trim() : o;
        if (!OPTIONS[key]) throw new RangeError(`${where}: unknown option "${key}"; options are name=, timeout=, retryFor= (any receiver), url= (pagerduty), from=, to= (smtp)`);
        if (!OPTIONS[key]!.includes(format)) throw new RangeError(`${where}: option ${key}= is for ${OPTIONS[key]!.join(', ')} receivers, not ${format}`);
        options.set(key, [...(options.get(key) ?? []), o.slice(eq + 1).trim()]);
      }
      const name = options.get('name')?.[0];
      if (name !== undefined && !/^[\w.-]{1,64}$/.test(name)) throw new RangeError(`${where}: name= must be 1-64 letters, digits, '.', '_' or '-', got ${JSON.stringify(name)}`);
      if (name) where += ` (${name})`;
      const out: AlertWebhook = { name: name ?? `webhook-${i + 1}`, url: target, format };
      const duration = (key: string, min: number, max: number): number | undefined => {
        const v = options.get(key)?.[0];
        if (v === undefined) return undefined;
        const ms = tryParseDuration(v);
        if (ms === undefined || ms < min || ms > max) {
          throw new RangeError(`${where}: ${key}= expects a duration from ${formatDuration(Math.max(min, 1))} to ${formatDuration(max)} such as 10s, got ${JSON.stringify(v)}`);
        }
        return ms;
      };
      const timeoutMs = duration('timeout', 1, MAX_ALERT_TIMEOUT_MS);
      if (timeoutMs !== undefined) out.timeoutMs = timeoutMs;
      const retryForMs = duration('retryFor', 0, MAX_ALERT_RETRY_FOR_MS);
      if (retryForMs !== undefined) out.retryForMs = retryForMs;
      if (format === 'pagerduty') {
        if (!/^[A-Za-z0-9]{32}$/.test(target)) throw new RangeError(`${where}: expected pagerduty=<integration key>, the 32-character key of an Events API v2 integration (value not shown: routing keys are secrets)`);
        out.routingKey = target;
        out.url = options.get('url')?.[0] ?? PAGERDUTY_EVENTS_URL;
        if (!isHttpUrl(out.url)) throw new RangeError(`${where}: url= must be an http(s) URL of an Events API v2 endpoint, e.g. ${PAGERDUTY_EVENTS_URL}`);
      } else if (format === 'smtp') {
        let ok = false;
        try {
          const u = new URL(target);
          ok = (u.protocol === 'smtp:' || u.protocol === 'smtps:') && u.hostname !== '';
        } catch {
          ok = false;
        }
        if (!ok) throw new RangeError(`${where}: expected smtp=smtp://user:password@host:587 or smtps://user:password@host:465 (value not shown: it may hold a password)`);
        const from = options.get('from')?.[0];
        const to = options.get('to') ?? [];
        if (!from || !EMAIL.test(from)) throw new RangeError(`${where}: from= must be the sender's e-mail address, got ${JSON.stringify(from ?? '')}`);
        if (to.length === 0) throw new RangeError(`${where}: an smtp receiver needs at least one to=<address> (one to= per recipient)`);
        for (const t of to) if (!EMAIL.test(t)) throw new RangeError(`${where}: to= must be an e-mail address, got ${JSON.stringify(t)}`);
        out.from = from;
        out.to = to;
      } else if (!isHttpUrl(target)) {
        throw new RangeError(`${where}: expected [json=|slack=|discord=|teams=]http(s)://..., pagerduty=<key> or smtp=smtp://... (value not shown: webhook URLs are secrets)`);
      }
      return out;
    });
  const names = new Set<string>();
  receivers.forEach((r, i) => {
    if (names.has(r.name!)) throw new RangeError(`ALERT_WEBHOOKS receiver #${i + 1}: name=${r.name} is used twice; names must be unique`);
    names.add(r.name!);
  });
  return receivers;
}

function isHttpUrl(s: string): boolean {
  try {
    return ['http:', 'https:'].includes(new URL(s).protocol);
  } catch {
    return false;
  }
}

