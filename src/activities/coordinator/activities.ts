/**
 * The generic activity other workflows use to call a registry service:
 * `callService(serviceId, request)`. It passes the activity's cancellation to
 * the coordinator, heartbeats while the call runs (which is also how Temporal
 * delivers cancellation to an activity), and converts failures with
 * `toApplicationFailure`.
 *
 * Its result enters workflow history: do not use it for calls whose response
 * carries secret material (rotation providers call `Coordinator.request`
 * inside their own activities instead).
 */
import { Context } from '@temporalio/activity';
import type { Coordinator, CoordinatorRequest, CoordinatorResponse } from './coordinator';
import { toApplicationFailure, type RetryTiming } from './failure';

/** Options of {@link createCoordinatorActivities}. */
export interface CoordinatorActivityOptions extends RetryTiming {
  /** Heartbeat interval when the activity has no heartbeat timeout, ms; default 5_000. */
  heartbeatIntervalMs?: number;
}

export function createCoordinatorActivities(coordinator: Coordinator, options: CoordinatorActivityOptions = {}) {
  const defaultInterval = options.heartbeatIntervalMs ?? 5_000;
  if (!Number.isFinite(defaultInterval) || defaultInterval <= 0) {
    throw new RangeError(`heartbeatIntervalMs must be a finite number of ms > 0, got ${String(options.heartbeatIntervalMs)}`);
  }
  return {
    /**
     * Calls `serviceId` through the coordinator.
     * @returns status, headers, body, json, endpoint and latencyMs (see CoordinatorResponse).
     * @throws ApplicationFailure: non-retryable for 4xx and other permanent failures, retryable with nextRetryDelay otherwise.
     */
    async callService(serviceId: string, request: CoordinatorRequest): Promise<CoordinatorResponse> {
      const ctx = Context.current();
      const hbTimeout = ctx.info.heartbeatTimeoutMs;
      const intervalMs = hbTimeout ? Math.max(100, Math.min(defaultInterval, hbTimeout / 3)) : defaultInterval;
      const timer = setInterval(() => ctx.heartbeat(), intervalMs);
      try {
        return await coordinator.request(serviceId, request, ctx.cancellationSignal);
      } catch (err) {
        // Cancelled: report the cancellation itself (a CancelledFailure), not a failed call.
        if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
        throw toApplicationFailure(err, { attempt: ctx.info.attempt, method: request.method ?? 'GET', idempotencyKey: request.idempotencyKey }, options);
      } finally {
        clearInterval(timer);
      }
    },
  };
}

export type CoordinatorActivities = ReturnType<typeof createCoordinatorActivities>;
