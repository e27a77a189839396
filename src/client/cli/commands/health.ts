/**
 * `integration-agent status [service] [--watch] [--json]` and
 * `integration-agent schedule apply|pause|resume|trigger|describe`.
 */
import type { Client } from '@temporalio/client';
import { Option, type Command } from 'commander';
import { tryParseDuration } from '../../../domain/duration';
import { listBreakers } from '../../breakers';
import {
  applySweepSchedule,
  DEFAULT_SWEEP_SCHEDULE_ID,
  describeSweepSchedule,
  getHealth,
  listHealth,
  listOfflineProbers,
  type OfflineProber,
  pauseSweepSchedule,
  resumeSweepSchedule,
  triggerSweepSchedule,
  type ServiceHealthView,
  type SweepScheduleInfo,
} from '../../health';
import type { Config } from '../../../worker/config';
import { CliError, emit, withClient } from '../context';
import { requireKnownId } from '../registry-source';
import { formatTable } from '../table';

/** One status row: the service's health joined with its breaker state. */
export interface StatusRow extends ServiceHealthView {
  breakerState?: string;
}

const ms = (v: number | undefined) => (v === undefined ? '-' : v >= 100 ? `${Math.round(v)}ms` : `${v.toFixed(1)}ms`);
const pct = (v: number | undefined) => (v === undefined ? '-' : `${v >= 99.99 && v < 100 ? v.toFixed(3) : v.toFixed(2)}%`);

/** The human table: service, status, root cause, p50/p95/p99, availability 24h vs SLA, breaker. */
export function formatStatus(rows: StatusRow[]): string {
  if (rows.length === 0) return 'no service has been swept yet: run `integration-agent sweep` or `integration-agent schedule apply`';
  return formatTable(
    ['SERVICE', 'STATUS', 'ROOT CAUSE', 'P50', 'P95', 'P99', 'AVAIL 24H', 'SLA', 'BREAKER'],
    rows.map((r) => {
      const f = r.figures;
      const a = f?.availability['24h'];
      const sla = f?.slaAvailability;
      const below = a !== undefined && sla !== undefined && a < sla ? ' (below)' : '';
      return [
        r.serviceId,
        r.status,
        r.rootCause ?? (r.status === 'unhealthy' ? (r.lastProbe?.failureKind ?? '') : ''),
        ms(f?.p50Ms),
        ms(f?.p95Ms),
        ms(f?.p99Ms),
        pct(a) + below,
        sla === undefined ? '-' : `${sla}%`,
        r.breakerState ?? '-',
      ];
    }),
  );
}

/**
 * Commander parser for a duration option: a number with a unit (`500ms`,
 * `2s`, `1m`, `1h30m`), more than 0, in ms. A bare number is refused rather
 * than guessed (seconds? milliseconds?), with both readings offered.
 */
/** Lines under the status table for worker processes now offline (none: empty). */
export function formatOfflineProbers(probers: readonly OfflineProber[]): string {
  return probers
    .map((p) => `\nprober ${p.identity} OFFLINE since ${p.since}: its connection-level failures count as no result, not downtime (alert ${p.incidentId})`)
    .join('');
}

export function durationOption(name: string) {
  return (v: string): number => {
    if (/^\s*\d+(\.\d+)?\s*$/.test(v)) throw new CliError(`${name}: "${v.trim()}" has no unit: write ${v.trim()}ms or ${v.trim()}s (a duration takes a unit: 500ms, 2s, 1m)`);
    const parsed = tryParseDuration(v);
    if (parsed === undefined || parsed <= 0) throw new CliError(`${name}: invalid duration "${v}": use e.g. 500ms, 2s, 1m (more than 0)`);
    return parsed;
  };
}

function intOption(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new CliError(`${name}: expected a whole number >= 1, got "${v}"`);
    return n;
  };
}

async function statusRows(client: Client, config: Config, serviceId?: string): Promise<StatusRow[]> {
  let rows: StatusRow[];
  if (serviceId) {
    const one = await getHealth(client, serviceId, { taskQueue: config.taskQueue });
    if (!one) {
      // Nothing recorded: a typo (did-you-mean from the registry), or a service not swept yet.
      await requireKnownId(client, config, 'service', serviceId);
      throw new CliError(`no health recorded for service "${serviceId}": run \`integration-agent sweep\` (or \`integration-agent schedule apply\`)`);
    }
    rows = [one];
  } else {
    rows = await listHealth(client, { taskQueue: config.taskQueue });
  }
  let breakers: Map<string, string> = new Map();
  try {
    breakers = new Map((await listBreakers(client)).map((b) => [b.serviceId, b.state]));
  } catch {
    // Breakers are optional in this view; health alone is still worth showing.
  }
  return rows.map((r) => {
    const b = breakers.get(r.serviceId);
    return b ? { ...r, breakerState: b } : r;
  });
}

function formatSchedule(i: SweepScheduleInfo): string {
  const lines = [
    `schedule ${i.scheduleId}: ${i.paused ? 'PAUSED' : 'active'}${i.note ? ` (${i.note})` : ''}`,
    `${i.mode === 'continuous' ? 'continuous monitoring, a window' : 'a sweep'} every ${i.intervalMs === undefined ? '?' : `${i.intervalMs / 1000}s`}, overlap ${i.overlap}, catch-up window ${i.catchupWindowMs / 1000}s, task queue ${i.taskQueue ?? '?'}, concurrency ${i.concurrency ?? 'default'}`,
    `next: ${i.nextRuns.join(', ') || '-'}`,
    `running: ${i.runningWorkflows.join(', ') || '-'}`,
    `recent: ${i.recentRuns.map((r) => r.workflowId).join(', ') || '-'}`,
  ];
  return lines.join('\n');
}

export function register(program: Command): void {
  program
    .command('status [service]')
    .description('health of every service (or one): status, root cause, p50/p95/p99, availability 24h vs SLA, breaker state')
    .option('--watch', 'refresh until interrupted')
    .addOption(new Option('--every <duration>', 'refresh period with --watch, with a unit (500ms, 2s, 1m)').argParser(durationOption('--every')).default(2000, '2s'))
    .option('--json', 'print JSON')
    .action(async (serviceId: string | undefined, opts: { watch?: boolean; every: number; json?: boolean }) => {
      await withClient(async (client, config) => {
        for (;;) {
          const rows = await statusRows(client, config, serviceId);
          // Text only (the JSON stays the rows): a worker whose own network is down says so under the table.
          const probers = opts.json ? [] : await listOfflineProbers(client, { taskQueue: config.taskQueue }).catch(() => []);
          if (opts.watch && !opts.json && process.stdout.isTTY) process.stdout.write('\x1b[2J\x1b[H');
          emit(opts, rows, () => (opts.watch ? `${new Date().toISOString()}\n` : '') + formatStatus(rows) + formatOfflineProbers(probers));
          if (!opts.watch) return;
          await new Promise((r) => setTimeout(r, opts.every));
        }
      });
    });

  const schedule = program.command('schedule').description('the Temporal Schedule that runs health sweeps');
  const id = (o: { id?: string }) => o.id ?? DEFAULT_SWEEP_SCHEDULE_ID;
  schedule
    .command('apply')
    .description('create or update the monitoring schedule: continuous (each service at its own interval, results as they come) or sweep (all at once)')
    .option('--id <scheduleId>', 'schedule id', DEFAULT_SWEEP_SCHEDULE_ID)
    .addOption(new Option('--mode <mode>', 'continuous: a window every --interval in which each service is probed at its healthCheck.interval; sweep: every service once per --interval').choices(['continuous', 'sweep']).default('continuous'))
    .addOption(new Option('--interval <duration>', 'window length (continuous) or time between sweeps (sweep); default 1m / 30s').argParser(durationOption('--interval')))
    .option('--concurrency <n>', 'probes in flight per sweep (default 50)', intOption('--concurrency'))
    .addOption(new Option('--catchup-window <duration>', 'how late a missed sweep may still run').argParser(durationOption('--catchup-window')).default(60_000, '1m'))
    .option('--paused', 'create it paused')
    .option('--json', 'print JSON')
    .action(async (o: { id?: string; mode: 'continuous' | 'sweep'; interval?: number; concurrency?: number; catchupWindow: number; paused?: boolean; json?: boolean }) => {
      await withClient(async (client, { taskQueue }) => {
        let r: Awaited<ReturnType<typeof applySweepSchedule>>;
        const intervalMs = o.interval ?? (o.mode === 'continuous' ? 60_000 : 30_000);
        if (intervalMs < 1000) throw new CliError(`schedule apply: --interval must be at least 1s, got ${intervalMs}ms`);
        try {
          r = await applySweepSchedule(client, {
            scheduleId: id(o),
            taskQueue,
            mode: o.mode,
            intervalMs,
            catchupWindowMs: o.catchupWindow,
            ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
            ...(o.paused ? { paused: true } : {}),
          });
        } catch (err) {
          if (err instanceof RangeError) throw new CliError(`schedule apply: ${err.message}`);
          throw err;
        }
        emit(o, { ...r, mode: o.mode, intervalMs }, () =>
          o.mode === 'continuous'
            ? `schedule ${r.scheduleId} ${r.result}: continuous monitoring (each service at its own interval), a window every ${intervalMs / 1000}s on task queue ${taskQueue}`
            : `schedule ${r.scheduleId} ${r.result}: a sweep every ${intervalMs / 1000}s on task queue ${taskQueue}`,
        );
      });
    });
  const simple = (name: string, what: string, fn: (c: Client, id: string) => Promise<void>) =>
    schedule
      .command(name)
      .description(what)
      .option('--id <scheduleId>', 'schedule id', DEFAULT_SWEEP_SCHEDULE_ID)
      .option('--json', 'print JSON')
      .action(async (o: { id?: string; json?: boolean }) => {
        await withClient(async (client) => {
          await wrapNotFound(() => fn(client, id(o)));
          emit(o, { scheduleId: id(o), done: name }, () => `schedule ${id(o)}: ${name} done`);
        });
      });
  simple('pause', 'pause sweeps (running ones finish)', (c, i) => pauseSweepSchedule(c, i));
  simple('resume', 'resume sweeps', (c, i) => resumeSweepSchedule(c, i));
  simple('trigger', 'run one sweep now through the schedule', (c, i) => triggerSweepSchedule(c, i));
  schedule
    .command('describe')
    .description('show the schedule: interval, policies, next and recent sweeps')
    .option('--id <scheduleId>', 'schedule id', DEFAULT_SWEEP_SCHEDULE_ID)
    .option('--json', 'print JSON')
    .action(async (o: { id?: string; json?: boolean }) => {
      await withClient(async (client) => {
        const info = await wrapNotFound(() => describeSweepSchedule(client, id(o)));
        emit(o, info, () => formatSchedule(info));
      });
    });
}

async function wrapNotFound<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if ((err as Error).name === 'ScheduleNotFoundError') throw new CliError((err as Error).message);
    throw err;
  }
}
