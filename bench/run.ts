/**
 * Runs the benchmarks: `tsx bench/run.ts [name-filter]`.
 * One JSON line per figure on stdout, then a markdown table.
 *
 * Each bench file runs in a process of its own (this script again, with
 * `--only FILE`), so one bench's heap, sockets and timers cannot weigh on
 * the next one's figures.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Figure } from './harness';

/** Runs one bench file in this process; prints its figures as JSON lines. */
async function runOne(file: string): Promise<void> {
  const mod = (await import(join(__dirname, file))) as { default: () => Promise<Figure[]> };
  const figures = await mod.default();
  for (const fig of figures) process.stdout.write(JSON.stringify(fig) + '\n');
}

/** Runs one bench file in a child process; resolves with its figures. */
function runChild(file: string): Promise<Figure[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, __filename, '--only', file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code !== 0) return reject(new Error(`bench ${file} failed (exit ${code ?? signal}); its error is above`));
      resolve(
        out
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Figure),
      );
    });
  });
}

async function main(): Promise<void> {
  const only = process.argv.indexOf('--only');
  if (only >= 0) return runOne(process.argv[only + 1]!);
  const filter = process.argv[2];
  const files = readdirSync(__dirname)
    .filter((f) => f.endsWith('.bench.ts'))
    .filter((f) => !filter || f.includes(filter))
    .sort();
  if (files.length === 0) throw new Error(`no bench matches "${filter}": choose one of ${readdirSync(__dirname).filter((f) => f.endsWith('.bench.ts')).join(', ')}`);
  const all: Figure[] = [];
  for (const f of files) {
    process.stderr.write(`running ${f}\n`);
    const figures = await runChild(f);
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
