/** Shapes and helpers shared by the benchmarks. */
import Database from 'better-sqlite3';

export interface Figure {
  /** Benchmark file, e.g. `temporal-overhead`. */
  bench: string;
  /** What was measured, e.g. `empty activity round trip p50`. */
  name: string;
  value: number;
  unit: string;
  /** The side-by-side baseline this figure is read against, when there is one. */
  baseline?: { name: string; value: number };
  /** value / baseline.value (or the ratio the target is stated in). */
  ratio?: number;
  /** The target in words, e.g. `>= 3x fetch`, and whether this run met it. */
  target?: string;
  met?: boolean;
}

/** Nearest-rank percentile of a sample (p in [0, 100]); NaN for an empty sample. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

/** Median and p99 of raw samples (unsorted input). */
export function summarize(samples: number[]): { p50: number; p99: number; n: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), n: s.length };
}

/** Sum of the stored history blobs, bytes (a dev server's SQLite file, `--db-filename`, read-only). */
export function historyBytes(dbFile: string): number {
  // The server writes all the time and holds its lock for long stretches on a loaded machine:
  // retry (the lock is the server's, the wait is ours) for up to a minute.
  for (let attempt = 0; ; attempt++) {
    const db = new Database(dbFile, { readonly: true, fileMustExist: true, timeout: 5_000 });
    try {
      return (db.prepare('SELECT COALESCE(SUM(LENGTH(data)), 0) AS b FROM history_node').get() as { b: number }).b;
    } catch (err) {
      if (!/locked|busy/i.test((err as Error).message) || attempt >= 12) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200 + Math.random() * 300);
    } finally {
      db.close();
    }
  }
}
