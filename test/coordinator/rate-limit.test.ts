/** The strict sliding-log limiter: no window of the configured length ever holds more than N starts. */
import fc from 'fast-check';
import { SlidingLogLimiter, windowsFromSpec, type WindowLimit } from '../../src/domain/rate-limit';
import { Admission, AdmissionDeadlineError } from '../../src/activities/coordinator/admission';
import { maxInAnyWindow } from './servers';

/** Serves arrivals first-in first-out: each starts at the earliest time the limiter allows. */
function simulate(limiter: SlidingLogLimiter, arrivals: number[]): number[] {
  const starts: number[] = [];
  let last = -Infinity;
  for (const a of [...arrivals].sort((x, y) => x - y)) {
    const t = limiter.nextStartAt(Math.max(a, last));
    expect(limiter.tryStart(t)).toBe(true);
    starts.push(t);
    last = t;
  }
  return starts;
}

const windowArb = fc.record({ limit: fc.integer({ min: 1, max: 20 }), windowMs: fc.integer({ min: 1, max: 5_000 }) });

describe('SlidingLogLimiter', () => {
  it('no window of the configured length ever holds more than N starts (random arrivals)', () => {
    fc.assert(
      fc.property(windowArb, fc.array(fc.double({ min: 0, max: 20_000, noNaN: true }), { maxLength: 300 }), (w, arrivals) => {
        const starts = simulate(new SlidingLogLimiter([w]), arrivals);
        expect(maxInAnyWindow(starts, w.windowMs)).toBeLessThanOrEqual(w.limit);
      }),
    );
  });

  it('holds every window at once when several are combined (per second and per minute)', () => {
    fc.assert(
      fc.property(fc.array(windowArb, { minLength: 1, maxLength: 3 }), fc.array(fc.integer({ min: 0, max: 30_000 }), { maxLength: 300 }), (ws, arrivals) => {
        const starts = simulate(new SlidingLogLimiter(ws), arrivals);
        for (const w of ws) expect(maxInAnyWindow(starts, w.windowMs)).toBeLessThanOrEqual(w.limit);
      }),
    );
  });

  it('refuses tryStart at any time the log does not allow, and records nothing then', () => {
    fc.assert(
      fc.property(windowArb, fc.array(fc.integer({ min: 0, max: 10_000 }), { maxLength: 200 }), (w, times) => {
        const limiter = new SlidingLogLimiter([w]);
        const starts: number[] = [];
        let now = 0;
        for (const dt of times) {
          now += dt % 50;
          if (limiter.tryStart(now)) starts.push(now);
        }
        expect(maxInAnyWindow(starts, w.windowMs)).toBeLessThanOrEqual(w.limit);
      }),
    );
  });

  it('admits no double burst at a window boundary', () => {
    const limiter = new SlidingLogLimiter([{ limit: 5, windowMs: 1_000 }]);
    for (let i = 0; i < 5; i++) expect(limiter.tryStart(999)).toBe(true);
    // A fixed-window counter would admit five more at t=1000.
    expect(limiter.tryStart(1_000)).toBe(false);
    expect(limiter.nextStartAt(1_000)).toBe(1_999);
    expect(limiter.tryStart(1_999)).toBe(true);
  });

  it('is not fooled by a clock stepping back', () => {
    const limiter = new SlidingLogLimiter([{ limit: 1, windowMs: 1_000 }]);
    expect(limiter.tryStart(5_000)).toBe(true);
    expect(limiter.tryStart(100)).toBe(false);
    expect(limiter.nextStartAt(100)).toBe(6_000);
  });

  it('uses idle capacity at once (a start is never delayed needlessly)', () => {
    fc.assert(
      fc.property(windowArb, fc.array(fc.double({ min: 0, max: 20_000, noNaN: true }), { maxLength: 100 }), (w, arrivals) => {
        const sorted = [...arrivals].sort((a, b) => a - b);
        const starts = simulate(new SlidingLogLimiter([w]), sorted);
        // Each start happens at its arrival, or exactly when the start `limit` earlier leaves the window.
        starts.forEach((t, i) => {
          const ok = t === Math.max(sorted[i]!, starts[i - 1] ?? -Infinity) || (i >= w.limit && t === starts[i - w.limit]! + w.windowMs);
          expect(ok).toBe(true);
        });
      }),
    );
  });

  it('maps the registry block to windows and rejects bad ones naming the value', () => {
    expect(windowsFromSpec({ perSecond: 10, perMinute: 300 })).toEqual<WindowLimit[]>([
      { limit: 10, windowMs: 1_000 },
      { limit: 300, windowMs: 60_000 },
    ]);
    expect(windowsFromSpec(undefined)).toEqual([]);
    expect(() => new SlidingLogLimiter([{ limit: 0, windowMs: 1 }])).toThrow(/limit must be an integer >= 1, got 0/);
    expect(() => new SlidingLogLimiter([{ limit: 1, windowMs: Infinity }])).toThrow(/windowMs must be a finite number > 0, got Infinity/);
  });
});

describe('Admission (the limiter in real time, in one worker process)', () => {
  it('spaces 20 concurrent callers so no 200 ms window holds more than 5 starts', async () => {
    // Starts are the times the admission admitted each caller at: what its limiter recorded. Readings taken
    // by the callers (or the clock's last reading before they resume) measure when the process got the CPU
    // back; on a starved machine a stall between an admission and the next reading merged two spaced batches.
    const admission = new Admission([{ limit: 5, windowMs: 200 }], undefined);
    const limiter = (admission as unknown as { limiter: { tryStart(t: number): boolean } }).limiter;
    const starts: number[] = [];
    const tryStart = limiter.tryStart.bind(limiter);
    limiter.tryStart = (t: number) => {
      const admitted = tryStart(t);
      if (admitted) starts.push(t);
      return admitted;
    };
    let resumed = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        const release = await admission.acquire(new AbortController().signal, Infinity);
        resumed++;
        release();
      }),
    );
    expect([resumed, starts.length]).toEqual([20, 20]);
    expect(maxInAnyWindow(starts, 200)).toBeLessThanOrEqual(5);
    expect(Math.max(...starts) - Math.min(...starts)).toBeGreaterThanOrEqual(600);
  });

  it('caps calls in flight', async () => {
    const admission = new Admission([], 2);
    let peak = 0;
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        const release = await admission.acquire(new AbortController().signal, Infinity);
        peak = Math.max(peak, admission.inFlight);
        await new Promise((r) => setTimeout(r, 5));
        release();
      }),
    );
    expect(peak).toBe(2);
    expect(admission.inFlight).toBe(0);
  });

  it('fails at once with the wait when the deadline cannot be met', async () => {
    const admission = new Admission([{ limit: 1, windowMs: 10_000 }], undefined);
    const signal = new AbortController().signal;
    (await admission.acquire(signal, Infinity))();
    const t0 = performance.now();
    const err = await admission.acquire(signal, performance.now() + 100).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AdmissionDeadlineError);
    expect((err as AdmissionDeadlineError).retryAfterMs).toBeGreaterThan(9_000);
    expect(performance.now() - t0).toBeLessThan(50);
  });

  it('an aborted waiter leaves the queue and no timer behind', async () => {
    const admission = new Admission([{ limit: 1, windowMs: 60_000 }], undefined);
    (await admission.acquire(new AbortController().signal, Infinity))();
    const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const ac = new AbortController();
    const waiting = admission.acquire(ac.signal, Infinity);
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBe(timersBefore + 1);
    ac.abort(new Error('cancelled'));
    await expect(waiting).rejects.toThrow('cancelled');
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBe(timersBefore);
  });
});
