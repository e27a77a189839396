/**
 * The worker's Prometheus endpoint: GET /metrics on METRICS_ADDRESS serves
 * the application registry (breaker, health, rotation and outbound-call
 * metrics register on it) plus the Node process metrics. Every name passes
 * `promtool check metrics` (test/metrics/).
 *
 * The Temporal SDK core's own metrics (task slots, poll and schedule-to-start
 * latencies) are served by the core on SDK_METRICS_ADDRESS, not here
 * (see `installRuntime` in worker.ts).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry, collectDefaultMetrics } from 'prom-client';

/**
 * prom-client's defaults that break the Prometheus naming rules: gauges named
 * `_total` (promtool: "non-counter metrics should not have _total suffix").
 * Each duplicates the label-less sum of the gauge of the same name without
 * `_total` (`nodejs_active_handles{type}` etc.), which is kept.
 */
const NON_CONFORMING_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * A registry with prom-client's default process metrics under their standard
 * names (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
 * `nodejs_heap_size_used_bytes`, `nodejs_eventloop_lag_p99_seconds`,
 * `nodejs_gc_duration_seconds`, `nodejs_active_handles{type}`, ...), so
 * stock Node.js dashboards work, minus the three `nodejs_active_*_total`
 * gauges that break the naming rules (their totals are `sum(nodejs_active_handles)`).
 */
export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of NON_CONFORMING_DEFAULTS) registry.removeSingleMetric(name);
  return registry;
}

/**
 * Serves `registry` at `http://<address>/metrics`.
 * @param address `host:port`; port 0 picks a free one.
 * @returns the server and the bound URL.
 */
export async function serveMetrics(registry: Registry, address: string): Promise<{ server: Server; url: string }> {
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(at + 1));
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('try /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => res.writeHead(500).end(err.message),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  return { server, url: `http://${host.includes(':') ? `[${host}]` : host}:${bound.port}/metrics` };
}
