/** The pure rotation plan: batches over consumers, options, compensation order. */
import fc from 'fast-check';
import { parseRegistry } from '../../src/domain/registry-parse';
import {
  compactPlan,
  compensationOrder,
  ERROR_IN_AUDIT_TRAIL,
  expandPlan,
  initialProgress,
  oneLine,
  planRotation,
  restoreOrder,
  segmentBatches,
  resultServices,
  type HeldVersion,
  type ServiceProgress,
} from '../../src/domain/rotation';

function registry(doc: unknown) {
  const r = parseRegistry(JSON.stringify(doc), 'plan.json');
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.registry;
}

const svc = (id: string, dependsOn: string[] = [], rotation?: Record<string, unknown>) => ({
  id,
  type: 'api',
  endpoints: [{ url: `http://127.0.0.1:1/${id}` }],
  dependsOn,
  ...(rotation ? { rotation: { provider: 'http', ...rotation } } : {}),
});

test('consumers are batched by dependencies, also through services outside the credential', () => {
  const reg = registry({
    services: [svc('iss'), svc('a'), svc('gateway', ['a']), svc('b', ['gateway']), svc('c')],
    credentials: [{ id: 'k', issuer: 'iss', consumers: ['b', 'a', 'c'], gracePeriod: '10s' }],
  });
  const plan = planRotation(reg, 'k');
  expect(plan.batches).toEqual([['a', 'c'], ['b']]);
  expect(plan.gracePeriodMs).toBe(10_000);
  expect(plan.issuer).toBe('iss');
  expect(planRotation(reg, 'k', { gracePeriodMs: 5 }).gracePeriodMs).toBe(5);
});

test('per-consumer options are parsed once; bad ones name the service and option', () => {
  const reg = registry({
    services: [svc('iss'), svc('a', [], { stepTimeout: '2s', verifyAttempts: 3, verifyInterval: '250ms' })],
    credentials: [{ id: 'k', issuer: 'iss', consumers: ['a'], maxParallel: 4 }],
  });
  expect(planRotation(reg, 'k').consumers).toEqual([{ id: 'a', provider: 'http', stepTimeoutMs: 2000, verifyAttempts: 3, verifyIntervalMs: 250 }]);
  expect(planRotation(reg, 'k').maxParallel).toBe(4);
  const bad = registry({ services: [svc('iss'), svc('a', [], { stepTimeout: 'soon' })], credentials: [{ id: 'k', issuer: 'iss', consumers: ['a'] }] });
  expect(() => planRotation(bad, 'k')).toThrow('services.a.rotation.stepTimeout: invalid duration "soon"');
  expect(() => planRotation(reg, 'nope')).toThrow('unknown credential "nope"');
  expect(() => planRotation(reg, 'k', { gracePeriodMs: -1 })).toThrow('gracePeriodMs');
});

test('compensation restores exactly the touched consumers, in reverse batch order (property)', () => {
  fc.assert(
    fc.property(fc.array(fc.array(fc.boolean(), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 5 }), (touchedByBatch) => {
      const services = [svc('iss')];
      const consumers: string[] = [];
      touchedByBatch.forEach((batch, b) =>
        batch.forEach((_, i) => {
          const id = `s${b}-${i}`;
          services.push(svc(id, b === 0 ? [] : [`s${b - 1}-0`]));
          consumers.push(id);
        }),
      );
      const plan = planRotation(registry({ services, credentials: [{ id: 'k', issuer: 'iss', consumers }] }), 'k');
      const progress = initialProgress(plan);
      for (const p of progress) {
        const m = /^s(\d+)-(\d+)$/.exec(p.id);
        if (m && touchedByBatch[Number(m[1])]![Number(m[2])]) p.step = 'install';
      }
      const order = compensationOrder(plan, progress);
      const flat = order.flat();
      const touched = progress.filter((p) => p.step === 'install').map((p) => p.id);
      expect([...flat].sort()).toEqual([...touched].sort());
      const batchOf = (id: string) => plan.batches.findIndex((b) => b.includes(id));
      for (let i = 1; i < order.length; i++) expect(batchOf(order[i]![0]!)).toBeLessThan(batchOf(order[i - 1]![0]!));
    }),
  );
});

test('restoreOrder restores exactly the consumers that hold or may hold the new version or a leftover, in reverse batch order (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.array(fc.record({ holds: fc.constantFrom<HeldVersion>('current', 'pending', 'unknown'), leftover: fc.boolean() }), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 5 }),
      (byBatch) => {
        const services = [svc('iss')];
        const consumers: string[] = [];
        const known = new Map<string, { holds: HeldVersion; leftover: boolean }>();
        byBatch.forEach((batch, b) =>
          batch.forEach((k, i) => {
            const id = `s${b}-${i}`;
            services.push(svc(id, b === 0 ? [] : [`s${b - 1}-0`]));
            consumers.push(id);
            known.set(id, k);
          }),
        );
        const plan = planRotation(registry({ services, credentials: [{ id: 'k', issuer: 'iss', consumers }] }), 'k');
        const progress = initialProgress(plan);
        for (const p of progress) if (known.has(p.id)) p.holds = known.get(p.id)!.holds;
        const leftoverHolders = new Set([...known].filter(([, k]) => k.leftover).map(([id]) => id));
        const order = restoreOrder(plan, progress, leftoverHolders);
        const expected = [...known].filter(([, k]) => k.holds !== 'current' || k.leftover).map(([id]) => id);
        expect(order.flat().sort()).toEqual(expected.sort());
        const batchOf = (id: string) => plan.batches.findIndex((b) => b.includes(id));
        for (let i = 1; i < order.length; i++) expect(batchOf(order[i]![0]!)).toBeLessThan(batchOf(order[i - 1]![0]!));
      },
    ),
  );
});

test('oneLine unwraps Temporal wrappers to the cause', () => {
  expect(oneLine({ message: 'Activity task failed', cause: { message: 'install x: PUT answered 422' } })).toBe('install x: PUT answered 422');
  expect(oneLine(new Error('a\nb'))).toBe('a');
});

test('the plan by reference keeps every consumer and its options, naming a consumer again only when it does not use the common ones', () => {
  const timeouts = ['1s', '2s', '5s'];
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 40 }), (kinds) => {
      // kind 3: the defaults; 0..2: a stepTimeout of its own.
      const consumers = kinds.map((k, i) => svc(`c${i}`, i > 0 && i % 4 === 0 ? [`c${i - 1}`] : [], k < 3 ? { stepTimeout: timeouts[k] } : undefined));
      const reg = registry({ services: [svc('iss'), ...consumers], credentials: [{ id: 'k', issuer: 'iss', consumers: consumers.map((c) => c.id) }] });
      const plan = planRotation(reg, 'k');
      const ref = compactPlan(plan, reg.credentials[0]!);
      expect(ref.credential.consumers).toEqual([]);
      expect(ref.credential.id).toBe('k');
      expect(ref.batches).toEqual(plan.batches);
      const byId = (cs: typeof plan.consumers) => [...cs].sort((a, b) => a.id.localeCompare(b.id));
      expect(byId(expandPlan(ref).consumers)).toEqual(byId(plan.consumers));
      // Consumers with the most common options are not named outside the batches.
      const named = Object.keys(ref.knobsOf ?? {}).length;
      const common = Math.max(...[0, 1, 2, 3].map((k) => kinds.filter((x) => x === k).length));
      expect(named).toBe(kinds.length - common);
      expect(new Set(ref.knobs.map((k) => JSON.stringify(k))).size).toBe(ref.knobs.length);
    }),
  );
});

test('the result keeps a bounded amount of error text; the rest points to the audit trail', () => {
  const long = 'x'.repeat(400);
  const progress: ServiceProgress[] = Array.from({ length: 10 }, (_, i) => ({ id: `c${i}`, role: 'consumer', batch: 0, step: 'restore', status: 'failed', holds: 'unknown', error: long }));
  const out = resultServices(progress, 1000);
  expect(out.filter((s) => s.error === long)).toHaveLength(2);
  expect(out.slice(2).every((s) => s.error === ERROR_IN_AUDIT_TRAIL)).toBe(true);
  expect(resultServices(progress).every((s) => s.error === long)).toBe(true);
});

describe('segmentBatches (fanOut: activity: several batches in one activity)', () => {
  const batchesArb = fc.array(fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 0, maxLength: 30 }), { maxLength: 12 }).map((bs) => {
    let n = 0;
    return bs.map((b) => b.map(() => `c${n++}`));
  });

  test('keeps every consumer in order, bounds each segment, and splits only batches larger than the bound', () => {
    fc.assert(
      fc.property(batchesArb, fc.integer({ min: 1, max: 40 }), (batches, max) => {
        const segments = segmentBatches(batches, max);
        // In order, nothing lost or repeated: the segments' batches concatenated are the batches split into pages.
        const pages = batches.filter((b) => b.length > 0).flatMap((b) => (b.length > max ? Array.from({ length: Math.ceil(b.length / max) }, (_, i) => b.slice(i * max, (i + 1) * max)) : [b]));
        expect(segments.flat()).toEqual(pages);
        for (const s of segments) {
          expect(s.length).toBeGreaterThan(0);
          expect(s.flat().length).toBeLessThanOrEqual(max);
          // A page of a big batch is a segment of its own.
          if (s.length > 1) for (const b of s) expect(batches.some((whole) => whole.length === b.length && whole[0] === b[0])).toBe(true);
        }
        // Greedy: a segment of whole batches is closed only when the next batch does not fit.
        const isWhole = (b: string[]) => batches.some((whole) => whole.length === b.length && whole[0] === b[0]);
        for (let i = 0; i + 1 < segments.length; i++) {
          const next = segments[i + 1]![0]!;
          if (isWhole(segments[i]![0]!) && isWhole(next)) expect(segments[i]!.flat().length + next.length).toBeGreaterThan(max);
        }
      }),
    );
  });

  test('the rotation bench fleet (5 batches of 20) is one segment; 2,500 consumers in one batch are three pages', () => {
    const fleet = Array.from({ length: 5 }, (_, l) => Array.from({ length: 20 }, (_, i) => `c${l}-${i}`));
    expect(segmentBatches(fleet, 1000)).toEqual([fleet]);
    const big = [Array.from({ length: 2500 }, (_, i) => `b${i}`)];
    expect(segmentBatches(big, 1000).map((s) => s.map((b) => b.length))).toEqual([[1000], [1000], [500]]);
  });
});

test('fan-out: unset is workflow up to 10 consumers and activity above; set is kept; older runs pass their default', () => {
  const ids = (n: number) => Array.from({ length: n }, (_, i) => `c${i}`);
  const reg = registry({
    services: [svc('iss'), ...ids(11).map((id) => svc(id))],
    credentials: [
      { id: 'ten', issuer: 'iss', consumers: ids(10) },
      { id: 'eleven', issuer: 'iss', consumers: ids(11) },
      { id: 'eleven-per-step', issuer: 'iss', consumers: ids(11), fanOut: 'workflow' },
      { id: 'one-batched', issuer: 'iss', consumers: ids(1), fanOut: 'activity' },
    ],
  });
  expect(['ten', 'eleven', 'eleven-per-step', 'one-batched'].map((k) => planRotation(reg, k).fanOut)).toEqual(['workflow', 'activity', 'workflow', 'activity']);
  // Runs begun before the size-dependent default replay with the default they had.
  expect(planRotation(reg, 'eleven', { defaultFanOut: 'workflow' }).fanOut).toBe('workflow');
  expect(planRotation(reg, 'one-batched', { defaultFanOut: 'workflow' }).fanOut).toBe('activity');
});
