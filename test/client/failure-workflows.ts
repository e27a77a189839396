/**
 * Test-only workflows whose failures test/client/failure.test.ts describes:
 * an activity whose result is over Temporal's payload limit, an activity that
 * fails for good, and a child that fails. Bundled separately by that test.
 */
import { executeChild, proxyActivities, workflowInfo } from '@temporalio/workflow';

export interface FailureActivities {
  bigResult(bytes: number): Promise<string>;
  refuse(message: string): Promise<void>;
}

const acts = proxyActivities<FailureActivities>({ startToCloseTimeout: '10s', retry: { maximumAttempts: 2, initialInterval: '50ms' } });

export async function returnsTooMuch(bytes: number): Promise<number> {
  return (await acts.bigResult(bytes)).length;
}

export async function activityRefuses(message: string): Promise<void> {
  await acts.refuse(message);
}

export async function childRefuses(message: string): Promise<void> {
  await executeChild(activityRefuses, { args: [message], workflowId: `${workflowInfo().workflowId}/child` });
}
