/**
 * The `tls` probe against real TLS servers on loopback: handshake and
 * certificate only, SNI, a private CA from a file, insecureSkipVerify, days
 * left, and STARTTLS on a real SMTP server (smtp-server).
 */
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { SMTPServer } from 'smtp-server';
import { createProbeActivities } from '../../../src/activities/probes';
import { probeTarget, type ProbeResult } from '../../../src/domain/health';
import { registryOf } from '../fleet';
import { makeCa } from './certs';

const ca = makeCa();
const leaf = ca.leaf('api.test', ['DNS:api.test'], 40);
let server: tls.Server;
let port: number;
const sniSeen: string[] = [];
let smtp: SMTPServer;
let smtpNoTls: SMTPServer;
const smtpPorts: number[] = [];

beforeAll(async () => {
  const context = tls.createSecureContext({ key: leaf.key, cert: leaf.cert });
  // SNICallback runs during the handshake: the name the client sent, seen by the server.
  server = tls.createServer({ key: leaf.key, cert: leaf.cert, SNICallback: (name, cb) => (sniSeen.push(name), cb(null, context)) }, (s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  smtp = new SMTPServer({ secure: false, key: leaf.key, cert: leaf.cert, authOptional: true, logger: false });
  smtpNoTls = new SMTPServer({ secure: false, hideSTARTTLS: true, authOptional: true, logger: false });
  for (const s of [smtp, smtpNoTls]) {
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    smtpPorts.push(((s as unknown as { server: { address(): AddressInfo } }).server.address() as AddressInfo).port);
  }
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
  await Promise.all([smtp, smtpNoTls].map((s) => new Promise((r) => s.close(() => r(undefined)))));
});

const svc = (id: string, url: string, healthCheck: Record<string, unknown> = {}) => ({ id, type: 'api', endpoints: [{ url }], healthCheck: { type: 'tls', timeout: '2s', ...healthCheck } });

async function probe(services: unknown[]): Promise<Map<string, ProbeResult>> {
  const reg = registryOf(services);
  const results = await createProbeActivities().probeServices({ targets: reg.services.map(probeTarget) });
  return new Map(results.map((r) => [r.serviceId, r]));
}

test('a handshake with SNI against a private CA from caFile: days left of the served leaf, no HTTP spoken', async () => {
  sniSeen.length = 0;
  const url = `tcp://127.0.0.1:${port}`;
  const r = await probe([
    svc('ok', url, { serverName: 'api.test', caFile: ca.caFile, expect: { certificateExpiresAfter: '14d' } }),
    svc('soon', url, { serverName: 'api.test', caFile: ca.caFile, expect: { certificateExpiresAfter: '60d' } }),
  ]);
  expect(r.get('ok')).toMatchObject({ verdict: 'pass' });
  expect(r.get('ok')!.certDaysLeft).toBeGreaterThanOrEqual(39);
  expect(r.get('ok')!.certDaysLeft).toBeLessThanOrEqual(40);
  expect(r.get('soon')).toMatchObject({ verdict: 'warn', failureKind: 'tls' });
  expect(sniSeen).toEqual(['api.test', 'api.test']);
});

test('an untrusted chain or a name the certificate does not carry is `tls`; insecureSkipVerify still reads the certificate', async () => {
  const url = `tcp://127.0.0.1:${port}`;
  const r = await probe([
    svc('untrusted', url, { serverName: 'api.test' }),
    svc('wrong-name', url, { serverName: 'other.test', caFile: ca.caFile }),
    svc('by-ip', url, { caFile: ca.caFile }),
    svc('skip', url, { serverName: 'other.test', insecureSkipVerify: true }),
    svc('missing-ca-file', url, { serverName: 'api.test', caFile: `${ca.dir}/nope.pem` }),
  ]);
  expect(r.get('untrusted')).toMatchObject({ verdict: 'fail', failureKind: 'tls' });
  expect(r.get('wrong-name')).toMatchObject({ verdict: 'fail', failureKind: 'tls' });
  expect(r.get('by-ip')).toMatchObject({ verdict: 'fail', failureKind: 'tls' });
  expect(r.get('skip')).toMatchObject({ verdict: 'pass' });
  expect(r.get('skip')!.certDaysLeft).toBeGreaterThanOrEqual(39);
  expect(r.get('missing-ca-file')).toMatchObject({ verdict: 'fail', failureKind: 'other' });
  expect(r.get('missing-ca-file')!.detail).toContain('healthCheck.caFile');
});

test('STARTTLS on SMTP: the upgraded connection is verified; a server without STARTTLS is `protocol`', async () => {
  const r = await probe([
    svc('smtp', `tcp://127.0.0.1:${smtpPorts[0]}`, { starttls: 'smtp', serverName: 'api.test', caFile: ca.caFile }),
    svc('smtp-plain', `tcp://127.0.0.1:${smtpPorts[1]}`, { starttls: 'smtp', serverName: 'api.test', caFile: ca.caFile }),
  ]);
  expect(r.get('smtp')).toMatchObject({ verdict: 'pass' });
  expect(r.get('smtp')!.certDaysLeft).toBeGreaterThanOrEqual(39);
  expect(r.get('smtp-plain')).toMatchObject({ verdict: 'fail', failureKind: 'protocol', detail: 'the SMTP server does not offer STARTTLS' });
});

test('nothing listening is connection_refused', async () => {
  const s = tls.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const closedPort = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  const r = await probe([svc('gone', `tcp://127.0.0.1:${closedPort}`)]);
  expect(r.get('gone')).toMatchObject({ verdict: 'fail', failureKind: 'connection_refused' });
});
