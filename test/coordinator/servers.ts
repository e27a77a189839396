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
import { createHook } from 'node:async_hooks';
import type { OutcomeSink, SecretReader } from '../../src/activities/ports';
import { createCoordinator, CoordinatorError, type Coordinator, type CoordinatorDeps } from '../../src/activities/coordinator';

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
  return serve(host, (t) => {
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
    return s;
  });
}

/** Reads and discards what arrives, as a hung server would; a paused socket would never notice the client closing. */
const swallow = (socket: Socket) => void socket.resume();

/** A TCP server that accepts connections, reads requests and never answers (a black hole). */
export async function startBlackHole(host = '127.0.0.1'): Promise<TestServer> {
  return serve(host, () => createNetServer(swallow));
}

/** Listens with a server from `make` on `host`; the handle closes it (sockets included) and restarts it on the same port. */
async function serve(host: string, make: (t: TestServer) => Server | NetServer): Promise<TestServer> {
  let server: Server | NetServer;
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
      server = make(t);
      track(server, t);
      await listen(server, host, t.port);
    },
  };
  server = make(t);
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

/**
 * The per-file harness of the coordinator tests: servers and coordinators
 * made through it are closed after each test (coordinators with `closeGraceMs`).
 * Call it at the top level of a test file.
 */
export function coordinatorHarness(defaults: { secrets: SecretReader; reporterId: string; closeGraceMs?: number }) {
  const servers: TestServer[] = [];
  const coordinators: Coordinator[] = [];
  afterEach(async () => {
    await Promise.all(coordinators.splice(0).map((c) => c.close(defaults.closeGraceMs)));
    await Promise.all(servers.splice(0).map((s) => s.close().catch(() => {})));
  });
  const keep = (s: TestServer) => (servers.push(s), s);
  return {
    server: async (...args: Parameters<typeof startServer>) => keep(await startServer(...args)),
    blackHole: async (host?: string) => keep(await startBlackHole(host)),
    coordinatorFor(services: Record<string, unknown>[], extra: Partial<CoordinatorDeps> = {}): Coordinator {
      const c = createCoordinator({ registry: staticRegistry(registryOf(services)), secrets: defaults.secrets, reporterId: defaults.reporterId, ...extra });
      coordinators.push(c);
      return c;
    },
    /** Closes a coordinator the test built itself after the test. */
    closeAfterTest(c: Coordinator): Coordinator {
      coordinators.push(c);
      return c;
    },
  };
}

/** Awaits a call that must fail; returns its CoordinatorError (fails the test otherwise). */
export async function failure(p: Promise<unknown>): Promise<CoordinatorError> {
  const err = await p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CoordinatorError);
  return err as CoordinatorError;
}

/** How many active resources of a kind (`TCPSocketWrap`, `Timeout`, ...) the process holds now. */
export const activeResources = (kind: string) => process.getActiveResourcesInfo().filter((r) => r === kind).length;

/**
 * Records timers created from now on by undici or the coordinator; `stop()`
 * returns the creation stacks of those still pending (neither fired nor
 * cleared), `pending()` the same without stopping. Timers of jest and of the test itself are not counted.
 */
export function trackTimers(): { pending(): string[]; stop(): string[] } {
  const live = new Map<number, string>();
  const hook = createHook({
    init(id, type) {
      if (type !== 'Timeout') return;
      const stack = new Error().stack ?? '';
      if (/node_modules[\\/]undici|src[\\/]activities[\\/]coordinator/.test(stack)) live.set(id, stack);
    },
    destroy(id) {
      live.delete(id);
    },
  }).enable();
  return {
    pending() {
      return [...live.values()];
    },
    stop() {
      hook.disable();
      return [...live.values()];
    },
  };
}

/** Polls `cond` every 5 ms; fails naming `what` when it is still false after `timeoutMs`. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 1_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`still waiting after ${timeoutMs} ms for: ${what}`);
    await sleep(5);
  }
}
