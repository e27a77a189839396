/**
 * `integration-agent webhooks dead-letters [--state open|resolved|all] [--limit N] [--redeliver ID | --redeliver-all] [--json]`:
 * lists the webhook deliveries that failed after their final attempt, and
 * redelivers them (same Idempotency-Key, so receivers can drop duplicates).
 * Exit 1 when a redelivery still failed.
 */
import type { Client } from '@temporalio/client';
import { describeWorkflowFailure, isWorkflowFailure } from '../../failure';
import type { Command } from 'commander';
import { loadConfig } from '../../../worker/config';
import { connectClient } from '../../connect';
import { listWebhookDeadLetters, redeliverWebhookDeadLetter, type SubscriberDelivery, type WebhookDeadLetter } from '../../make';
import { CliError, emit } from '../context';
import { formatTable } from '../table';

const STATES = ['open', 'resolved', 'all'] as const;
type State = (typeof STATES)[number];

/** The human table of dead letters. */
export function formatDeadLetters(rows: WebhookDeadLetter[], state: State): string {
  if (rows.length === 0) return state === 'open' ? 'no open dead letters: every webhook event was delivered' : `no ${state === 'all' ? '' : `${state} `}dead letters`;
  return formatTable(
    ['ID', 'EVENT', 'SUBSCRIBER', 'ATTEMPTS', 'LAST ERROR', 'FAILED AT', 'STATE'],
    rows.map((d) => [
      String(d.id),
      d.eventId,
      d.subscriberId,
      String(d.attempts),
      d.lastError.length > 80 ? `${d.lastError.slice(0, 79)}…` : d.lastError,
      new Date(d.updatedAt).toISOString(),
      d.resolvedAt ? `delivered (${d.resolvedBy ?? ''})` : 'open',
    ]),
  );
}

function parseId(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1) throw new CliError(`invalid dead letter id "${v}": use the ID column of \`integration-agent webhooks dead-letters\``);
  return n;
}

function parseLimit(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 1000) throw new CliError(`invalid --limit "${v}": use an integer from 1 to 1000`);
  return n;
}

/** One line for a failed workflow (its id, step and root cause), or the error's message. */
function workflowMessage(err: unknown): string {
  return isWorkflowFailure(err) ? describeWorkflowFailure(err) : (err as Error).message;
}

type Redelivery = SubscriberDelivery & { eventId: string; id: number };

async function redeliver(client: Client, id: number, taskQueue: string): Promise<Redelivery> {
  try {
    return { id, ...(await redeliverWebhookDeadLetter(client, { id }, { taskQueue })) };
  } catch (err) {
    throw new CliError(`redelivery of dead letter ${id} could not run: ${workflowMessage(err)}`);
  }
}

const formatRedelivery = (r: Redelivery) =>
  r.delivered
    ? `dead letter ${r.id} (event ${r.eventId}, subscriber ${r.subscriberId}): delivered to ${r.endpoint} after ${r.attempts} attempt(s)`
    : `dead letter ${r.id} (event ${r.eventId}, subscriber ${r.subscriberId}): still failing after ${r.attempts} attempt(s): ${r.lastError ?? ''}`;

export function register(program: Command): void {
  const webhooks = program.command('webhooks').description('webhook deliveries (deliverWebhook workflow)');
  webhooks
    .command('dead-letters')
    .description('list webhook deliveries that failed after their final attempt; --redeliver sends them again')
    .option('--state <state>', `which dead letters: ${STATES.join(', ')}`, 'open')
    .option('--limit <n>', 'how many, newest first (1..1000)', '100')
    .option('--redeliver <id>', 'redeliver one dead letter and wait for the outcome')
    .option('--redeliver-all', 'redeliver every open dead letter (one after another)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { state: string; limit: string; redeliver?: string; redeliverAll?: boolean; json?: boolean }) => {
      if (!(STATES as readonly string[]).includes(opts.state)) throw new CliError(`invalid --state "${opts.state}": use one of ${STATES.join(', ')}`);
      if (opts.redeliver !== undefined && opts.redeliverAll) throw new CliError('use either --redeliver <id> or --redeliver-all, not both');
      const state = opts.state as State;
      const limit = parseLimit(opts.limit);
      const id = opts.redeliver !== undefined ? parseId(opts.redeliver) : undefined;
      const config = loadConfig();
      const client = await connectClient(config);
      try {
        if (id !== undefined || opts.redeliverAll) {
          const ids = id !== undefined ? [id] : (await listWebhookDeadLetters(client, { taskQueue: config.taskQueue, state: 'open', limit })).map((d) => d.id);
          const results: Redelivery[] = [];
          for (const one of ids) results.push(await redeliver(client, one, config.taskQueue));
          emit(opts, id !== undefined ? results[0] : results, () => (results.length ? results.map(formatRedelivery).join('\n') : 'no open dead letters to redeliver'));
          if (results.some((r) => !r.delivered)) process.exitCode = 1;
          return;
        }
        let rows: WebhookDeadLetter[];
        try {
          rows = await listWebhookDeadLetters(client, { taskQueue: config.taskQueue, state, limit });
        } catch (err) {
          throw new CliError(`could not list dead letters: ${workflowMessage(err)}`);
        }
        emit(opts, rows, () => formatDeadLetters(rows, state));
      } finally {
        await client.connection.close();
      }
    });
}
