/** Failure classification, Retry-After (RFC 9110 §10.2.3) and full-jitter backoff. */
import fc from 'fast-check';
import { backoffDelayMs, classifyFailure, mayRetry, nextRetryDelay, parseHttpDate, parseRetryAfter } from '../../src/domain/retry';

describe('classifyFailure', () => {
  it.each([408, 429, 500, 502, 503, 504])('status %i is retryable', (status) => {
    expect(classifyFailure({ status })).toEqual({ kind: 'status', retryable: true, notSent: false });
  });
  it.each([400, 401, 403, 404, 409, 422, 410, 418, 451, 501, 505])('status %i is not retryable', (status) => {
    expect(classifyFailure({ status }).retryable).toBe(false);
  });
  it.each([
    ['ECONNRESET', 'connection_reset', true, false],
    ['UND_ERR_SOCKET', 'connection_reset', true, false],
    ['ECONNREFUSED', 'connection_refused', true, true],
    ['ENOTFOUND', 'dns', true, true],
    ['EAI_AGAIN', 'dns', true, true],
    ['UND_ERR_CONNECT_TIMEOUT', 'timeout', true, true],
    ['UND_ERR_HEADERS_TIMEOUT', 'timeout', true, false],
    ['UND_ERR_BODY_TIMEOUT', 'timeout', true, false],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'tls', false, false],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'tls', false, false],
    ['UND_ERR_RES_EXCEEDED_MAX_SIZE', 'body', false, false],
    ['BREAKER_OPEN', 'breaker_open', true, true],
    ['RATE_LIMITED', 'rate_limited', true, true],
    ['ABORT_ERR', 'aborted', false, false],
    ['SOMETHING_NEW', 'other', true, false],
  ])('code %s is %s (retryable %s, notSent %s)', (code, kind, retryable, notSent) => {
    expect(classifyFailure({ code })).toEqual({ kind, retryable, notSent });
  });
  it('reads a TimeoutError by name', () => {
    expect(classifyFailure({ name: 'TimeoutError' }).kind).toBe('timeout');
  });
  it('a status wins over an error code', () => {
    expect(classifyFailure({ status: 404, code: 'ECONNRESET' }).retryable).toBe(false);
  });
});

describe('mayRetry', () => {
  const reset = classifyFailure({ code: 'ECONNRESET' });
  const refused = classifyFailure({ code: 'ECONNREFUSED' });
  it('retries idempotent methods', () => {
    expect(mayRetry(reset, 'GET', false)).toBe(true);
    expect(mayRetry(reset, 'put', false)).toBe(true);
  });
  it('retries POST only with an idempotency key, unless the request was never sent', () => {
    expect(mayRetry(reset, 'POST', false)).toBe(false);
    expect(mayRetry(reset, 'POST', true)).toBe(true);
    expect(mayRetry(refused, 'POST', false)).toBe(true);
    expect(mayRetry(classifyFailure({ status: 503 }), 'PATCH', false)).toBe(false);
  });
  it('never retries a non-retryable failure', () => {
    expect(mayRetry(classifyFailure({ status: 400 }), 'GET', true)).toBe(false);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.UTC(2026, 10, 29, 12, 0, 0);
  it('reads delay-seconds', () => {
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter(' 3 ', now)).toBe(3_000);
    expect(parseRetryAfter('0', now)).toBe(0);
    expect(parseRetryAfter(['7', '9'], now)).toBe(7_000);
  });
  it('reads the IMF-fixdate form', () => {
    expect(parseRetryAfter('Sun, 29 Nov 2026 12:00:30 GMT', now)).toBe(30_000);
  });
  it('reads the obsolete rfc850 and asctime forms', () => {
    expect(parseRetryAfter('Sunday, 29-Nov-26 12:01:00 GMT', now)).toBe(60_000);
    expect(parseRetryAfter('Sun Nov 29 12:00:05 2026', now)).toBe(5_000);
    expect(parseHttpDate('Sun Nov  6 08:49:37 1994', now)).toBe(Date.UTC(1994, 10, 6, 8, 49, 37));
  });
  it('reads a two-digit year more than 50 years ahead as the past century (RFC 9110 §5.6.7)', () => {
    expect(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT', now)).toBe(Date.UTC(1994, 10, 6, 8, 49, 37));
  });
  it('a date in the past means now', () => {
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', now)).toBe(0);
  });
  it.each(['', 'soon', '-5', '1.5', '10s', 'Sun, 31 Nov 2026 12:00:00 GMT', 'Sun, 29 Nov 2026 12:00:00 UTC', '0x10', 'Xyz, 29 Nov 2026 12:00:00 GMT'])(
    'malformed %j is undefined (the caller falls back to backoff)',
    (v) => {
      expect(parseRetryAfter(v, now)).toBeUndefined();
    },
  );
  it('absent is undefined', () => {
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});

describe('backoffDelayMs (AWS full jitter)', () => {
  const options = fc.record({ baseMs: fc.integer({ min: 0, max: 100_000 }), capMs: fc.integer({ min: 0, max: 10_000_000 }) });

  it('is always finite, an integer and within [0, cap]', () => {
    fc.assert(
      fc.property(fc.nat({ max: 100_000 }), options, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, o, r) => {
        const d = backoffDelayMs(attempt, o, () => r);
        expect(Number.isFinite(d)).toBe(true);
        expect(Number.isInteger(d)).toBe(true);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(o.capMs);
        expect(d).toBeLessThanOrEqual(Math.round(o.baseMs * 2 ** Math.min(attempt, 1100)) || 0);
      }),
    );
  });

  it('stays in bounds even when the random source misbehaves', () => {
    fc.assert(
      fc.property(fc.nat({ max: 64 }), options, fc.double(), (attempt, o, r) => {
        const d = backoffDelayMs(attempt, o, () => r);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(o.capMs);
      }),
    );
  });

  it('uses the full range [0, min(cap, base * 2^attempt)]', () => {
    fc.assert(
      fc.property(fc.nat({ max: 40 }), fc.integer({ min: 1, max: 5_000 }), fc.integer({ min: 1, max: 600_000 }), (attempt, baseMs, capMs) => {
        const ceiling = Math.min(capMs, baseMs * 2 ** attempt);
        expect(backoffDelayMs(attempt, { baseMs, capMs }, () => 0)).toBe(0);
        expect(backoffDelayMs(attempt, { baseMs, capMs }, () => 1 - Number.EPSILON)).toBe(Math.round(ceiling));
        expect(backoffDelayMs(attempt, { baseMs, capMs }, () => 0.5)).toBe(Math.round(ceiling / 2));
      }),
    );
  });

  it('spreads real random draws across the whole range (every tenth of it is hit)', () => {
    const o = { baseMs: 100, capMs: 10_000 };
    const deciles = new Set<number>();
    for (let i = 0; i < 2_000; i++) deciles.add(Math.min(9, Math.floor(backoffDelayMs(10, o, Math.random) / 1_000)));
    expect(deciles.size).toBe(10);
  });

  it('grows with the attempt until the cap', () => {
    const o = { baseMs: 100, capMs: 5_000 };
    const max = (a: number) => backoffDelayMs(a, o, () => 1 - Number.EPSILON);
    expect([0, 1, 2, 3, 4, 5, 6, 1_000_000].map(max)).toEqual([100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
  });

  it('rejects bad arguments naming them', () => {
    expect(() => backoffDelayMs(-1, { baseMs: 1, capMs: 1 }, Math.random)).toThrow(/attempt must be an integer >= 0, got -1/);
    expect(() => backoffDelayMs(1.5, { baseMs: 1, capMs: 1 }, Math.random)).toThrow(/attempt/);
    expect(() => backoffDelayMs(0, { baseMs: NaN, capMs: 1 }, Math.random)).toThrow(/baseMs .* got NaN/);
    expect(() => backoffDelayMs(0, { baseMs: 1, capMs: Infinity }, Math.random)).toThrow(/capMs .* got Infinity/);
  });
});

describe('nextRetryDelay', () => {
  const backoff = { baseMs: 1_000, capMs: 60_000 };
  it('honours Retry-After, capped', () => {
    expect(nextRetryDelay({ retryAfterMs: 5_000, attempt: 3, backoff, maxRetryAfterMs: 300_000, random: () => 0.9 })).toBe(5_000);
    expect(nextRetryDelay({ retryAfterMs: 86_400_000, attempt: 0, backoff, maxRetryAfterMs: 300_000, random: () => 0.9 })).toBe(300_000);
    expect(nextRetryDelay({ retryAfterMs: 0, attempt: 0, backoff, maxRetryAfterMs: 300_000, random: () => 0.9 })).toBe(0);
  });
  it('falls back to full-jitter backoff without Retry-After', () => {
    expect(nextRetryDelay({ attempt: 2, backoff, maxRetryAfterMs: 300_000, random: () => 0.5 })).toBe(2_000);
    expect(nextRetryDelay({ retryAfterMs: NaN, attempt: 2, backoff, maxRetryAfterMs: 300_000, random: () => 0.5 })).toBe(2_000);
  });
});
