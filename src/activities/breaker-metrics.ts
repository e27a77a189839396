/**
 * Prometheus metrics of the circuit breakers (prom-client):
 *
 * - `integration_agent_breaker_state{service}` gauge: 0 CLOSED, 1 OPEN,
 *   2 HALF_OPEN, 3 FORCED_OPEN, 4 DISABLED, as this process last saw it, for
 *   every breaker it has seen: its gate's cached view of the services it
 *   calls, and the breakers whose transitions it recorded (the worker then
 *   has its gate follow that breaker; a gate keeps re-reading every breaker
 *   it knows to be other than CLOSED, so a stale value can only be CLOSED,
 *   and `max by (service)` over the workers is the breaker's state);
 * - `integration_agent_breaker_transitions_total{service,from,to,reason}`
 *   counter: bumped by the `breakerTransitioned` activity, which runs once per
 *   transition on one worker, so `sum` over processes is exact;
 * - `integration_agent_breaker_rejected_calls_total{service,state}` counter:
 *   calls this process's gate rejected;
 * - `integration_agent_breaker_refresh_failures_total{service}` counter:
 *   refreshes of this process's cached state that got no answer after their
 *   tries (the gate then decides from the state it last knew).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { BREAKER_STATE_CODES, type BreakerStateName, type BreakerTransition } from '../domain/breaker';

export interface BreakerMetrics {
  /** Sets the state gauge of `serviceId`. */
  observeState(serviceId: string, state: BreakerStateName): void;
  /** Counts one transition, and sets the state gauge of its service to the state it went to. */
  observeTransition(t: BreakerTransition): void;
  /** Counts one rejected call. */
  observeRejected(serviceId: string, state: BreakerStateName): void;
  /** Counts one refresh of the gate's cached state that failed after all its tries. */
  observeRefreshFailure(serviceId: string): void;
}

/**
 * Creates the four breaker metrics and registers them on `registry`.
 * @throws Error from prom-client when metrics of these names are already registered there.
 */
export function registerBreakerMetrics(registry: Registry, prefix = 'integration_agent_'): BreakerMetrics {
  const state = new Gauge({
    name: `${prefix}breaker_state`,
    help: 'Circuit breaker state per service: 0 CLOSED, 1 OPEN, 2 HALF_OPEN, 3 FORCED_OPEN, 4 DISABLED',
    labelNames: ['service'] as const,
    registers: [registry],
  });
  const transitions = new Counter({
    name: `${prefix}breaker_transitions_total`,
    help: 'Circuit breaker transitions',
    labelNames: ['service', 'from', 'to', 'reason'] as const,
    registers: [registry],
  });
  const rejected = new Counter({
    name: `${prefix}breaker_rejected_calls_total`,
    help: 'Calls rejected by the circuit breaker gate of this process',
    labelNames: ['service', 'state'] as const,
    registers: [registry],
  });
  const refreshFailures = new Counter({
    name: `${prefix}breaker_refresh_failures_total`,
    help: 'Refreshes of the breaker gate cache of this process that failed after all their tries',
    labelNames: ['service'] as const,
    registers: [registry],
  });
  return {
    observeState: (serviceId, s) => state.set({ service: serviceId }, BREAKER_STATE_CODES[s]),
    observeTransition: (t) => {
      transitions.inc({ service: t.serviceId, from: t.from, to: t.to, reason: t.reason });
      // The process has seen this breaker now, even if its gate never admitted a call to the service.
      state.set({ service: t.serviceId }, BREAKER_STATE_CODES[t.to]);
    },
    observeRejected: (serviceId, s) => rejected.inc({ service: serviceId, state: s }),
    observeRefreshFailure: (serviceId) => refreshFailures.inc({ service: serviceId }),
  };
}
