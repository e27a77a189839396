/**
 * The dependency graph over services: topological batches for ordered,
 * parallel work (rotation, planning), the critical path, cycle reports and
 * impact propagation (health).
 *
 * Edges point from a service to what it depends on: `a -> b` reads "a depends
 * on b", so b is updated before a and a failing b impacts a.
 *
 * Pure and deterministic: no Node built-ins, no clock, no I/O, so workflow code
 * may import it. Ids are compared by UTF-16 code units (`Array#sort` default),
 * never by locale. Dependencies on ids that are not nodes are ignored (the
 * registry validator reports them); duplicate node ids are an error.
 */

/** A vertex: a service id and the ids it depends on. */
export interface GraphNode {
  id: string;
  dependsOn: readonly string[];
}

/**
 * A dependency cycle. `cycle` starts and ends with the same id and follows
 * "depends on" edges (`['a', 'b', 'a']`: a depends on b, b on a); `cycles`
 * holds one such cycle per strongly connected component that has one.
 */
export class DependencyCycleError extends Error {
  readonly cycle: string[];
  constructor(readonly cycles: string[][]) {
    super(formatCycle(cycles[0]!));
    this.name = 'DependencyCycleError';
    this.cycle = cycles[0]!;
  }
}

/** `dependency cycle: a -> b -> c -> a` */
export function formatCycle(cycle: readonly string[]): string {
  return `dependency cycle: ${cycle.join(' -> ')}`;
}

/** Adjacency in compressed-sparse-row form over node indices. */
interface Compiled {
  ids: string[];
  index: Map<string, number>;
  /** deps of i: deps[depStart[i] .. depStart[i + 1]) */
  depStart: Int32Array;
  deps: Int32Array;
  /** dependents of i: dependents[dependentStart[i] .. dependentStart[i + 1]) */
  dependentStart: Int32Array;
  dependents: Int32Array;
}

function compile(nodes: readonly GraphNode[]): Compiled {
  const n = nodes.length;
  const ids = new Array<string>(n);
  const index = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const id = nodes[i]!.id;
    if (index.has(id)) throw new Error(`duplicate node id "${id}" in dependency graph: ids must be unique`);
    index.set(id, i);
    ids[i] = id;
  }
  const depStart = new Int32Array(n + 1);
  let m = 0;
  for (let i = 0; i < n; i++) {
    depStart[i] = m;
    for (const d of nodes[i]!.dependsOn) if (index.has(d)) m++;
  }
  depStart[n] = m;
  const deps = new Int32Array(m);
  const dependentCount = new Int32Array(n + 1);
  let k = 0;
  for (let i = 0; i < n; i++) {
    for (const d of nodes[i]!.dependsOn) {
      const j = index.get(d);
      if (j === undefined) continue;
      deps[k++] = j;
      dependentCount[j]!++;
    }
  }
  const dependentStart = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) dependentStart[i + 1] = dependentStart[i]! + dependentCount[i]!;
  const fill = dependentStart.slice(0, n);
  const dependents = new Int32Array(m);
  for (let i = 0; i < n; i++) {
    for (let e = depStart[i]!; e < depStart[i + 1]!; e++) dependents[fill[deps[e]!]!++] = i;
  }
  return { ids, index, depStart, deps, dependentStart, dependents };
}

/**
 * Kahn's algorithm (Kahn 1962): node indices with every dependency before its
 * dependents. Returns fewer than n indices when the graph has a cycle.
 */
function topologicalOrder(g: Compiled): Int32Array {
  const n = g.ids.length;
  const indeg = new Int32Array(n);
  for (let i = 0; i < n; i++) indeg[i] = g.depStart[i + 1]! - g.depStart[i]!;
  const queue = new Int32Array(n);
  let tail = 0;
  for (let i = 0; i < n; i++) if (indeg[i] === 0) queue[tail++] = i;
  for (let head = 0; head < tail; head++) {
    const u = queue[head]!;
    for (let e = g.dependentStart[u]!; e < g.dependentStart[u + 1]!; e++) {
      const w = g.dependents[e]!;
      if (--indeg[w]! === 0) queue[tail++] = w;
    }
  }
  return tail === n ? queue : queue.subarray(0, tail);
}

/** Topological order, or a {@link DependencyCycleError} naming the cycle(s). */
function acyclicOrder(g: Compiled): Int32Array {
  const order = topologicalOrder(g);
  if (order.length !== g.ids.length) throw new DependencyCycleError(cyclesOf(g));
  return order;
}

function resolveSubset(g: Compiled, subset: Iterable<string> | undefined): Uint8Array {
  const n = g.ids.length;
  const member = new Uint8Array(n);
  if (subset === undefined) {
    member.fill(1);
    return member;
  }
  for (const id of subset) {
    const i = g.index.get(id);
    if (i === undefined) throw new RangeError(`subset names "${id}", which is not a node of the dependency graph`);
    member[i] = 1;
  }
  return member;
}

/**
 * Topological batches of the whole graph (longest-path layering): every node's
 * dependencies are in earlier batches, each node is in the earliest batch that
 * allows it, so the number of batches is the longest dependency chain (in
 * nodes). Ids inside a batch are sorted.
 *
 * @param nodes the graph; dependencies on unknown ids are ignored.
 * @returns batches of ids, `[]` for no nodes.
 * @throws DependencyCycleError `dependency cycle: a -> b -> a` when the graph has a cycle.
 * @throws Error on a duplicate node id.
 */
export function updateOrder(nodes: readonly GraphNode[]): string[][] {
  return planBatches(nodes);
}

/**
 * Topological batches of a subset of the graph, keeping the order induced by
 * the whole graph: if a depends on b through services outside the subset
 * (a -> x -> b), b still comes in an earlier batch than a. Each subset node
 * goes in the earliest batch that allows it: batch index = (number of subset
 * nodes on the longest chain ending at it) - 1. Computed in one pass over the
 * whole graph in topological order, O(nodes + edges).
 *
 * @param nodes the whole graph.
 * @param subset ids to plan (e.g. a credential's issuer and consumers); default every node.
 * @returns batches of subset ids, sorted inside each batch; `[]` for an empty subset.
 * @throws RangeError when the subset names an id that is not a node.
 * @throws DependencyCycleError when the graph has a cycle (anywhere, as order is then undefined).
 */
export function planBatches(nodes: readonly GraphNode[], subset?: Iterable<string>): string[][] {
  const g = compile(nodes);
  const member = resolveSubset(g, subset);
  const order = acyclicOrder(g);
  const n = g.ids.length;
  const depth = new Int32Array(n);
  let maxDepth = 0;
  for (let k = 0; k < n; k++) {
    const v = order[k]!;
    let best = 0;
    for (let e = g.depStart[v]!; e < g.depStart[v + 1]!; e++) {
      const d = depth[g.deps[e]!]!;
      if (d > best) best = d;
    }
    const dv = best + member[v]!;
    depth[v] = dv;
    if (dv > maxDepth) maxDepth = dv;
  }
  const batches: string[][] = Array.from({ length: maxDepth }, () => []);
  for (let v = 0; v < n; v++) if (member[v]) batches[depth[v]! - 1]!.push(g.ids[v]!);
  for (const b of batches) b.sort();
  return batches;
}

/**
 * The order to undo a plan in: the batches reversed (dependents first), each
 * batch's ids kept as they were. Returns new arrays.
 */
export function rollbackOrder(batches: readonly (readonly string[])[]): string[][] {
  const out: string[][] = [];
  for (let i = batches.length - 1; i >= 0; i--) out.push([...batches[i]!]);
  return out;
}

/** The longest chain by expected duration, and its length. */
export interface CriticalPath {
  /** Ids from the first (a dependency) to the last (its farthest dependent); `[]` for no nodes. */
  path: string[];
  /** Sum of the expected durations along `path`, in milliseconds. */
  durationMs: number;
}

/**
 * The critical path (CPM, Kelley & Walker 1959): the chain of dependencies
 * with the largest total expected duration. Its length is the lower bound on
 * the wall time of any parallel run that respects the order. With a subset,
 * only subset nodes count (their duration and their place in `path`), and
 * chains through outside nodes still link them, as in {@link planBatches}.
 * Ties go to the chain ending at, then passing through, the smaller id.
 *
 * @param durationMs expected duration of one node's step in ms (finite, >= 0).
 * @throws RangeError when `durationMs` returns a negative or non-finite value (naming the id).
 * @throws DependencyCycleError when the graph has a cycle.
 */
export function criticalPath(
  nodes: readonly GraphNode[],
  durationMs: (id: string) => number,
  subset?: Iterable<string>,
): CriticalPath {
  const g = compile(nodes);
  const member = resolveSubset(g, subset);
  const order = acyclicOrder(g);
  const n = g.ids.length;
  const finish = new Float64Array(n);
  const prev = new Int32Array(n).fill(-1);
  let end = -1;
  for (let k = 0; k < n; k++) {
    const v = order[k]!;
    let best = 0;
    let from = -1;
    for (let e = g.depStart[v]!; e < g.depStart[v + 1]!; e++) {
      const d = g.deps[e]!;
      const f = finish[d]!;
      if (from === -1 || f > best || (f === best && g.ids[d]! < g.ids[from]!)) {
        best = f;
        from = d;
      }
    }
    let w = 0;
    if (member[v]) {
      w = durationMs(g.ids[v]!);
      if (!Number.isFinite(w) || w < 0) throw new RangeError(`expected duration of "${g.ids[v]}" must be a finite number of ms >= 0, got ${w}`);
    }
    finish[v] = best + w;
    prev[v] = from;
    if (member[v] && (end === -1 || finish[v]! > finish[end]! || (finish[v] === finish[end] && g.ids[v]! < g.ids[end]!))) end = v;
  }
  if (end === -1) return { path: [], durationMs: 0 };
  const path: string[] = [];
  for (let v = end; v !== -1; v = prev[v]!) if (member[v]) path.push(g.ids[v]!);
  path.reverse();
  return { path, durationMs: finish[end]! };
}

/**
 * Wall time of running `batches` one after another with each batch fully
 * parallel: the sum over batches of the slowest step, in ms. Always >= the
 * critical path's duration; the gap is what batch barriers cost.
 */
export function batchedDurationMs(batches: readonly (readonly string[])[], durationMs: (id: string) => number): number {
  let total = 0;
  for (const b of batches) {
    let slowest = 0;
    for (const id of b) slowest = Math.max(slowest, durationMs(id));
    total += slowest;
  }
  return total;
}

/**
 * Every cycle region of the graph: one cycle per strongly connected component
 * that has one (Tarjan 1972, iterative), each the shortest cycle through the
 * component's smallest id, starting and ending with that id and following
 * "depends on" edges. Sorted by first id. `[]` when the graph is acyclic.
 */
export function findCycles(nodes: readonly GraphNode[]): string[][] {
  return cyclesOf(compile(nodes));
}

function cyclesOf(g: Compiled): string[][] {
  const n = g.ids.length;
  const UNSEEN = -1;
  const idx = new Int32Array(n).fill(UNSEEN);
  const low = new Int32Array(n);
  const onStack = new Uint8Array(n);
  const stack: number[] = [];
  const comp = new Int32Array(n).fill(-1);
  const components: number[][] = [];
  let counter = 0;
  // Explicit DFS stack of (node, next edge position) so deep chains do not overflow the call stack.
  const callNode = new Int32Array(n);
  const callEdge = new Int32Array(n);
  for (let root = 0; root < n; root++) {
    if (idx[root] !== UNSEEN) continue;
    let sp = 0;
    callNode[0] = root;
    callEdge[0] = g.depStart[root]!;
    idx[root] = low[root] = counter++;
    stack.push(root);
    onStack[root] = 1;
    while (sp >= 0) {
      const v = callNode[sp]!;
      const e = callEdge[sp]!;
      if (e < g.depStart[v + 1]!) {
        callEdge[sp] = e + 1;
        const w = g.deps[e]!;
        if (idx[w] === UNSEEN) {
          idx[w] = low[w] = counter++;
          stack.push(w);
          onStack[w] = 1;
          sp++;
          callNode[sp] = w;
          callEdge[sp] = g.depStart[w]!;
        } else if (onStack[w]) {
          low[v] = Math.min(low[v]!, idx[w]!);
        }
        continue;
      }
      if (low[v] === idx[v]) {
        const members: number[] = [];
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = 0;
          comp[w] = components.length;
          members.push(w);
        } while (w !== v);
        components.push(members);
      }
      sp--;
      if (sp >= 0) {
        const parent = callNode[sp]!;
        low[parent] = Math.min(low[parent]!, low[v]!);
      }
    }
  }
  const cycles: string[][] = [];
  for (let c = 0; c < components.length; c++) {
    const members = components[c]!;
    let start = members[0]!;
    for (const m of members) if (g.ids[m]! < g.ids[start]!) start = m;
    const selfLoop = members.length === 1 && hasEdge(g, start, start);
    if (members.length === 1 && !selfLoop) continue;
    cycles.push(selfLoop ? [g.ids[start]!, g.ids[start]!] : shortestCycle(g, start, comp, c));
  }
  return cycles.sort((a, b) => (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : 0));
}

function hasEdge(g: Compiled, from: number, to: number): boolean {
  for (let e = g.depStart[from]!; e < g.depStart[from + 1]!; e++) if (g.deps[e] === to) return true;
  return false;
}

/** Breadth-first search inside one component from `start` back to itself. */
function shortestCycle(g: Compiled, start: number, comp: Int32Array, c: number): string[] {
  const parent = new Map<number, number>();
  const queue: number[] = [start];
  for (let head = 0; head < queue.length; head++) {
    const v = queue[head]!;
    for (let e = g.depStart[v]!; e < g.depStart[v + 1]!; e++) {
      const w = g.deps[e]!;
      if (comp[w] !== c) continue;
      if (w === start) {
        const path = [start];
        for (let x = v; x !== start; x = parent.get(x)!) path.push(x);
        path.push(start);
        // path is start, v, ..., start read backwards along edges; put it in edge order.
        const ordered = [start, ...path.slice(1, -1).reverse(), start];
        return ordered.map((i) => g.ids[i]!);
      }
      if (!parent.has(w) && w !== start) {
        parent.set(w, v);
        queue.push(w);
      }
    }
  }
  /* c is a strongly connected component with more than one node, so start reaches itself. */
  throw new Error(`internal: no cycle through ${g.ids[start]}`);
}

/**
 * Impact of failing services: every service that depends on one of them,
 * directly or transitively, with its root cause(s): the failing services
 * upstream of it that have no failing service upstream of themselves. A
 * failing service downstream of another failing one is impacted too (its
 * failure is explained by the root cause). Used by health sweeps to mark
 * services `impacted` instead of alerting on them. O(nodes + edges) plus the
 * size of the root-cause sets.
 *
 * @param failing ids of failing services.
 * @returns impacted id -> sorted root-cause ids; failing root causes themselves are not keys.
 * @throws RangeError when `failing` names an id that is not a node.
 * @throws DependencyCycleError when the graph has a cycle.
 */
export function impactOf(nodes: readonly GraphNode[], failing: Iterable<string>): Map<string, string[]> {
  const g = compile(nodes);
  const isFailing = resolveSubset(g, failing);
  const order = acyclicOrder(g);
  const n = g.ids.length;
  const causes: (Set<number> | undefined)[] = new Array(n);
  const result = new Map<string, string[]>();
  for (let k = 0; k < n; k++) {
    const v = order[k]!;
    let inherited: Set<number> | undefined;
    for (let e = g.depStart[v]!; e < g.depStart[v + 1]!; e++) {
      const d = g.deps[e]!;
      const fromD = causes[d];
      if (fromD) {
        if (!inherited) inherited = new Set(fromD);
        else for (const r of fromD) inherited.add(r);
      } else if (isFailing[d]) {
        (inherited ??= new Set()).add(d);
      }
    }
    if (inherited) {
      causes[v] = inherited;
      result.set(g.ids[v]!, [...inherited].map((i) => g.ids[i]!).sort());
    }
  }
  return result;
}
