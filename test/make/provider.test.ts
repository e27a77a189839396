import { createMakeProvider } from '../../src/activities/make/provider';
import { ProviderError, type ProviderContext } from '../../src/activities/providers/types';
import { getCredential, getService } from '../../src/domain/registry';
import { startFakeMake, type FakeMake } from '../fixtures/make-server';
import { fixedSecrets, makeRegistryYaml, makeRig, type MakeRig } from './helpers';

let fake: FakeMake;
let rig: MakeRig;

const block = `
connections:
  - { id: 128, name: CRM, standsFor: crm-api, credential: crm-key, dataField: apiKey, data: { baseUrl: "https://crm.example" } }
  - { id: 129, name: CRM backup, standsFor: crm-api, credential: crm-key, dataField: apiKey, data: { baseUrl: "https://crm2.example" } }
  - { id: 300, name: Mail, credential: other-key, dataField: password }
`;

/** The third-party app behind the connections accepts exactly one key at a time. */
let validKey = 'old-key-0001';

beforeEach(async () => {
  fake = await startFakeMake({ apiLimitPerMinute: 1000 });
  validKey = 'old-key-0001';
  for (const id of [128, 129]) {
    fake.addConnection({ id, data: { baseUrl: id === 128 ? 'https://crm.example' : 'https://crm2.example', apiKey: 'old-key-0001' }, schema: ['baseUrl', 'apiKey'], accepts: (d) => d.apiKey === validKey });
  }
  fake.addConnection({ id: 300, editable: false, data: { password: 'x' } });
  rig = makeRig(fake, makeRegistryYaml(fake, block));
});
afterEach(async () => {
  await rig.close();
  await fake.close();
});

function ctx(credentialId = 'crm-key'): ProviderContext {
  const reg = rig.registry.current();
  const credential = credentialId === 'crm-key' ? getCredential(reg, 'crm-key') : { ...getCredential(reg, 'crm-key'), id: credentialId };
  return { credential, service: getService(reg, 'make-prod'), secrets: fixedSecrets({}), timeoutMs: 5_000 };
}

test('install pushes the secret into every connection holding the credential with set-data, keeping the static fields', async () => {
  const p = createMakeProvider(rig.clients);
  await p.install(ctx(), { versionId: 'v2', secret: 'new-key-0002', idempotencyKey: 'rotation/crm-key#r1/install/make-prod' });
  expect(fake.connections.get(128)!.data).toEqual({ baseUrl: 'https://crm.example', apiKey: 'new-key-0002' });
  expect(fake.connections.get(129)!.data).toEqual({ baseUrl: 'https://crm2.example', apiKey: 'new-key-0002' });
  expect(fake.connections.get(300)!.data).toEqual({ password: 'x' }); // another credential's connection is untouched
  expect(fake.requests.filter((r) => r.path.endsWith('/set-data')).map((r) => r.path)).toEqual(['/api/v2/connections/128/set-data', '/api/v2/connections/129/set-data']);
});

test('verify runs the connection test: the new version once the app accepts it, none while it does not', async () => {
  const p = createMakeProvider(rig.clients);
  await p.install(ctx(), { versionId: 'v2', secret: 'new-key-0002', idempotencyKey: 'k' });
  expect(await p.verify(ctx(), { versionId: 'v2', secret: 'new-key-0002' })).toEqual({ versionId: undefined });
  validKey = 'new-key-0002';
  expect(await p.verify(ctx(), { versionId: 'v2', secret: 'new-key-0002' })).toEqual({ versionId: 'v2' });
});

test('rollback (installing the previous version) puts the previous data back', async () => {
  const p = createMakeProvider(rig.clients);
  await p.install(ctx(), { versionId: 'v2', secret: 'new-key-0002', idempotencyKey: 'k1' });
  await p.install(ctx(), { versionId: 'v1', secret: 'old-key-0001', idempotencyKey: 'k2' });
  expect(fake.connections.get(128)!.data).toEqual({ baseUrl: 'https://crm.example', apiKey: 'old-key-0001' });
  expect(await p.verify(ctx(), { versionId: 'v1', secret: 'old-key-0001' })).toEqual({ versionId: 'v1' });
});

test('preflight reports connections that cannot be edited through the API before anything changes', async () => {
  const p = createMakeProvider(rig.clients);
  expect(await p.preflight(ctx())).toEqual([]);
  const problems = await p.preflight(ctx('other-key'));
  expect(problems).toEqual([
    'Make connection 300 (Mail) of service make-prod cannot be edited through the Make API (editable: false, e.g. an OAuth connection): update it in Make, or remove credential other-key from it',
  ]);
  expect(fake.requests.filter((r) => r.method === 'POST')).toHaveLength(0);
});

test('preflight finds a dataField the connection does not have and fields set-data would empty', async () => {
  fake.connections.get(128)!.schema = ['baseUrl', 'apiToken', 'region'];
  const problems = await createMakeProvider(rig.clients).preflight(ctx());
  expect(problems[0]).toMatch(/connection 128 \(CRM\) of service make-prod has no editable field "apiKey" \(editable fields: baseUrl, apiToken, region\)/);
  expect(problems[1]).toMatch(/fields apiToken, region would become empty/);
});

test('preflight reads editable-data-schema as Make answers it ({ editableParameters }) and refuses a dataField it does not list', async () => {
  fake.connections.get(128)!.schema = ['baseUrl', 'token'];
  const problems = await createMakeProvider(rig.clients).preflight(ctx());
  expect(problems).toEqual([
    'Make connection 128 (CRM) of service make-prod has no editable field "apiKey" (editable fields: baseUrl, token): fix make.connections[].dataField',
    'Make connection 128 (CRM) of service make-prod: set-data replaces all data and fields token would become empty; list them under make.connections[].data',
  ]);
  const schemaCalls = fake.requests.filter((r) => r.path === '/api/v2/connections/128/editable-data-schema');
  expect(schemaCalls).toHaveLength(1);
  expect(fake.requests.filter((r) => r.method === 'POST')).toHaveLength(0);
});

test('preflight refuses connection data that leaves out an editable field (set-data would empty it)', async () => {
  fake.connections.get(129)!.schema = ['baseUrl', 'apiKey', 'region'];
  expect(await createMakeProvider(rig.clients).preflight(ctx())).toEqual([
    'Make connection 129 (CRM backup) of service make-prod: set-data replaces all data and fields region would become empty; list them under make.connections[].data',
  ]);
});

test('preflight refuses an empty editable-data-schema: nothing could be checked, so it is never a pass', async () => {
  fake.connections.get(128)!.schema = [];
  expect(await createMakeProvider(rig.clients).preflight(ctx())).toEqual([
    'Make connection 128 (CRM) of service make-prod: GET /connections/128/editable-data-schema lists no editable fields, so set-data cannot be checked (it would replace all data): check the connection in Make, or rotate it by hand',
  ]);
});

test('preflight refuses an editable-data-schema answer it cannot read, naming the endpoint', async () => {
  fake.inject({ match: (m, path) => m === 'GET' && path === '/connections/128/editable-data-schema', status: 200, body: { parameters: [{ name: 'apiKey' }, { name: 'baseUrl' }] } });
  const problems = await createMakeProvider(rig.clients).preflight(ctx());
  expect(problems).toHaveLength(1);
  expect(problems[0]).toMatch(/^Make connection 128 \(CRM\) of service make-prod: Make API GET \/connections\/128\/editable-data-schema \(service make-prod\): the answer has no "editableParameters" list of field names/);
  fake.inject({ match: (m, path) => m === 'GET' && path === '/connections/128/editable-data-schema', status: 200, body: { editableParameters: ['baseUrl', 7] } });
  expect((await createMakeProvider(rig.clients).preflight(ctx()))[0]).toMatch(/no "editableParameters" list of field names/);
});

test("preflight refuses a token without connections:write, naming the service, the scope and what to do, before any write", async () => {
  fake.options.scopes = ['user:read', 'organizations:read', 'connections:read', 'scenarios:read', 'hooks:read'];
  const problems = await createMakeProvider(rig.clients).preflight(ctx());
  expect(problems).toEqual([
    'service make-prod: the Make API token (credential make-token) lacks scope connections:write, which installing crm-key into Make connections needs (POST /connections/{id}/set-data and /test; GET /users/me/current-authorization lists its scopes as connections:read, hooks:read, organizations:read, scenarios:read, user:read): create a Make API token with connections:read and connections:write (Make: Profile → API → Add token; scopes cannot be added to an existing token), store it with `integration-agent credentials import make-token`, then rotate again',
  ]);
  expect(fake.requests.some((r) => r.path === '/api/v2/users/me/current-authorization')).toBe(true);
  expect(fake.requests.filter((r) => r.method === 'POST')).toHaveLength(0);
  // Without the scope the write itself is what Make refuses (403), which the preflight spares the rotation.
  const err = (await createMakeProvider(rig.clients)
    .install(ctx(), { versionId: 'v2', secret: 'new-key-0002', idempotencyKey: 'k' })
    .catch((e: unknown) => e)) as ProviderError;
  expect(err.status).toBe(403);
});

test('preflight names every missing rotation scope', async () => {
  fake.options.scopes = ['user:read'];
  const problems = await createMakeProvider(rig.clients).preflight(ctx());
  expect(problems[0]).toMatch(/^service make-prod: the Make API token \(credential make-token\) lacks scopes connections:read, connections:write, which installing crm-key/);
});

test('preflight refuses a current-authorization answer it cannot read or a call that fails: never a pass', async () => {
  fake.options.authorizationBody = { authorization: { authUsed: 'token' } };
  let problems = await createMakeProvider(rig.clients).preflight(ctx());
  expect(problems).toEqual([
    expect.stringMatching(
      /^service make-prod: the scopes of the Make API token \(credential make-token\) could not be checked, so the rotation could fail with 403 mid-way: Make API GET \/users\/me\/current-authorization \(service make-prod\): the answer has no "authorization\.scope" list of scope names/,
    ),
  ]);
  fake.options.authorizationBody = { authorization: { authUsed: 'token', scope: 'connections:write' } };
  expect((await createMakeProvider(rig.clients).preflight(ctx()))[0]).toMatch(/could not be checked.*no "authorization\.scope" list/);
  fake.options.authorizationBody = undefined;
  fake.inject({ match: (m, path) => m === 'GET' && path === '/users/me/current-authorization', status: 503 });
  problems = await createMakeProvider(rig.clients).preflight(ctx());
  expect(problems).toHaveLength(1);
  expect(problems[0]).toMatch(/^service make-prod: the scopes of the Make API token \(credential make-token\) could not be checked.*503/);
});

test('install into a non-editable connection fails non-retryably with Make\'s words and never the secret', async () => {
  fake.connections.get(128)!.editable = false;
  const err = (await createMakeProvider(rig.clients)
    .install(ctx(), { versionId: 'v2', secret: 'new-key-0002', idempotencyKey: 'k' })
    .catch((e: unknown) => e)) as ProviderError;
  expect(err).toBeInstanceOf(ProviderError);
  expect(err.retryable).toBe(false);
  expect(err.message).toMatch(/install crm-key version v2 into Make connection 128 \(CRM\) of service make-prod: the connection cannot be edited/);
  expect(err.message).not.toContain('new-key-0002');
});

test('a Make 503 during set-data is a retryable provider error; a service with no connection for the credential is not', async () => {
  fake.inject({ match: (m, path) => m === 'POST' && path.endsWith('/set-data'), status: 503 });
  const p = createMakeProvider(rig.clients);
  const err = (await p.install(ctx(), { versionId: 'v2', secret: 'new-key-0002', idempotencyKey: 'k' }).catch((e: unknown) => e)) as ProviderError;
  expect(err.retryable).toBe(true);
  expect(err.status).toBe(503);
  expect(err.message).not.toContain('new-key-0002');
  const none = (await p.install(ctx('nobody-key'), { versionId: 'v2', secret: 's', idempotencyKey: 'k' }).catch((e: unknown) => e)) as ProviderError;
  expect(none.retryable).toBe(false);
  expect(none.message).toMatch(/no connection lists credential "nobody-key"/);
});

test('mint and revoke refuse: Make is a consumer only', async () => {
  const p = createMakeProvider(rig.clients);
  await expect(p.mint(ctx(), { idempotencyKey: 'k' })).rejects.toThrow(/cannot mint/);
  await expect(p.revoke(ctx(), { versionId: 'v1' })).rejects.toThrow(/cannot revoke/);
});

test("a 429 from Make through the coordinator is a retryable provider error that keeps Make's message", async () => {
  fake.inject({ match: (m, path) => m === 'POST' && path.endsWith('/set-data'), status: 429, body: { detail: 'Requests limit for organization exceeded, please try again later.', message: 'Too Many Requests', code: 'SC429' }, headers: { 'retry-after': '7' } });
  const err = (await createMakeProvider(rig.clients)
    .install(ctx(), { versionId: 'v2', secret: 'new-key-0002', idempotencyKey: 'k' })
    .catch((e: unknown) => e)) as ProviderError;
  expect(err).toBeInstanceOf(ProviderError);
  expect(err.retryable).toBe(true);
  expect(err.status).toBe(429);
  expect(err.message).toMatch(/429 Too Many Requests: Requests limit for organization exceeded/);
});

test('should Make ever quote the connection data in an error, the secret is redacted', async () => {
  fake.inject({ match: (m, path) => m === 'POST' && path.endsWith('/set-data'), status: 422, body: { detail: 'Invalid value new-key-0002 for apiKey.', message: 'Unprocessable Entity', code: 'SC422' } });
  const err = (await createMakeProvider(rig.clients)
    .install(ctx(), { versionId: 'v2', secret: 'new-key-0002', idempotencyKey: 'k' })
    .catch((e: unknown) => e)) as ProviderError;
  expect(err.retryable).toBe(false);
  expect(err.message).toMatch(/Invalid value \[REDACTED\] for apiKey/);
  expect(err.message).not.toContain('new-key-0002');
});
