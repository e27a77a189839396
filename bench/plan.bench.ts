/**
 * Planning at fleet scale: 10,000 services with 50,000 dependency edges.
 *
 * Time: median of repeated runs of each graph function, read against a
 * baseline measured side by side: one pass that looks up every edge's target
 * by id (the least work any plan must do). Target: a full plan (topological
 * batches + critical path) under 100 ms.
 *
 * Memory: in a child process with a young generation large enough that no
 * GC runs during the plan, the heap (plus array buffers) allocated by one
 * full plan bounds its peak; read against the size of the input graph.
 *
 * Also: parse + validate of the same fleet as registry YAML (what a worker
 * does on each reload).
 */
import { fork } from 'node:child_process';
import { criticalPath, findCycles, impactOf, planBatches, updateOrder, type GraphNode } from '../src/domain/graph';
import { parseRegistry } from '../src/domain/registry-parse';
import { summarize, type Figure } from './harness';

const SERVICES = 10_000;
const EDGES = 50_000;
const RUNS = 21;
const TARGET_MS = 100;

/** mulberry32: a small seeded PRNG, so every run plans the same graph. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random DAG: exactly EDGES distinct edges, each from a later-created to an earlier-created service; list shuffled. */
export function fleet(services = SERVICES, edges = EDGES, seed = 42): GraphNode[] {
  const rnd = prng(seed);
  const deps: Set<number>[] = Array.from({ length: services }, () => new Set());
  let count = 0;
  while (count < edges) {
    const a = Math.floor(rnd() * services);
    const b = Math.floor(rnd() * services);
    if (a === b) continue;
    const [hi, lo] = a > b ? [a, b] : [b, a];
    if (deps[hi]!.has(lo)) continue;
    deps[hi]!.add(lo);
    count++;
  }
  const nodes = deps.map((d, i): GraphNode => ({ id: `svc-${i}`, dependsOn: [...d].map((j) => `svc-${j}`) }));
  for (let i = nodes.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [nodes[i], nodes[j]] = [nodes[j]!, nodes[i]!];
  }
  return nodes;
}

/** The baseline: resolve every edge's target id once. */
function touchEveryEdge(nodes: readonly GraphNode[]): number {
  const index = new Map<string, number>();
  nodes.forEach((n, i) => index.set(n.id, i));
  let sum = 0;
  for (const n of nodes) for (const d of n.dependsOn) sum += index.get(d) ?? 0;
  return sum;
}

function time(fn: () => unknown, runs = RUNS): { p50: number; p99: number } {
  for (let i = 0; i < 3; i++) fn(); // warm up the JIT
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    samples.push(performance.now() - t0);
  }
  return summarize(samples);
}

interface MemoryReport {
  /** Heap + array buffers the input graph occupies, MiB. */
  inputMiB: number;
  /** Bytes allocated during one plan (no GC ran in between, so this bounds its peak), MiB. */
  allocatedMiB: number;
  /** What stays allocated while the plan's result is alive, MiB. */
  retainedMiB: number;
  /** Garbage collections that ran during the plan (0 means allocatedMiB is exact). */
  gcsDuringPlan: number;
  maxRssMiB: number;
}

/**
 * Runs one plan in a child with a young generation large enough that no GC
 * interrupts it, and reports heap growth across it.
 */
function measureMemoryInChild(): Promise<MemoryReport> {
  return new Promise((resolve, reject) => {
    const child = fork(__filename, [], {
      env: { ...process.env, IA_PLAN_BENCH_CHILD: '1' },
      execArgv: ['--import', 'tsx', '--expose-gc', '--max-semi-space-size=256'],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    child.once('message', (m) => resolve(m as MemoryReport));
    child.once('error', reject);
    child.once('exit', (code) => code !== 0 && reject(new Error(`plan bench child exited with ${code}`)));
  });
}

async function childMain(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc!;
  const MiB = 1024 * 1024;
  const used = () => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const gcStarts: number[] = [];
  const observer = new PerformanceObserver((list) => list.getEntries().forEach((e) => gcStarts.push(e.startTime)));
  observer.observe({ entryTypes: ['gc'] });
  gc();
  const empty = used();
  const nodes = fleet();
  gc();
  gc();
  const before = used();
  const t0 = performance.now();
  const batches = updateOrder(nodes);
  const cp = criticalPath(nodes, () => 1000);
  const t1 = performance.now();
  const after = used();
  gc();
  const retained = used();
  await new Promise((r) => setTimeout(r, 50)); // let the observer deliver
  observer.disconnect();
  const report: MemoryReport = {
    inputMiB: (before - empty) / MiB,
    allocatedMiB: (after - before) / MiB,
    retainedMiB: (retained - before) / MiB,
    gcsDuringPlan: gcStarts.filter((t) => t >= t0 && t <= t1).length,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
  };
  if (batches.length === 0 || cp.path.length === 0) throw new Error('empty plan');
  process.send!(report, () => process.exit(0));
}

if (process.env.IA_PLAN_BENCH_CHILD) {
  childMain().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

export default async function run(): Promise<Figure[]> {
  const nodes = fleet();
  const ids = nodes.map((n) => n.id);
  const subset = ids.filter((_, i) => i % 10 === 0);
  const failing = ids.filter((_, i) => i % 100 === 0);
  const weight = (id: string) => 500 + (id.length % 7) * 250;

  const baseline = time(() => touchEveryEdge(nodes));
  const fullPlan = time(() => {
    updateOrder(nodes);
    criticalPath(nodes, weight);
  });
  const figures: Figure[] = [];
  const scale = `${SERVICES.toLocaleString('en')} services, ${EDGES.toLocaleString('en')} edges`;
  const fig = (name: string, t: { p50: number }, target?: string): Figure => ({
    bench: 'plan',
    name: `${name} (${scale}) p50`,
    value: t.p50,
    unit: 'ms',
    baseline: { name: 'resolve every edge once', value: baseline.p50 },
    ratio: t.p50 / baseline.p50,
    ...(target ? { target, met: t.p50 < TARGET_MS } : {}),
  });
  figures.push({ bench: 'plan', name: `baseline: resolve every edge once (${scale}) p50`, value: baseline.p50, unit: 'ms' });
  figures.push(fig('full plan: updateOrder + criticalPath', fullPlan, `< ${TARGET_MS} ms`));
  figures.push(fig('updateOrder', time(() => updateOrder(nodes))));
  figures.push(fig('criticalPath', time(() => criticalPath(nodes, weight))));
  figures.push(fig('planBatches, 10% subset', time(() => planBatches(nodes, subset))));
  figures.push(fig('impactOf, 1% failing', time(() => impactOf(nodes, failing))));
  figures.push(fig('findCycles (acyclic)', time(() => findCycles(nodes))));

  const mem = await measureMemoryInChild();
  figures.push({
    bench: 'plan',
    name: `memory allocated by one full plan, the bound on its peak (${scale}; GCs during plan: ${mem.gcsDuringPlan})`,
    value: mem.allocatedMiB,
    unit: 'MiB',
    baseline: { name: 'the input graph itself', value: mem.inputMiB },
    ratio: mem.allocatedMiB / mem.inputMiB,
  });
  figures.push({ bench: 'plan', name: `memory retained by the plan's result (${scale})`, value: mem.retainedMiB, unit: 'MiB' });
  figures.push({ bench: 'plan', name: `peak RSS of the process that built and planned (${scale})`, value: mem.maxRssMiB, unit: 'MiB' });

  // What a worker pays on each registry reload at this scale.
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const yaml =
    'services:\n' +
    ids
      .map((id) => `  - id: ${id}\n    type: api\n    endpoints: [{ url: "http://127.0.0.1:7001" }]\n    dependsOn: [${byId.get(id)!.dependsOn.join(', ')}]\n`)
      .join('');
  const parse = time(() => {
    if (!parseRegistry(yaml, 'bench.yaml').ok) throw new Error('bench registry did not validate');
  }, 3);
  figures.push({ bench: 'plan', name: `parse + validate registry YAML (${scale}, ${(yaml.length / 1e6).toFixed(1)} MB) p50`, value: parse.p50, unit: 'ms' });
  return figures;
}
