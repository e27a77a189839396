/**
 * The coordinator against real loopback servers that fail on purpose.
 * No mocks: real undici pools, real sockets, real timers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gzipSync, brotliCompressSync, deflateSync, deflateRawSync } from 'node:zlib';
import { ApplicationFailure } from '@temporalio/common';
import { createCoordinator, toApplicationFailure } from '../../src/activities/coordinator';
import type { CallGate, CallPermit, SecretReader } from '../../src/activities/ports';
import type { CallOutcome } from '../../src/domain/outcome';
import {
  activeResources as count,
  collectOutcomes,
  coordinatorHarness,
  failure,
  maxInAnyWindow,
  mutableRegistry,
  registryOf,
  sleep,
  staticRegistry,
  trackTimers,
  waitFor,
  type TestServer,
} from './servers';

const SECRET = 'tok-3f9a7c1e5b';
const secrets: SecretReader & { asked: [string, string | undefined][] } = {
  asked: [],
  async readSecret(credentialId, versionId) {
    secrets.asked.push([credentialId, versionId]);
    if (versionId === 'missing') return undefined;
    return versionId ? `${SECRET}-${versionId}` : SECRET;
  },
};

const { server, blackHole, coordinatorFor, closeAfterTest } = coordinatorHarness({ secrets, reporterId: 'test-worker' });

describe('requests', () => {
  it('sends a GET with the bearer credential to the endpoint path and reports the outcome', async () => {
    const s = await server((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true, url: req.url }));
    });
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'billing', endpoints: [{ url: `${s.origin}/api/` }], credential: 'billing-key' }], { outcomes });
    const res = await c.request('billing', { path: '/v1/invoices?limit=2', headers: { 'X-Trace': 'abc' } });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ ok: true, url: '/api/v1/invoices?limit=2' });
    expect(res.endpoint).toBe(s.origin);
    expect(res.latencyMs).toBeGreaterThan(0);
    expect(s.seen[0]!.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(s.seen[0]!.headers['x-trace']).toBe('abc');
    expect(outcomes.all).toEqual([
      expect.objectContaining({ serviceId: 'billing', endpoint: s.origin, ok: true, status: 200, statusClass: '2xx', reporter: 'test-worker' }),
    ]);
    expect(outcomes.all[0]!.latencyMs).toBeGreaterThan(0);
  });

  it('sends JSON bodies and the idempotency key', async () => {
    const s = await server((_req, res, body) => res.end(body));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const res = await c.request('svc', { method: 'POST', path: '/items', json: { a: 1 }, idempotencyKey: 'rotation/db/step-3' });
    expect(res.body).toBe('{"a":1}');
    expect(s.seen[0]!.headers['content-type']).toBe('application/json');
    expect(s.seen[0]!.headers['idempotency-key']).toBe('rotation/db/step-3');
  });

  it.each([
    [{ scheme: 'basic', username: 'svc-user' }, 'authorization', `Basic ${Buffer.from(`svc-user:${SECRET}`).toString('base64')}`],
    [{ scheme: 'header', header: 'X-Api-Key' }, 'x-api-key', SECRET],
    [{ scheme: 'make' }, 'authorization', `Token ${SECRET}`],
    [{ scheme: 'bearer' }, 'authorization', `Bearer ${SECRET}`],
  ])('puts the credential where auth %j says', async (auth, header, value) => {
    const s = await server((_req, res) => res.end('ok'));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], credential: 'key', auth }]);
    await c.request('svc', { path: '/' });
    expect(s.seen[0]!.headers[header]).toBe(value);
  });

  it('reads the credential at call time, a given version on request, none with auth: false', async () => {
    const s = await server((_req, res) => res.end('ok'));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], credential: 'key' }]);
    secrets.asked.length = 0;
    await c.request('svc', { path: '/', auth: { versionId: 'v2' } });
    await c.request('svc', { path: '/', auth: false });
    expect(s.seen[0]!.headers.authorization).toBe(`Bearer ${SECRET}-v2`);
    expect(s.seen[1]!.headers.authorization).toBeUndefined();
    expect(secrets.asked).toEqual([['key', 'v2']]);
    const err = await failure(c.request('svc', { path: '/', auth: { versionId: 'missing' } }));
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/credential "key" has no version "missing"/);
  });

  it('prefers the SecretReader fast path (readSecretSync), follows a changed secret at once, and turns its throw into a rejection', async () => {
    const s = await server((_req, res) => res.end('ok'));
    let current: string | Error = 'sync-one';
    const reader: SecretReader = {
      readSecret: () => Promise.reject(new Error('readSecret must not be asked when readSecretSync exists')),
      readSecretSync: (_id, versionId) => {
        if (current instanceof Error) throw current;
        return versionId ? `${current}-${versionId}` : current;
      },
    };
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], credential: 'key' }], { secrets: reader });
    await c.request('svc', { path: '/', cache: false });
    await c.request('svc', { path: '/', cache: false });
    current = 'sync-two';
    await c.request('svc', { path: '/', cache: false });
    await c.request('svc', { path: '/', auth: { versionId: 'v2' }, cache: false });
    expect(s.seen.map((x) => x.headers.authorization)).toEqual(['Bearer sync-one', 'Bearer sync-one', 'Bearer sync-two', 'Bearer sync-two-v2']);
    current = new Error('store is locked');
    let p: Promise<unknown> | undefined;
    expect(() => (p = c.request('svc', { path: '/' }))).not.toThrow();
    await expect(p).rejects.toThrow('store is locked');
    expect(s.seen).toHaveLength(4);
  });

  it('reuses keep-alive connections across calls', async () => {
    const s = await server((_req, res) => res.end('ok'));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    for (let i = 0; i < 20; i++) await c.request('svc', { path: `/${i}` });
    expect(s.seen).toHaveLength(20);
    // undici's pool may open a second connection when the next request is
    // dispatched before the first one's client has signalled drain; never more.
    expect(s.connections).toBeLessThanOrEqual(2);
  });

  it('rejects bad requests and options with errors that name them', async () => {
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: 'http://127.0.0.1:9' }] }]);
    await expect(c.request('nope', { path: '/' })).rejects.toThrow(/unknown service "nope" in registry test registry/);
    await expect(c.request('svc', { path: 'x' })).rejects.toThrow(/invalid path "x": must start with "\/"/);
    await expect(c.request('svc', { path: '/', timeoutMs: -5 })).rejects.toThrow(/invalid timeoutMs -5/);
    await expect(c.request('svc', { path: '/', body: 'a', json: {} })).rejects.toThrow(/either body or json/);
    expect(() => createCoordinator({ registry: staticRegistry(registryOf([])), reporterId: 'r', headersTimeoutMs: 0 })).toThrow(
      /coordinator option headersTimeoutMs must be a finite number >= 1, got 0/,
    );
    expect(() => createCoordinator({ registry: staticRegistry(registryOf([])), reporterId: '' })).toThrow(/reporterId/);
    expect(() => createCoordinator({ registry: staticRegistry(registryOf([])), reporterId: 'r', pipelining: 1.5 })).toThrow(
      /coordinator option pipelining must be an integer >= 1, got 1.5/,
    );
  });

  it('rebuilds the pool when the registry moves the service to another endpoint', async () => {
    const a = await server((_req, res) => res.end('a'));
    const b = await server((_req, res) => res.end('b'));
    const registry = mutableRegistry(registryOf([{ id: 'svc', endpoints: [{ url: a.origin }] }]));
    const c = createCoordinator({ registry, reporterId: 'r' });
    closeAfterTest(c);
    expect((await c.request('svc', { path: '/' })).body).toBe('a');
    registry.set(registryOf([{ id: 'svc', endpoints: [{ url: b.origin }] }]));
    expect((await c.request('svc', { path: '/' })).body).toBe('b');
  });

  it('closes the pool of a service the registry no longer lists', async () => {
    const a = await server((_req, res) => res.end('a'));
    const b = await server((_req, res) => res.end('b'));
    const registry = mutableRegistry(registryOf([{ id: 'old', endpoints: [{ url: a.origin }] }, { id: 'other', endpoints: [{ url: b.origin }] }]));
    const c = createCoordinator({ registry, reporterId: 'r' });
    closeAfterTest(c);
    await c.request('old', { path: '/' });
    expect(a.sockets.size).toBe(1);
    registry.set(registryOf([{ id: 'other', endpoints: [{ url: b.origin }] }]));
    await c.request('other', { path: '/' });
    await waitFor(() => a.sockets.size === 0, 'the removed service\'s keep-alive socket to close');
    await expect(c.request('old', { path: '/' })).rejects.toThrow(/unknown service "old"/);
  });

  it('a registry reload that keeps the limits keeps the rate-limit history (no fresh burst)', async () => {
    const a = await server((_req, res) => res.end('a'));
    const b = await server((_req, res) => res.end('b'));
    const registry = mutableRegistry(registryOf([{ id: 'svc', endpoints: [{ url: a.origin }], rateLimit: { perMinute: 1 } }]));
    const c = createCoordinator({ registry, reporterId: 'r' });
    closeAfterTest(c);
    await c.request('svc', { path: '/' });
    registry.set(registryOf([{ id: 'svc', endpoints: [{ url: b.origin }], rateLimit: { perMinute: 1 } }]));
    await expect(c.request('svc', { path: '/', timeoutMs: 300 })).rejects.toMatchObject({ kind: 'rate_limited' });
    expect(b.seen).toHaveLength(0);
  });
});

describe('timeouts and aborts', () => {
  it('slow headers: fails with a retryable timeout once headersTimeoutMs passes', async () => {
    const s = await server((_req, res) => setTimeout(() => res.end('late'), 3_000));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { headersTimeoutMs: 200 });
    const t0 = performance.now();
    const err = await failure(c.request('svc', { path: '/' }));
    expect(performance.now() - t0).toBeLessThan(1_500);
    expect(err).toMatchObject({ kind: 'timeout', retryable: true, code: 'UND_ERR_HEADERS_TIMEOUT', endpoint: s.origin });
  });

  it('slow body: fails with a timeout when the body stalls longer than bodyTimeoutMs', async () => {
    const s = await server((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('first part');
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { bodyTimeoutMs: 200 });
    const err = await failure(c.request('svc', { path: '/' }));
    expect(err).toMatchObject({ kind: 'timeout', retryable: true, code: 'UND_ERR_BODY_TIMEOUT' });
  });

  it('a body that trickles forever hits the overall deadline', async () => {
    const s = await server((_req, res) => {
      res.writeHead(200);
      const t = setInterval(() => res.write('.'), 50);
      res.on('close', () => clearInterval(t));
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { bodyTimeoutMs: 1_000 });
    const t0 = performance.now();
    const err = await failure(c.request('svc', { path: '/', timeoutMs: 300 }));
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(err).toMatchObject({ kind: 'timeout', retryable: true, code: 'DEADLINE_EXCEEDED' });
  });

  it('reset mid-response: a retryable connection_reset', async () => {
    const s = await server((req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('partial', () => req.socket.destroy());
    });
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes });
    const err = await failure(c.request('svc', { path: '/' }));
    expect(err).toMatchObject({ kind: 'connection_reset', retryable: true });
    expect(outcomes.all).toEqual([expect.objectContaining({ ok: false, failureKind: 'connection_reset' })]);
  });

  it('black hole: an aborted call rejects promptly and leaves no socket or timer behind', async () => {
    const hole = await blackHole();
    // Connection: close, so the warm-up leaves no keep-alive socket or timer of its own.
    const ok = await server((_req, res) => res.writeHead(200, { connection: 'close' }).end('ok'));
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: hole.origin }] }, { id: 'warm', endpoints: [{ url: ok.origin }] }], {
      outcomes,
      headersTimeoutMs: 60_000,
    });
    // Warm up undici's lazy internals (parser, timer wheel) so they are not counted as leftovers.
    await c.request('warm', { path: '/' });
    await waitFor(() => ok.sockets.size === 0, 'the warm-up connection to close');
    const sockets = count('TCPSocketWrap');
    const timers = trackTimers();

    const ac = new AbortController();
    const call = c.request('svc', { path: '/', timeoutMs: 60_000 }, ac.signal);
    await waitFor(() => hole.sockets.size === 1, 'the call to connect');
    await sleep(50);
    const t0 = performance.now();
    ac.abort(new Error('activity cancelled'));
    const err = await failure(call);
    expect(performance.now() - t0).toBeLessThan(100);
    expect(err).toMatchObject({ kind: 'aborted', retryable: false });
    await waitFor(() => hole.sockets.size === 0, 'the client to close its end');
    await waitFor(() => count('TCPSocketWrap') <= sockets, 'no client socket left');
    await sleep(20);
    // Timers started for the call by undici or the coordinator (deadline, headers timeout) are all gone.
    expect(timers.stop()).toEqual([]);
    // A cancellation says nothing about the service's health.
    expect(outcomes.all.filter((o) => o.serviceId === 'svc')).toEqual([]);
  });

  it('a call aborted before it starts never reaches the service', async () => {
    const s = await server((_req, res) => res.end('ok'));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const ac = new AbortController();
    ac.abort();
    const err = await failure(c.request('svc', { path: '/', cache: false }, ac.signal));
    expect(err.kind).toBe('aborted');
    expect(s.seen).toHaveLength(0);
  });
});

describe('status failures and Retry-After', () => {
  const now = () => Date.now();
  it.each([
    ['seconds', '3', 3_000],
    ['an HTTP-date', 'DATE+10', 10_000],
    ['0', '0', 0],
  ])('429 with Retry-After as %s sets the next retry delay', async (_label, value, expected) => {
    // HTTP-dates have whole seconds: aim at the middle of the second ten seconds ahead.
    const header = value === 'DATE+10' ? new Date(Math.floor(now() / 1000) * 1000 + 10_500).toUTCString() : value;
    const s = await server((_req, res) => {
      res.writeHead(429, { 'retry-after': header });
      res.end('slow down');
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const err = await failure(c.request('svc', { path: '/' }));
    expect(err).toMatchObject({ status: 429, retryable: true, bodyExcerpt: 'slow down' });
    expect(err.retryAfterMs).toBeGreaterThanOrEqual(Math.max(0, expected - 1_500));
    expect(err.retryAfterMs).toBeLessThanOrEqual(expected + 1_000);
    const f = toApplicationFailure(err, { attempt: 1, method: 'GET' });
    expect(f.nonRetryable).toBe(false);
    expect(f.type).toBe('HTTP_429');
    expect(Number(f.nextRetryDelay)).toBeGreaterThanOrEqual(Math.max(1, expected - 1_500));
    expect(Number(f.nextRetryDelay)).toBeLessThanOrEqual(expected + 1_000);
  });

  it('503 with a garbage Retry-After falls back to full-jitter backoff', async () => {
    const s = await server((_req, res) => {
      res.writeHead(503, { 'retry-after': 'in a while' });
      res.end();
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const err = await failure(c.request('svc', { path: '/' }));
    expect(err).toMatchObject({ status: 503, retryable: true, retryAfterMs: undefined });
    const f = toApplicationFailure(err, { attempt: 3, method: 'GET' }, { backoff: { baseMs: 100, capMs: 10_000 }, random: () => 0.5 });
    expect(f.nextRetryDelay).toBe(200); // 0.5 * min(10_000, 100 * 2^(3-1))
  });

  it('503 with a far-future Retry-After is capped', async () => {
    const s = await server((_req, res) => {
      res.writeHead(503, { 'retry-after': '999999' });
      res.end();
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const f = toApplicationFailure(await failure(c.request('svc', { path: '/' })), { attempt: 1, method: 'GET' }, { maxRetryAfterMs: 60_000 });
    expect(f.nextRetryDelay).toBe(60_000);
  });

  it.each([400, 401, 403, 404, 409, 422, 418])('%i is non-retryable, with the status and a short, redacted body excerpt', async (status) => {
    const s = await server((req, res) => {
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(`rejected token ${req.headers.authorization} ${'x'.repeat(1_000)}`);
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], credential: 'key' }]);
    const err = await failure(c.request('svc', { path: '/thing' }));
    expect(err).toMatchObject({ status, retryable: false, kind: 'status' });
    expect(err.bodyExcerpt!.length).toBeLessThanOrEqual(201);
    expect(err.bodyExcerpt).toContain('rejected token Bearer [REDACTED]');
    expect(err.message).not.toContain(SECRET);
    const f = toApplicationFailure(err, { attempt: 1, method: 'GET' });
    expect(f).toBeInstanceOf(ApplicationFailure);
    expect(f.nonRetryable).toBe(true);
    expect(f.type).toBe(`HTTP_${status}`);
    expect(f.message).toContain(`HTTP ${status}`);
    expect(JSON.stringify(f.details)).not.toContain(SECRET);
  });

  it('throwOnStatus: false resolves with the failed response', async () => {
    const s = await server((_req, res) => {
      res.writeHead(503);
      res.end('down');
    });
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes });
    const res = await c.request('svc', { path: '/', throwOnStatus: false });
    expect(res).toMatchObject({ status: 503, body: 'down' });
    expect(outcomes.all[0]).toMatchObject({ ok: false, status: 503, statusClass: '5xx', failureKind: 'status' });
  });

  it('retries a non-idempotent method only with an idempotency key (or when it was never sent)', async () => {
    const s = await server((_req, res) => {
      res.writeHead(503);
      res.end();
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const bare = toApplicationFailure(await failure(c.request('svc', { method: 'POST', path: '/' })), { attempt: 1, method: 'POST' });
    expect(bare.nonRetryable).toBe(true);
    expect(bare.message).toMatch(/not retried: POST is not idempotent/);
    const keyed = toApplicationFailure(await failure(c.request('svc', { method: 'POST', path: '/', idempotencyKey: 'k1' })), {
      attempt: 1,
      method: 'POST',
      idempotencyKey: 'k1',
    });
    expect(keyed.nonRetryable).toBe(false);
    const dead = coordinatorFor([{ id: 'svc', endpoints: [{ url: 'http://127.0.0.1:9' }] }]);
    const refused = toApplicationFailure(await failure(dead.request('svc', { method: 'POST', path: '/' })), { attempt: 1, method: 'POST' });
    expect(refused.nonRetryable).toBe(false);
    expect(refused.type).toBe('CONNECTION_REFUSED');
  });

  it('a DNS failure is a retryable dns failure', async () => {
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: 'http://no-such-host.invalid:8080' }] }]);
    const err = await failure(c.request('svc', { path: '/' }));
    expect(err).toMatchObject({ kind: 'dns', retryable: true });
  });
});

describe('redirects and compression', () => {
  it('follows a redirect to another host and does not send the credential there', async () => {
    const other = await server((req, res) => res.end(`other saw ${req.url}`), '127.0.0.2');
    const s = await server((req, res) => {
      if (req.url === '/here') {
        res.writeHead(302, { location: '/there' });
        return res.end();
      }
      if (req.url === '/there') return res.end('same origin');
      res.writeHead(307, { location: `${other.origin}/moved` });
      res.end();
    });
    for (const auth of [{ scheme: 'bearer' }, { scheme: 'header', header: 'X-Api-Key' }]) {
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], credential: 'key', auth }]);
      const res = await c.request('svc', { path: '/away' });
      expect(res).toMatchObject({ status: 200, body: 'other saw /moved' });
      const seen = other.seen.at(-1)!;
      expect(seen.headers.authorization).toBeUndefined();
      expect(seen.headers['x-api-key']).toBeUndefined();
      expect(JSON.stringify(seen.headers)).not.toContain(SECRET);
      // Same-origin redirects keep it.
      expect((await c.request('svc', { path: '/here' })).body).toBe('same origin');
      expect(JSON.stringify(s.seen.at(-1)!.headers)).toContain(SECRET);
    }
  });

  it.each([
    ['gzip', gzipSync],
    ['br', brotliCompressSync],
  ])('decompresses %s bodies', async (encoding, compress) => {
    const payload = JSON.stringify({ items: Array.from({ length: 200 }, (_, i) => ({ id: i, name: `item ${i}` })) });
    const s = await server((_req, res) => {
      res.writeHead(200, { 'content-encoding': encoding, 'content-type': 'application/json' });
      res.end(compress(Buffer.from(payload)));
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const res = await c.request('svc', { path: '/', cache: false });
    expect(res.body).toBe(payload);
    expect((res.json as { items: unknown[] }).items).toHaveLength(200);
    expect(s.seen[0]!.headers['accept-encoding']).toBe('gzip, deflate, br');
  });

  it('a corrupt compressed body is a non-retryable body failure', async () => {
    const s = await server((_req, res) => {
      res.writeHead(200, { 'content-encoding': 'gzip' });
      res.end(Buffer.from('definitely not gzip'));
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const err = await failure(c.request('svc', { path: '/' }));
    expect(err.retryable).toBe(false);
    expect(err.kind).toBe('body');
  });

  it.each(['gzip', 'deflate'])('a corrupt %s body is a non-retryable body failure', async (encoding) => {
    const s = await server((_req, res) => {
      res.writeHead(200, { 'content-encoding': encoding });
      res.end(Buffer.from(`definitely not ${encoding}`));
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const err = await failure(c.request('svc', { path: '/' }));
    expect(err).toMatchObject({ kind: 'body', retryable: false, endpoint: s.origin });
  });

  // Node's brotli errors carry codes such as ERR__ERROR_FORMAT_PADDING_1 (not zlib's Z_*).
  it('a corrupt br body is a non-retryable body failure', async () => {
    const s = await server((_req, res) => {
      res.writeHead(200, { 'content-encoding': 'br' });
      res.end(Buffer.from('definitely not brotli'));
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const err = await failure(c.request('svc', { path: '/' }));
    expect(err).toMatchObject({ kind: 'body', retryable: false });
  });

  describe('redirects', () => {
    /** `/start` answers `status` with Location `/landed`; `/landed` answers `landed`. */
    async function redirecting(status: number) {
      const s = await server((req, res) => {
        if (req.url === '/start') {
          res.writeHead(status, { location: '/landed', 'content-type': 'text/plain' });
          return res.end(`moved: ${status}`);
        }
        res.end('landed');
      });
      return { s, c: coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]) };
    }

    it.each(['POST', 'PUT', 'PATCH', 'DELETE'])('303 after a %s arrives as a GET with no body and no content-* headers', async (method) => {
      const { s, c } = await redirecting(303);
      const res = await c.request('svc', { method, path: '/start', json: { order: 1 }, headers: { 'content-language': 'en', 'x-keep': 'yes' } });
      expect(res).toMatchObject({ status: 200, body: 'landed' });
      expect(s.seen.map((x) => [x.method, x.url, x.body])).toEqual([
        [method, '/start', '{"order":1}'],
        ['GET', '/landed', ''],
      ]);
      // The first hop did carry them, so their absence below is the redirect's doing.
      expect(s.seen[0]!.headers).toMatchObject({ 'content-type': 'application/json', 'content-language': 'en' });
      const hop = s.seen[1]!.headers;
      expect(hop['content-type']).toBeUndefined();
      expect(hop['content-language']).toBeUndefined();
      expect(hop['content-length']).toBeUndefined();
      expect(hop['transfer-encoding']).toBeUndefined();
      expect(hop['x-keep']).toBe('yes');
    });

    it('303 after a HEAD stays a HEAD', async () => {
      const { s, c } = await redirecting(303);
      const res = await c.request('svc', { method: 'HEAD', path: '/start' });
      expect(res.status).toBe(200);
      expect(s.seen.map((x) => [x.method, x.url])).toEqual([
        ['HEAD', '/start'],
        ['HEAD', '/landed'],
      ]);
    });

    it.each([301, 302])('%i after a POST arrives as a GET without the body', async (status) => {
      const { s, c } = await redirecting(status);
      const res = await c.request('svc', { method: 'POST', path: '/start', json: { order: 1 } });
      expect(res).toMatchObject({ status: 200, body: 'landed' });
      expect(s.seen.map((x) => [x.method, x.url, x.body])).toEqual([
        ['POST', '/start', '{"order":1}'],
        ['GET', '/landed', ''],
      ]);
      expect(s.seen[1]!.headers['content-length']).toBeUndefined();
      expect(s.seen[1]!.headers['transfer-encoding']).toBeUndefined();
    });

    it.each([301, 302])('%i after a PUT keeps the PUT and its body (only POST turns into GET)', async (status) => {
      const { s, c } = await redirecting(status);
      await c.request('svc', { method: 'PUT', path: '/start', body: 'put-body' });
      expect(s.seen.map((x) => [x.method, x.url, x.body])).toEqual([
        ['PUT', '/start', 'put-body'],
        ['PUT', '/landed', 'put-body'],
      ]);
    });

    it.each([307, 308])('%i keeps the POST, its body and its content type', async (status) => {
      const { s, c } = await redirecting(status);
      const res = await c.request('svc', { method: 'POST', path: '/start', json: { order: 1 }, idempotencyKey: 'order-1' });
      expect(res).toMatchObject({ status: 200, body: 'landed' });
      expect(s.seen.map((x) => [x.method, x.url, x.body])).toEqual([
        ['POST', '/start', '{"order":1}'],
        ['POST', '/landed', '{"order":1}'],
      ]);
      expect(s.seen[1]!.headers).toMatchObject({ 'content-type': 'application/json', 'idempotency-key': 'order-1' });
    });

    it('300 with a Location is followed too; a 3xx without Location is an answer', async () => {
      const s = await server((req, res) => {
        if (req.url === '/choices') res.writeHead(300, { location: '/landed' });
        else if (req.url === '/nowhere') res.writeHead(302);
        return res.end(req.url === '/nowhere' ? 'no location' : 'landed');
      });
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
      expect(await c.request('svc', { path: '/choices' })).toMatchObject({ status: 200, body: 'landed' });
      expect(await c.request('svc', { path: '/nowhere' })).toMatchObject({ status: 302, body: 'no location' });
      expect(s.seen.map((x) => x.url)).toEqual(['/choices', '/landed', '/nowhere']);
    });

    it('a call that follows two redirects records one outcome, status 200, and reports to its permit once', async () => {
      const s = await server((req, res) => {
        if (req.url === '/a') res.writeHead(301, { location: '/b' });
        else if (req.url === '/b') res.writeHead(302, { location: `${s.origin}/c` });
        res.end(req.url === '/c' ? 'c' : 'moving');
      });
      const outcomes = collectOutcomes();
      const reported: CallOutcome[] = [];
      const gate: CallGate = { admit: async () => ({ generation: 4, report: (o) => void reported.push(o) }) };
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes, gate });
      const res = await c.request('svc', { path: '/a' });
      expect(res).toMatchObject({ status: 200, body: 'c', endpoint: s.origin });
      expect(s.seen.map((x) => x.url)).toEqual(['/a', '/b', '/c']);
      expect(outcomes.all).toEqual([expect.objectContaining({ serviceId: 'svc', endpoint: s.origin, ok: true, status: 200, statusClass: '2xx', generation: 4 })]);
      expect(reported).toEqual([expect.objectContaining({ ok: true, status: 200, generation: 4 })]);
    });

    it('the gate fast path (admitNow) is used when it answers, and its permit gets the one outcome of a redirected call', async () => {
      const s = await server((req, res) => {
        if (req.url === '/a') res.writeHead(307, { location: '/b' });
        res.end(req.url === '/b' ? 'b' : 'moving');
      });
      const reported: CallOutcome[] = [];
      const gate: CallGate = {
        admit: () => Promise.reject(new Error('admit must not be asked when admitNow answers')),
        admitNow: () => ({ generation: 9, report: (o) => void reported.push(o) }),
      };
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { gate });
      expect(await c.request('svc', { method: 'POST', path: '/a', body: 'x' })).toMatchObject({ status: 200, body: 'b' });
      expect(reported).toEqual([expect.objectContaining({ ok: true, status: 200, generation: 9 })]);
    });

    it('stops after maxRedirections: the caller gets the 3xx itself, as an answer, with one outcome', async () => {
      const s = await server((req, res) => {
        const n = Number(req.url!.split('/')[2]);
        res.writeHead(302, { location: `/hop/${n + 1}`, 'content-type': 'text/plain' });
        res.end(`go to ${n + 1}`);
      });
      const outcomes = collectOutcomes();
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { maxRedirections: 2, outcomes });
      const res = await c.request('svc', { path: '/hop/0' });
      expect(res).toMatchObject({ status: 302, body: 'go to 3' });
      expect(res.headers.location).toBe('/hop/3');
      expect(s.seen.map((x) => x.url)).toEqual(['/hop/0', '/hop/1', '/hop/2']);
      expect(outcomes.all).toEqual([expect.objectContaining({ ok: true, status: 302, statusClass: '3xx', failureKind: undefined })]);
    });

    it('maxRedirections: 0 follows none', async () => {
      const { s } = await redirecting(301);
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { maxRedirections: 0 });
      const res = await c.request('svc', { path: '/start' });
      expect(res).toMatchObject({ status: 301, body: 'moved: 301' });
      expect(res.headers.location).toBe('/landed');
      expect(s.seen).toHaveLength(1);
    });

    it('drops cookie, proxy-authorization and a caller-set host on the way to another origin; same origin keeps cookie', async () => {
      const other = await server((req, res) => res.end(`other saw ${req.url}`), '127.0.0.2');
      const s = await server((req, res) => {
        if (req.url === '/here') res.writeHead(307, { location: '/there' });
        else if (req.url === '/away') res.writeHead(307, { location: `${other.origin}/moved` });
        res.end(req.url === '/there' ? 'same origin' : 'moving');
      });
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
      const headers = { Cookie: 'session=c00k1e', 'Proxy-Authorization': 'Basic cHJveHk6cHc=', Host: `localhost:${s.port}`, 'X-Trace': 't1' };
      expect((await c.request('svc', { path: '/away', headers })).body).toBe('other saw /moved');
      expect(s.seen[0]!.headers).toMatchObject({ cookie: 'session=c00k1e', 'proxy-authorization': 'Basic cHJveHk6cHc=', host: `localhost:${s.port}` });
      const seen = other.seen[0]!.headers;
      expect(seen.cookie).toBeUndefined();
      expect(seen['proxy-authorization']).toBeUndefined();
      expect(seen.host).toBe(`127.0.0.2:${other.port}`);
      expect(seen['x-trace']).toBe('t1');

      expect((await c.request('svc', { path: '/here', headers })).body).toBe('same origin');
      const same = s.seen.at(-1)!;
      expect(same.url).toBe('/there');
      expect(same.headers).toMatchObject({ cookie: 'session=c00k1e', 'proxy-authorization': 'Basic cHJveHk6cHc=', 'x-trace': 't1' });
    });

    it('a redirect to another endpoint of the same service keeps the credential but not the cookie', async () => {
      let a: TestServer | undefined;
      let b: TestServer | undefined;
      const handler = (other: () => TestServer | undefined) => (req: IncomingMessage, res: ServerResponse) => {
        if (req.url === '/start') res.writeHead(307, { location: `${other()!.origin}/landed` });
        res.end(req.url === '/landed' ? 'landed' : 'moving');
      };
      a = await server(handler(() => b));
      b = await server(handler(() => a), '127.0.0.2');
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: a.origin }, { url: b.origin }], credential: 'key' }]);
      expect((await c.request('svc', { path: '/start', headers: { cookie: 'session=c00k1e' } })).body).toBe('landed');
      const landed = [...a.seen, ...b.seen].filter((x) => x.url === '/landed');
      expect(landed).toHaveLength(1);
      expect(landed[0]!.headers.authorization).toBe(`Bearer ${SECRET}`);
      expect(landed[0]!.headers.cookie).toBeUndefined();
    });

    it.each(['ftp://x/', 'file:///etc/passwd', 'http://[oops/'])('a redirect to %s fails the call, not retryable; the endpoint answered (a healthy outcome)', async (location) => {
      const s = await server((_req, res) => {
        res.writeHead(302, { location });
        res.end();
      });
      const outcomes = collectOutcomes();
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes });
      const err = await failure(c.request('svc', { path: '/x' }));
      expect(err).toMatchObject({ serviceId: 'svc', method: 'GET', path: '/x', endpoint: s.origin, kind: 'other', retryable: false });
      expect(err.message).toMatch(/HTTP 302 redirects to a .*location, which the coordinator does not follow/);
      // The Location itself is not quoted (it may carry a signed token).
      expect(err.message).not.toContain(location);
      expect(s.seen).toHaveLength(1);
      expect(outcomes.all).toEqual([expect.objectContaining({ ok: true, status: 302, statusClass: '3xx' })]);
    });

    // A connection failure on a redirect hop is not the endpoint's: the endpoint
    // has already processed the POST, so it is neither cooled down nor failed over.
    it('a POST answered with 303 is not sent again to another endpoint when the redirect target is down', async () => {
      // Both endpoints process the POST and point to a status page on a host that refuses connections.
      const handler = (_req: IncomingMessage, res: ServerResponse) => {
        res.writeHead(303, { location: 'http://127.0.0.1:9/status' });
        res.end();
      };
      const a = await server(handler);
      const b = await server(handler);
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: a.origin }, { url: b.origin }] }]);
      const err = await failure(c.request('svc', { method: 'POST', path: '/orders', json: { order: 1 } }));
      // The service received (and acted on) the POST: it must not go to a second endpoint, and the error must not claim it was never sent.
      expect(a.seen.length + b.seen.length).toBe(1);
      expect(err.notSent).toBe(false);
    });
  });

  describe('compression', () => {
    const payload = JSON.stringify({ items: Array.from({ length: 50 }, (_, i) => ({ id: i, name: `item ${i}` })) });

    it.each<[string, string, (b: Buffer) => Buffer]>([
      ['deflate (zlib-wrapped)', 'deflate', (b) => deflateSync(b)],
      ['deflate (raw DEFLATE)', 'deflate', (b) => deflateRawSync(b)],
      ['x-gzip', 'x-gzip', (b) => gzipSync(b)],
      ['GZIP (any case)', 'GZIP', (b) => gzipSync(b)],
      ['gzip, br (gzip applied first)', 'gzip, br', (b) => brotliCompressSync(gzipSync(b))],
      ['br, deflate', 'br, deflate', (b) => deflateSync(brotliCompressSync(b))],
      ['identity, gzip', 'identity, gzip', (b) => gzipSync(b)],
    ])('decodes %s; the caller sees no content-encoding or content-length', async (_label, encoding, encode) => {
      const coded = encode(Buffer.from(payload));
      const s = await server((_req, res) => {
        res.writeHead(200, { 'content-encoding': encoding, 'content-type': 'application/json', 'content-length': String(coded.length), 'x-extra': 'kept' });
        res.end(coded);
      });
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
      const res = await c.request('svc', { path: '/' });
      expect(res.body).toBe(payload);
      expect((res.json as { items: unknown[] }).items).toHaveLength(50);
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.headers['content-length']).toBeUndefined();
      expect(res.headers).toMatchObject({ 'content-type': 'application/json', 'x-extra': 'kept' });
    });

    it('two content-encoding header lines are one list (gzip then br)', async () => {
      const s = await server((_req, res) => {
        res.setHeader('content-encoding', ['gzip', 'br']);
        res.end(brotliCompressSync(gzipSync(Buffer.from('layered'))));
      });
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
      const res = await c.request('svc', { path: '/' });
      expect(res.body).toBe('layered');
      expect(res.headers['content-encoding']).toBeUndefined();
    });

    it('an unknown coding leaves the body untouched', async () => {
      const s = await server((_req, res) => {
        res.writeHead(200, { 'content-encoding': 'x-custom' });
        res.end('opaque bytes');
      });
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
      expect((await c.request('svc', { path: '/' })).body).toBe('opaque bytes');
    });

    // A body the coordinator cannot decode is passed on as it came, headers included.
    it('an unknown coding keeps its content-encoding header (the body is still coded)', async () => {
      const s = await server((_req, res) => {
        res.writeHead(200, { 'content-encoding': 'x-custom', 'content-length': '12' });
        res.end('opaque bytes');
      });
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
      const res = await c.request('svc', { path: '/' });
      expect(res.headers['content-encoding']).toBe('x-custom');
      expect(res.headers['content-length']).toBe('12');
    });

    it('identity alone is no coding: the body and headers stay as sent', async () => {
      const s = await server((_req, res) => {
        res.writeHead(200, { 'content-encoding': 'identity' });
        res.end('plain');
      });
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
      const res = await c.request('svc', { path: '/' });
      expect(res.body).toBe('plain');
    });

    it.each<[string, (b: Buffer) => Buffer]>([
      ['gzip', (b) => gzipSync(b)],
      ['br', (b) => brotliCompressSync(b)],
      ['deflate', (b) => deflateSync(b)],
    ])('a %s body that inflates beyond maxResponseBytes fails with kind body, not retryable; one at the limit passes', async (encoding, encode) => {
      const s = await server((req, res) => {
        res.writeHead(200, { 'content-encoding': encoding });
        res.end(encode(Buffer.alloc(req.url === '/bomb' ? 100_000 : 1_000, 0x30)));
      });
      const outcomes = collectOutcomes();
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { maxResponseBytes: 1_000, outcomes });
      const err = await failure(c.request('svc', { path: '/bomb' }));
      expect(err).toMatchObject({ kind: 'body', retryable: false, endpoint: s.origin });
      expect(outcomes.all).toEqual([expect.objectContaining({ ok: false, failureKind: 'body' })]);
      expect((await c.request('svc', { path: '/limit' })).body).toBe('0'.repeat(1_000));
    });

    it('each layer of a layered coding is bounded too', async () => {
      const s = await server((_req, res) => {
        res.writeHead(200, { 'content-encoding': 'gzip, gzip' });
        res.end(gzipSync(gzipSync(Buffer.alloc(1_000_000))));
      });
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { maxResponseBytes: 10_000 });
      const err = await failure(c.request('svc', { path: '/' }));
      expect(err).toMatchObject({ kind: 'body', retryable: false });
    });

    it('an error status with a compressed body fails with the decoded excerpt', async () => {
      const s = await server((_req, res) => {
        res.writeHead(404, { 'content-encoding': 'gzip', 'content-type': 'text/plain' });
        res.end(gzipSync(Buffer.from('no such invoice')));
      });
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
      const err = await failure(c.request('svc', { path: '/invoices/7' }));
      expect(err).toMatchObject({ status: 404, kind: 'status', bodyExcerpt: 'no such invoice' });
      const res = await c.request('svc', { path: '/invoices/7', throwOnStatus: false });
      expect(res).toMatchObject({ status: 404, body: 'no such invoice' });
      expect(res.headers['content-encoding']).toBeUndefined();
    });

    it('a redirect body is dropped; only the final answer is decoded', async () => {
      const s = await server((req, res) => {
        if (req.url === '/old') {
          res.writeHead(301, { location: '/new', 'content-encoding': 'gzip' });
          return res.end(Buffer.from('not gzip at all'));
        }
        res.writeHead(200, { 'content-encoding': 'br' });
        res.end(brotliCompressSync(Buffer.from('new home')));
      });
      const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
      expect((await c.request('svc', { path: '/old' })).body).toBe('new home');
    });
  });
});

describe('load balancing and failover', () => {
  it('spreads calls by weight (smooth weighted round-robin)', async () => {
    const a = await server((_req, res) => res.end('a'));
    const b = await server((_req, res) => res.end('b'));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: a.origin, weight: 3 }, { url: b.origin, weight: 1 }] }]);
    const bodies: string[] = [];
    for (let i = 0; i < 8; i++) bodies.push((await c.request('svc', { path: '/', cache: false })).body);
    expect(bodies.join('')).toBe('aabaaaba');
  });

  it('an endpoint that dies fails over within the same call, cools down, and takes traffic again when it comes back', async () => {
    const a = await server((_req, res) => res.end('a'));
    const b = await server((_req, res) => res.end('b'));
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: a.origin }, { url: b.origin }] }], { outcomes, endpointCoolDownMs: 300 });
    expect((await c.request('svc', { path: '/', cache: false })).body).toBe('a');
    await a.close();

    // The next pick is b; the one after is a, which is dead: the same call fails over to b.
    const bodies: string[] = [];
    for (let i = 0; i < 2; i++) bodies.push((await c.request('svc', { path: '/', cache: false })).body);
    expect(bodies).toEqual(['b', 'b']);
    const aFailures = outcomes.all.filter((o) => o.endpoint === a.origin && !o.ok);
    expect(aFailures).toEqual([expect.objectContaining({ failureKind: 'connection_refused' })]);

    // During the cool-down a is not even tried.
    for (let i = 0; i < 4; i++) expect((await c.request('svc', { path: '/', cache: false })).body).toBe('b');
    expect(outcomes.all.filter((o) => o.endpoint === a.origin && !o.ok)).toHaveLength(1);

    await a.restart();
    await sleep(350);
    const after = new Set<string>();
    for (let i = 0; i < 4; i++) after.add((await c.request('svc', { path: '/', cache: false })).body);
    expect(after).toEqual(new Set(['a', 'b']));
  });

  it('a reset on a POST without idempotency key does not fail over (it may have been applied)', async () => {
    const a = await server((req) => req.socket.destroy());
    const b = await server((_req, res) => res.end('b'));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: a.origin }, { url: b.origin }] }]);
    const err = await failure(c.request('svc', { method: 'POST', path: '/', body: 'x' }));
    expect(err.kind).toBe('connection_reset');
    expect(b.seen).toHaveLength(0);
    // With a key it does.
    expect((await c.request('svc', { method: 'POST', path: '/', body: 'x', idempotencyKey: 'k' })).body).toBe('b');
  });

  it('when every endpoint is down the call fails with the last connection error', async () => {
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: 'http://127.0.0.1:9' }, { url: 'http://127.0.0.1:7' }] }]);
    const err = await failure(c.request('svc', { path: '/' }));
    expect(err).toMatchObject({ kind: 'connection_refused', retryable: true });
  });
});

describe('GET cache and coalescing', () => {
  it('caches what Cache-Control allows, for max-age, and never no-store', async () => {
    const s = await server((req, res) => {
      res.setHeader('cache-control', req.url === '/fresh' ? 'max-age=60' : 'no-store');
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ n: s.seen.length }));
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const first = await c.request('svc', { path: '/fresh' });
    const second = await c.request('svc', { path: '/fresh' });
    expect(second).toMatchObject({ cached: true, json: first.json, latencyMs: 0 });
    (second.json as { n: number }).n = 99; // a caller's mutation must not reach the cache
    expect((await c.request('svc', { path: '/fresh' })).json).toEqual({ n: 1 });
    await c.request('svc', { path: '/nostore', cache: { ttlMs: 60_000 } });
    await c.request('svc', { path: '/nostore', cache: { ttlMs: 60_000 } });
    expect(s.seen.map((x) => x.url)).toEqual(['/fresh', '/nostore', '/nostore']);
    // cache: false bypasses.
    expect((await c.request('svc', { path: '/fresh', cache: false })).cached).toBeUndefined();
  });

  it('caches for a requested TTL when the response says nothing, then expires', async () => {
    const s = await server((_req, res) => res.end(String(s.seen.length)));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    expect((await c.request('svc', { path: '/', cache: { ttlMs: 150 } })).body).toBe('1');
    expect((await c.request('svc', { path: '/', cache: { ttlMs: 150 } })).body).toBe('1');
    await sleep(200);
    expect((await c.request('svc', { path: '/', cache: { ttlMs: 150 } })).body).toBe('2');
    // Without a TTL and without Cache-Control nothing is cached.
    await c.request('svc', { path: '/plain' });
    await c.request('svc', { path: '/plain' });
    expect(s.seen.filter((x) => x.url === '/plain')).toHaveLength(2);
  });

  it('keys the cache by credential: another version is not served the cached answer', async () => {
    const s = await server((req, res) => {
      res.setHeader('cache-control', 'max-age=60');
      res.end(req.headers.authorization);
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], credential: 'key' }]);
    expect((await c.request('svc', { path: '/' })).body).toBe(`Bearer ${SECRET}`);
    expect((await c.request('svc', { path: '/', auth: { versionId: 'v9' } })).body).toBe(`Bearer ${SECRET}-v9`);
    expect(s.seen).toHaveLength(2);
  });

  it('is bounded in size: the least recently used entry goes first', async () => {
    const s = await server((req, res) => {
      res.setHeader('cache-control', 'max-age=60');
      res.end(`${req.url}`.padEnd(400, '.'));
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { cacheMaxBytes: 1_000 });
    for (const p of ['/1', '/2', '/3']) await c.request('svc', { path: p });
    expect((await c.request('svc', { path: '/3' })).cached).toBe(true);
    expect((await c.request('svc', { path: '/1' })).cached).toBeUndefined();
  });

  it('coalesces identical in-flight GETs into one call; one caller giving up does not cancel the others', async () => {
    const s = await server((_req, res) => setTimeout(() => res.end('shared'), 150));
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes });
    const quitter = new AbortController();
    const calls = Array.from({ length: 10 }, (_, i) => c.request('svc', { path: '/same' }, i === 0 ? quitter.signal : undefined));
    await sleep(30);
    quitter.abort();
    const results = await Promise.allSettled(calls);
    expect(results[0]).toMatchObject({ status: 'rejected', reason: expect.objectContaining({ kind: 'aborted' }) });
    expect(results.slice(1).every((r) => r.status === 'fulfilled' && r.value.body === 'shared')).toBe(true);
    expect(s.seen).toHaveLength(1);
    expect(outcomes.all).toHaveLength(1);
  });

  it('aborts the shared call when every caller has given up', async () => {
    const hole = await blackHole();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: hole.origin }] }]);
    const acs = [new AbortController(), new AbortController()];
    const calls = acs.map((ac) => c.request('svc', { path: '/x' }, ac.signal).catch((e: unknown) => e));
    await sleep(100);
    expect(hole.sockets.size).toBe(1);
    acs.forEach((ac) => ac.abort());
    expect(await Promise.all(calls)).toEqual([expect.objectContaining({ kind: 'aborted' }), expect.objectContaining({ kind: 'aborted' })]);
    await waitFor(() => hole.sockets.size === 0, 'every socket to the black hole closed');
  });
});

describe('rate limits', () => {
  it('perSecond: no second, wherever the window falls, holds more than N call starts', async () => {
    const s = await server((_req, res) => res.end('ok'));
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], rateLimit: { perSecond: 4 } }], { outcomes });
    await Promise.all(Array.from({ length: 10 }, (_, i) => c.request('svc', { path: `/${i}`, cache: false })));
    expect(s.seen).toHaveLength(10);
    // Starts as the coordinator sent them (epoch ms of dispatch).
    expect(maxInAnyWindow(outcomes.all.map((o) => o.startedAt), 1_000)).toBeLessThanOrEqual(4);
    // As the server saw them: 10 calls at 4/s span at least two whole windows.
    const at = s.seen.map((x) => x.at);
    expect(Math.max(...at) - Math.min(...at)).toBeGreaterThan(1_900);
  });

  it('counts failover tries too', async () => {
    const b = await server((_req, res) => res.end('b'));
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: 'http://127.0.0.1:9' }, { url: b.origin }], rateLimit: { perSecond: 2 } }], {
      outcomes,
      endpointCoolDownMs: 0,
    });
    await Promise.all(Array.from({ length: 3 }, () => c.request('svc', { path: '/', cache: false })));
    const starts = outcomes.all.map((o) => o.startedAt);
    expect(maxInAnyWindow(starts, 1_000)).toBeLessThanOrEqual(2);
  });

  it('fails fast with rate_limited and the wait when the limit cannot admit before the deadline', async () => {
    const s = await server((_req, res) => res.end('ok'));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], rateLimit: { perMinute: 1 } }]);
    await c.request('svc', { path: '/', cache: false });
    const err = await failure(c.request('svc', { path: '/', cache: false, timeoutMs: 1_000 }));
    expect(err).toMatchObject({ kind: 'rate_limited', retryable: true });
    expect(err.retryAfterMs).toBeGreaterThan(55_000);
    expect(toApplicationFailure(err, { attempt: 1, method: 'GET' }).nextRetryDelay).toBe(Math.round(err.retryAfterMs!));
    expect(s.seen).toHaveLength(1);
  });

  it('maxConcurrent: at most N calls in flight at the server', async () => {
    let active = 0;
    let peak = 0;
    const s = await server((_req, res) => {
      active++;
      peak = Math.max(peak, active);
      setTimeout(() => {
        active--;
        res.end('ok');
      }, 30);
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], rateLimit: { maxConcurrent: 3 } }]);
    await Promise.all(Array.from({ length: 12 }, (_, i) => c.request('svc', { path: `/${i}` })));
    expect(peak).toBe(3);
  });
});

describe('breaker gate', () => {
  it('asks the gate before each call and reports the outcome to the permit exactly once', async () => {
    const s = await server((_req, res) => {
      res.writeHead(502);
      res.end();
    });
    const reported: CallOutcome[] = [];
    const gate: CallGate = {
      async admit(): Promise<CallPermit> {
        return { generation: 7, report: (o) => void reported.push(o) };
      },
    };
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { gate, outcomes });
    await failure(c.request('svc', { path: '/' }));
    expect(reported).toEqual([expect.objectContaining({ serviceId: 'svc', ok: false, status: 502, generation: 7 })]);
    expect(outcomes.all[0]!.generation).toBe(7);
  });

  it('a call the rate limit cannot admit in time still reports to the permit once, as aborted (breakers ignore it)', async () => {
    const s = await server((_req, res) => res.end('ok'));
    const reported: CallOutcome[] = [];
    const gate: CallGate = { admit: async () => ({ generation: 1, report: (o) => void reported.push(o) }) };
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], rateLimit: { perMinute: 1 } }], { gate });
    await c.request('svc', { path: '/', cache: false });
    await failure(c.request('svc', { path: '/', cache: false, timeoutMs: 500 }));
    expect(reported.map((o) => o.failureKind)).toEqual([undefined, 'aborted']);
    expect(s.seen).toHaveLength(1);
  });

  it('a gate that refuses fails fast with breaker_open and its time to the next trial, without a call', async () => {
    const s = await server((_req, res) => res.end('ok'));
    const gate: CallGate = {
      admit: () => Promise.reject(Object.assign(new Error('breaker svc is OPEN'), { retryAfterMs: 4_321 })),
    };
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { gate });
    const err = await failure(c.request('svc', { method: 'POST', path: '/' }));
    expect(err).toMatchObject({ kind: 'breaker_open', retryable: true, retryAfterMs: 4_321 });
    expect(s.seen).toHaveLength(0);
    const f = toApplicationFailure(err, { attempt: 1, method: 'POST' });
    expect(f).toMatchObject({ nonRetryable: false, type: 'BREAKER_OPEN', nextRetryDelay: 4_321 });
  });
});
