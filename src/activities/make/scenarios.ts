/**
 * Scenario runs: start a run and read its execution, the two calls the
 * `runMakeScenario` workflow step follows a run with.
 *
 * Why not `responsive: true`: Make then waits at most 40 seconds, and a run
 * that takes longer answers with a time-out error that carries no execution
 * id, so the run could not be followed. A run is therefore started with
 * `responsive: false` (the answer is the execution id at once) and followed
 * with `GET /scenarios/{id}/executions/{executionId}` until it ends, however
 * long it takes.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { MakeExecution } from '../../domain/make';
import { MakeApiError } from './client';
import type { MakeClients } from './clients';
import { toMakeFailure } from './failure';

export interface StartScenarioRunInput {
  serviceId: string;
  scenarioId: number;
  /** Scenario inputs (`data` of the run request). */
  data?: Record<string, unknown>;
}

export interface ScenarioExecutionInput {
  serviceId: string;
  scenarioId: number;
  executionId: string;
}

function ctx(): { signal?: AbortSignal; attempt: number } {
  try {
    const c = Context.current();
    return { signal: c.cancellationSignal, attempt: c.info.attempt };
  } catch {
    return { attempt: 1 };
  }
}

export function createMakeScenarioActivities(clients: MakeClients) {
  return {
    /**
     * `POST /scenarios/{id}/run` (`responsive: false`).
     * @returns the execution id.
     * @throws ApplicationFailure: retryable only for 429 (the run was refused, so
     *   it did not start); any other failure is non-retryable, because a retried
     *   start could run the scenario twice.
     */
    async startMakeScenarioRun(input: StartScenarioRunInput): Promise<{ executionId: string }> {
      const { signal, attempt } = ctx();
      try {
        const { client } = await clients.forService(input.serviceId, signal);
        const r = await client.runScenario(input.scenarioId, input.data, signal);
        if (typeof r?.executionId !== 'string' || !r.executionId) {
          throw ApplicationFailure.nonRetryable(`Make run of scenario ${input.scenarioId} (service ${input.serviceId}) answered without an executionId`, 'MakeBadAnswer');
        }
        return { executionId: r.executionId };
      } catch (err) {
        if (err instanceof MakeApiError && err.info.status !== 429) {
          throw ApplicationFailure.create({ message: err.message, type: `MAKE_HTTP_${err.info.status}`, nonRetryable: true, details: [err.info] });
        }
        // Transport failures: the coordinator's conversion retries a POST without
        // an idempotency key only when the request certainly never left.
        throw toMakeFailure(err, { attempt, method: 'POST' });
      }
    },

    /**
     * `GET /scenarios/{scenarioId}/executions/{executionId}`.
     * @returns `{ status: RUNNING | SUCCESS | WARNING | ERROR, outputs?, error? }`.
     */
    async getMakeScenarioExecution(input: ScenarioExecutionInput): Promise<MakeExecution> {
      const { signal, attempt } = ctx();
      try {
        const { client } = await clients.forService(input.serviceId, signal);
        const e = await client.execution(input.scenarioId, input.executionId, signal);
        const out: MakeExecution = { status: String(e?.status ?? 'UNKNOWN') };
        if (e?.outputs !== undefined) out.outputs = e.outputs;
        if (e?.error) out.error = { message: e.error.message, name: e.error.name };
        return out;
      } catch (err) {
        throw toMakeFailure(err, { attempt, method: 'GET' });
      }
    },
  };
}
