/**
 * Codec server (Temporal's documented protocol): POST /encode and POST /decode
 * take and return `{ "payloads": [ { "metadata": { k: base64 }, "data": base64 } ] }`.
 *
 * Who may use it:
 * - a request carrying `Authorization: Bearer <token>` (the Temporal CLI's
 *   `--codec-auth`, or a reverse proxy that authenticated the user and adds
 *   the header itself), for /encode and /decode;
 * - for /decode only, a browser request whose `Origin` is exactly one of the
 *   `trustedDecodeOrigins`: the loopback Web UI of `temporal server start-dev`,
 *   which sends no Authorization header. Allowed only when the server listens
 *   on loopback and every such origin is a loopback `http://` origin.
 *
 * CORS admits exactly the configured Web UI origins (and the trusted ones).
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { isLoopbackAddress } from './keys';

interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

const fromJson = (p: JsonPayload): Payload => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
  data: Buffer.from(p.data ?? '', 'base64'),
});
const toJson = (p: Payload): JsonPayload => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? new Uint8Array()).toString('base64')])),
  data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
});

/** Largest request body read (bytes): a history event's payloads stay far below this. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

function tokenMatches(header: string | undefined, token: string | undefined): boolean {
  if (!token || !header) return false;
  const given = Buffer.from(header.replace(/^Bearer\s+/i, ''));
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

/**
 * Parses a Web UI origin (`scheme://host[:port]`, as browsers send it in the
 * `Origin` header) and returns it in that exact form.
 * @param where names the option in the error message (e.g. `--ui-origin`).
 * @throws RangeError when the value is not an http(s) origin or carries a path, query or trailing slash.
 */
export function parseOrigin(value: string, where: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new RangeError(`${where}: "${value}" is not an origin; expected scheme://host[:port], e.g. https://temporal-ui.example.com`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== value) {
    throw new RangeError(
      `${where}: "${value}" is not an origin as a browser sends it; expected scheme://host[:port] with no path or trailing slash${url.protocol.startsWith('http') ? `, e.g. ${url.origin}` : ''}`,
    );
  }
  return value;
}

/**
 * The origins under which the dev server's Web UI on loopback port `uiPort`
 * can be opened: `http://127.0.0.1:<uiPort>` and `http://localhost:<uiPort>`.
 * @throws RangeError when `uiPort` is not a TCP port.
 */
export function loopbackUiOrigins(uiPort: number): string[] {
  if (!Number.isInteger(uiPort) || uiPort < 1 || uiPort > 65535) throw new RangeError(`uiPort must be a TCP port (1-65535), got ${uiPort}`);
  return [`http://127.0.0.1:${uiPort}`, `http://localhost:${uiPort}`];
}

export interface CodecServerOptions {
  codec: PayloadCodec;
  /** Interface to listen on (e.g. `127.0.0.1`, `0.0.0.0`). */
  host: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  /**
   * Bearer token for /encode and /decode. Without one, only the
   * `trustedDecodeOrigins` may decode and /encode is refused.
   */
  token?: string;
  /** Web UI origins allowed by CORS (exact `scheme://host[:port]`). */
  allowedOrigins: string[];
  /**
   * Origins whose /decode requests need no token: the loopback dev UI only
   * (see {@link loopbackUiOrigins}). Requires a loopback `host`. Default none.
   */
  trustedDecodeOrigins?: string[];
}

/**
 * Starts the codec server.
 * @returns its URL and a close function.
 * @throws RangeError when neither a token nor trusted origins are given, when a
 *   trusted origin is not a loopback http origin, or when trusted origins are
 *   combined with a non-loopback `host`.
 */
export async function startCodecServer(opts: CodecServerOptions): Promise<{ url: string; close(): Promise<void> }> {
  const trusted = opts.trustedDecodeOrigins ?? [];
  if (!opts.token && trusted.length === 0) throw new RangeError('codec server: give a token (CODEC_SERVER_TOKEN) or trusted loopback UI origins; without either nobody could use it');
  for (const o of [...opts.allowedOrigins, ...trusted]) parseOrigin(o, 'codec server origin');
  if (trusted.length > 0) {
    const bad = trusted.find((o) => !o.startsWith('http://') || !isLoopbackAddress(new URL(o).host));
    if (bad) throw new RangeError(`codec server: trusted decode origin ${bad} is not a loopback http:// origin; only the local dev UI may decode without a token`);
    if (!isLoopbackAddress(`${opts.host}:0`)) {
      throw new RangeError(`codec server: listening on ${opts.host} with token-less decoding for the local dev UI would let other hosts decode; listen on 127.0.0.1`);
    }
  }
  const corsOrigins = new Set([...opts.allowedOrigins, ...trusted]);
  const trustedSet = new Set(trusted);
  const server = createServer((req, res) => {
    const origin = req.headers.origin;
    if (origin && corsOrigins.has(origin)) {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-allow-methods', 'POST, OPTIONS');
      res.setHeader('access-control-allow-headers', 'content-type, authorization, x-namespace');
      res.setHeader('access-control-allow-credentials', 'true');
      res.setHeader('access-control-max-age', '600');
    }
    res.setHeader('vary', 'origin');
    if (req.method === 'OPTIONS') return void res.writeHead(204).end();
    const route = req.url?.split('?')[0];
    if (req.method !== 'POST' || (route !== '/encode' && route !== '/decode')) return void res.writeHead(404).end();
    if (!tokenMatches(req.headers.authorization, opts.token)) {
      const text = { 'content-type': 'text/plain; charset=utf-8' };
      if (route === '/decode' && origin && trustedSet.has(origin)) {
        // The local dev UI: allowed without a token (see the module comment).
      } else if (req.headers.authorization || !origin) {
        return void res.writeHead(401, text).end(opts.token ? 'missing or wrong bearer token\n' : 'this codec server takes no token: it decodes only for the local dev Web UI\n');
      } else if (route === '/encode') {
        return void res.writeHead(403, text).end('/encode needs the bearer token; no browser origin may encode without it\n');
      } else {
        return void res.writeHead(403, text).end(`origin ${origin} may not decode without a bearer token\n`);
      }
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
    });
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) return void res.writeHead(413, { 'content-type': 'text/plain; charset=utf-8' }).end(`request body over ${MAX_BODY_BYTES} bytes\n`);
      void (async () => {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { payloads?: JsonPayload[] };
          if (!Array.isArray(body.payloads)) throw new Error('body must be { "payloads": [...] }');
          const input = body.payloads.map(fromJson);
          const out = route === '/encode' ? await opts.codec.encode(input) : await opts.codec.decode(input);
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ payloads: out.map(toJson) }));
        } catch (err) {
          res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: (err as Error).message }));
        }
      })();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
