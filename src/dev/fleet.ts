/**
 * The demo fleet: real HTTP servers on loopback that behave like the services
 * in `examples/services.yaml`. Each speaks the health endpoint and, where it
 * takes part in rotation, the HTTP rotation contract (docs/rotation.md):
 *
 * - issuer:   POST   /credentials/{id}/versions            (Idempotency-Key) -> 201 { versionId, secret }
 *             DELETE /credentials/{id}/versions/{versionId} -> 204 (404 when unknown)
 *             POST   /credentials/{id}/introspect  { secret } -> { active, versionId? }
 * - consumer: PUT    /credentials/{id}  { versionId, secret } (Idempotency-Key) -> 204;
 *             the consumer checks the secret with its issuer first and refuses (422) one the issuer does not know
 *             GET    /credentials/{id} -> { versionId } of the version in use
 *
 * Behaviour can be changed at run time (latency, failure, rotation faults) so
 * tests and the demo can show slow, failing and recovering services.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FleetBehaviour {
  /** Added to every response, in ms (default 0). */
  latencyMs?: number;
  /** Health endpoint answers 503 `{"status":"fail"}` when true. */
  failing?: boolean;
  /** Consumer: refuse every install with 422. */
  rejectInstall?: boolean;
  /** Consumer: keep reporting the old version for this long after an install, in ms (propagation delay). */
  propagationDelayMs?: number;
  /** Issuer: answer revocations with 500. */
  failRevoke?: boolean;
}

export interface FleetServiceSpec {
  id: string;
  /** 0 picks a free port. */
  port?: number;
  host?: string;
  /** Credential ids this service issues. */
  issues?: string[];
  /** Credential id -> base URL of its issuer, for credentials this service consumes. */
  consumes?: Record<string, string | (() => string)>;
  behaviour?: FleetBehaviour;
}

export interface FleetService {
  id: string;
  url: string;
  behaviour: FleetBehaviour;
  /** Requests served, by `METHOD path` (tests assert idempotency with it). */
  requests: Map<string, number>;
  /** Issuer: live versions per credential. Consumer: installed version per credential. */
  state: {
    issued: Map<string, Map<string, { secret: string; revoked: boolean }>>;
    installed: Map<string, { versionId: string; visibleAt: number; previous?: string }>;
  };
}

export interface Fleet {
  services: Map<string, FleetService>;
  get(id: string): FleetService;
  close(): Promise<void>;
}

const json = (res: ServerResponse, status: number, body?: unknown) => {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
};

async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | undefined> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  if (chunks.length === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

async function introspect(issuerUrl: string, credentialId: string, secret: string): Promise<{ active: boolean; versionId?: string }> {
  const res = await fetch(`${issuerUrl}/credentials/${encodeURIComponent(credentialId)}/introspect`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ secret }),
  });
  if (!res.ok) return { active: false };
  return (await res.json()) as { active: boolean; versionId?: string };
}

function startOne(spec: FleetServiceSpec): Promise<{ service: FleetService; server: Server }> {
  const service: FleetService = {
    id: spec.id,
    url: '',
    behaviour: { ...spec.behaviour },
    requests: new Map(),
    state: { issued: new Map(), installed: new Map() },
  };
  for (const c of spec.issues ?? []) service.state.issued.set(c, new Map());
  const idempotent = new Map<string, { status: number; body: unknown }>();

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const key = `${req.method} ${url.pathname}`;
    service.requests.set(key, (service.requests.get(key) ?? 0) + 1);
    const b = service.behaviour;
    if (b.latencyMs) await new Promise((r) => setTimeout(r, b.latencyMs));
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);

    if (req.method === 'GET' && (url.pathname === '/health' || url.pathname === '/')) {
      return b.failing ? json(res, 503, { status: 'fail', service: service.id }) : json(res, 200, { status: 'ok', service: service.id });
    }
    if (parts[0] !== 'credentials' || !parts[1]) return json(res, 404, { error: `no route ${key}` });
    const credentialId = parts[1];
    const idemKey = req.headers['idempotency-key'];

    // Issuer side.
    const issued = service.state.issued.get(credentialId);
    if (issued && req.method === 'POST' && parts[2] === 'versions' && parts.length === 3) {
      const cacheKey = `mint:${credentialId}:${idemKey ?? randomUUID()}`;
      const seen = idempotent.get(cacheKey);
      if (seen) return json(res, seen.status, seen.body);
      const versionId = `v-${randomUUID().slice(0, 12)}`;
      const secret = randomBytes(24).toString('base64url');
      issued.set(versionId, { secret, revoked: false });
      const body = { versionId, secret };
      idempotent.set(cacheKey, { status: 201, body });
      return json(res, 201, body);
    }
    if (issued && req.method === 'DELETE' && parts[2] === 'versions' && parts[3]) {
      if (b.failRevoke) return json(res, 500, { error: 'revocation backend unavailable' });
      const v = issued.get(parts[3]);
      if (!v || v.revoked) return json(res, 404, { error: 'unknown version' });
      v.revoked = true;
      return json(res, 204);
    }
    if (issued && req.method === 'POST' && parts[2] === 'introspect') {
      const body = await readJson(req);
      const secret = typeof body?.secret === 'string' ? body.secret : '';
      for (const [versionId, v] of issued) if (!v.revoked && v.secret === secret) return json(res, 200, { active: true, versionId });
      return json(res, 200, { active: false });
    }

    // Consumer side.
    const issuerRef = spec.consumes?.[credentialId];
    if (issuerRef && req.method === 'GET' && parts.length === 2) {
      const inst = service.state.installed.get(credentialId);
      if (!inst) return json(res, 404, { error: `no version of ${credentialId} installed` });
      const visible = Date.now() >= inst.visibleAt ? inst.versionId : inst.previous;
      return visible ? json(res, 200, { versionId: visible }) : json(res, 404, { error: 'not yet propagated' });
    }
    if (issuerRef && req.method === 'PUT' && parts.length === 2) {
      const body = await readJson(req);
      if (!body || typeof body.versionId !== 'string' || typeof body.secret !== 'string') {
        return json(res, 400, { error: 'body must be { "versionId": string, "secret": string }' });
      }
      if (b.rejectInstall) return json(res, 422, { error: 'credential rejected by consumer policy' });
      const issuerUrl = typeof issuerRef === 'function' ? issuerRef() : issuerRef;
      const check = await introspect(issuerUrl, credentialId, body.secret);
      if (!check.active || check.versionId !== body.versionId) return json(res, 422, { error: 'issuer does not recognise this secret' });
      const prev = service.state.installed.get(credentialId);
      if (prev?.versionId !== body.versionId) {
        service.state.installed.set(credentialId, {
          versionId: body.versionId,
          visibleAt: Date.now() + (b.propagationDelayMs ?? 0),
          previous: prev?.versionId,
        });
      }
      return json(res, 204);
    }
    return json(res, 404, { error: `no route ${key}` });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => json(res, 500, { error: err.message }));
  });
  server.keepAliveTimeout = 5_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(spec.port ?? 0, spec.host ?? '127.0.0.1', () => {
      const addr = server.address() as AddressInfo;
      service.url = `http://${spec.host ?? '127.0.0.1'}:${addr.port}`;
      resolve({ service, server });
    });
  });
}

/**
 * Starts every service of the fleet on loopback.
 * @throws the listen error (e.g. EADDRINUSE with the port) after closing the ones already started.
 */
export async function startFleet(specs: FleetServiceSpec[]): Promise<Fleet> {
  const started: { service: FleetService; server: Server }[] = [];
  const close = async () => {
    await Promise.all(
      started.map(
        ({ server }) =>
          new Promise<void>((r) => {
            server.close(() => r());
            server.closeAllConnections();
          }),
      ),
    );
  };
  try {
    for (const s of specs) started.push(await startOne(s));
  } catch (err) {
    await close();
    const e = err as NodeJS.ErrnoException;
    throw new Error(`cannot start demo service: ${e.message}${e.code === 'EADDRINUSE' ? ' (is another `integration-agent dev` running?)' : ''}`);
  }
  const services = new Map(started.map(({ service }) => [service.id, service]));
  return {
    services,
    get(id) {
      const s = services.get(id);
      if (!s) throw new Error(`no demo service "${id}"`);
      return s;
    },
    close,
  };
}
