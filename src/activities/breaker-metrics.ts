/**
 * Prometheus metrics of the circuit breakers (prom-client):
 *
 * - `integration_agent_breaker_state{service_id}` gauge: 0 CLOSED, 1 OPEN,
 *   2 HALF_OPEN, 3 FORCED_OPEN, 4 DISABLED, as this process's gate last saw it;
 * - `integration_agent_breaker_transitions_total{service_id,from,to,reason}`
 *   counter: bumped by the `breakerTransitioned` activity, which runs once per
 *   transition on one worker, so `sum` over processes is exact;
 * - `integration_agent_breaker_rejected_calls_total{service_id,state}` counter:
 *   calls this process's gate rejected.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { BREAKER_STATE_CODES, type BreakerStateName, type BreakerTransition } from '../domain/breaker';

export interface BreakerMetrics {
  /** Sets the state gauge of `serviceId`. */
  observeState(serviceId: string, state: BreakerStateName): void;
  /** Counts one transition. */
  observeTransition(t: BreakerTransition): void;
  /** Counts one rejected call. */
  observeRejected(serviceId: string, state: BreakerStateName): void;
}

/**
 * Creates the three breaker metrics and registers them on `registry`.
 * @throws Error from prom-client when metrics of these names are already registered there.
 */
export function registerBreakerMetrics(registry: Registry, prefix = 'integration_agent_'): BreakerMetrics {
  const state = new Gauge({
    name: `${prefix}breaker_state`,
    help: 'Circuit breaker state per service: 0 CLOSED, 1 OPEN, 2 HALF_OPEN, 3 FORCED_OPEN, 4 DISABLED',
    labelNames: ['service_id'] as const,
    registers: [registry],
  });
  const transitions = new Counter({
    name: `${prefix}breaker_transitions_total`,
    help: 'Circuit breaker transitions',
    labelNames: ['service_id', 'from', 'to', 'reason'] as const,
    registers: [registry],
  });
  const rejected = new Counter({
    name: `${prefix}breaker_rejected_calls_total`,
    help: 'Calls rejected by the circuit breaker gate of this process',
    labelNames: ['service_id', 'state'] as const,
    registers: [registry],
  });
  return {
    observeState: (serviceId, s) => state.set({ service_id: serviceId }, BREAKER_STATE_CODES[s]),
    observeTransition: (t) => transitions.inc({ service_id: t.serviceId, from: t.from, to: t.to, reason: t.reason }),
    observeRejected: (serviceId, s) => rejected.inc({ service_id: serviceId, state: s }),
  };
}
