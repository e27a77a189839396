/**
 * Turns coordinator errors into Temporal `ApplicationFailure`s: the single
 * place where the retry verdict of `src/domain/retry.ts` becomes Temporal's
 * retry behaviour (DESIGN.md: one retry layer, Temporal's activity retries).
 *
 * - Not retryable (400, 401, 403, 404, 409, 422, other 4xx, 501/505/511, TLS,
 *   bad body, config errors), or a non-idempotent method without an
 *   idempotency key that may have reached the service:
 *   `nonRetryable: true`, type `HTTP_<status>` or the failure kind in upper
 *   case, message with the status and a short, secret-redacted body excerpt.
 * - Retryable (408, 429, 500, 502, 503, 504, resets, refusals, DNS, timeouts,
 *   breaker open, local rate limit): `nextRetryDelay` = `Retry-After` (or the
 *   breaker's time to its next trial), capped at `maxRetryAfterMs`; otherwise
 *   full-jitter exponential backoff.
 */
import { ApplicationFailure } from '@temporalio/common';
import { mayRetry, nextRetryDelay, validateBackoff, type BackoffOptions } from '../../domain/retry';
import { CoordinatorError } from './errors';

/** Retry timing used by {@link toApplicationFailure}. */
export interface RetryTiming {
  /** Full-jitter backoff bounds; default base 1_000 ms, cap 60_000 ms. */
  backoff?: BackoffOptions;
  /** Ceiling on a server's `Retry-After`, ms; default 300_000 (5 minutes). */
  maxRetryAfterMs?: number;
  /** Uniform [0, 1) source; default Math.random. */
  random?: () => number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1_000, capMs: 60_000 };
export const DEFAULT_MAX_RETRY_AFTER_MS = 300_000;

/**
 * @param err what `Coordinator.request` threw (any other error passes through as a retryable failure of type `OTHER`).
 * @param ctx `attempt`: Temporal's activity attempt (1 for the first); `method` and `idempotencyKey` of the request.
 * @returns the failure to throw from the activity.
 * @throws RangeError when the timing options are out of range.
 */
export function toApplicationFailure(
  err: unknown,
  ctx: { attempt: number; method: string; idempotencyKey?: string },
  timing: RetryTiming = {},
): ApplicationFailure {
  if (err instanceof ApplicationFailure) return err;
  const backoff = timing.backoff ?? DEFAULT_BACKOFF;
  validateBackoff(backoff);
  if (!(err instanceof CoordinatorError)) {
    const message = err instanceof Error ? err.message : String(err);
    return ApplicationFailure.create({ message, type: 'OTHER', nonRetryable: false });
  }
  const type = err.status !== undefined ? `HTTP_${err.status}` : err.kind.toUpperCase();
  const details = [err.toJSON()];
  const retry = mayRetry({ kind: err.kind, retryable: err.retryable, notSent: err.notSent }, ctx.method, !!ctx.idempotencyKey);
  if (!retry) {
    const why = err.retryable ? ` (not retried: ${ctx.method.toUpperCase()} is not idempotent and the request has no idempotency key)` : '';
    return ApplicationFailure.create({ message: err.message + why, type, nonRetryable: true, details });
  }
  const delayMs = nextRetryDelay({
    retryAfterMs: err.retryAfterMs,
    attempt: Math.max(0, Math.floor(ctx.attempt) - 1),
    backoff,
    maxRetryAfterMs: timing.maxRetryAfterMs ?? DEFAULT_MAX_RETRY_AFTER_MS,
    random: timing.random ?? Math.random,
  });
  // 0 would read as "unset" (the retry policy's interval); Retry-After: 0 means "now".
  return ApplicationFailure.create({ message: err.message, type, nonRetryable: false, details, nextRetryDelay: Math.max(1, delayMs) });
}
