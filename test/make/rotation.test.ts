/**
 * A credential rotated end to end into a Make connection: the real
 * rotateCredential saga, the real credential store, the HTTP-contract issuer,
 * and the fake Make API, with the `make` provider installing the new key with
 * set-data and verifying it with the connection test.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMakeProvider } from '../../src/activities/make';
import { builtInProviders } from '../../src/activities/providers';
import { createRegistryActivities } from '../../src/activities/registry';
import { createRotationActivities } from '../../src/activities/rotation';
import { openState } from '../../src/state';
import type { CredentialStore, StateBackend } from '../../src/state/types';
import { rotate } from '../../src/client/rotation';
import { startContractServer, type ContractServer } from '../fixtures/rotation-contract';
import { FAKE_MAKE_ALL_SCOPES, startFakeMake, type FakeMake } from '../fixtures/make-server';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { fixedSecrets, makeRig, type MakeRig } from './helpers';

let fake: FakeMake;
let contract: ContractServer;
let rig: MakeRig;
let state: StateBackend;
let store: CredentialStore;
let dataDir: string;
let initialVersionId: string;
let initialSecret: string;
const credentialId = `crm-key-${randomBytes(3).toString('hex')}`;
const taskQueue = uniqueTaskQueue('make-rot');

/** The CRM (the issuer) accepts exactly the keys it issued and has not revoked: that is what Make's connection test checks. */
const crmAccepts = (key: unknown) => [...contract.issuer('crm-api').versions.values()].some((v) => !v.revoked && v.secret === key);

function registryYaml(): string {
  return `
services:
  - id: crm-api
    type: api
    endpoints: [{ url: ${contract.base('crm-api')} }]
    rotation: { provider: http, stepTimeout: 5s }
  - id: make-prod
    type: make
    endpoints: [{ url: ${fake.apiBase} }]
    credential: make-token
    auth: { scheme: make }
    rotation: { provider: make, stepTimeout: 5s, verifyAttempts: 3, verifyInterval: 100ms }
    make:
      zone: ${fake.url}
      organizationId: ${fake.organizationId}
      teamId: ${fake.teamId}
      connections:
        - { id: 128, name: CRM, standsFor: crm-api, credential: ${credentialId}, dataField: apiKey, data: { baseUrl: "https://crm.example" } }
  - id: billing-api
    type: api
    endpoints: [{ url: ${contract.base('billing-api')} }]
    dependsOn: [make-prod]
    credential: ${credentialId}
    rotation: { provider: http, stepTimeout: 5s, verifyAttempts: 3, verifyInterval: 100ms }
credentials:
  - { id: make-token, issuer: make-prod }
  - { id: ${credentialId}, issuer: crm-api, consumers: [make-prod, billing-api], provider: http, gracePeriod: 0s }
`;
}

beforeAll(async () => {
  fake = await startFakeMake({ apiLimitPerMinute: 1000 });
  contract = await startContractServer({ 'crm-api': ['billing-api'] });
  dataDir = mkdtempSync(join(tmpdir(), 'ia-make-rot-'));
  state = await openState({ dataDir, masterKey: randomBytes(32) });
  store = state.credentials;
  initialSecret = `initial-${randomBytes(16).toString('base64url')}`;
  // Under the issuer's id (as `credentials import --version-id` records it), so rotations revoke it there.
  initialVersionId = await store.importCurrent(credentialId, initialSecret, 'test', `v-${randomBytes(6).toString('hex')}`);
  contract.seed('crm-api', initialVersionId, initialSecret);
  contract.preinstall('billing-api', initialVersionId);
  fake.addConnection({ id: 128, data: { baseUrl: 'https://crm.example', apiKey: initialSecret }, schema: ['baseUrl', 'apiKey'], accepts: (d) => crmAccepts(d.apiKey) });
  rig = makeRig(fake, registryYaml(), fixedSecrets({ 'make-token': fake.token }));
});
afterAll(async () => {
  await rig.close();
  await fake.close();
  await contract.close();
  await state.close();
  rmSync(dataDir, { recursive: true, force: true });
  await closeTestClient();
});

const activities = () => ({
  ...createRegistryActivities(rig.registry),
  ...createRotationActivities({ store, registry: rig.registry, providers: { ...builtInProviders(), make: createMakeProvider(rig.clients) } }),
});

test('a rotation pushes the new key into the Make connection, verifies it with the connection test, and no secret enters history', async () => {
  const client = await testClient();
  const result = await withTestWorker({ taskQueue, activities: activities() }, () => rotate(client, { credentialId, taskQueue }));
  expect(result.status).toBe('completed');
  const v = result.versionId!;
  const newSecret = contract.issuer('crm-api').versions.get(v)!.secret;
  expect(fake.connections.get(128)!.data).toEqual({ baseUrl: 'https://crm.example', apiKey: newSecret });
  expect(result.services.find((s) => s.id === 'make-prod')).toMatchObject({ status: 'ok' });
  const makeCalls = fake.requests.map((r) => `${r.method} ${r.path}`);
  expect(makeCalls).toEqual(expect.arrayContaining(['POST /api/v2/connections/128/set-data', 'POST /api/v2/connections/128/test']));
  // make-prod comes before billing-api (billing-api depends on it).
  expect(contract.consumer('billing-api').versionId).toBe(v);

  const history = JSON.stringify(await client.workflow.getHandle(result.workflowId).fetchHistory());
  for (const s of [...contract.secrets(), fake.token]) expect(history).not.toContain(s);
});

test('when a later consumer rejects the new key, rollback puts the previous data back into the Make connection', async () => {
  const before = fake.connections.get(128)!.data.apiKey;
  const current = (await store.labels(credentialId)).CURRENT!.versionId;
  contract.behaviour('billing-api').acceptOnly = new Set([current]); // refuses the new version, takes the current one back
  const client = await testClient();
  const result = await withTestWorker({ taskQueue, activities: activities() }, () => rotate(client, { credentialId, taskQueue }));
  delete contract.behaviour('billing-api').acceptOnly;
  expect(result.status).toBe('rolled_back');
  expect(fake.connections.get(128)!.data).toEqual({ baseUrl: 'https://crm.example', apiKey: before });
  const setData = fake.requests.filter((r) => r.path === '/api/v2/connections/128/set-data').slice(-2);
  expect(setData).toHaveLength(2); // the new key, then the previous one back
});

test('a Make connection whose data cannot be edited is reported by the plan before anything changes', async () => {
  const conn = fake.connections.get(128)!;
  const dataBefore = { ...conn.data };
  const labelsBefore = await store.labels(credentialId);
  const billingBefore = contract.consumer('billing-api').versionId;
  const mintedBefore = contract.issuer('crm-api').versions.size;
  const setDataBefore = fake.requests.filter((r) => r.path.endsWith('/set-data')).length;
  conn.editable = false;
  try {
    const client = await testClient();
    const result = await withTestWorker({ taskQueue, activities: activities() }, () => rotate(client, { credentialId, taskQueue }));
    expect(result.status).not.toBe('completed');
    expect(result.cause).toMatch(/128|edit/i);
    // Nothing changed: no version minted, no set-data sent, labels and consumers as before.
    expect(contract.issuer('crm-api').versions.size).toBe(mintedBefore);
    expect(fake.requests.filter((r) => r.path.endsWith('/set-data')).length).toBe(setDataBefore);
    expect(fake.connections.get(128)!.data).toEqual(dataBefore);
    expect(contract.consumer('billing-api').versionId).toBe(billingBefore);
    expect((await store.labels(credentialId)).CURRENT?.versionId).toBe(labelsBefore.CURRENT?.versionId);
    expect((await store.labels(credentialId)).PENDING ?? null).toBeNull();
  } finally {
    conn.editable = true;
  }
});

test('a Make connection whose registry data leaves out an editable field refuses the rotation before set-data could empty that field', async () => {
  const conn = fake.connections.get(128)!;
  conn.data = { ...conn.data, region: 'eu' };
  conn.schema = ['baseUrl', 'apiKey', 'region'];
  const dataBefore = { ...conn.data };
  const mintedBefore = contract.issuer('crm-api').versions.size;
  const setDataBefore = fake.requests.filter((r) => r.path.endsWith('/set-data')).length;
  try {
    const client = await testClient();
    const result = await withTestWorker({ taskQueue, activities: activities() }, () => rotate(client, { credentialId, taskQueue }));
    expect(result.status).not.toBe('completed');
    expect(result.cause).toMatch(/Make connection 128 \(CRM\) of service make-prod: set-data replaces all data and fields region would become empty/);
    expect(contract.issuer('crm-api').versions.size).toBe(mintedBefore);
    expect(fake.requests.filter((r) => r.path.endsWith('/set-data')).length).toBe(setDataBefore);
    expect(fake.connections.get(128)!.data).toEqual(dataBefore);
  } finally {
    conn.schema = ['baseUrl', 'apiKey'];
    const { region: _region, ...rest } = conn.data;
    conn.data = rest;
  }
});

test('a Make token without connections:write refuses the rotation in preflight: nothing minted, no 403 mid-rotation', async () => {
  const conn = fake.connections.get(128)!;
  const dataBefore = { ...conn.data };
  const labelsBefore = await store.labels(credentialId);
  const mintedBefore = contract.issuer('crm-api').versions.size;
  const postsBefore = fake.requests.filter((r) => r.method === 'POST').length;
  fake.options.scopes = ['user:read', 'organizations:read', 'connections:read', 'scenarios:read', 'hooks:read'];
  try {
    const client = await testClient();
    const result = await withTestWorker({ taskQueue, activities: activities() }, () => rotate(client, { credentialId, taskQueue }));
    expect(result.status).not.toBe('completed');
    expect(result.cause).toMatch(/service make-prod: the Make API token \(credential make-token\) lacks scope connections:write/);
    expect(contract.issuer('crm-api').versions.size).toBe(mintedBefore);
    expect(fake.requests.filter((r) => r.method === 'POST').length).toBe(postsBefore);
    expect(fake.requests.filter((r) => r.status === 403)).toHaveLength(0);
    expect(fake.connections.get(128)!.data).toEqual(dataBefore);
    expect((await store.labels(credentialId)).CURRENT?.versionId).toBe(labelsBefore.CURRENT?.versionId);
  } finally {
    fake.options.scopes = [...FAKE_MAKE_ALL_SCOPES];
  }
});
