/**
 * Property tests of the dependency graph over random DAGs and random graphs
 * with cycles, checked against brute-force reachability.
 */
import fc from 'fast-check';
import {
  DependencyCycleError,
  criticalPath,
  findCycles,
  impactOf,
  planBatches,
  rollbackOrder,
  updateOrder,
  type GraphNode,
} from '../../src/domain/graph';

/** A random DAG: node k may depend only on nodes created before it; then the list is shuffled. */
const dagArb = fc
  .integer({ min: 0, max: 24 })
  .chain((n) =>
    fc.tuple(
      fc.constant(n),
      fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: n * 3 }),
      fc.shuffledSubarray(Array.from({ length: n }, (_, i) => i), { minLength: n, maxLength: n }),
    ),
  )
  .map(([n, pairs, order]) => {
    const deps: string[][] = Array.from({ length: n }, () => []);
    for (const [a, b] of pairs) {
      if (n < 2) break;
      const hi = a % n;
      const lo = b % n;
      if (lo < hi) deps[hi]!.push(`s${lo}`);
    }
    return order.map((i): GraphNode => ({ id: `s${i}`, dependsOn: deps[i]! }));
  });

/** Any directed graph, self-loops included. */
const graphArb = fc
  .integer({ min: 1, max: 16 })
  .chain((n) => fc.tuple(fc.constant(n), fc.array(fc.tuple(fc.nat({ max: n - 1 }), fc.nat({ max: n - 1 })), { maxLength: n * 2 })))
  .map(([n, pairs]) => {
    const deps: string[][] = Array.from({ length: n }, () => []);
    for (const [a, b] of pairs) deps[a]!.push(`s${b}`);
    return Array.from({ length: n }, (_, i): GraphNode => ({ id: `s${i}`, dependsOn: deps[i]! }));
  });

/** reach.get(a) = every node a depends on through one or more edges. */
function transitiveDeps(nodes: readonly GraphNode[]): Map<string, Set<string>> {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const reach = new Map<string, Set<string>>();
  for (const n of nodes) {
    const seen = new Set<string>();
    const stack = [...n.dependsOn];
    while (stack.length > 0) {
      const d = stack.pop()!;
      if (seen.has(d) || !byId.has(d)) continue;
      seen.add(d);
      stack.push(...byId.get(d)!.dependsOn);
    }
    reach.set(n.id, seen);
  }
  return reach;
}

function batchIndex(batches: string[][]): Map<string, number> {
  const at = new Map<string, number>();
  batches.forEach((b, i) => b.forEach((id) => at.set(id, i)));
  return at;
}

/** Longest chain, counted in nodes, by memoised recursion. */
function longestChain(nodes: readonly GraphNode[]): number {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const memo = new Map<string, number>();
  const depth = (id: string): number => {
    if (memo.has(id)) return memo.get(id)!;
    const d = 1 + Math.max(0, ...byId.get(id)!.dependsOn.map(depth));
    memo.set(id, d);
    return d;
  };
  return Math.max(0, ...nodes.map((n) => depth(n.id)));
}

describe('updateOrder over random DAGs', () => {
  test('batches partition the nodes, each sorted, and every edge points from an earlier batch to a later one', () => {
    fc.assert(
      fc.property(dagArb, (nodes) => {
        const batches = updateOrder(nodes);
        const flat = batches.flat();
        expect(flat.length).toBe(nodes.length);
        expect(new Set(flat)).toEqual(new Set(nodes.map((n) => n.id)));
        for (const b of batches) {
          expect(b.length).toBeGreaterThan(0);
          expect(b).toEqual([...b].sort());
        }
        const at = batchIndex(batches);
        for (const n of nodes) for (const d of n.dependsOn) expect(at.get(d)!).toBeLessThan(at.get(n.id)!);
      }),
    );
  });

  test('the number of batches is the longest dependency chain, and each node sits in the earliest batch allowed', () => {
    fc.assert(
      fc.property(dagArb, (nodes) => {
        const batches = updateOrder(nodes);
        expect(batches.length).toBe(longestChain(nodes));
        const at = batchIndex(batches);
        for (const n of nodes) {
          const k = at.get(n.id)!;
          const latestDep = Math.max(-1, ...n.dependsOn.map((d) => at.get(d)!));
          expect(k).toBe(latestDep + 1);
        }
      }),
    );
  });

  test('the result does not depend on the order nodes are listed in', () => {
    fc.assert(
      fc.property(dagArb, fc.integer(), (nodes, seed) => {
        const shuffled = [...nodes].sort((a, b) => ((hash(a.id) ^ seed) >>> 0) - ((hash(b.id) ^ seed) >>> 0));
        expect(updateOrder(shuffled)).toEqual(updateOrder(nodes));
      }),
    );
  });

  test('rollback order is the batches reversed', () => {
    fc.assert(
      fc.property(dagArb, (nodes) => {
        const batches = updateOrder(nodes);
        expect(rollbackOrder(batches)).toEqual([...batches].reverse());
      }),
    );
  });
});

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h;
}

describe('planBatches over a subset', () => {
  test('partitions the subset and keeps every order induced through services outside it', () => {
    fc.assert(
      fc.property(
        dagArb.chain((nodes) => fc.tuple(fc.constant(nodes), fc.subarray(nodes.map((n) => n.id)))),
        ([nodes, subset]) => {
          const batches = planBatches(nodes, subset);
          expect(batches.flat().sort()).toEqual([...subset].sort());
          const at = batchIndex(batches);
          const reach = transitiveDeps(nodes);
          for (const a of subset) for (const b of subset) if (reach.get(a)!.has(b)) expect(at.get(b)!).toBeLessThan(at.get(a)!);
          // Earliest placement: a node after batch 0 has a transitive dependency in the subset one batch earlier.
          for (const a of subset) {
            const k = at.get(a)!;
            if (k > 0) expect([...reach.get(a)!].some((b) => at.get(b) === k - 1)).toBe(true);
          }
        },
      ),
    );
  });
});

describe('cycles in random graphs', () => {
  test('a cycle is always found, every reported cycle is real, and ordering refuses a cyclic graph', () => {
    fc.assert(
      fc.property(graphArb, (nodes) => {
        const reach = transitiveDeps(nodes);
        const cyclic = nodes.some((n) => reach.get(n.id)!.has(n.id));
        const cycles = findCycles(nodes);
        expect(cycles.length > 0).toBe(cyclic);
        const edges = new Set(nodes.flatMap((n) => n.dependsOn.map((d) => `${n.id}>${d}`)));
        for (const c of cycles) {
          expect(c.length).toBeGreaterThanOrEqual(2);
          expect(c[0]).toBe(c[c.length - 1]);
          expect(new Set(c.slice(0, -1)).size).toBe(c.length - 1);
          for (let i = 0; i + 1 < c.length; i++) expect(edges.has(`${c[i]}>${c[i + 1]}`)).toBe(true);
        }
        if (cyclic) {
          let thrown: unknown;
          try {
            updateOrder(nodes);
          } catch (err) {
            thrown = err;
          }
          expect(thrown).toBeInstanceOf(DependencyCycleError);
          const e = thrown as DependencyCycleError;
          expect(e.message).toBe(`dependency cycle: ${e.cycle.join(' -> ')}`);
          expect(cycles).toContainEqual(e.cycle);
        } else {
          expect(updateOrder(nodes).flat().length).toBe(nodes.length);
        }
      }),
    );
  });

  test('each cycle-bearing strongly connected region is reported once', () => {
    fc.assert(
      fc.property(graphArb, (nodes) => {
        const reach = transitiveDeps(nodes);
        // Nodes on some cycle, grouped by mutual reachability.
        const onCycle = nodes.map((n) => n.id).filter((id) => reach.get(id)!.has(id));
        const regions = new Set(onCycle.map((id) => onCycle.filter((o) => o === id || (reach.get(id)!.has(o) && reach.get(o)!.has(id))).sort().join(',')));
        expect(findCycles(nodes).length).toBe(regions.size);
      }),
    );
  });
});

describe('impactOf', () => {
  test('impact is exactly the set of descendants, each with the failing services upstream that have no failing service upstream of them', () => {
    fc.assert(
      fc.property(
        dagArb.chain((nodes) => fc.tuple(fc.constant(nodes), fc.subarray(nodes.map((n) => n.id)))),
        ([nodes, failing]) => {
          const reach = transitiveDeps(nodes);
          const failingSet = new Set(failing);
          const roots = failing.filter((f) => ![...reach.get(f)!].some((g) => failingSet.has(g)));
          const impact = impactOf(nodes, failing);
          const descendants = nodes.map((n) => n.id).filter((id) => failing.some((f) => reach.get(id)!.has(f)));
          expect([...impact.keys()].sort()).toEqual(descendants.sort());
          for (const [id, causes] of impact) {
            expect(causes).toEqual(roots.filter((r) => reach.get(id)!.has(r)).sort());
            expect(causes.length).toBeGreaterThan(0);
          }
        },
      ),
    );
  });
});

describe('criticalPath', () => {
  test('is the heaviest chain: a real chain whose weight no other chain exceeds', () => {
    fc.assert(
      fc.property(
        dagArb.chain((nodes) => fc.tuple(fc.constant(nodes), fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: nodes.length, maxLength: nodes.length }))),
        ([nodes, weights]) => {
          const w = new Map(nodes.map((n, i) => [n.id, weights[i]!]));
          const byId = new Map(nodes.map((n) => [n.id, n]));
          const memo = new Map<string, number>();
          const heaviest = (id: string): number => {
            if (!memo.has(id)) memo.set(id, w.get(id)! + Math.max(0, ...byId.get(id)!.dependsOn.map(heaviest)));
            return memo.get(id)!;
          };
          const best = Math.max(0, ...nodes.map((n) => heaviest(n.id)));
          const cp = criticalPath(nodes, (id) => w.get(id)!);
          expect(cp.durationMs).toBe(best);
          expect(cp.path.reduce((s, id) => s + w.get(id)!, 0)).toBe(best);
          for (let i = 1; i < cp.path.length; i++) expect(byId.get(cp.path[i]!)!.dependsOn).toContain(cp.path[i - 1]);
          if (nodes.length > 0) expect(byId.get(cp.path[0]!)!.dependsOn.length).toBe(0);
        },
      ),
    );
  });
});
