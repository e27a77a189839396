/**
 * Property tests of registry validation over random fleets written as YAML:
 * acyclic fleets load and plan like the graph says; every cycle and every
 * unknown reference is reported, on the line that holds it.
 */
import fc from 'fast-check';
import { findCycles, updateOrder, type GraphNode } from '../../src/domain/graph';
import { planRegistry } from '../../src/domain/plan';
import { parseRegistry } from '../../src/domain/registry-parse';

/** A fleet as YAML, one `dependsOn` line per service; returns the text and each service's dependsOn line. */
function toYaml(nodes: readonly GraphNode[]): { text: string; dependsOnLine: Map<string, number> } {
  const lines = ['services:'];
  const dependsOnLine = new Map<string, number>();
  for (const n of nodes) {
    lines.push(`  - id: ${n.id}`, '    type: api', '    endpoints: [{ url: "http://127.0.0.1:7001" }]');
    lines.push(`    dependsOn: [${n.dependsOn.join(', ')}]`);
    dependsOnLine.set(n.id, lines.length);
  }
  return { text: nodes.length === 0 ? 'services: []\n' : lines.join('\n') + '\n', dependsOnLine };
}

const graphArb = (acyclic: boolean) =>
  fc
    .integer({ min: 1, max: 12 })
    .chain((n) => fc.tuple(fc.constant(n), fc.uniqueArray(fc.tuple(fc.nat({ max: n - 1 }), fc.nat({ max: n - 1 })), { maxLength: n * 2, selector: ([a, b]) => `${a}>${b}` })))
    .map(([n, pairs]) => {
      const deps: string[][] = Array.from({ length: n }, () => []);
      for (const [a, b] of pairs) if (!acyclic || b < a) deps[a]!.push(`s${b}`);
      return Array.from({ length: n }, (_, i): GraphNode => ({ id: `s${i}`, dependsOn: deps[i]! }));
    });

test('an acyclic fleet loads, and its plan is the graph order', () => {
  fc.assert(
    fc.property(graphArb(true), (nodes) => {
      const r = parseRegistry(toYaml(nodes).text, 'fleet.yaml');
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      expect(planRegistry(r.registry).batches).toEqual(updateOrder(nodes));
    }),
  );
});

test('every cycle is reported as a real cycle, on the line of the dependsOn that closes it', () => {
  fc.assert(
    fc.property(graphArb(false), (nodes) => {
      const { text, dependsOnLine } = toYaml(nodes);
      const r = parseRegistry(text, 'fleet.yaml');
      const expected = findCycles(nodes);
      if (expected.length === 0) {
        expect(r.ok).toBe(true);
        return;
      }
      expect(r.ok).toBe(false);
      if (r.ok) return;
      const cycleProblems = r.problems.filter((p) => p.message.startsWith('dependency cycle: '));
      expect(cycleProblems.map((p) => p.message).sort()).toEqual(expected.map((c) => `dependency cycle: ${c.join(' -> ')}`).sort());
      const deps = new Map(nodes.map((n) => [n.id, n.dependsOn]));
      for (const p of cycleProblems) {
        const cycle = p.message.slice('dependency cycle: '.length).split(' -> ');
        for (let i = 0; i + 1 < cycle.length; i++) expect(deps.get(cycle[i]!)).toContain(cycle[i + 1]);
        const closer = cycle[cycle.length - 2]!;
        expect(p.line).toBe(dependsOnLine.get(closer));
        expect(p.path).toBe(`services[${Number(closer.slice(1))}].dependsOn[${deps.get(closer)!.indexOf(cycle[0]!)}]`);
      }
      expect(r.problems.length).toBe(cycleProblems.length);
    }),
  );
});

test('every reference to a missing service is reported, with the exact path and line', () => {
  fc.assert(
    fc.property(graphArb(true), fc.array(fc.nat(), { minLength: 1, maxLength: 5 }), (nodes, picks) => {
      // Rename some services away: every dependsOn entry naming them becomes unknown.
      const removed = new Set(picks.map((k) => nodes[k % nodes.length]!.id));
      const kept = nodes.filter((n) => !removed.has(n.id));
      const { text, dependsOnLine } = toYaml(kept);
      const r = parseRegistry(text, 'fleet.yaml');
      const expected = kept.flatMap((n, i) =>
        n.dependsOn.flatMap((d, j) => (removed.has(d) ? [{ path: `services[${i}].dependsOn[${j}]`, message: `unknown service "${d}"`, line: dependsOnLine.get(n.id) }] : [])),
      );
      if (expected.length === 0) {
        expect(r.ok).toBe(true);
        return;
      }
      expect(r.ok ? [] : r.problems.map((p) => ({ ...p, message: p.message.replace(/ \(did you mean "[^"]+"\?\)$/, '') }))).toEqual(expected);
    }),
  );
});
