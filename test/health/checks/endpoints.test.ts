/**
 * Every endpoint of a service is probed: "2/3 endpoints up" is degraded,
 * none up is unhealthy; and a credential_rejected failure's alert names the
 * credential and the command that replaces it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createCoordinator } from '../../../src/activities/coordinator';
import { createProbeActivities } from '../../../src/activities/probes';
import { parseRegistry } from '../../../src/domain/registry-parse';
import { applyObservation, classifySweep, initialServiceHealth, type ProbeResult } from '../../../src/domain/health';
import { targetsOf } from './registry';

const servers: Server[] = [];
const urls: string[] = [];
let closed: string;
beforeAll(async () => {
  for (let i = 0; i < 3; i++) {
    const s = createServer((_req, res) => res.writeHead(200).end('{}'));
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    servers.push(s);
    urls.push(`http://127.0.0.1:${(s.address() as AddressInfo).port}`);
  }
  // A port that was just free: nothing listens there.
  const s = servers.pop()!;
  closed = urls.pop()!;
  await new Promise((r) => s.close(r));
});
afterAll(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
});

const svc = (id: string, endpoints: string[]) => ({ id, type: 'api', endpoints: endpoints.map((url) => ({ url })), healthCheck: { path: '/health', timeout: '1s' } });

async function probe(services: Array<Record<string, unknown>>): Promise<Map<string, ProbeResult>> {
  const results = await createProbeActivities({ keepAliveTimeoutMs: 10 }).probeServices({ targets: targetsOf(services) });
  return new Map(results.map((r) => [r.serviceId, r]));
}

test('each endpoint is probed: some down is degraded with the count, all down is unhealthy, all up says so', async () => {
  const r = await probe([svc('all-up', urls), svc('one-down', [urls[0]!, urls[1]!, closed]), svc('all-down', [closed, closed.replace('127.0.0.1', '127.0.0.2')])]);
  expect(r.get('all-up')).toMatchObject({ verdict: 'pass', endpoints: { up: 2, total: 2 }, detail: '2/2 endpoints up' });
  const one = r.get('one-down')!;
  expect(one).toMatchObject({ verdict: 'warn', failureKind: 'connection_refused', endpoints: { up: 2, total: 3 }, endpointsDown: [2] });
  expect(one.detail).toMatch(/^2\/3 endpoints up; 127\.0\.0\.1:\d+: connection refused/);
  expect(r.get('all-down')).toMatchObject({ verdict: 'fail', failureKind: 'connection_refused', endpoints: { up: 0, total: 2 }, endpointsDown: [0, 1] });
  expect(r.get('all-down')!.detail).toMatch(/^0\/2 endpoints up; /);
  const status = classifySweep(
    ['all-up', 'one-down', 'all-down'].map((id) => ({ id, dependsOn: [] })),
    r,
  );
  expect(['all-up', 'one-down', 'all-down'].map((id) => status.get(id)!.status)).toEqual(['healthy', 'degraded', 'unhealthy']);
});

test('a credential_rejected alert names the credential and the rotate command', () => {
  let s = initialServiceHealth('billing-api', 0);
  const obs = {
    verdict: 'fail' as const,
    latencyMs: 3,
    failureKind: 'credential_rejected' as const,
    detail: 'credential "billing-key" rejected (HTTP 401): if it was revoked or expired outside the agent, run `integration-agent rotate billing-key`',
    credentialId: 'billing-key',
    failureThreshold: 2,
    successThreshold: 1,
  };
  let alerts: ReturnType<typeof applyObservation>['alerts'] = [];
  for (let i = 1; i <= 2; i++) ({ state: s, alerts } = applyObservation(s, { ...obs, sweepId: `s${i}`, at: i * 1000 }));
  expect(alerts).toHaveLength(1);
  expect(alerts[0]).toMatchObject({
    kind: 'TRIGGERED',
    summary: 'billing-api is unhealthy (credential_rejected: billing-key)',
    credentialId: 'billing-key',
    action: 'billing-api refused credential billing-key; if it was revoked or expired outside the agent, run `integration-agent rotate billing-key`',
  });
});

test("the load balancer's passive view skips an endpoint a probe found down", async () => {
  // Two endpoints answering calls with their name; b's /health is failing.
  const named: Server[] = [];
  const origins: string[] = [];
  for (const name of ['a', 'b']) {
    const srv = createServer((req, res) => (req.url === '/health' && name === 'b' ? res.writeHead(503).end() : res.writeHead(200).end(name)));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    named.push(srv);
    origins.push(`http://127.0.0.1:${(srv.address() as AddressInfo).port}`);
  }
  const spec = { id: 'lb-api', type: 'api', endpoints: origins.map((url) => ({ url })), healthCheck: { path: '/health', timeout: '1s' } };
  const parsed = parseRegistry(JSON.stringify({ services: [spec] }), 'lb.json');
  if (!parsed.ok) throw new Error('registry');
  const coordinator = createCoordinator({ registry: { current: () => parsed.registry }, reporterId: 'test', endpointCoolDownMs: 60_000 });
  try {
    const served = async (n: number) => {
      const out: string[] = [];
      for (let i = 0; i < n; i++) out.push((await coordinator.request('lb-api', { path: '/data' })).body);
      return out.sort().join('');
    };
    expect(await served(4)).toBe('aabb');
    const probes = createProbeActivities({ keepAliveTimeoutMs: 10, onEndpointsDown: (id, down) => coordinator.reportEndpointsDown!(id, down) });
    const [r] = await probes.probeServices({ targets: targetsOf([spec]) });
    expect(r).toMatchObject({ verdict: 'warn', endpoints: { up: 1, total: 2 }, endpointsDown: [1] });
    expect(await served(4)).toBe('aaaa');
  } finally {
    await coordinator.close(0);
    for (const srv of named) {
      srv.closeAllConnections();
      await new Promise((res) => srv.close(res));
    }
  }
});
