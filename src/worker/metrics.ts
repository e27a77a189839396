/**
 * The worker's Prometheus endpoint: GET /metrics on METRICS_ADDRESS serves
 * the application registry (breaker, health, coordinator metrics register on
 * it) plus Node process metrics.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry, collectDefaultMetrics } from 'prom-client';

export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'integration_agent_' });
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
