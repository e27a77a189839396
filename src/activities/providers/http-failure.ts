/**
 * HTTP failures outside the coordinator (rotation providers, alert webhooks,
 * Make) become the coordinator's {@link CoordinatorError}, so one function,
 * the coordinator's `toApplicationFailure`, turns every failed HTTP call of
 * the project into Temporal's retry: the status verdict of
 * `src/domain/retry.ts` (`classifyFailure`, `mayRetry`), `Retry-After` in
 * both RFC 9110 §10.2.3 forms capped at `maxRetryAfterMs` (malformed: ignored),
 * otherwise full-jitter backoff (DESIGN.md: one retry layer).
 */
import { ApplicationFailure } from '@temporalio/common';
import { classifyFailure, mayRetry, parseRetryAfter } from '../../domain/retry';
import { CoordinatorError, toApplicationFailure, type RetryTiming } from '../coordinator';
import { bodyExcerpt, transportError } from '../coordinator/errors';
import { ProviderError } from './types';

/** One failed HTTP answer, as the caller saw it. */
export interface HttpStatusFacts {
  /** Service (or webhook name) the call went to; named in messages. */
  serviceId: string;
  method: string;
  /** Path (or a name standing for it when the URL is a secret, as for webhooks). */
  path: string;
  /** Origin called, when it may be shown. */
  endpoint?: string;
  status: number;
  /** Response headers, lower-case names (undici's `headers`); only `retry-after` is read. */
  headers?: Record<string, string | string[] | undefined>;
  /** Response body text; cut to an excerpt with `secret` redacted. */
  body?: string;
  secret?: string;
}

/**
 * The coordinator's error for an HTTP answer with a failing status: the
 * classification of `classifyFailure({ status })` and the server's
 * `Retry-After` (undefined when absent or malformed, so backoff applies).
 *
 * @param nowMs the current time, epoch ms (for the HTTP-date form); default Date.now().
 */
export function httpStatusError(facts: HttpStatusFacts, nowMs = Date.now()): CoordinatorError {
  const c = classifyFailure({ status: facts.status });
  return new CoordinatorError({
    serviceId: facts.serviceId,
    method: facts.method.toUpperCase(),
    path: facts.path,
    endpoint: facts.endpoint,
    kind: c.kind,
    retryable: c.retryable,
    notSent: c.notSent,
    status: facts.status,
    retryAfterMs: parseRetryAfter(facts.headers?.['retry-after'], nowMs),
    bodyExcerpt: facts.body === undefined || facts.body === '' ? undefined : bodyExcerpt(facts.body, facts.secret),
  });
}

/** The coordinator's error for a call that got no answer (timeout, refused, reset, TLS), classified by its code (`where.code` overrides the error's). */
export function httpTransportError(err: unknown, where: { serviceId: string; method: string; path: string; endpoint?: string; code?: string }): CoordinatorError {
  return transportError(err, { ...where, method: where.method.toUpperCase() });
}

/**
 * A provider error for a failed HTTP call: the message names the step,
 * `retryable` is the project's verdict (`mayRetry`), and the coordinator
 * error travels as `cause` so {@link providerFailure} can give Temporal the
 * same retry timing as `callService`.
 *
 * @param message what failed and where (no secret values).
 * @param cause from {@link httpStatusError}, {@link httpTransportError} or the coordinator.
 * @param idempotencyKey the request's key, when it carried one (POST is retried only with one).
 */
export function httpProviderError(message: string, cause: CoordinatorError, idempotencyKey?: string): ProviderError {
  const retryable = mayRetry({ kind: cause.kind, retryable: cause.retryable, notSent: cause.notSent }, cause.method, !!idempotencyKey);
  return new ProviderError(message, retryable, cause.status, { cause, idempotencyKey });
}

/**
 * Turns what a provider step threw into the failure the activity throws.
 *
 * - A ProviderError from an HTTP call ({@link httpProviderError}): the
 *   verdict and `nextRetryDelay` of the coordinator's `toApplicationFailure`
 *   (Retry-After capped at `timing.maxRetryAfterMs`, default 5 minutes, else
 *   full jitter), with the provider's message and type `ProviderError`.
 * - Any other ProviderError (PostgreSQL, Redis, bad answers): retryable or not
 *   as it says; Temporal's retry policy sets the delay.
 * - Anything else passes through unchanged.
 *
 * @param attempt Temporal's activity attempt, 1 for the first.
 * @throws RangeError when `timing` is out of range.
 */
export function providerFailure(err: unknown, attempt: number, timing?: RetryTiming): unknown {
  if (!(err instanceof ProviderError)) return err;
  const cause = err.cause;
  if (cause instanceof CoordinatorError) {
    const f = toApplicationFailure(cause, { attempt, method: cause.method, idempotencyKey: err.idempotencyKey }, timing);
    return ApplicationFailure.create({
      message: err.message,
      type: 'ProviderError',
      nonRetryable: f.nonRetryable === true,
      details: [{ ...cause.toJSON(), status: err.status }],
      ...(f.nonRetryable || f.nextRetryDelay == null ? {} : { nextRetryDelay: f.nextRetryDelay }),
    });
  }
  return err.retryable
    ? ApplicationFailure.retryable(err.message, 'ProviderError', { status: err.status })
    : ApplicationFailure.nonRetryable(err.message, 'ProviderError', { status: err.status });
}

/**
 * The delay, ms, that {@link providerFailure} would ask Temporal for before
 * the next attempt; undefined when the failure is not retryable or leaves the
 * delay to the retry policy. For the few steps that retry inside one activity.
 */
export function providerRetryDelayMs(err: unknown, attempt: number, timing?: RetryTiming): number | undefined {
  const f = providerFailure(err, attempt, timing);
  if (!(f instanceof ApplicationFailure) || f.nonRetryable || f.nextRetryDelay == null) return undefined;
  return typeof f.nextRetryDelay === 'number' ? f.nextRetryDelay : undefined;
}
