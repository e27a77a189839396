/**
 * The dependency graph over services: topological batches for ordered,
 * parallel work (rotation, planning) and impact propagation (health).
 */

export interface GraphNode {
  id: string;
  dependsOn: readonly string[];
}

/**
 * Topological batches (Kahn's algorithm, layered): every node's dependencies
 * are in earlier batches; ids inside a batch are sorted for determinism.
 *
 * @throws Error `dependency cycle: a -> b -> a` when the graph has a cycle.
 */
export function updateOrder(nodes: readonly GraphNode[]): string[][] {
  const indeg = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const n of nodes) {
    indeg.set(n.id, 0);
    dependents.set(n.id, []);
  }
  for (const n of nodes) {
    for (const d of n.dependsOn) {
      if (!indeg.has(d)) continue;
      indeg.set(n.id, indeg.get(n.id)! + 1);
      dependents.get(d)!.push(n.id);
    }
  }
  const batches: string[][] = [];
  let frontier = [...indeg].filter(([, k]) => k === 0).map(([id]) => id).sort();
  let seen = 0;
  while (frontier.length > 0) {
    batches.push(frontier);
    seen += frontier.length;
    const next: string[] = [];
    for (const id of frontier) {
      for (const m of dependents.get(id)!) {
        const k = indeg.get(m)! - 1;
        indeg.set(m, k);
        if (k === 0) next.push(m);
      }
    }
    frontier = next.sort();
  }
  if (seen !== nodes.length) throw new Error(`dependency cycle among: ${[...indeg].filter(([, k]) => k > 0).map(([id]) => id).sort().join(', ')}`);
  return batches;
}
