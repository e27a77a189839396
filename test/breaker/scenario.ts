/**
 * Breaker scenarios shared by the workflow tests and the history capture
 * script (test/breaker/capture-histories.ts).
 */
import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { forceOpen } from '../../src/client/breakers';
import type { BreakerOptions, ReportedOutcome } from '../../src/domain/breaker';
import { workflowIds } from '../../src/domain/constants';
import { acquirePermitUpdate, breakerStateQuery, circuitBreaker, recordOutcomesSignal, type BreakerWorkflowInput } from '../../src/workflows/breaker';

export const fast: Partial<BreakerOptions> = {
  slidingWindowSize: 10,
  minimumNumberOfCalls: 4,
  failureRateThreshold: 50,
  waitDurationInOpenStateMs: 1500,
  permittedNumberOfCallsInHalfOpenState: 3,
  maxWaitDurationInHalfOpenStateMs: 60_000,
};

export function failures(n: number, generation = 0): ReportedOutcome[] {
  return Array.from({ length: n }, () => ({ ok: false, status: 503, latencyMs: 5, startedAt: Date.now(), generation }));
}

/** Sends outcomes with signal-with-start, as the gate does. */
export async function record(client: Client, taskQueue: string, input: BreakerWorkflowInput, outcomes: ReportedOutcome[], reporter = 'test-worker') {
  return client.workflow.signalWithStart(circuitBreaker, {
    workflowId: workflowIds.breaker(input.serviceId),
    taskQueue,
    args: [input],
    signal: recordOutcomesSignal,
    signalArgs: [{ reporter, outcomes }],
  });
}

/** Polls `fn` every 50 ms until it returns a value; throws after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A whole life: trip (CLOSED -> OPEN), timer (-> HALF_OPEN), one trial
 * permit and its success (-> CLOSED), an operator's force open, then a
 * continue-as-new. Needs a worker on `taskQueue`; a previous run of the same
 * service id is terminated first.
 * @returns the first run's id and history (the run ends in continue-as-new).
 */
export async function breakerLifecycle(client: Client, taskQueue: string, serviceId: string): Promise<{ runId: string; history: temporal.api.history.v1.IHistory }> {
  const workflowId = workflowIds.breaker(serviceId);
  await client.workflow
    .getHandle(workflowId)
    .terminate('fresh scenario')
    .catch(() => undefined);
  // maxHistoryEvents is reached by the end of the scenario, so the run continues as new.
  const input: BreakerWorkflowInput = { serviceId, options: { ...fast, waitDurationInOpenStateMs: 300, permittedNumberOfCallsInHalfOpenState: 1 }, maxHistoryEvents: 40 };
  const handle = await record(client, taskQueue, input, failures(4));
  const runId = handle.signaledRunId;
  await waitFor('HALF_OPEN', async () => ((await handle.query(breakerStateQuery)).state === 'HALF_OPEN' ? true : undefined));
  const d = await handle.executeUpdate(acquirePermitUpdate, { args: [{ permitId: 'trial', reporter: 'w1' }] });
  if (!d.granted) throw new Error(`expected a trial permit, got ${JSON.stringify(d)}`);
  await handle.signal(recordOutcomesSignal, { reporter: 'w1', outcomes: [{ ok: true, latencyMs: 2, startedAt: Date.now(), generation: d.generation, permitId: 'trial' }] });
  await waitFor('CLOSED', async () => ((await handle.query(breakerStateQuery)).state === 'CLOSED' ? true : undefined));
  await forceOpen(client, serviceId, { taskQueue, note: 'scenario' });
  for (let i = 0; i < 30; i++) await handle.signal(recordOutcomesSignal, { reporter: 'w1', outcomes: [{ ok: true, latencyMs: 1, startedAt: Date.now() }] });
  await waitFor('continue-as-new', async () => ((await handle.describe()).runId !== runId ? true : undefined));
  const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  await handle.terminate('scenario done');
  return { runId, history };
}
