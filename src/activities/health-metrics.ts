/**
 * Prometheus metrics for health, registered on a given prom-client Registry
 * (the worker's, served at /metrics):
 *
 * - `integration_agent_service_health_status{service,status}`: a state set
 *   (1 for the service's status in the latest sweep, 0 for the others);
 * - `integration_agent_probe_duration_seconds{service,result}`: probe latency
 *   histogram (`result` = pass | warn | fail);
 * - `integration_agent_service_availability_percent{service,window}`:
 *   availability over 1h/24h/7d/30d, from the health store;
 * - `integration_agent_service_availability_target_percent{service}`: the
 *   service's SLA availability target (`sla.availability` in the registry),
 *   for services that set one: compare the two to see who is below its SLA.
 */
import { Gauge, Histogram, type Registry } from 'prom-client';
import { HEALTH_STATUSES, type HealthFigures, type HealthStatus, type ProbeResult } from '../domain/health';

export interface HealthMetrics {
  /** Records one sweep's outcome for a service. */
  observe(result: ProbeResult, status: HealthStatus): void;
  /** Publishes a service's availability figures. */
  setFigures(serviceId: string, figures: HealthFigures): void;
}

/**
 * Registers the health metrics on `registry` (once per registry: a second
 * call returns the same metrics).
 */
export function registerHealthMetrics(registry: Registry): HealthMetrics {
  const existing = registry.getSingleMetric('integration_agent_service_health_status');
  const status =
    (existing as Gauge<'service' | 'status'> | undefined) ??
    new Gauge({ name: 'integration_agent_service_health_status', help: 'Service health status in the latest sweep (state set: 1 = current)', labelNames: ['service', 'status'], registers: [registry] });
  const latency =
    (registry.getSingleMetric('integration_agent_probe_duration_seconds') as Histogram<'service' | 'result'> | undefined) ??
    new Histogram({
      name: 'integration_agent_probe_duration_seconds',
      help: 'Health probe duration, seconds',
      labelNames: ['service', 'result'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
  const avail =
    (registry.getSingleMetric('integration_agent_service_availability_percent') as Gauge<'service' | 'window'> | undefined) ??
    new Gauge({ name: 'integration_agent_service_availability_percent', help: 'Availability over a window, percent (maintenance and inconclusive time excluded)', labelNames: ['service', 'window'], registers: [registry] });
  const target =
    (registry.getSingleMetric('integration_agent_service_availability_target_percent') as Gauge<'service'> | undefined) ??
    new Gauge({ name: 'integration_agent_service_availability_target_percent', help: 'SLA availability target of the service from the registry, percent', labelNames: ['service'], registers: [registry] });
  return {
    observe(result, current) {
      for (const s of HEALTH_STATUSES) status.set({ service: result.serviceId, status: s }, s === current ? 1 : 0);
      if (result.verdict !== 'inconclusive') latency.observe({ service: result.serviceId, result: result.verdict }, result.latencyMs / 1000);
    },
    setFigures(serviceId, figures) {
      for (const [window, v] of Object.entries(figures.availability)) if (v !== undefined) avail.set({ service: serviceId, window }, v);
      if (figures.slaAvailability !== undefined) target.set({ service: serviceId }, figures.slaAvailability);
    },
  };
}
