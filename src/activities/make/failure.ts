/**
 * Make client errors as Temporal failures: the retry verdict is Make's status
 * class (src/domain/make.ts `isRetryableMakeStatus`); Make's `Retry-After`, when
 * sent, sets the next delay. Transport failures go through the coordinator's
 * own conversion.
 */
import { ApplicationFailure } from '@temporalio/common';
import { toApplicationFailure } from '../coordinator/failure';
import { MakeAnswerError, MakeApiError, MakeRateLimitWaitError } from './client';

/**
 * @param err what a Make client call threw.
 * @param ctx the activity attempt (1-based) and the request's method and idempotency key.
 * @returns the failure to throw from the activity; its message never holds the token or connection data.
 */
export function toMakeFailure(err: unknown, ctx: { attempt: number; method: string; idempotencyKey?: string }): ApplicationFailure {
  if (err instanceof ApplicationFailure) return err;
  if (err instanceof MakeApiError) {
    return ApplicationFailure.create({
      message: err.message,
      type: `MAKE_HTTP_${err.info.status}`,
      nonRetryable: !err.retryable,
      details: [err.info],
      ...(err.retryable && err.retryAfterMs !== undefined ? { nextRetryDelay: Math.max(1, err.retryAfterMs) } : {}),
    });
  }
  if (err instanceof MakeAnswerError) {
    // The same call would get the same answer: retrying cannot help.
    return ApplicationFailure.create({ message: err.message, type: 'MAKE_UNUSABLE_ANSWER', nonRetryable: true });
  }
  if (err instanceof MakeRateLimitWaitError) {
    return ApplicationFailure.create({ message: err.message, type: 'RATE_LIMITED', nonRetryable: false, nextRetryDelay: Math.max(1, Math.ceil(err.retryAfterMs)) });
  }
  return toApplicationFailure(err, ctx);
}
