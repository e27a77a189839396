/** Smooth weighted round-robin (nginx) with passive-health cool-down. */
import fc from 'fast-check';
import { SmoothWeightedRoundRobin } from '../../src/domain/load-balance';

describe('SmoothWeightedRoundRobin', () => {
  it('interleaves weights {5, 1, 1} as nginx does: a a b a c a a', () => {
    const lb = new SmoothWeightedRoundRobin([5, 1, 1]);
    const seq = Array.from({ length: 14 }, () => 'abc'[lb.pick(0)!]).join('');
    expect(seq).toBe('aabacaaaabacaa');
  });

  it('over any whole cycle picks each endpoint exactly weight times', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 8 }), fc.integer({ min: 1, max: 3 }), (weights, cycles) => {
        const lb = new SmoothWeightedRoundRobin(weights);
        const total = weights.reduce((a, b) => a + b, 0);
        const counts = weights.map(() => 0);
        for (let i = 0; i < total * cycles; i++) counts[lb.pick(0)!]!++;
        expect(counts).toEqual(weights.map((w) => w * cycles));
      }),
    );
  });

  it('skips an endpoint during its cool-down and takes it back afterwards', () => {
    const lb = new SmoothWeightedRoundRobin([1, 1], { coolDownMs: 1_000 });
    lb.reportFailure(0, 100);
    const during = Array.from({ length: 6 }, (_, i) => lb.pick(200 + i));
    expect(during).toEqual([1, 1, 1, 1, 1, 1]);
    expect(lb.isCoolingDown(0, 1_099)).toBe(true);
    const after = new Set(Array.from({ length: 4 }, () => lb.pick(1_100)));
    expect(after).toEqual(new Set([0, 1]));
  });

  it('when every endpoint cools down, tries the one that recovers first', () => {
    const lb = new SmoothWeightedRoundRobin([1, 1, 1], { coolDownMs: 1_000 });
    lb.reportFailure(0, 300);
    lb.reportFailure(1, 100);
    lb.reportFailure(2, 200);
    expect(lb.pick(400)).toBe(1);
  });

  it('never picks an excluded endpoint and says when none is left', () => {
    const lb = new SmoothWeightedRoundRobin([3, 1]);
    expect(lb.pick(0, new Set([0]))).toBe(1);
    expect(lb.pick(0, new Set([0, 1]))).toBeUndefined();
  });

  it('a success ends the cool-down at once', () => {
    const lb = new SmoothWeightedRoundRobin([1, 1], { coolDownMs: 60_000 });
    lb.reportFailure(0, 0);
    lb.reportSuccess(0);
    expect(lb.isCoolingDown(0, 1)).toBe(false);
  });

  it('rejects bad options naming them', () => {
    expect(() => new SmoothWeightedRoundRobin([])).toThrow(/at least one endpoint/);
    expect(() => new SmoothWeightedRoundRobin([1, 0])).toThrow(/weight of endpoint 1 must be an integer >= 1, got 0/);
    expect(() => new SmoothWeightedRoundRobin([1], { coolDownMs: -1 })).toThrow(/coolDownMs .* got -1/);
  });
});
