/**
 * The probe activity against real loopback servers: TLS with certificates
 * generated at test time by openssl (the leaf actually served is read),
 * JSONPath rules, health+json, body limits, failure kinds.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createProbeActivities } from '../../src/activities/probes';
import { probeTarget, type ProbeResult } from '../../src/domain/health';
import { registryOf, startFleet, type Fleet } from './fleet';

const dir = mkdtempSync(join(tmpdir(), 'ia-tls-'));
/** A self-signed EC certificate for 127.0.0.1 valid for `days`. */
function cert(name: string, days: number): { key: string; cert: string } {
  const key = join(dir, `${name}.key`);
  const crt = join(dir, `${name}.crt`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', crt, '-days', String(days), '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' });
  return { key: readFileSync(key, 'utf8'), cert: readFileSync(crt, 'utf8') };
}

async function httpsServer(c: { key: string; cert: string }): Promise<{ url: string; server: HttpsServer }> {
  const server = createHttpsServer({ key: c.key, cert: c.cert }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/health+json' }).end(JSON.stringify({ status: 'pass' }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/health`, server };
}

let fleet: Fleet;
const servers: HttpsServer[] = [];
const long = cert('long', 90);
const short = cert('short', 5);
beforeAll(async () => {
  fleet = await startFleet();
});
afterAll(async () => {
  await fleet.close();
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
});

async function probe(services: unknown[], ca?: string[]): Promise<Map<string, ProbeResult>> {
  const reg = registryOf(services);
  const { probeServices } = createProbeActivities(ca ? { ca } : {});
  const results = await probeServices({ targets: reg.services.map(probeTarget) });
  expect(results.map((r) => r.serviceId)).toEqual(reg.services.map((s) => s.id));
  return new Map(results.map((r) => [r.serviceId, r]));
}

const svc = (id: string, url: string, healthCheck: Record<string, unknown> = {}) => ({ id, type: 'api', endpoints: [{ url }], healthCheck: { timeout: '1s', ...healthCheck } });

test('TLS: days left of the leaf actually served; an untrusted or soon-expiring certificate is caught', async () => {
  const a = await httpsServer(long);
  const b = await httpsServer(short);
  servers.push(a.server, b.server);
  const trusted = await probe(
    [svc('long', a.url, { expect: { certificateExpiresAfter: '14d' } }), svc('short', b.url, { expect: { certificateExpiresAfter: '14d' } })],
    [long.cert, short.cert],
  );
  expect(trusted.get('long')).toMatchObject({ verdict: 'pass', status: 200 });
  expect(trusted.get('long')!.certDaysLeft).toBeGreaterThanOrEqual(89);
  expect(trusted.get('long')!.certDaysLeft).toBeLessThanOrEqual(90);
  expect(trusted.get('short')).toMatchObject({ verdict: 'warn', failureKind: 'tls' });
  expect(trusted.get('short')!.certDaysLeft).toBeGreaterThanOrEqual(4);
  expect(trusted.get('short')!.certDaysLeft).toBeLessThanOrEqual(5);
  // Without the CA the chain does not verify: a TLS failure, not a pass.
  const untrusted = await probe([svc('long', a.url)]);
  expect(untrusted.get('long')).toMatchObject({ verdict: 'fail', failureKind: 'tls' });
  // Speaking TLS to a plain HTTP server is a TLS failure too.
  const plain = await probe([svc('plain', fleet.url.replace('http:', 'https:') + '/x')]);
  expect(plain.get('plain')).toMatchObject({ verdict: 'fail', failureKind: 'tls' });
});

test('JSONPath rules (filters, nested), health+json statuses and HEAD', async () => {
  fleet.set('/deps', { body: { checks: [{ name: 'db', status: 'up' }, { name: 'cache', status: 'down' }], version: '2.4.1' } });
  fleet.set('/hj-fail', { body: { status: 'fail', output: 'db down' }, contentType: 'application/health+json' });
  fleet.set('/hj-pass', { body: { status: 'pass' }, contentType: 'application/health+json; charset=utf-8' });
  fleet.set('/garbage', { body: 'not json', contentType: 'text/plain' });
  const u = fleet.url;
  const r = await probe([
    svc('db-up', `${u}/deps`, { expect: { body: [{ path: "$.checks[?(@.name=='db')].status", equals: 'up' }, { path: '$.version', matches: '^2\\.' }] } }),
    svc('cache-up', `${u}/deps`, { expect: { body: [{ path: "$.checks[?(@.name=='cache')].status", equals: 'up' }] } }),
    svc('missing', `${u}/deps`, { expect: { body: [{ path: '$.uptime', exists: true }] } }),
    svc('hj-fail', `${u}/hj-fail`),
    svc('hj-pass', `${u}/hj-pass`),
    svc('garbage', `${u}/garbage`, { expect: { body: [{ path: '$.status', exists: true }] } }),
    svc('head', `${u}/deps`, { method: 'HEAD' }),
  ]);
  expect(r.get('db-up')!.verdict).toBe('pass');
  expect(r.get('cache-up')).toMatchObject({ verdict: 'fail', failureKind: 'body' });
  expect(r.get('cache-up')!.detail).toContain('"down"');
  expect(r.get('missing')).toMatchObject({ verdict: 'fail', failureKind: 'body', detail: '$.uptime is missing' });
  expect(r.get('hj-fail')).toMatchObject({ verdict: 'fail', failureKind: 'body', detail: 'health+json status "fail"' });
  expect(r.get('hj-pass')!.verdict).toBe('pass');
  expect(r.get('garbage')).toMatchObject({ verdict: 'fail', failureKind: 'body' });
  expect(r.get('head')!.verdict).toBe('pass');
});

test('a body over the limit fails as body; a timeout is measured near the timeout, not later', async () => {
  fleet.set('/big', { body: { blob: 'x'.repeat(200_000) } });
  fleet.set('/stall2', { stall: true });
  const reg = registryOf([
    svc('big', `${fleet.url}/big`, { expect: { body: [{ path: '$.blob', exists: true }] } }),
    svc('stall', `${fleet.url}/stall2`, { timeout: '300ms' }),
  ]);
  const { probeServices } = createProbeActivities({ maxBodyBytes: 100_000 });
  const [big, stall] = await probeServices({ targets: reg.services.map(probeTarget) });
  expect(big).toMatchObject({ verdict: 'fail', failureKind: 'body' });
  expect(stall).toMatchObject({ verdict: 'fail', failureKind: 'timeout', detail: 'no answer within 300ms' });
  expect(stall!.latencyMs).toBeGreaterThanOrEqual(295);
  expect(stall!.latencyMs).toBeLessThan(1000);
});

test('bounded concurrency: never more probes in flight than asked', async () => {
  let inFlight = 0;
  let peak = 0;
  const { createServer } = await import('node:http');
  const server = createServer((_req, res) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    setTimeout(() => {
      inFlight--;
      res.writeHead(200).end('{}');
    }, 30);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const reg = registryOf(Array.from({ length: 40 }, (_, i) => svc(`s${i}`, `${url}/s${i}`)));
    const { probeServices } = createProbeActivities();
    const res = await probeServices({ targets: reg.services.map(probeTarget), concurrency: 7 });
    expect(res.every((r) => r.verdict === 'pass')).toBe(true);
    expect(peak).toBe(7);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('a server that goes away between probes is seen at once despite the keep-alive pool', async () => {
  const { createServer } = await import('node:http');
  const server = createServer((_req, res) => res.writeHead(200).end('{}'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/h`;
  const reg = registryOf([svc('gone', url)]);
  const { probeServices } = createProbeActivities();
  expect((await probeServices({ targets: reg.services.map(probeTarget) }))[0]!.verdict).toBe('pass');
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  expect((await probeServices({ targets: reg.services.map(probeTarget) }))[0]).toMatchObject({ verdict: 'fail', failureKind: 'connection_refused' });
});
