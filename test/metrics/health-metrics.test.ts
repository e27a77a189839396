/**
 * The health metrics of one worker: the observed timestamp beside the state
 * set, an earlier sweep published late (a retry) not overwriting a later one,
 * the start of the latest sweep published, and a service that left the
 * registry dropping out of the export.
 */
import { Registry } from 'prom-client';
import { registerHealthMetrics } from '../../src/activities/health-metrics';
import type { HealthFigures, ProbeResult } from '../../src/domain/health';

const pass = (serviceId: string, startedAt: number): ProbeResult => ({ serviceId, verdict: 'pass', latencyMs: 20, startedAt });
const fail = (serviceId: string, startedAt: number): ProbeResult => ({ serviceId, verdict: 'fail', latencyMs: 900, startedAt, failureKind: 'status' });
const figures: HealthFigures = { availability: { '1h': 100, '24h': 99 }, slaAvailability: 99.9, computedAt: 0 };

test('the state set carries when its status was observed, in unix seconds', async () => {
  const reg = new Registry();
  const m = registerHealthMetrics(reg);
  m.observe(pass('a', 1_700_000_000_250), 'healthy');
  const text = await reg.metrics();
  expect(text).toContain('integration_agent_service_health_observed_timestamp_seconds{service="a"} 1700000000.25');
  expect(text).toContain('integration_agent_service_health_status{service="a",status="healthy"} 1');
});

test('an earlier sweep published after a later one (a retry) leaves the later status; its latency still counts', async () => {
  const reg = new Registry();
  const m = registerHealthMetrics(reg);
  m.observe(fail('a', 2_000_000), 'unhealthy');
  m.observe(pass('a', 1_000_000), 'healthy');
  const text = await reg.metrics();
  expect(text).toContain('integration_agent_service_health_status{service="a",status="unhealthy"} 1');
  expect(text).toContain('integration_agent_service_health_status{service="a",status="healthy"} 0');
  expect(text).toContain('integration_agent_service_health_observed_timestamp_seconds{service="a"} 2000');
  expect(text).toContain('integration_agent_probe_duration_seconds_count{service="a",result="pass"} 1');
});

test('a sweep without a service (it left the registry) drops every health series of it; the others stay', async () => {
  const reg = new Registry();
  const m = registerHealthMetrics(reg);
  for (const id of ['a', 'gone']) {
    m.observe(pass(id, 1000), 'healthy');
    m.setFigures(id, figures);
  }
  m.sweepPublished(new Set(['a', 'gone']), 1000);
  m.observe(pass('a', 31_000), 'healthy');
  m.sweepPublished(new Set(['a']), 31_000);
  // A retried publish of the earlier sweep brings nothing back.
  m.observe(pass('gone', 1000), 'healthy');
  m.sweepPublished(new Set(['a', 'gone']), 1000);
  const text = await reg.metrics();
  expect(text).toContain('integration_agent_health_sweep_started_timestamp_seconds 31');
  expect(text).not.toMatch(/^integration_agent_service_(health|availability)\w*\{service="gone"/m);
  for (const name of ['service_health_status', 'service_health_observed_timestamp_seconds', 'probe_duration_seconds_count', 'service_availability_percent', 'service_availability_target_percent']) {
    expect(text).toMatch(new RegExp(`^integration_agent_${name}\\{[^}]*service="a"`, 'm'));
  }
});

test('a window without a figure, or a service without an SLA, drops the old series', async () => {
  const reg = new Registry();
  const m = registerHealthMetrics(reg);
  m.observe(pass('a', 1000), 'healthy');
  m.setFigures('a', figures);
  m.setFigures('a', { availability: { '1h': 100 }, computedAt: 1 });
  const text = await reg.metrics();
  expect(text).toContain('integration_agent_service_availability_percent{service="a",window="1h"} 100');
  expect(text).not.toContain('window="24h"');
  expect(text).not.toMatch(/^integration_agent_service_availability_target_percent\{/m);
});
