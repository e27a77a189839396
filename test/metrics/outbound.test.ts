/**
 * Outbound-call metrics as the coordinator counts them: calls of every
 * outcome against real loopback servers (answers of each status class, a
 * closed port, a deadline, a rate limit, a breaker gate that refuses, the
 * cache and coalescing), scraped from a prom-client registry and checked by
 * promtool.
 */
import { Registry } from 'prom-client';
import type { CallGate, SecretReader } from '../../src/activities/ports';
import { registerOutboundMetrics } from '../../src/activities/outbound-metrics';
import { coordinatorHarness, failure } from '../coordinator/servers';
import { freePort, prometheusTools, promtool } from './tools';

const secrets: SecretReader = { readSecret: async () => undefined };
const { server, coordinatorFor } = coordinatorHarness({ secrets, reporterId: 'metrics-test' });

/** A gate that refuses every call to `tripped` (as an OPEN breaker's gate does) and admits the rest. */
const gate: CallGate = {
  admit: (serviceId) =>
    serviceId === 'tripped'
      ? Promise.reject(Object.assign(new Error('circuit breaker of service "tripped" is OPEN'), { retryAfterMs: 5_000 }))
      : Promise.resolve({ generation: 0, report: () => undefined }),
};

function series(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('calls are counted by service, method and outcome, with latency, rate-limit waits, cache hits and breaker rejections', async () => {
  const api = await server((req, res) => {
    if (req.url === '/cached') return res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'application/json' }).end('{"ok":true}');
    if (req.url === '/shared') return setTimeout(() => res.writeHead(200).end('shared'), 50);
    if (req.url === '/missing') return res.writeHead(404).end('no');
    if (req.url === '/boom') return res.writeHead(500).end('boom');
    if (req.url === '/hang') return; // never answers: the caller's deadline ends it
    res.writeHead(204).end();
  });
  const closed = `http://127.0.0.1:${await freePort()}`;
  const registry = new Registry();
  const c = coordinatorFor(
    [
      { id: 'api', endpoints: [{ url: api.origin }] },
      { id: 'limited', endpoints: [{ url: api.origin }], rateLimit: { perSecond: 1 } },
      { id: 'gone', endpoints: [{ url: closed }] },
      { id: 'tripped', endpoints: [{ url: api.origin }] },
    ],
    { gate, metrics: registerOutboundMetrics(registry) },
  );

  await c.request('api', { path: '/cached' });
  expect((await c.request('api', { path: '/cached' })).cached).toBe(true);
  await Promise.all([c.request('api', { path: '/shared' }), c.request('api', { path: '/shared' })]);
  await c.request('api', { method: 'POST', path: '/created', json: {} });
  expect((await failure(c.request('api', { path: '/missing' }))).status).toBe(404);
  expect((await failure(c.request('api', { method: 'DELETE', path: '/boom' }))).status).toBe(500);
  expect((await failure(c.request('api', { path: '/hang', timeoutMs: 200 }))).kind).toBe('timeout');
  expect((await failure(c.request('gone', { path: '/' }))).kind).toBe('connection_refused');
  expect((await failure(c.request('tripped', { path: '/' }))).kind).toBe('breaker_open');
  // One call a second: the first goes at once, the second waits for the next second, the third cannot start before its deadline.
  await c.request('limited', { method: 'PUT', path: '/a' });
  await c.request('limited', { method: 'PUT', path: '/b' });
  expect((await failure(c.request('limited', { method: 'PUT', path: '/c', timeoutMs: 100 }))).kind).toBe('rate_limited');

  const text = await registry.metrics();
  const requests = (labels: string) => series(text, 'integration_agent_outbound_requests_total', labels);
  expect({
    ok: requests('service="api",method="GET",outcome="2xx"'),
    created: requests('service="api",method="POST",outcome="2xx"'),
    missing: requests('service="api",method="GET",outcome="4xx"'),
    boom: requests('service="api",method="DELETE",outcome="5xx"'),
    hang: requests('service="api",method="GET",outcome="timeout"'),
    gone: requests('service="gone",method="GET",outcome="network"'),
    tripped: requests('service="tripped",method="GET",outcome="breaker_open"'),
    limited: requests('service="limited",method="PUT",outcome="2xx"'),
    refused: requests('service="limited",method="PUT",outcome="rate_limited"'),
  }).toEqual({ ok: 2, created: 1, missing: 1, boom: 1, hang: 1, gone: 1, tripped: 1, limited: 2, refused: 1 }); // ok: /cached once, /shared once
  expect(text).not.toMatch(/outcome="(1xx|3xx|aborted|error)"/);

  // The latency histogram: one observation per call, seconds, cumulative buckets.
  const hist = (suffix: string, labels: string) => series(text, `integration_agent_outbound_request_duration_seconds${suffix}`, labels);
  expect(hist('_count', 'service="api",method="GET"')).toBe(4); // /cached, /shared, /missing, /hang: not the cache hit, not the joiner
  expect(hist('_bucket', 'service="api",method="GET",le="+Inf"')).toBe(4);
  expect(hist('_bucket', 'service="api",method="GET",le="0.1"')).toBeLessThanOrEqual(3); // the deadline call took 200 ms or more
  const buckets = ['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '30', '+Inf'].map((le) => hist('_bucket', `service="api",method="GET",le="${le}"`)!);
  expect(buckets).toEqual([...buckets].sort((a, b) => a - b)); // cumulative
  expect(hist('_sum', 'service="api",method="GET"')).toBeGreaterThan(0);
  expect(hist('_count', 'service="limited",method="PUT"')).toBe(3);

  const perService = (name: string, service: string) => series(text, `integration_agent_outbound_${name}`, `service="${service}"`);
  expect({
    hits: perService('cache_hits_total', 'api'),
    misses: perService('cache_misses_total', 'api'),
    coalesced: perService('coalesced_requests_total', 'api'),
    waits: perService('rate_limit_waits_total', 'limited'),
    goneHits: perService('cache_hits_total', 'gone'),
  }).toEqual({ hits: 1, misses: 5, coalesced: 1, waits: 1, goneHits: 0 }); // misses: the first /cached, both /shared, /missing, /hang
  expect(perService('rate_limit_wait_seconds_total', 'limited')).toBeGreaterThan(0);

  expect(promtool(prometheusTools().promtool, ['check', 'metrics'], text)).toEqual({ code: 0, output: '' });
});
