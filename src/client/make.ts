/**
 * Client facade for the Make.com workflows: run a scenario to its end,
 * deliver a webhook event to its subscribers, list and redeliver dead letters.
 * Every function takes a Temporal `Client` first; workflow ids are meaningful
 * and stable (`make-run/...`, `webhook/<eventId>`, `webhook-redeliver/<id>`).
 */
import { randomUUID } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { DEFAULT_TASK_QUEUE } from '../domain/constants';
import { resultOf } from './failure';
import type { WebhookDeadLetter } from '../activities/make/webhooks';
import type {
  DeliverWebhookInput,
  DeliverWebhookResult,
  MakeScenarioRunResult,
  RedeliverInput,
  RunMakeScenarioInput,
  SubscriberDelivery,
  deliverWebhook,
  makeScenarioRun,
  redeliverWebhookDeadLetter as redeliverWorkflow,
  webhookDeadLetters,
} from '../workflows/make';

export type { DeliverWebhookInput, DeliverWebhookResult, MakeScenarioRunResult, RunMakeScenarioInput, SubscriberDelivery, WebhookDeadLetter };

export interface StartOptions {
  /** Default `integration-agent` (DEFAULT_TASK_QUEUE). */
  taskQueue?: string;
}

/**
 * Runs a Make scenario through the `makeScenarioRun` workflow and waits for its end.
 * @param opts.key makes the workflow id `make-run/<serviceId>/<scenarioId>/<key>` (default a random uuid); the same key never runs twice.
 * @throws WorkflowRunFailedError (a WorkflowFailedError naming the run, the step and the cause) when the execution ends in ERROR or is not done within `timeoutMs`.
 */
export async function runMakeScenario(client: Client, input: RunMakeScenarioInput, opts: StartOptions & { key?: string } = {}): Promise<MakeScenarioRunResult> {
  const workflowId = `make-run/${input.serviceId}/${input.scenarioId}/${opts.key ?? randomUUID()}`;
  return resultOf(workflowId, client.workflow.execute<typeof makeScenarioRun>('makeScenarioRun', { taskQueue: opts.taskQueue ?? DEFAULT_TASK_QUEUE, workflowId, args: [input] }));
}

/**
 * Starts `deliverWebhook` with id `webhook/<eventId>`. A second start for the
 * same event id is refused by Temporal (the event is delivered once).
 * @returns the handle; `await handle.result()` gives per-subscriber outcomes.
 * @throws Error "delivery of event X was already started" on a duplicate event id (running or done).
 */
export async function deliverWebhookEvent(client: Client, input: DeliverWebhookInput, opts: StartOptions = {}): Promise<WorkflowHandle<typeof deliverWebhook>> {
  const workflowId = `webhook/${input.eventId}`;
  try {
    return await client.workflow.start<typeof deliverWebhook>('deliverWebhook', {
      taskQueue: opts.taskQueue ?? DEFAULT_TASK_QUEUE,
      workflowId,
      args: [input],
      // An event is delivered once; failed subscribers go through dead letters.
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new Error(`delivery of event ${input.eventId} was already started (workflow id ${workflowId}); redeliver failed subscribers with "integration-agent webhooks dead-letters --redeliver ID"`);
    }
    throw err;
  }
}

/**
 * Lists webhook dead letters, newest first (through a short workflow, so the
 * worker's store is read wherever the worker runs).
 * @param opts.state `open` (default), `resolved` or `all`; `limit` 1..1000 (default 100).
 */
export async function listWebhookDeadLetters(client: Client, opts: StartOptions & { state?: 'open' | 'resolved' | 'all'; limit?: number } = {}): Promise<WebhookDeadLetter[]> {
  const workflowId = `webhook-dead-letters/${randomUUID()}`;
  return resultOf(
    workflowId,
    client.workflow.execute<typeof webhookDeadLetters>('webhookDeadLetters', { taskQueue: opts.taskQueue ?? DEFAULT_TASK_QUEUE, workflowId, args: [{ state: opts.state, limit: opts.limit }] }),
  );
}

/**
 * Redelivers one dead letter (workflow id `webhook-redeliver/<id>`) and waits
 * for the outcome: delivered (the dead letter is resolved) or not (it is
 * updated with the new attempts and last error).
 * @throws Error "redelivery of dead letter N is already running" when one is in flight.
 */
export async function redeliverWebhookDeadLetter(client: Client, input: RedeliverInput, opts: StartOptions = {}): Promise<SubscriberDelivery & { eventId: string }> {
  const workflowId = `webhook-redeliver/${input.id}`;
  try {
    const handle = await client.workflow.start<typeof redeliverWorkflow>('redeliverWebhookDeadLetter', {
      taskQueue: opts.taskQueue ?? DEFAULT_TASK_QUEUE,
      workflowId,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    });
    return await resultOf(workflowId, handle.result());
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new Error(`redelivery of dead letter ${input.id} is already running (workflow id ${workflowId})`);
    throw err;
  }
}
