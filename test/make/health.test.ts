import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMakeHealthActivities } from '../../src/activities/make/health';
import { startFakeMake, type FakeMake } from '../fixtures/make-server';
import { fixedSecrets, makeRegistryYaml, makeRig, type MakeRig } from './helpers';

let fake: FakeMake;
let rig: MakeRig | undefined;
beforeEach(async () => {
  fake = await startFakeMake({ apiLimitPerMinute: 1000 });
});
afterEach(async () => {
  await rig?.close();
  rig = undefined;
  await fake.close();
});

const block = `
connections:
  - { id: 128, name: CRM, standsFor: crm-api, credential: crm-key, dataField: apiKey }
scenarios:
  - { id: 111, name: Sync orders, connections: [128] }
hooks:
  - { id: 5, name: Orders hook }
`;

function seedHealthy() {
  fake.addConnection({ id: 128, data: { apiKey: 'k1' }, accepts: (d) => d.apiKey === 'k1' });
  const s = fake.addScenario({ id: 111 });
  s.logs.push({ id: 'a', imtId: 'a', type: 'auto', status: 1, timestamp: '2026-11-29T10:00:00Z', duration: 10, operations: 1 });
  fake.addHook({ id: 5, scenarioId: 111 });
}

function check(unhealthyServices: string[] = []) {
  rig = makeRig(fake, makeRegistryYaml(fake, block));
  return createMakeHealthActivities({}, rig.clients).checkMakeService({ serviceId: 'make-prod', unhealthyServices });
}

test('a healthy Make service: token, every connection, scenario and hook checked through the API', async () => {
  seedHealthy();
  const r = await check();
  expect(r.status).toBe('healthy');
  expect(r.probe).toMatchObject({ serviceId: 'make-prod', verdict: 'pass' });
  expect(r.parts.map((p) => `${p.kind}:${p.id}:${p.status}`)).toEqual([
    'token:users/me:healthy',
    `organization:${fake.organizationId}:healthy`,
    'connection:128:healthy',
    'scenario:111:healthy',
    'hook:5:healthy',
  ]);
  const paths = fake.requests.map((q) => `${q.method} ${q.path}`);
  expect(paths).toEqual(
    expect.arrayContaining([
      'GET /api/v2/users/me',
      `GET /api/v2/organizations/${fake.organizationId}`,
      'GET /api/v2/connections/128',
      'POST /api/v2/connections/128/test',
      'GET /api/v2/scenarios/111',
      'GET /api/v2/scenarios/111/logs',
      'GET /api/v2/hooks/5',
    ]),
  );
  expect(fake.hookDeliveries).toHaveLength(0); // reachability never triggers the scenario
});

test('a connection whose test says verified: false is unhealthy, and so is the service', async () => {
  seedHealthy();
  fake.connections.get(128)!.data = { apiKey: 'rotated-away' };
  const r = await check();
  expect(r.status).toBe('unhealthy');
  expect(r.parts.find((p) => p.kind === 'connection')).toMatchObject({ status: 'unhealthy', reason: 'connection test failed (verified: false)' });
  expect(r.probe.verdict).toBe('fail');
  expect(r.probe.detail).toMatch(/connection 128 \(CRM\): unhealthy/);
});

test('an inactive scenario and a failing latest execution are unhealthy with the reason', async () => {
  seedHealthy();
  fake.scenarios.get(111)!.isActive = false;
  expect((await check()).parts.find((p) => p.kind === 'scenario')).toMatchObject({ status: 'unhealthy', reason: 'scenario is inactive' });
  await rig!.close();
  fake.scenarios.get(111)!.isActive = true;
  fake.scenarios.get(111)!.logs.unshift({ id: 'b', imtId: 'b', type: 'auto', status: 3, timestamp: '2026-11-29T11:00:00Z', duration: 10, operations: 1 });
  expect((await check()).parts.find((p) => p.kind === 'scenario')).toMatchObject({ status: 'unhealthy', reason: expect.stringMatching(/latest execution failed/) });
});

test("a scenario's active state is Make's isActive, not the deprecated islinked; islinked only when isActive is absent", async () => {
  seedHealthy();
  const s = fake.scenarios.get(111)!;
  s.isActive = false;
  s.islinked = true; // stale deprecated field
  expect((await check()).parts.find((p) => p.kind === 'scenario')).toMatchObject({ status: 'unhealthy', reason: 'scenario is inactive' });
  await rig!.close();
  s.isActive = true;
  s.islinked = false;
  expect((await check()).parts.find((p) => p.kind === 'scenario')).toMatchObject({ status: 'healthy' });
  await rig!.close();
  s.omitIsActive = true; // an answer with islinked only
  expect((await check()).parts.find((p) => p.kind === 'scenario')).toMatchObject({ status: 'unhealthy', reason: 'scenario is inactive' });
});

test('a scenario is impacted when the service its connection stands for is unhealthy', async () => {
  seedHealthy();
  const r = await check(['crm-api']);
  expect(r.parts.find((p) => p.kind === 'scenario')).toMatchObject({ status: 'impacted', rootCause: ['crm-api'] });
  expect(r.status).toBe('impacted');
  expect(r.probe.verdict).toBe('warn');
});

test('hooks: disabled, gone, and an address that does not answer are unhealthy', async () => {
  seedHealthy();
  const h = fake.hooks.get(5)!;
  h.enabled = false;
  expect((await check()).parts.find((p) => p.kind === 'hook')).toMatchObject({ status: 'unhealthy', reason: 'hook is disabled' });
  await rig!.close();
  h.enabled = true;
  h.gone = true;
  expect((await check()).parts.find((p) => p.kind === 'hook')!.reason).toMatch(/gone/);
  await rig!.close();
  h.gone = false;
  // The hook's address points at a port nothing listens on.
  const closed: Server = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  fake.inject({ match: (m, p) => m === 'GET' && p === '/hooks/5', status: 200, body: { hook: { id: 5, name: 'Orders hook', enabled: true, gone: false, url: `http://127.0.0.1:${port}/x`, queueCount: 0, queueLimit: 100 } } });
  expect((await check()).parts.find((p) => p.kind === 'hook')).toMatchObject({ status: 'unhealthy', reason: expect.stringMatching(/not reachable/) });
});

test('a rejected token makes the service unhealthy without reading anything else, and the token never shows', async () => {
  seedHealthy();
  rig = makeRig(fake, makeRegistryYaml(fake, block), fixedSecrets({ 'make-token': 'revoked-token-value' }));
  const r = await createMakeHealthActivities({}, rig.clients).checkMakeService({ serviceId: 'make-prod' });
  expect(r.status).toBe('unhealthy');
  expect(r.parts).toHaveLength(1);
  expect(r.parts[0]!.reason).toMatch(/token check failed: 401 Invalid credentials/);
  expect(r.probe).toMatchObject({ verdict: 'fail', failureKind: 'status', status: 401 });
  expect(JSON.stringify(r)).not.toContain('revoked-token-value');
  expect(fake.requests.filter((q) => q.path.startsWith('/api/v2/connections'))).toHaveLength(0);
});

test("the organization's license.apiLimit is read once and enforced", async () => {
  seedHealthy();
  await fake.close();
  fake = await startFakeMake({ apiLimitPerMinute: 5, rateWindowMs: 500 });
  seedHealthy();
  rig = makeRig(fake, makeRegistryYaml(fake, block));
  const acts = createMakeHealthActivities({}, rig.clients);
  for (let i = 0; i < 2; i++) expect((await acts.checkMakeService({ serviceId: 'make-prod' })).status).toBe('healthy');
  expect(rig.clients.limits.get(fake.organizationId)).toBe(5);
  expect(fake.requests.filter((q) => q.status === 429)).toHaveLength(0);
  // Once for the license (per organization and process), then once per health check for its state.
  expect(fake.requests.filter((q) => q.path === `/api/v2/organizations/${fake.organizationId}`)).toHaveLength(1 + 2);
});

test('a paused organization makes the service unhealthy; operations near or at the limit degrade it, with the figures', async () => {
  seedHealthy();
  fake.organization.isPaused = true;
  let r = await check();
  expect(r.status).toBe('unhealthy');
  expect(r.parts.find((p) => p.kind === 'organization')).toMatchObject({ id: String(fake.organizationId), name: 'Test Org', status: 'unhealthy', reason: expect.stringMatching(/^organization is paused \(isPaused\)/) });
  expect(r.probe.detail).toMatch(new RegExp(`organization ${fake.organizationId} \\(Test Org\\): unhealthy — organization is paused`));
  await rig!.close();

  fake.organization.isPaused = false;
  fake.organization.operations = 9_500;
  fake.organization.licenseOperations = 10_000;
  fake.organization.nextReset = '2027-01-01T00:00:00.000Z';
  r = await check();
  expect(r.status).toBe('degraded');
  expect(r.probe.verdict).toBe('warn');
  expect(r.parts.find((p) => p.kind === 'organization')).toMatchObject({
    status: 'degraded',
    reason: 'operations used 9500 of 10000 (95%) this period, at or above the 90% warning; the period resets 2027-01-01T00:00:00.000Z',
  });
  await rig!.close();

  fake.organization.operations = 10_000;
  r = await check();
  expect(r.parts.find((p) => p.kind === 'organization')!.reason).toMatch(/operations used 10000 of 10000 \(100%\) this period: the limit is reached/);
  await rig!.close();

  // The warning share is the registry's make.operationsWarningPercent.
  fake.organization.operations = 6_000;
  rig = makeRig(fake, makeRegistryYaml(fake, `operationsWarningPercent: 50\n${block}`));
  r = await createMakeHealthActivities({}, rig.clients).checkMakeService({ serviceId: 'make-prod' });
  expect(r.parts.find((p) => p.kind === 'organization')).toMatchObject({ status: 'degraded', reason: expect.stringMatching(/at or above the 50% warning/) });
});

test('an organization answer without isPaused or the operations figures is unknown, never healthy', async () => {
  seedHealthy();
  fake.inject({ match: (m, p) => m === 'GET' && p === `/organizations/${fake.organizationId}`, status: 200, body: { organization: { id: fake.organizationId, name: 'Test Org', license: { apiLimit: 1000 } } }, count: 2 });
  const r = await check();
  expect(r.parts.find((p) => p.kind === 'organization')).toMatchObject({ status: 'unknown', reason: expect.stringMatching(/no isPaused/) });
  expect(r.status).toBe('unknown');
  expect(r.probe.verdict).toBe('inconclusive');
});

test("a connection's expire: within the warning degraded, passed unhealthy, naming when", async () => {
  seedHealthy();
  const c = fake.connections.get(128)!;
  const inTwoDays = new Date(Date.now() + 2 * 86_400_000 + 3_600_000).toISOString();
  c.expire = inTwoDays;
  let r = await check();
  expect(r.status).toBe('degraded');
  expect(r.parts.find((p) => p.kind === 'connection')).toMatchObject({ status: 'degraded', reason: `connection expires at ${inTwoDays} (in 2d, within the 7d warning): reauthorize it in Make` });
  await rig!.close();

  const anHourAgo = new Date(Date.now() - 3_600_000).toISOString();
  c.expire = anHourAgo;
  r = await check();
  expect(r.status).toBe('unhealthy');
  expect(r.parts.find((p) => p.kind === 'connection')).toMatchObject({ status: 'unhealthy', reason: `connection expired at ${anHourAgo}: reauthorize it in Make` });
  await rig!.close();

  // The warning is the registry's make.connectionExpiryWarning.
  c.expire = inTwoDays;
  rig = makeRig(fake, makeRegistryYaml(fake, `connectionExpiryWarning: 1d\n${block}`));
  r = await createMakeHealthActivities({}, rig.clients).checkMakeService({ serviceId: 'make-prod' });
  expect(r.parts.find((p) => p.kind === 'connection')!.status).toBe('healthy');
});

test('a scenario with incomplete executions (dlqCount) is degraded with the count', async () => {
  seedHealthy();
  fake.scenarios.get(111)!.dlqCount = 4;
  const r = await check();
  expect(r.status).toBe('degraded');
  expect(r.parts.find((p) => p.kind === 'scenario')).toMatchObject({ status: 'degraded', reason: '4 incomplete executions wait to be resolved in Make (dlqCount)' });
  expect(r.probe.detail).toMatch(/scenario 111 \(scenario-111\): degraded — 4 incomplete executions/);
});

test('probeMakeServices gives the sweep one probe result per service; a service that is not make is inconclusive, never healthy', async () => {
  seedHealthy();
  fake.connections.get(128)!.data = { apiKey: 'wrong' };
  rig = makeRig(fake, makeRegistryYaml(fake, block));
  const acts = createMakeHealthActivities({}, rig.clients);
  const [make, crm] = await acts.probeMakeServices({ serviceIds: ['make-prod', 'crm-api'] });
  expect(make).toMatchObject({ serviceId: 'make-prod', verdict: 'fail' });
  expect(make!.detail).toMatch(/connection 128 \(CRM\): unhealthy — connection test failed \(verified: false\)/);
  expect(crm).toMatchObject({ serviceId: 'crm-api', verdict: 'inconclusive', detail: expect.stringMatching(/service "crm-api" is type api, not make/) });
});

test('a make service whose endpoint is not its zone\'s API base is refused with the URL to use', async () => {
  rig = makeRig(fake, makeRegistryYaml(fake, block).replace(`url: ${fake.apiBase}`, 'url: https://eu1.make.com/api/v2'));
  await expect(createMakeHealthActivities({}, rig.clients).checkMakeService({ serviceId: 'make-prod' })).rejects.toThrow(
    `service "make-prod": endpoint https://eu1.make.com/api/v2 is not the API base of Make zone ${fake.url}; use endpoints: [{ url: ${fake.apiBase} }]`,
  );
});
