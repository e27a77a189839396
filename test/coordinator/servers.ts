/**
 * Real loopback HTTP servers that misbehave on purpose, for the coordinator
 * tests and bench: each records what it received and can die and come back
 * on the same port.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { registrySchema, type Registry } from '../../src/domain/registry';
import { staticRegistry, type RegistrySource } from '../../src/activities/registry';
import type { CallOutcome } from '../../src/domain/outcome';
import type { OutcomeSink } from '../../src/activities/ports';

export interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
  /** performance.now() when the request's headers arrived. */
  at: number;
}

export interface TestServer {
  host: string;
  port: number;
  /** `http://host:port` */
  origin: string;
  seen: Seen[];
  /** Sockets currently open on the server side. */
  sockets: Set<Socket>;
  /** TCP connections accepted so far. */
  connections: number;
  /** Stops listening and destroys every open socket (the endpoint dies). */
  close(): Promise<void>;
  /** Listens again on the same host and port (the endpoint comes back). */
  restart(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

function track(server: Server | NetServer, t: TestServer): void {
  server.on('connection', (socket: Socket) => {
    t.connections++;
    t.sockets.add(socket);
    socket.on('close', () => t.sockets.delete(socket));
  });
}

function listen(server: Server | NetServer, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as { port: number }).port);
    });
  });
}

/** An HTTP server on `host` (default 127.0.0.1) answering with `handler` after reading the whole request body. */
export async function startServer(handler: Handler, host = '127.0.0.1'): Promise<TestServer> {
  let server: Server;
  const t: TestServer = {
    host,
    port: 0,
    origin: '',
    seen: [],
    sockets: new Set(),
    connections: 0,
    async close() {
      for (const s of t.sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
    async restart() {
      server = make();
      await listen(server, host, t.port);
    },
  };
  const make = () => {
    const s = createServer((req, res) => {
      const at = performance.now();
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        t.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, at });
        handler(req, res, body);
      });
    });
    s.keepAliveTimeout = 10_000;
    track(s, t);
    return s;
  };
  server = make();
  t.port = await listen(server, host, 0);
  t.origin = `http://${host}:${t.port}`;
  return t;
}

/** Reads and discards what arrives, as a hung server would; a paused socket would never notice the client closing. */
const swallow = (socket: Socket) => void socket.resume();

/** A TCP server that accepts connections, reads requests and never answers (a black hole). */
export async function startBlackHole(host = '127.0.0.1'): Promise<TestServer> {
  let server: NetServer;
  const t: TestServer = {
    host,
    port: 0,
    origin: '',
    seen: [],
    sockets: new Set(),
    connections: 0,
    async close() {
      for (const s of t.sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
    async restart() {
      server = createNetServer(swallow);
      track(server, t);
      await listen(server, host, t.port);
    },
  };
  server = createNetServer(swallow);
  track(server, t);
  t.port = await listen(server, host, 0);
  t.origin = `http://${host}:${t.port}`;
  return t;
}

/** A registry holding the given services (defaults filled by the real schema). */
export function registryOf(services: Record<string, unknown>[], credentials: Record<string, unknown>[] = []): Registry {
  const doc = registrySchema.parse({ services: services.map((s) => ({ type: 'api', ...s })), credentials });
  return { ...doc, versionHash: 'test', source: 'test registry' };
}

/** A RegistrySource whose registry the test can swap. */
export function mutableRegistry(initial: Registry): RegistrySource & { set(r: Registry): void } {
  let current = initial;
  return { current: () => current, set: (r) => (current = r) };
}

export { staticRegistry };

/** An OutcomeSink that keeps everything. */
export function collectOutcomes(): OutcomeSink & { all: CallOutcome[] } {
  const all: CallOutcome[] = [];
  return { all, record: (o) => void all.push(o) };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Largest number of times inside any half-open window [x, x + windowMs). */
export function maxInAnyWindow(times: number[], windowMs: number): number {
  const s = [...times].sort((a, b) => a - b);
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < s.length; hi++) {
    while (s[hi]! - s[lo]! >= windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}
