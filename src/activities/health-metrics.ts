/**
 * Prometheus metrics for health, registered on a given prom-client Registry
 * (the worker's, served at /metrics):
 *
 * - `integration_agent_service_health_status{service,status}`: a state set
 *   (1 for the service's status in the latest sweep this worker published,
 *   0 for the others);
 * - `integration_agent_service_health_observed_timestamp_seconds{service}`:
 *   when that status was observed (the probe's start, unix seconds);
 * - `integration_agent_health_sweep_started_timestamp_seconds`: when the
 *   latest sweep this worker published began (its earliest probe, unix
 *   seconds): a service observed before the fleet's latest sweep began is no
 *   longer in the registry;
 * - `integration_agent_probe_duration_seconds{service,result}`: probe latency
 *   histogram (`result` = pass | warn | fail);
 * - `integration_agent_service_availability_percent{service,window}`:
 *   availability over 1h/24h/7d/30d, from the health store;
 * - `integration_agent_service_availability_target_percent{service}`: the
 *   service's SLA availability target (`sla.availability` in the registry),
 *   for services that set one: compare the two to see who is below its SLA.
 *
 * Each sweep is published by one worker, whichever took the task, so with
 * several workers each exports the status of the last sweep *it* published:
 * for the fleet's view, take per service the series of the instance with the
 * newest observed timestamp, if not older than the fleet's latest sweep (the
 * query is in README, Metrics; the dashboard uses it). The timestamps are
 * gauges of their own because a sample's own time is its scrape's: an old
 * status scraped now looks as fresh as a new one.
 */
import { Gauge, Histogram, type Registry } from 'prom-client';
import { HEALTH_STATUSES, type HealthFigures, type HealthStatus, type ProbeResult } from '../domain/health';

const WINDOWS = ['1h', '24h', '7d', '30d'] as const satisfies readonly (keyof HealthFigures['availability'])[];
const RESULTS = ['pass', 'warn', 'fail'] as const;

export interface HealthMetrics {
  /**
   * Records one sweep's outcome for a service: its status, observed at
   * `result.startedAt` (epoch ms). An observation older than the one this
   * process holds for the service (a retried publish of an earlier sweep)
   * leaves status and timestamp as they are; its latency is still counted
   * (unless the service has left the registry since).
   */
  observe(result: ProbeResult, status: HealthStatus): void;
  /**
   * Publishes the availability figures of a service observed here (others are
   * ignored); a window without a figure, or no SLA, drops its series.
   */
  setFigures(serviceId: string, figures: HealthFigures): void;
  /**
   * Records that a sweep was published: `serviceIds` is every service of the
   * registry it snapshotted, `startedAt` its earliest probe's start (epoch ms).
   * Drops every series of the services not among them, so a service taken
   * out of the registry leaves this worker's export. A sweep older than the
   * latest one recorded here (a retried publish) changes nothing.
   */
  sweepPublished(serviceIds: ReadonlySet<string>, startedAt: number): void;
}

/**
 * Registers the health metrics on `registry` (once per registry: a second
 * call returns metrics writing to the same series).
 */
export function registerHealthMetrics(registry: Registry): HealthMetrics {
  const status =
    (registry.getSingleMetric('integration_agent_service_health_status') as Gauge<'service' | 'status'> | undefined) ??
    new Gauge({ name: 'integration_agent_service_health_status', help: 'Service health status in the latest sweep this worker published (state set: 1 = current)', labelNames: ['service', 'status'], registers: [registry] });
  const observedAt =
    (registry.getSingleMetric('integration_agent_service_health_observed_timestamp_seconds') as Gauge<'service'> | undefined) ??
    new Gauge({
      name: 'integration_agent_service_health_observed_timestamp_seconds',
      help: 'When the status in integration_agent_service_health_status was observed (probe start), unix seconds: across workers, the newest is current',
      labelNames: ['service'],
      registers: [registry],
    });
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
  const sweepStarted =
    (registry.getSingleMetric('integration_agent_health_sweep_started_timestamp_seconds') as Gauge | undefined) ??
    new Gauge({
      name: 'integration_agent_health_sweep_started_timestamp_seconds',
      help: 'When the latest sweep this worker published began (its earliest probe), unix seconds',
      registers: [registry],
    });
  let latestSweep = -Infinity;
  /** Epoch ms of the observation each service's state set shows (services with series here). */
  const held = new Map<string, number>();
  return {
    observe(result, current) {
      const id = result.serviceId;
      // From a sweep older than the latest published here, about a service that sweep no longer had.
      if (!held.has(id) && result.startedAt < latestSweep) return;
      if (result.verdict !== 'inconclusive') latency.observe({ service: id, result: result.verdict }, result.latencyMs / 1000);
      const prev = held.get(id);
      if (prev !== undefined && result.startedAt < prev) return;
      held.set(id, result.startedAt);
      for (const s of HEALTH_STATUSES) status.set({ service: id, status: s }, s === current ? 1 : 0);
      observedAt.set({ service: id }, result.startedAt / 1000);
    },
    setFigures(serviceId, figures) {
      if (!held.has(serviceId)) return; // no status here (or the service has left the registry)
      for (const window of WINDOWS) {
        const v = figures.availability[window];
        if (v !== undefined) avail.set({ service: serviceId, window }, v);
        else avail.remove({ service: serviceId, window });
      }
      if (figures.slaAvailability !== undefined) target.set({ service: serviceId }, figures.slaAvailability);
      else target.remove({ service: serviceId });
    },
    sweepPublished(serviceIds, startedAt) {
      if (startedAt < latestSweep) return;
      latestSweep = startedAt;
      sweepStarted.set(startedAt / 1000);
      for (const id of held.keys()) {
        if (serviceIds.has(id)) continue;
        held.delete(id);
        for (const s of HEALTH_STATUSES) status.remove({ service: id, status: s });
        observedAt.remove({ service: id });
        for (const window of WINDOWS) avail.remove({ service: id, window });
        target.remove({ service: id });
        for (const r of RESULTS) latency.remove({ service: id, result: r });
      }
    },
  };
}
