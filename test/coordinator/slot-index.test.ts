/**
 * SlotIndex, the coordinator's index of GETs in flight: it must answer like a
 * Map<string, T> whatever the order of set/get/delete (slots are reused), and
 * must not keep an object reachable once its entry is deleted.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { SlotIndex } from '../../src/activities/coordinator/slot-index';

interface Value {
  n: number;
}

type Op = { op: 'set'; key: string; n: number } | { op: 'get'; key: string } | { op: 'delete'; key: string };

// A small key space so that sets replace, deletes hit and freed slots get reused;
// plus keys that would trip an index built on a plain object.
const keyArb = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('/a', '/b', '/c', '/d', '/e', '/a\nx-trace:1', '') },
  { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty') },
  { weight: 1, arbitrary: fc.string({ maxLength: 4 }) },
);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), key: keyArb, n: fc.integer() }),
  fc.record({ op: fc.constant('get' as const), key: keyArb }),
  fc.record({ op: fc.constant('delete' as const), key: keyArb }),
);

test('any sequence of set/get/delete answers as a Map does, with the same size', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 200 }), (ops) => {
      const index = new SlotIndex<Value>();
      const model = new Map<string, Value>();
      const keys = new Set<string>();
      for (const o of ops) {
        keys.add(o.key);
        switch (o.op) {
          case 'set': {
            const v = { n: o.n };
            index.set(o.key, v);
            model.set(o.key, v);
            break;
          }
          case 'get':
            // Identity, not just equality: the very object that was set.
            expect(index.get(o.key)).toBe(model.get(o.key));
            break;
          case 'delete':
            expect(index.delete(o.key)).toBe(model.delete(o.key));
            break;
        }
        expect(index.size).toBe(model.size);
      }
      for (const k of keys) expect(index.get(k)).toBe(model.get(k));
    }),
    { numRuns: 500 },
  );
});

test('interleaved joins and leaves of many keys keep every live entry under its own key', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat({ max: 63 })), { maxLength: 400 }), (steps) => {
      const index = new SlotIndex<Value>();
      const model = new Map<string, Value>();
      for (const [add, k] of steps) {
        const key = `/path/${k}`;
        if (add) {
          const v = { n: k };
          index.set(key, v);
          model.set(key, v);
        } else {
          expect(index.delete(key)).toBe(model.delete(key));
        }
      }
      expect(index.size).toBe(model.size);
      for (let k = 0; k < 64; k++) expect(index.get(`/path/${k}`)).toBe(model.get(`/path/${k}`));
    }),
    { numRuns: 200 },
  );
});

/** A full garbage collection (V8's gc, exposed at run time: jest does not start node with --expose-gc). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

test('a deleted entry is no longer reachable through the index; a replaced one neither', async () => {
  const index = new SlotIndex<Value>();
  const refs: WeakRef<Value>[] = [];
  (() => {
    for (let i = 0; i < 100; i++) {
      const v = { n: i };
      refs.push(new WeakRef(v));
      index.set(`/k${i}`, v);
    }
    for (let i = 0; i < 60; i++) index.delete(`/k${i}`);
    // Replacing a live entry lets the old value go too.
    for (let i = 60; i < 70; i++) index.set(`/k${i}`, { n: 1000 + i });
  })();
  // A WeakRef keeps its target alive until the end of the job that created it.
  await new Promise<void>((r) => setImmediate(r));
  collectGarbage();
  const alive = refs.map((r, i) => (r.deref() === undefined ? -1 : i)).filter((i) => i >= 0);
  expect(alive).toEqual(Array.from({ length: 30 }, (_, i) => 70 + i));
  expect(index.size).toBe(40);
  expect(index.get('/k65')?.n).toBe(1065);
  expect(index.get('/k5')).toBeUndefined();
});
