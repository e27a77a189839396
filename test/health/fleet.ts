/**
 * Real loopback servers for health tests: one HTTP server whose paths behave
 * as told (status, delay, body, content type, stalled headers), plus helpers
 * for a port nobody listens on and a registry built from service specs.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseRegistry } from '../../src/domain/registry-parse';
import type { Registry } from '../../src/domain/registry';

export interface Behaviour {
  status?: number;
  /** Delay before the headers, ms. */
  delayMs?: number;
  body?: unknown;
  contentType?: string;
  /** Never answer (headers stall) until the behaviour changes. */
  stall?: boolean;
}

export interface Fleet {
  url: string;
  port: number;
  set(path: string, b: Behaviour): void;
  /** Requests seen per path. */
  hits: Map<string, number>;
  close(): Promise<void>;
}

/** Starts an HTTP server on 127.0.0.1; unknown paths answer 200 `{}` at once. */
export async function startFleet(): Promise<Fleet> {
  const behaviours = new Map<string, Behaviour>();
  const hits = new Map<string, number>();
  const stalled = new Set<ServerResponse>();
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const b = behaviours.get(path) ?? {};
    if (b.stall) {
      stalled.add(res);
      res.on('close', () => stalled.delete(res));
      return;
    }
    const send = () => {
      const body = b.body === undefined ? '{}' : typeof b.body === 'string' ? b.body : JSON.stringify(b.body);
      res.writeHead(b.status ?? 200, { 'content-type': b.contentType ?? 'application/json' });
      res.end(body);
    };
    if (b.delayMs) setTimeout(send, b.delayMs);
    else send();
  };
  const server: Server = createServer(handler);
  server.keepAliveTimeout = 1000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    hits,
    set: (path, b) => behaviours.set(path, b),
    close: async () => {
      for (const res of stalled) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A loopback port with no listener (bound then released). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A validated registry from plain service objects (JSON through the real parser); `prober`: its top-level `prober` section. */
export function registryOf(services: unknown[], prober?: unknown): Registry {
  const parsed = parseRegistry(JSON.stringify(prober === undefined ? { services } : { services, prober }), 'test-registry.json');
  if (!parsed.ok) throw new Error(parsed.problems.map((p) => `${p.path}: ${p.message}`).join('\n'));
  return parsed.registry;
}
