/**
 * `integration-agent sweep [--json]`: run one health sweep now and print its result.
 * Exit 0 when the sweep ran (whatever the services' health), 1 when it could not.
 */
import type { Command } from 'commander';
import { requireWorker } from '../../connect';
import { runSweep, type HealthSweepResult } from '../../health';
import { emit, withClient } from '../context';
import { formatTable } from '../table';

/** The human form of a sweep result: one row per service. */
export function formatSweep(result: HealthSweepResult): string {
  const rows = result.services.map((s) => [s.id, s.status, `${Math.round(s.latencyMs)}ms`, s.status === 'impacted' ? `root cause: ${s.rootCause}` : [s.failureKind, s.detail].filter(Boolean).join(': ')]);
  const omitted = result.omitted ? `\n${result.omitted} healthy service(s) not listed (\`integration-agent status\` shows every service)` : '';
  return `sweep ${result.workflowId} (registry ${result.registryVersion})\n` + formatTable(['SERVICE', 'STATUS', 'LATENCY', 'CAUSE'], rows) + omitted;
}

export function register(program: Command): void {
  program
    .command('sweep')
    .description('probe every service in the registry now (through Temporal) and print each status')
    .option('--concurrency <n>', 'probes at once', (v) => Number.parseInt(v, 10))
    .option('--json', 'print the result as JSON')
    .action(async (opts: { json?: boolean; concurrency?: number }) => {
      await withClient(async (client, config) => {
        await requireWorker(client, config.taskQueue);
        const result = await runSweep(client, { taskQueue: config.taskQueue, concurrency: opts.concurrency });
        emit(opts, result, () => formatSweep(result));
      });
    });
}
