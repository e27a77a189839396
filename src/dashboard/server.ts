/**
 * The status page's HTTP server (`integration-agent dashboard`, and `dev`):
 *
 * - `GET /`                 the page (web/dashboard/index.html)
 * - `GET /assets/*`         its plain ES modules and CSS (web/dashboard/)
 * - `GET /vendor/*`         the front-end libraries, served from node_modules
 *                           (dagre for the graph layout, uPlot for the charts): no CDN, no network
 * - `GET /api/fleet`        the gatherer's snapshot (JSON)
 * - `GET /api/services/:id` one service's detail: breaker transitions, latency history, uptime, alerts
 * - `GET /events`           server-sent events: `snapshot` once, then `delta` on every change
 *
 * Read-only: any other method is 405. Listens on loopback by default; any
 * other address needs a bearer token (`token`), which every request must
 * then carry as `Authorization: Bearer <token>`, or as the HttpOnly cookie
 * the server sets once the page was opened with `?token=<token>` (a browser's
 * EventSource cannot send headers).
 */
import { createReadStream, existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { timingSafeEqual, createHash } from 'node:crypto';
import { isLoopbackAddress } from '../codec/keys';
import type { FleetGatherer } from './gatherer';

/** The page's own files. */
export const WEB_ROOT = join(__dirname, '..', '..', 'web', 'dashboard');

/** Shortest token accepted, characters. */
export const MIN_DASHBOARD_TOKEN_LENGTH = 16;

const TOKEN_COOKIE = 'ia_dashboard_token';

/** A listen address or token the dashboard refuses; the message says what to do. */
export class DashboardConfigError extends Error {
  override readonly name = 'DashboardConfigError';
}

/** Front-end libraries, each a file of an npm package this project depends on. */
const VENDOR: Record<string, { pkg: string; file: string }> = {
  'dagre.js': { pkg: '@dagrejs/dagre', file: 'dist/dagre.esm.js' },
  'uplot.js': { pkg: 'uplot', file: 'dist/uPlot.esm.js' },
  'uplot.css': { pkg: 'uplot', file: 'dist/uPlot.min.css' },
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

function vendorPath(name: string): string | undefined {
  const v = VENDOR[name];
  if (!v) return undefined;
  return join(dirname(require.resolve(`${v.pkg}/package.json`)), v.file);
}

/**
 * Splits `host:port` / `[v6]:port`.
 * @throws DashboardConfigError naming the value when malformed.
 */
export function parseListen(listen: string): { host: string; port: number } {
  const at = listen.lastIndexOf(':');
  const host = listen.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  const port = Number(listen.slice(at + 1));
  if (at <= 0 || !host || !/^\d+$/.test(listen.slice(at + 1)) || port > 65535) {
    throw new DashboardConfigError(`--listen: "${listen}" is not host:port (e.g. 127.0.0.1:8300; port 0 picks a free one)`);
  }
  return { host, port };
}

/**
 * Checks the listen address against the token: loopback needs none; any
 * other address needs one of at least {@link MIN_DASHBOARD_TOKEN_LENGTH} characters.
 * @throws DashboardConfigError saying which variable to set.
 */
export function checkExposure(host: string, port: number, token: string | undefined): void {
  if (!isLoopbackAddress(host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`) && !token) {
    throw new DashboardConfigError(
      `dashboard: refusing to listen on ${host}:${port} without a bearer token: beyond loopback anyone who reaches the port would see the fleet. ` +
        'Set INTEGRATION_AGENT_DASHBOARD_TOKEN (e.g. export INTEGRATION_AGENT_DASHBOARD_TOKEN="$(openssl rand -hex 32)") and open the page once as http://HOST:PORT/?token=<token>, ' +
        'or keep the default --listen 127.0.0.1:8300 (docs/dashboard.md)',
    );
  }
  if (token !== undefined && token.length < MIN_DASHBOARD_TOKEN_LENGTH) {
    throw new DashboardConfigError(`INTEGRATION_AGENT_DASHBOARD_TOKEN is ${token.length} characters long; use at least ${MIN_DASHBOARD_TOKEN_LENGTH} random characters (openssl rand -hex 32)`);
  }
}

export interface DashboardServer {
  /** `http://host:port` (IPv6 hosts in brackets). */
  url: string;
  server: Server;
  close(): Promise<void>;
}

export interface DashboardServerOptions {
  gatherer: FleetGatherer;
  host?: string;
  /** 0 picks a free port; default 8300. */
  port?: number;
  /** Bearer token; required beyond loopback. */
  token?: string;
  /** Time between SSE keep-alive comments, ms; default 15000. */
  keepAliveMs?: number;
}

/**
 * Starts the dashboard's HTTP server on `host:port` (default 127.0.0.1:8300).
 * @throws DashboardConfigError for a non-loopback host without a token or a short token; the listen error (EADDRINUSE...) otherwise.
 */
export async function startDashboardServer(opts: DashboardServerOptions): Promise<DashboardServer> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 8300;
  const token = opts.token || undefined;
  checkExposure(host, port, token);
  const tokenHash = token ? createHash('sha256').update(token).digest() : undefined;
  const { gatherer } = opts;
  const streams = new Set<ServerResponse>();

  const authorised = (req: IncomingMessage): boolean => {
    if (!tokenHash) return true;
    const given = bearer(req) ?? cookie(req, TOKEN_COOKIE);
    if (!given) return false;
    // Hashes of equal length, compared in constant time.
    return timingSafeEqual(createHash('sha256').update(given).digest(), tokenHash);
  };

  const server = createServer((req, res) => {
    void handle(req, res).catch((err) => {
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `dashboard error: ${(err as Error).message.split('\n')[0]}`);
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, 'text/plain; charset=utf-8', 'the dashboard is read-only');
    }
    // `/?token=...` once: set the cookie and drop the token from the address bar (and from history).
    const given = url.searchParams.get('token');
    if (tokenHash && given !== null && url.pathname === '/') {
      if (timingSafeEqual(createHash('sha256').update(given).digest(), tokenHash)) {
        res.writeHead(303, {
          location: '/',
          'set-cookie': `${TOKEN_COOKIE}=${encodeURIComponent(given)}; HttpOnly; SameSite=Strict; Path=/`,
          'cache-control': 'no-store',
        });
        return void res.end();
      }
      return send(res, 401, 'text/plain; charset=utf-8', 'wrong token');
    }
    // Without a token, only loopback names may address the page: a web page elsewhere that rebinds its
    // own name to 127.0.0.1 (DNS rebinding) sends its own Host and is refused before it reads anything.
    if (!tokenHash && !loopbackHost(req.headers.host)) {
      return send(res, 421, 'text/plain; charset=utf-8', 'this dashboard answers only to loopback names (localhost, 127.0.0.1, [::1]) without a token; set INTEGRATION_AGENT_DASHBOARD_TOKEN to serve other names');
    }
    if (!authorised(req)) {
      res.setHeader('www-authenticate', 'Bearer realm="integration-agent dashboard"');
      return send(res, 401, 'text/plain; charset=utf-8', 'this dashboard needs its token: open it as /?token=<token>, or send Authorization: Bearer <token>');
    }
    const path = url.pathname;
    gatherer.touch();
    if (path === '/' || path === '/index.html') return file(res, join(WEB_ROOT, 'index.html'));
    if (path.startsWith('/assets/')) {
      const target = normalize(join(WEB_ROOT, path.slice('/assets/'.length)));
      if (!target.startsWith(WEB_ROOT + sep)) return send(res, 404, 'text/plain; charset=utf-8', 'not found');
      return file(res, target);
    }
    if (path.startsWith('/vendor/')) {
      const p = vendorPath(path.slice('/vendor/'.length));
      return p ? file(res, p) : send(res, 404, 'text/plain; charset=utf-8', 'not found');
    }
    if (path === '/api/fleet') return json(res, { ...gatherer.snapshot(), serverNow: Date.now() });
    if (path.startsWith('/api/services/')) {
      const id = decodeURIComponent(path.slice('/api/services/'.length));
      const d = await gatherer.detail(id);
      return d ? json(res, d) : send(res, 404, 'application/json', JSON.stringify({ error: `no service "${id}" in the fleet` }));
    }
    if (path === '/events') return events(req, res);
    if (path === '/favicon.ico') return void res.writeHead(204, securityHeaders).end();
    return send(res, 404, 'text/plain; charset=utf-8', 'not found');
  }

  function events(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      ...securityHeaders,
    });
    res.write('retry: 1000\n\n');
    // The whole snapshot first, then only what changes; a client that missed a version refetches /api/fleet.
    res.write(`event: snapshot\ndata: ${JSON.stringify({ ...gatherer.snapshot(), serverNow: Date.now() })}\n\n`);
    const unsubscribe = gatherer.subscribe((d) => res.write(`event: delta\ndata: ${JSON.stringify(d)}\n\n`));
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), opts.keepAliveMs ?? 15_000);
    streams.add(res);
    const done = () => {
      clearInterval(keepAlive);
      unsubscribe();
      streams.delete(res);
    };
    req.on('close', done);
    res.on('close', done);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const url = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
  return {
    url,
    server,
    async close() {
      for (const s of streams) s.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const securityHeaders = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // Scripts and data from this server only; uPlot sizes its elements with inline styles.
  'content-security-policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...securityHeaders });
  res.end(body);
}

function json(res: ServerResponse, value: unknown): void {
  send(res, 200, 'application/json; charset=utf-8', JSON.stringify(value));
}

function file(res: ServerResponse, path: string): void {
  if (!existsSync(path)) return send(res, 404, 'text/plain; charset=utf-8', 'not found');
  res.writeHead(200, { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream', 'cache-control': 'no-cache', ...securityHeaders });
  createReadStream(path).pipe(res);
}

function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  const m = h ? /^Bearer\s+(.+)$/i.exec(h) : null;
  return m?.[1]?.trim();
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return undefined;
}

/** Is a Host header (`name[:port]`) a loopback name: localhost, 127.0.0.0/8 or [::1]? */
export function loopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  return name === 'localhost' || name === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}
