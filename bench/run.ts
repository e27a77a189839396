/**
 * Runs the benchmarks: `tsx bench/run.ts [name-filter]`.
 * One JSON line per figure on stdout, then a markdown table.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Figure } from './harness';

async function main(): Promise<void> {
  const filter = process.argv[2];
  const files = readdirSync(__dirname)
    .filter((f) => f.endsWith('.bench.ts'))
    .filter((f) => !filter || f.includes(filter))
    .sort();
  const all: Figure[] = [];
  for (const f of files) {
    const mod = (await import(join(__dirname, f))) as { default: () => Promise<Figure[]> };
    process.stderr.write(`running ${f}\n`);
    const figures = await mod.default();
    for (const fig of figures) {
      process.stdout.write(JSON.stringify(fig) + '\n');
      all.push(fig);
    }
  }
  const fmt = (n: number | undefined) => (n === undefined ? '' : Number.isInteger(n) ? String(n) : n.toPrecision(4));
  process.stdout.write('\n| bench | figure | value | unit | baseline | ratio | target | met |\n|---|---|---|---|---|---|---|---|\n');
  for (const f of all) {
    process.stdout.write(
      `| ${f.bench} | ${f.name} | ${fmt(f.value)} | ${f.unit} | ${f.baseline ? `${f.baseline.name}: ${fmt(f.baseline.value)}` : ''} | ${fmt(f.ratio)} | ${f.target ?? ''} | ${f.met === undefined ? '' : f.met ? 'yes' : 'no'} |\n`,
    );
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
