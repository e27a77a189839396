/**
 * Scenarios for the dependency graph: a small fleet where the answers can be
 * checked by eye.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DependencyCycleError,
  batchedDurationMs,
  criticalPath,
  findCycles,
  impactOf,
  planBatches,
  rollbackOrder,
  updateOrder,
  type GraphNode,
} from '../../src/domain/graph';

//   web -> api -> auth -> db
//          api -> cache
//   reports -> db
const fleet: GraphNode[] = [
  { id: 'web', dependsOn: ['api'] },
  { id: 'api', dependsOn: ['auth', 'cache'] },
  { id: 'auth', dependsOn: ['db'] },
  { id: 'cache', dependsOn: [] },
  { id: 'db', dependsOn: [] },
  { id: 'reports', dependsOn: ['db'] },
];

test('updateOrder puts dependencies first, sorted inside each batch', () => {
  expect(updateOrder(fleet)).toEqual([['cache', 'db'], ['auth', 'reports'], ['api'], ['web']]);
  expect(updateOrder([])).toEqual([]);
});

test('dependencies on ids that are not nodes are ignored; duplicate node ids are refused', () => {
  expect(updateOrder([{ id: 'a', dependsOn: ['ghost'] }])).toEqual([['a']]);
  expect(() => updateOrder([{ id: 'a', dependsOn: [] }, { id: 'a', dependsOn: [] }])).toThrow('duplicate node id "a"');
});

test('a plan over a subset keeps the order that passes through services outside it', () => {
  // web and db are in scope; web reaches db only through api and auth, which are not.
  expect(planBatches(fleet, ['web', 'db', 'cache'])).toEqual([['cache', 'db'], ['web']]);
  expect(planBatches(fleet, ['reports', 'web'])).toEqual([['reports', 'web']]);
  expect(planBatches(fleet, [])).toEqual([]);
  expect(() => planBatches(fleet, ['web', 'nope'])).toThrow(RangeError);
  expect(() => planBatches(fleet, ['web', 'nope'])).toThrow('subset names "nope"');
});

test('rollback runs the batches in reverse', () => {
  expect(rollbackOrder(updateOrder(fleet))).toEqual([['web'], ['api'], ['auth', 'reports'], ['cache', 'db']]);
});

test('the critical path follows the heaviest chain, and batching can only be slower', () => {
  const ms: Record<string, number> = { web: 1000, api: 2000, auth: 500, cache: 4000, db: 1000, reports: 9000 };
  const cp = criticalPath(fleet, (id) => ms[id]!);
  // cache(4s) -> api(2s) -> web(1s) = 7s beats db -> auth -> api -> web = 4.5s; db -> reports = 10s beats both.
  expect(cp).toEqual({ path: ['db', 'reports'], durationMs: 10_000 });
  const withoutReports = criticalPath(fleet, (id) => ms[id]!, ['web', 'api', 'auth', 'cache', 'db']);
  expect(withoutReports).toEqual({ path: ['cache', 'api', 'web'], durationMs: 7000 });
  // Batches: [cache 4s, db 1s] [auth .5s, reports 9s] [api 2s] [web 1s] = 4 + 9 + 2 + 1.
  expect(batchedDurationMs(updateOrder(fleet), (id) => ms[id]!)).toBe(16_000);
  expect(() => criticalPath(fleet, () => -1)).toThrow(/expected duration of "\w+" must be a finite number of ms >= 0, got -1/);
  expect(criticalPath([], () => 1)).toEqual({ path: [], durationMs: 0 });
});

test('a cycle is reported as the cycle, starting at its smallest id', () => {
  const cyclic: GraphNode[] = [
    { id: 'c', dependsOn: ['a'] },
    { id: 'a', dependsOn: ['b'] },
    { id: 'b', dependsOn: ['c'] },
    { id: 'd', dependsOn: ['a', 'd'] },
  ];
  expect(findCycles(cyclic)).toEqual([
    ['a', 'b', 'c', 'a'],
    ['d', 'd'],
  ]);
  expect(() => updateOrder(cyclic)).toThrow(new DependencyCycleError([['a', 'b', 'c', 'a']]));
  expect(() => updateOrder(cyclic)).toThrow('dependency cycle: a -> b -> c -> a');
  expect(findCycles(fleet)).toEqual([]);
});

test('ordering a 100,000-long chain does not overflow the stack', () => {
  const chain: GraphNode[] = Array.from({ length: 100_000 }, (_, i) => ({ id: `n${i}`, dependsOn: i === 0 ? [] : [`n${i - 1}`] }));
  expect(updateOrder(chain).length).toBe(100_000);
  expect(findCycles(chain)).toEqual([]);
  chain[0] = { id: 'n0', dependsOn: ['n99999'] };
  expect(findCycles(chain)[0]!.length).toBe(100_001);
});

test('impact names each impacted service with its root causes', () => {
  const impact = impactOf(fleet, ['db', 'api']);
  // api fails, but because db (through auth) does: db is the root cause everywhere.
  expect(Object.fromEntries(impact)).toEqual({ auth: ['db'], reports: ['db'], api: ['db'], web: ['db'] });
  expect(Object.fromEntries(impactOf(fleet, ['cache', 'auth']))).toEqual({ api: ['auth', 'cache'], web: ['auth', 'cache'] });
  expect(impactOf(fleet, ['web']).size).toBe(0);
  expect(() => impactOf(fleet, ['nope'])).toThrow(RangeError);
});

test('graph.ts is usable in workflow code: no Node built-ins, no I/O, no clock', () => {
  const source = readFileSync(join(__dirname, '../../src/domain/graph.ts'), 'utf8');
  expect(source).not.toMatch(/\bfrom\s+['"](node:|fs|path|crypto|os)/);
  expect(source).not.toMatch(/\brequire\(|Date\.now|new Date|Math\.random|process\./);
});
