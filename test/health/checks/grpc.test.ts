/**
 * The `grpc` probe against a real gRPC server on loopback serving the
 * standard health service (grpc-health-check's implementation): SERVING,
 * NOT_SERVING, SERVICE_UNKNOWN, a server without the health service, TLS
 * with a private CA, and credentials in metadata.
 */
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation, service as healthService } from 'grpc-health-check';
import { createProbeActivities } from '../../../src/activities/probes';
import type { ProbeResult } from '../../../src/domain/health';
import { targetsOf } from './registry';
import { makeCa } from './certs';

const ca = makeCa();
const leaf = ca.leaf('grpc.test', ['DNS:grpc.test', 'IP:127.0.0.1'], 30);
const health = new HealthImplementation({ '': 'SERVING', 'orders.v1.Orders': 'SERVING', 'billing.v1.Billing': 'NOT_SERVING' });
const servers: grpc.Server[] = [];
let plain: string;
let secure: string;
let bare: string;
let guarded: string;
const TOKEN = 'grpc-token-5b1f0c';

async function start(creds: grpc.ServerCredentials, setup: (s: grpc.Server) => void): Promise<number> {
  const s = new grpc.Server();
  setup(s);
  servers.push(s);
  return new Promise((resolve, reject) => s.bindAsync('127.0.0.1:0', creds, (err, port) => (err ? reject(err) : resolve(port))));
}

beforeAll(async () => {
  plain = `http://127.0.0.1:${await start(grpc.ServerCredentials.createInsecure(), (s) => health.addToServer(s))}`;
  secure = `https://127.0.0.1:${await start(grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(leaf.key), cert_chain: Buffer.from(leaf.cert) }]), (s) => health.addToServer(s))}`;
  bare = `tcp://127.0.0.1:${await start(grpc.ServerCredentials.createInsecure(), () => undefined)}`;
  // A health service that wants `authorization: Bearer <TOKEN>`, as the service's API would.
  guarded = `http://127.0.0.1:${await start(grpc.ServerCredentials.createInsecure(), (s) =>
    s.addService(healthService as grpc.ServiceDefinition, {
      Check: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) =>
        call.metadata.get('authorization')[0] === `Bearer ${TOKEN}` ? cb(null, { status: 'SERVING' }) : cb({ code: grpc.status.UNAUTHENTICATED, details: 'bad token' }),
      Watch: () => undefined,
    }),
  )}`;
});
afterAll(() => {
  for (const s of servers) s.forceShutdown();
});

const svc = (id: string, url: string, healthCheck: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  id,
  type: 'api',
  endpoints: [{ url }],
  healthCheck: { type: 'grpc', timeout: '2s', ...healthCheck },
  ...extra,
});

async function probe(services: Array<Record<string, unknown>>, secrets: Record<string, string> = {}): Promise<Map<string, ProbeResult>> {
  const results = await createProbeActivities({ secrets: { readSecret: async (id) => secrets[id] } }).probeServices({ targets: targetsOf(services) });
  return new Map(results.map((r) => [r.serviceId, r]));
}

test('SERVING passes; NOT_SERVING and SERVICE_UNKNOWN fail with kind status; no health service is protocol', async () => {
  const r = await probe([
    svc('server', plain),
    svc('orders', plain, { grpcService: 'orders.v1.Orders' }),
    svc('billing', plain, { grpcService: 'billing.v1.Billing' }),
    svc('unknown', plain, { grpcService: 'nope.v1.Nope' }),
    svc('bare', bare),
  ]);
  expect(r.get('server')).toMatchObject({ verdict: 'pass' });
  expect(r.get('orders')).toMatchObject({ verdict: 'pass' });
  expect(r.get('billing')).toMatchObject({ verdict: 'fail', failureKind: 'status', detail: 'service "billing.v1.Billing" is NOT_SERVING' });
  expect(r.get('unknown')).toMatchObject({ verdict: 'fail', failureKind: 'status', detail: 'SERVICE_UNKNOWN: the server does not know service "nope.v1.Nope"' });
  expect(r.get('bare')).toMatchObject({ verdict: 'fail', failureKind: 'protocol' });
});

test('a status change is seen by the next probe', async () => {
  health.setStatus('orders.v1.Orders', 'NOT_SERVING');
  try {
    expect((await probe([svc('orders', plain, { grpcService: 'orders.v1.Orders' })])).get('orders')).toMatchObject({ verdict: 'fail', failureKind: 'status' });
  } finally {
    health.setStatus('orders.v1.Orders', 'SERVING');
  }
});

test('over TLS: verified against caFile with the server name, days left reported; untrusted is tls', async () => {
  const r = await probe([svc('tls', secure, { caFile: ca.caFile, serverName: 'grpc.test' }), svc('untrusted', secure)]);
  expect(r.get('tls')).toMatchObject({ verdict: 'pass' });
  expect(r.get('tls')!.certDaysLeft).toBeGreaterThanOrEqual(29);
  expect(r.get('untrusted')).toMatchObject({ verdict: 'fail', failureKind: 'tls' });
});

test('auth: the CURRENT credential goes in metadata; a rejected one is credential_rejected, and the secret appears nowhere', async () => {
  const withCred = { credential: 'orders-token' };
  const ok = await probe([svc('guarded', guarded, { auth: true }, withCred)], { 'orders-token': TOKEN });
  expect(ok.get('guarded')).toMatchObject({ verdict: 'pass' });
  const bad = await probe([svc('guarded', guarded, { auth: true }, withCred)], { 'orders-token': 'revoked-elsewhere-77' });
  expect(bad.get('guarded')).toMatchObject({ verdict: 'fail', failureKind: 'credential_rejected', credentialId: 'orders-token' });
  expect(bad.get('guarded')!.detail).toContain('integration-agent rotate orders-token');
  expect(JSON.stringify([...bad.values()])).not.toContain('revoked-elsewhere-77');
  const none = await probe([svc('guarded', guarded)]);
  expect(none.get('guarded')).toMatchObject({ verdict: 'fail', failureKind: 'status' });
});

test('nothing listening is connection_refused', async () => {
  const s = new grpc.Server();
  const port = await new Promise<number>((res, rej) => s.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  s.forceShutdown();
  const r = await probe([svc('gone', `http://127.0.0.1:${port}`)]);
  expect(r.get('gone')).toMatchObject({ verdict: 'fail', failureKind: 'connection_refused' });
});
