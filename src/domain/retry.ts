/**
 * Failure classification and retry timing, decided once for every external
 * call (DESIGN.md: "Retryable vs non-retryable is decided once, in src/domain").
 *
 * The only retry layer is Temporal's activity retry: the coordinator
 * classifies a failed call here, and the activity surfaces the verdict as an
 * `ApplicationFailure` (non-retryable, or retryable with `nextRetryDelay`).
 *
 * Pure: no clock, no randomness of its own; time and random numbers are
 * arguments, so workflows, activities and property tests share it.
 */
import type { FailureKind } from './outcome';

/** The verdict on one failed call. */
export interface FailureClass {
  kind: FailureKind;
  /** Whether trying again later may succeed. */
  retryable: boolean;
  /**
   * True when the request certainly never reached the service (refused, DNS,
   * connect timeout, breaker open, local rate limit), so retrying even a
   * non-idempotent request cannot apply it twice.
   */
  notSent: boolean;
}

/** What is known about a failed call: the HTTP status when a response arrived, else the error's code and name. */
export interface FailureFacts {
  status?: number;
  /** Node/undici error code, e.g. `ECONNRESET`, `UND_ERR_HEADERS_TIMEOUT`, `ENOTFOUND`. */
  code?: string;
  /** Error name, e.g. `TimeoutError`, `AbortError`. */
  name?: string;
}

/** Statuses worth retrying (RFC 9110 §15.5.9 408, RFC 6585 §4 429, and the transient 5xx). */
const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);
/** 5xx that a retry will not fix: not implemented, version not supported, network authentication required. */
const PERMANENT_5XX = new Set([501, 505, 511]);

const TIMEOUT_CODES = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'DEADLINE_EXCEEDED',
]);
const REFUSED_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EADDRNOTAVAIL']);
const RESET_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_INFO',
]);
const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NODATA', 'EAI_NONAME']);
const BODY_CODES = new Set(['UND_ERR_RES_EXCEEDED_MAX_SIZE', 'Z_DATA_ERROR', 'Z_BUF_ERROR', 'ERR_PADDING_1', 'BODY_INVALID_JSON']);

function isTlsCode(code: string): boolean {
  return (
    code.startsWith('ERR_TLS_') ||
    code.startsWith('ERR_SSL_') ||
    code.startsWith('CERT_') ||
    code.includes('SELF_SIGNED') ||
    code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' ||
    code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' ||
    code === 'HOSTNAME_MISMATCH'
  );
}

/**
 * Classifies a failed call, once, for the whole project.
 *
 * | failure | kind | retryable |
 * |---|---|---|
 * | HTTP 408, 429, 500, 502, 503, 504 | `status` | yes |
 * | other 5xx except 501, 505, 511 | `status` | yes |
 * | HTTP 400, 401, 403, 404, 409, 422, other 4xx; 501, 505, 511; 3xx not followed | `status` | no |
 * | connect/headers/body timeout, overall deadline | `timeout` | yes |
 * | ECONNREFUSED, host/network unreachable | `connection_refused` | yes |
 * | ECONNRESET, EPIPE, socket closed, truncated body | `connection_reset` | yes |
 * | ENOTFOUND, EAI_AGAIN and other resolver errors | `dns` | yes |
 * | certificate and TLS handshake errors | `tls` | no |
 * | body too large, bad compression, invalid JSON | `body` | no |
 * | circuit breaker open | `breaker_open` | yes |
 * | local rate limit could not admit before the deadline | `rate_limited` | yes |
 * | cancelled by the caller | `aborted` | no |
 * | anything else | `other` | yes |
 *
 * @param facts the status when a response arrived (takes precedence), else the error code/name.
 * @returns kind, retryable, and whether the request certainly never reached the service.
 */
export function classifyFailure(facts: FailureFacts): FailureClass {
  const { status, code = '', name = '' } = facts;
  if (status !== undefined) {
    if (RETRYABLE_STATUS.has(status)) return { kind: 'status', retryable: true, notSent: false };
    if (status >= 500) return { kind: 'status', retryable: !PERMANENT_5XX.has(status), notSent: false };
    return { kind: 'status', retryable: false, notSent: false };
  }
  if (code === 'BREAKER_OPEN') return { kind: 'breaker_open', retryable: true, notSent: true };
  if (code === 'RATE_LIMITED') return { kind: 'rate_limited', retryable: true, notSent: true };
  if (code === 'ABORT_ERR' || name === 'AbortError' || code === 'UND_ERR_ABORTED') {
    return { kind: 'aborted', retryable: false, notSent: false };
  }
  if (TIMEOUT_CODES.has(code) || name === 'TimeoutError') {
    return { kind: 'timeout', retryable: true, notSent: code === 'UND_ERR_CONNECT_TIMEOUT' };
  }
  if (REFUSED_CODES.has(code)) return { kind: 'connection_refused', retryable: true, notSent: true };
  if (DNS_CODES.has(code)) return { kind: 'dns', retryable: true, notSent: true };
  if (RESET_CODES.has(code)) return { kind: 'connection_reset', retryable: true, notSent: false };
  // zlib's codes (Z_DATA_ERROR, ...) and brotli's (ERR__ERROR_FORMAT_PADDING_1, ...): the body is corrupt; resending gets the same bytes.
  if (BODY_CODES.has(code) || code.startsWith('Z_') || code.startsWith('ERR__ERROR_FORMAT_')) return { kind: 'body', retryable: false, notSent: false };
  if (isTlsCode(code)) return { kind: 'tls', retryable: false, notSent: false };
  return { kind: 'other', retryable: true, notSent: false };
}

/** Methods that RFC 9110 §9.2.2 defines as idempotent. */
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** True for methods that are idempotent per RFC 9110 §9.2.2 (GET, HEAD, OPTIONS, TRACE, PUT, DELETE). */
export function isIdempotentMethod(method: string): boolean {
  return IDEMPOTENT_METHODS.has(method.toUpperCase());
}

/**
 * Whether a failed call may be retried: the failure must be retryable, and a
 * non-idempotent method (POST, PATCH) is retried only when the request carried
 * an idempotency key or certainly never reached the service.
 */
export function mayRetry(failure: FailureClass, method: string, hasIdempotencyKey: boolean): boolean {
  if (!failure.retryable) return false;
  return isIdempotentMethod(method) || hasIdempotencyKey || failure.notSent;
}

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const LONG_WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

// RFC 9110 §5.6.7: IMF-fixdate (preferred), and the obsolete rfc850-date and asctime-date.
const IMF_FIXDATE = /^([A-Z][a-z]{2}), (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const RFC850_DATE = /^([A-Z][a-z]+), (\d{2})-([A-Z][a-z]{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/;
const ASCTIME_DATE = /^([A-Z][a-z]{2}) ([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/;

function utc(year: number, monthName: string, day: number, h: number, m: number, s: number): number | undefined {
  const month = MONTHS.indexOf(monthName);
  if (month < 0 || h > 23 || m > 59 || s > 60) return undefined;
  const t = Date.UTC(year, month, day, h, m, Math.min(s, 59));
  const d = new Date(t);
  // Reject impossible dates (Feb 30) that Date.UTC would roll over.
  if (d.getUTCFullYear() !== year || d.getUTCMonth() !== month || d.getUTCDate() !== day) return undefined;
  return t;
}

/**
 * Parses an HTTP-date in any of the three forms RFC 9110 §5.6.7 requires
 * recipients to accept. A two-digit rfc850 year more than 50 years in the
 * future is read as the most recent past year with those digits (§5.6.7).
 *
 * @returns epoch milliseconds, or undefined when `text` is not an HTTP-date.
 */
export function parseHttpDate(text: string, nowMs: number): number | undefined {
  let m = IMF_FIXDATE.exec(text);
  if (m) {
    if (!WEEKDAYS.includes(m[1]!)) return undefined;
    return utc(Number(m[4]), m[3]!, Number(m[2]), Number(m[5]), Number(m[6]), Number(m[7]));
  }
  m = RFC850_DATE.exec(text);
  if (m) {
    if (!LONG_WEEKDAYS.includes(m[1]!)) return undefined;
    const nowYear = new Date(nowMs).getUTCFullYear();
    let year = Math.floor(nowYear / 100) * 100 + Number(m[4]);
    if (year > nowYear + 50) year -= 100;
    return utc(year, m[3]!, Number(m[2]), Number(m[5]), Number(m[6]), Number(m[7]));
  }
  m = ASCTIME_DATE.exec(text);
  if (m) {
    if (!WEEKDAYS.includes(m[1]!)) return undefined;
    return utc(Number(m[7]), m[2]!, Number(m[3]!.trim()), Number(m[4]), Number(m[5]), Number(m[6]));
  }
  return undefined;
}

/**
 * Reads a `Retry-After` header value (RFC 9110 §10.2.3): either
 * delay-seconds (`1*DIGIT`) or an HTTP-date.
 *
 * @param value the header value as received (may be undefined or an array of repeats; the first is used).
 * @param nowMs the current time, epoch milliseconds (for the HTTP-date form).
 * @returns the delay in milliseconds, >= 0 (a date in the past means 0); or
 *   undefined when the header is absent or malformed (callers then fall back to backoff).
 */
export function parseRetryAfter(value: string | readonly string[] | undefined, nowMs: number): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (typeof raw !== 'string') return undefined;
  const text = raw.trim();
  if (text.length === 0) return undefined;
  if (/^\d+$/.test(text)) {
    const seconds = Number(text);
    return Number.isFinite(seconds) ? seconds * 1000 : undefined;
  }
  const at = parseHttpDate(text, nowMs);
  if (at === undefined) return undefined;
  return Math.max(0, at - nowMs);
}

/** Exponential backoff bounds, in milliseconds. */
export interface BackoffOptions {
  /** Delay ceiling of the first retry (attempt 0); doubles each attempt. Finite, >= 0. */
  baseMs: number;
  /** Upper bound of every delay. Finite, >= 0. */
  capMs: number;
}

/**
 * Exponential backoff with "full jitter" (AWS Architecture Blog, "Exponential
 * Backoff And Jitter", M. Brooker, 2015):
 * `sleep = random_between(0, min(cap, base * 2 ** attempt))`.
 *
 * @param attempt retries already made, 0 for the first retry (an integer >= 0; large values saturate at the cap).
 * @param options baseMs and capMs, finite and >= 0.
 * @param random a source of uniform numbers in [0, 1) (e.g. Math.random; workflows pass their seeded one).
 * @returns whole milliseconds, always finite and within [0, capMs].
 * @throws RangeError naming the argument when attempt, baseMs or capMs is out of range.
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions, random: () => number): number {
  if (!Number.isInteger(attempt) || attempt < 0) throw new RangeError(`backoffDelayMs: attempt must be an integer >= 0, got ${attempt}`);
  validateBackoff(options);
  const { baseMs, capMs } = options;
  const ceiling = baseMs === 0 ? 0 : Math.min(capMs, baseMs * 2 ** Math.min(attempt, 1023));
  let r = random();
  if (!(r >= 0)) r = 0; // NaN or negative
  if (r > 1) r = 1;
  return Math.min(capMs, Math.round(r * ceiling));
}

/** Throws a RangeError naming the option when a backoff option is not finite and >= 0. */
export function validateBackoff(options: BackoffOptions): void {
  for (const key of ['baseMs', 'capMs'] as const) {
    const v = options[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      throw new RangeError(`backoff option ${key} must be a finite number of milliseconds >= 0, got ${String(v)}`);
    }
  }
}

/** Inputs to {@link nextRetryDelay}. */
export interface RetryDelayInput {
  /** Delay the service asked for (parsed `Retry-After`, or a breaker's time to its next trial), ms. */
  retryAfterMs?: number;
  /** Retries already made, 0 for the first retry. */
  attempt: number;
  backoff: BackoffOptions;
  /** Ceiling applied to `retryAfterMs`, so a hostile or broken header cannot park a workflow for days. */
  maxRetryAfterMs: number;
  random: () => number;
}

/**
 * The delay before the next attempt of a retryable failure: the service's
 * `Retry-After` (or breaker hint) when present, capped at `maxRetryAfterMs`;
 * otherwise full-jitter backoff ({@link backoffDelayMs}).
 *
 * @returns whole milliseconds, finite and >= 0.
 */
export function nextRetryDelay(input: RetryDelayInput): number {
  const { retryAfterMs, maxRetryAfterMs } = input;
  if (!Number.isFinite(maxRetryAfterMs) || maxRetryAfterMs < 0) {
    throw new RangeError(`nextRetryDelay: maxRetryAfterMs must be a finite number >= 0, got ${maxRetryAfterMs}`);
  }
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs >= 0) {
    return Math.round(Math.min(retryAfterMs, maxRetryAfterMs));
  }
  return backoffDelayMs(input.attempt, input.backoff, input.random);
}
