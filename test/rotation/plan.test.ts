/** The pure rotation plan: batches over consumers, options, compensation order. */
import fc from 'fast-check';
import { parseRegistry } from '../../src/domain/registry-parse';
import { compensationOrder, initialProgress, oneLine, planRotation, restoreOrder, type HeldVersion } from '../../src/domain/rotation';

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
