/**
 * Test-only workflows that drive `callService` through real Temporal retries
 * and cancellation. Bundled separately by activity.test.ts.
 */
import { ActivityFailure, ApplicationFailure, CancellationScope, isCancellation, proxyActivities, sleep } from '@temporalio/workflow';
import type { CoordinatorActivities } from '../../src/activities/coordinator/activities';
import type { CoordinatorRequest } from '../../src/activities/coordinator/coordinator';

export type CallResult =
  | { ok: true; status: number; body: string }
  | { ok: false; type?: string | null; nonRetryable?: boolean | null; message: string; cancelled?: boolean };

function describeFailure(err: unknown): CallResult {
  if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure) {
    return { ok: false, type: err.cause.type, nonRetryable: err.cause.nonRetryable, message: err.cause.message };
  }
  if (isCancellation(err)) return { ok: false, cancelled: true, message: String((err as Error).message) };
  throw err;
}

/** One callService with a slow retry policy: a fast retry proves nextRetryDelay came from the failure. */
export async function callServiceOnce(serviceId: string, request: CoordinatorRequest, maximumAttempts: number): Promise<CallResult> {
  const { callService } = proxyActivities<CoordinatorActivities>({
    startToCloseTimeout: '10s',
    retry: { initialInterval: '60s', backoffCoefficient: 1, maximumAttempts },
  });
  try {
    const res = await callService(serviceId, request);
    return { ok: true, status: res.status, body: res.body };
  } catch (err) {
    return describeFailure(err);
  }
}

/** Starts callService and cancels it after `cancelAfterMs`, waiting for the activity to acknowledge. */
export async function callServiceThenCancel(serviceId: string, request: CoordinatorRequest, cancelAfterMs: number): Promise<CallResult> {
  const { callService } = proxyActivities<CoordinatorActivities>({
    startToCloseTimeout: '60s',
    heartbeatTimeout: '1s',
    cancellationType: 'WAIT_CANCELLATION_COMPLETED',
    retry: { maximumAttempts: 1 },
  });
  const scope = new CancellationScope();
  const call = scope.run(() => callService(serviceId, request));
  await sleep(cancelAfterMs);
  scope.cancel();
  try {
    const res = await call;
    return { ok: true, status: res.status, body: res.body };
  } catch (err) {
    return describeFailure(err);
  }
}
