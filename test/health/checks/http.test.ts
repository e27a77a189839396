/**
 * HTTP probe options against real servers on loopback: redirects (the next
 * hop's SNI and Host follow the new host; the credential stays with the
 * probed origin), plain-text body rules, request method/headers/body,
 * insecureSkipVerify and caFile, the IP family, and `auth: true` with the
 * managed credential (a 401 is `credential_rejected`; the secret appears in no result).
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { createProbeActivities } from '../../../src/activities/probes';
import type { ProbeResult } from '../../../src/domain/health';
import { makeCa } from './certs';
import { targetsOf } from './registry';

const ca = makeCa();
const leaf = ca.leaf('localhost', ['DNS:localhost'], 30);
const TOKEN = 'http-token-9e2d41';
/** What the servers saw, per path. */
const seen: Array<{ server: string; method: string; url: string; headers: IncomingHttpHeaders; body: string; sni?: string }> = [];
let http: Server;
let https: HttpsServer;
let plainBase: string;
let tlsPort: number;
const sni: string[] = [];

beforeAll(async () => {
  http = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ server: 'http', method: req.method!, url: req.url!, headers: req.headers, body });
      const path = req.url!.split('?')[0];
      if (path === '/to-tls') res.writeHead(302, { location: `https://localhost:${tlsPort}/landing` }).end();
      else if (path === '/loop') res.writeHead(301, { location: '/loop' }).end();
      else if (path === '/page') res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>Status: OK all good</body></html>');
      else if (path === '/echo') res.writeHead(req.method === 'POST' && req.headers['x-probe'] === 'yes' && body === '{"ping":1}' ? 200 : 400).end();
      else if (path === '/guarded') res.writeHead(req.headers.authorization === `Bearer ${TOKEN}` ? 200 : 401).end();
      else if (path === '/guarded-redirect') res.writeHead(307, { location: `https://localhost:${tlsPort}/landing` }).end();
      else res.writeHead(200).end('{}');
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  plainBase = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  const context = tls.createSecureContext({ key: leaf.key, cert: leaf.cert });
  https = createHttpsServer({ key: leaf.key, cert: leaf.cert, SNICallback: (name, cb) => (sni.push(name), cb(null, context)) }, (req, res) => {
    seen.push({ server: 'https', method: req.method!, url: req.url!, headers: req.headers, body: '' });
    res.writeHead(200, { 'content-type': 'text/plain' }).end('landed');
  });
  await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
  tlsPort = (https.address() as AddressInfo).port;
});
afterAll(async () => {
  for (const s of [http, https]) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const store: Record<string, string> = {};
async function probe(services: Array<Record<string, unknown>>): Promise<Map<string, ProbeResult>> {
  const activities = createProbeActivities({ secrets: { readSecret: async (id) => store[id] }, keepAliveTimeoutMs: 10 });
  const results = await activities.probeServices({ targets: targetsOf(services) });
  return new Map(results.map((r) => [r.serviceId, r]));
}
const svc = (id: string, url: string, healthCheck: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({ id, type: 'api', endpoints: [{ url }], healthCheck: { timeout: '2s', ...healthCheck }, ...extra });

test('redirects: off judges the 3xx; on follows to another host with its own SNI and Host; too many is the last 3xx judged', async () => {
  seen.length = 0;
  sni.length = 0;
  const r = await probe([
    svc('off', `${plainBase}/to-tls`),
    svc('on', `${plainBase}/to-tls`, { maxRedirects: 2, caFile: ca.caFile, expect: { body: [{ contains: 'landed' }] } }),
    svc('loop', `${plainBase}/loop`, { maxRedirects: 3 }),
  ]);
  expect(r.get('off')).toMatchObject({ verdict: 'fail', failureKind: 'status', status: 302 });
  expect(r.get('on')).toMatchObject({ verdict: 'pass', status: 200 });
  expect(r.get('on')!.certDaysLeft).toBeGreaterThanOrEqual(29);
  expect(sni).toEqual(['localhost']);
  expect(seen.find((s) => s.server === 'https')!.headers.host).toBe(`localhost:${tlsPort}`);
  expect(r.get('loop')).toMatchObject({ verdict: 'fail', failureKind: 'status', status: 301 });
  expect(seen.filter((s) => s.url === '/loop')).toHaveLength(4);
});

test('plain-text body rules: a keyword and a regular expression on an HTML page', async () => {
  const page = `${plainBase}/page`;
  const r = await probe([
    svc('keyword', page, { expect: { body: [{ contains: 'OK all good' }] } }),
    svc('regex', page, { expect: { body: [{ matches: 'Status:\\s+OK' }] } }),
    svc('missing', page, { expect: { body: [{ contains: 'degraded' }] } }),
    svc('nomatch', page, { expect: { body: [{ matches: '^\\{' }] } }),
  ]);
  expect(r.get('keyword')!.verdict).toBe('pass');
  expect(r.get('regex')!.verdict).toBe('pass');
  expect(r.get('missing')).toMatchObject({ verdict: 'fail', failureKind: 'body', detail: 'body does not contain "degraded"' });
  expect(r.get('nomatch')).toMatchObject({ verdict: 'fail', failureKind: 'body', detail: 'body does not match /^\\{/' });
});

test('request method, headers and body are sent as configured', async () => {
  const r = await probe([
    svc('post', `${plainBase}/echo`, { method: 'POST', headers: { 'x-probe': 'yes' }, body: '{"ping":1}' }),
    svc('get', `${plainBase}/echo`),
  ]);
  expect(r.get('post')).toMatchObject({ verdict: 'pass', status: 200 });
  expect(r.get('get')).toMatchObject({ verdict: 'fail', status: 400 });
});

test('trust: a private CA from caFile, or insecureSkipVerify; neither is a tls failure', async () => {
  const url = `https://localhost:${tlsPort}/`;
  const r = await probe([svc('ca', url, { caFile: ca.caFile }), svc('skip', url, { insecureSkipVerify: true }), svc('none', url)]);
  expect(r.get('ca')!.verdict).toBe('pass');
  expect(r.get('skip')!.verdict).toBe('pass');
  expect(r.get('skip')!.certDaysLeft).toBeGreaterThanOrEqual(29);
  expect(r.get('none')).toMatchObject({ verdict: 'fail', failureKind: 'tls' });
});

test('ipFamily: 4 reaches an IPv4-only name, 6 finds no address for it', async () => {
  const url = plainBase.replace('127.0.0.1', 'localhost');
  const r = await probe([svc('v4', url, { ipFamily: 4 }), svc('v6', url, { ipFamily: 6 })]);
  expect(r.get('v4')!.verdict).toBe('pass');
  expect(r.get('v6')).toMatchObject({ verdict: 'fail', failureKind: 'dns' });
});

test('auth: the CURRENT credential as the service presents it on calls; a 401 is credential_rejected, and the secret is in no result', async () => {
  const guarded = (id: string, path = '/guarded', hc: Record<string, unknown> = {}) => svc(id, `${plainBase}${path}`, { auth: true, ...hc }, { credential: 'orders-key', auth: { scheme: 'bearer' } });
  store['orders-key'] = TOKEN;
  seen.length = 0;
  const ok = await probe([guarded('ok'), guarded('hop', '/guarded-redirect', { maxRedirects: 1, caFile: ca.caFile })]);
  expect(ok.get('ok')).toMatchObject({ verdict: 'pass' });
  expect(ok.get('hop')).toMatchObject({ verdict: 'pass' });
  // The credential goes to the probed origin only, not to the host a redirect names.
  expect(seen.find((s) => s.server === 'https')!.headers.authorization).toBeUndefined();

  store['orders-key'] = 'revoked-outside-1234';
  const bad = await probe([guarded('bad')]);
  expect(bad.get('bad')).toMatchObject({ verdict: 'fail', failureKind: 'credential_rejected', credentialId: 'orders-key', status: 401 });
  expect(bad.get('bad')!.detail).toBe('credential "orders-key" rejected (HTTP 401): if it was revoked or expired outside the agent, run `integration-agent rotate orders-key`');
  const unauthenticated = await probe([svc('plain', `${plainBase}/guarded`)]);
  expect(unauthenticated.get('plain')).toMatchObject({ verdict: 'fail', failureKind: 'status', status: 401 });
  delete store['orders-key'];
  const missing = await probe([guarded('missing')]);
  expect(missing.get('missing')).toMatchObject({ verdict: 'fail', failureKind: 'other' });
  expect(missing.get('missing')!.detail).toContain('no CURRENT version');
  expect(JSON.stringify([...ok.values(), ...bad.values(), ...missing.values()])).not.toMatch(new RegExp(`${TOKEN}|revoked-outside-1234`));
});
