/**
 * Circuit breaker commands:
 *
 * - `integration-agent breakers [--json]`: a table of every running breaker.
 * - `integration-agent breaker show ID [--json]`: one breaker's full state.
 * - `integration-agent breaker open|close|reset|disable ID [--note TEXT] [--json]`:
 *   operator commands (force open, force close, reset, disable). A breaker
 *   that is not running yet is started, with the registry's options for the
 *   service.
 *
 * A service id the registry does not have (INTEGRATION_AGENT_REGISTRY's file,
 * else the workers' registry, asked through Temporal) is refused with a
 * did-you-mean and nothing is started, unless its breaker is already running.
 */
import type { Command } from 'commander';
import { breakerRunning, disable, forceClose, forceOpen, getBreaker, listBreakers, reset, type BreakerInfo, type BreakerSummary, type OperatorOptions } from '../../breakers';
import type { BreakerTransition, BreakerView } from '../../../domain/breaker';
import { formatDuration } from '../../../domain/duration';
import { CliError, emit, withClient } from '../context';
import { requireKnownId } from '../registry-source';
import { formatTable } from '../table';

const pct = (n: number) => `${Math.round(n * 10) / 10}%`;
const ago = (atMs: number, now: number) => `${formatDuration(Math.max(0, Math.round((now - atMs) / 1000) * 1000))} ago`;

function describeTransition(t: BreakerTransition | undefined, now: number): string {
  if (!t) return '-';
  return `${t.from}->${t.to} (${t.reason}) ${ago(t.atMs, now)}`;
}

/** The human form of `breakers`. */
export function formatBreakers(rows: BreakerSummary[], now = Date.now()): string {
  if (rows.length === 0) return 'no breakers running (a breaker starts with the first call outcome or operator command for its service)';
  return formatTable(
    ['SERVICE', 'STATE', 'GEN', 'CALLS', 'FAILURES', 'SLOW', 'NEXT TRIAL', 'LAST TRANSITION'],
    rows.map((r) => [
      r.serviceId,
      r.state,
      r.generation < 0 ? '?' : String(r.generation),
      String(r.calls),
      pct(r.failureRate),
      pct(r.slowCallRate),
      r.state === 'OPEN' && r.openUntilMs ? `in ${formatDuration(Math.max(0, Math.ceil((r.openUntilMs - now) / 1000) * 1000))}` : '-',
      describeTransition(r.lastTransition, now),
    ]),
  );
}

/** The human form of one breaker's state. */
export function formatBreaker(b: BreakerView & { running?: boolean; workflowId?: string }, now = Date.now()): string {
  const o = b.options;
  const lines = [
    `breaker ${b.serviceId}: ${b.state} (generation ${b.generation}, since ${new Date(b.sinceMs).toISOString()})${b.running === false ? ' - not running yet' : ''}`,
  ];
  if (b.state === 'OPEN' && b.openUntilMs) lines.push(`next trial at ${new Date(b.openUntilMs).toISOString()} (in ${formatDuration(Math.max(0, b.openUntilMs - now))}); consecutive trips ${b.consecutiveTrips}`);
  if (b.state === 'HALF_OPEN' && b.halfOpen) {
    lines.push(`trials: ${b.halfOpen.permits.length} running, ${b.halfOpen.successes} succeeded of ${o.permittedNumberOfCallsInHalfOpenState}, ${b.halfOpen.abandoned} given up`);
  }
  const window = o.slidingWindowType === 'COUNT_BASED' ? `last ${o.slidingWindowSize} calls` : `last ${formatDuration(o.slidingWindowDurationMs)}`;
  lines.push(
    `window (${window}): ${b.rates.calls} calls, failure rate ${pct(b.rates.failureRate)} (opens at ${o.failureRateThreshold}%), ` +
      `slow-call rate ${pct(b.rates.slowCallRate)} (opens at ${o.slowCallRateThreshold}%, slow >= ${formatDuration(o.slowCallDurationThresholdMs)}), ` +
      `minimum ${o.minimumNumberOfCalls} calls${o.minimumNumberOfReporters > 1 ? ` from ${o.minimumNumberOfReporters} reporters (now ${b.rates.reporters})` : ''}`,
  );
  lines.push(`counters: ${b.counters.recorded} recorded, ${b.counters.ignored} ignored, ${b.counters.stale} stale, ${b.counters.permitsGranted} permits granted, ${b.counters.permitsDenied} denied`);
  if (b.transitions.length > 0) {
    lines.push('last transitions:');
    lines.push(
      formatTable(
        ['AT', 'FROM', 'TO', 'REASON', 'GEN', 'DETAIL'],
        b.transitions
          .slice()
          .reverse()
          .map((t) => [
            new Date(t.atMs).toISOString(),
            t.from,
            t.to,
            t.reason,
            String(t.generation),
            [t.failureRate !== undefined ? `failure rate ${t.failureRate}% of ${t.calls}` : '', t.openUntilMs ? `until ${new Date(t.openUntilMs).toISOString()}` : '', t.note ?? ''].filter(Boolean).join('; '),
          ]),
      ),
    );
  }
  return lines.join('\n');
}

function checkId(id: string): void {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(id)) throw new CliError(`invalid service id "${id}": use the id from the registry (lowercase letters, digits and "-")`);
}

export function register(program: Command): void {
  program
    .command('breakers')
    .description("list every service's circuit breaker: state, window, next trial, last transition")
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      const rows = await withClient((client) => listBreakers(client));
      emit(opts, rows, () => formatBreakers(rows));
    });

  const breaker = program.command('breaker').description('show or operate one circuit breaker (by service id)');
  breaker
    .command('show <id>')
    .description("a service's breaker: state, generation, window counts and rates, OPEN end, last transitions")
    .option('--json', 'print as JSON')
    .action(async (id: string, opts: { json?: boolean }) => {
      checkId(id);
      const view: BreakerInfo = await withClient(async (client, config) => {
        const v = await getBreaker(client, id);
        // A breaker not running yet is shown only for a service the registry has (else a typo would read as a fresh CLOSED breaker).
        if (!v.running) await requireKnownId(client, config, 'service', id);
        return v;
      });
      emit(opts, view, () => formatBreaker(view));
    });

  const operators: Array<[string, string, typeof forceOpen]> = [
    ['open', 'force the breaker open (FORCED_OPEN): every call is rejected until close or reset', forceOpen],
    ['close', 'force the breaker closed, with an empty window (keeps the trip count)', forceClose],
    ['reset', 'close the breaker, empty its window and clear the trip count', reset],
    ['disable', 'disable the breaker (DISABLED): every call admitted, nothing recorded, until close or reset', disable],
  ];
  for (const [name, description, command] of operators) {
    breaker
      .command(`${name} <id>`)
      .description(description)
      .option('--note <text>', 'why (kept in the transition record and alert; no secrets)')
      .option('--json', 'print the new state as JSON')
      .action(async (id: string, opts: { json?: boolean; note?: string }) => {
        checkId(id);
        if (opts.note !== undefined && opts.note.length > 500) throw new CliError(`--note is ${opts.note.length} characters; keep it to 500`);
        const view = await withClient(async (client, config) => {
          // A running breaker (even of a service since removed from the registry) can be operated;
          // none is started for a service the registry does not have.
          const options = (await breakerRunning(client, id)) ? undefined : (await requireKnownId(client, config, 'service', id)).circuitBreaker;
          const o: OperatorOptions = { taskQueue: config.taskQueue, note: opts.note, options };
          return command(client, id, o);
        });
        emit(opts, view, () => formatBreaker(view));
      });
  }
}
