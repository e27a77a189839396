/**
 * The breaker workflow's one side effect: telling the world about a
 * transition (metrics counter on the worker that ran it, and the alerting
 * path). Run once per transition by the workflow, so a counter summed over
 * every worker process counts each transition once.
 */
import type { BreakerTransition } from '../domain/breaker';
import type { BreakerMetrics } from './breaker-metrics';

export interface BreakerActivityDeps {
  /** Counters to bump (see `registerBreakerMetrics`); optional. */
  metrics?: BreakerMetrics;
  /**
   * Hands a transition to the alerting path (the health area's alert
   * delivery). Optional; when absent, transitions only reach metrics and the
   * workflow's history. Must be idempotent on (serviceId, generation): the
   * activity may be retried.
   */
  onTransition?: (transition: BreakerTransition) => Promise<void>;
}

export function createBreakerActivities(deps: BreakerActivityDeps = {}) {
  return {
    /**
     * Records one breaker transition: bumps the transitions counter and passes
     * it to `deps.onTransition`. Carries only the service id and figures, never secrets.
     */
    async breakerTransitioned(transition: BreakerTransition): Promise<void> {
      deps.metrics?.observeTransition(transition);
      await deps.onTransition?.(transition);
    },
  };
}

export type BreakerActivities = ReturnType<typeof createBreakerActivities>;
