/**
 * Rotation against a fleet of 10,000 services: the run takes the registry by
 * reference (its version hash and the plan of this credential), never the
 * fleet, so every payload in its history stays under Temporal's 512 KB
 * warning, whether the credential has 3 consumers or 3,000.
 */
import { randomBytes } from 'node:crypto';
import type { temporal } from '@temporalio/proto';
import { rotate } from '../../src/client/rotation';
import type { Registry } from '../../src/domain/registry';
import { parseRegistry } from '../../src/domain/registry-parse';
import { startContractServer, type ContractServer } from '../fixtures/rotation-contract';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { freshLocation, openAt } from '../helpers/state';
import { createRegistryActivities, staticRegistry } from '../../src/activities/registry';
import { createRotationActivities } from '../../src/activities/rotation';
import type { StateBackend } from '../../src/state/types';

afterAll(closeTestClient);

const FLEET = 10_000;
const WARN_BYTES = 512 * 1024;
const id = (i: number) => `svc-${String(i).padStart(5, '0')}`;
/** Consumers of `cred-few` (fanOut workflow) and `cred-many` (3,000, fanOut activity). */
const FEW = [id(1), id(2), id(3)];
const MANY = Array.from({ length: 3000 }, (_, i) => id(1000 + i));

/**
 * A registry of {@link FLEET} services on one contract server: `issuer`, then
 * services in dependency chains of three (so a credential's consumers fall in
 * three batches), with a description, tags and an HTTP health check each (a
 * service of ~300 B, as in a real registry).
 */
function fleetRegistry(server: ContractServer): Registry {
  const users = new Map<string, string>([...FEW.map((s) => [s, 'cred-few'] as const), ...MANY.map((s) => [s, 'cred-many'] as const)]);
  const services: Record<string, unknown>[] = [{ id: 'issuer', type: 'api', endpoints: [{ url: server.base('issuer') }], rotation: { provider: 'http', stepTimeout: '5s' } }];
  for (let i = 1; i < FLEET; i++) {
    const s = id(i);
    const cred = users.get(s);
    services.push({
      id: s,
      type: 'api',
      description: `service ${i} of the scale fleet`,
      tags: ['scale', `team-${i % 20}`],
      endpoints: [{ url: server.base(s) }],
      healthCheck: { type: 'http', path: '/health', interval: '30s', timeout: '2s' },
      dependsOn: i % 3 === 1 ? [] : [id(i - 1)],
      ...(cred ? { credential: cred, rotation: { provider: 'http', stepTimeout: '5s', verifyAttempts: 4, verifyInterval: '50ms' } } : {}),
    });
  }
  const credentials = [
    { id: 'cred-few', issuer: 'issuer', consumers: FEW, provider: 'http', gracePeriod: '0s' },
    { id: 'cred-many', issuer: 'issuer', consumers: MANY, provider: 'http', gracePeriod: '0s', fanOut: 'activity', maxParallel: 64 },
  ];
  const r = parseRegistry(JSON.stringify({ services, credentials }), 'scale-fleet.json');
  if (!r.ok) throw new Error(`scale registry invalid: ${JSON.stringify(r.problems.slice(0, 3))}`);
  return r.registry;
}

/** Bytes of every payload (data + metadata) anywhere in a history, largest first. */
function payloadSizes(history: temporal.api.history.v1.IHistory): number[] {
  const sizes: number[] = [];
  const walk = (o: unknown): void => {
    if (!o || typeof o !== 'object' || o instanceof Uint8Array) return;
    if (Array.isArray(o)) return o.forEach(walk);
    const p = o as { data?: unknown; metadata?: unknown };
    if (p.data instanceof Uint8Array && p.metadata && typeof p.metadata === 'object') {
      let n = p.data.length;
      for (const [k, v] of Object.entries(p.metadata as Record<string, Uint8Array>)) n += k.length + (v?.length ?? 0);
      sizes.push(n);
      return;
    }
    for (const v of Object.values(o)) walk(v);
  };
  walk(history.events);
  return sizes.sort((a, b) => b - a);
}

let server: ContractServer;
let registry: Registry;
let state: StateBackend;
const versions: Record<string, string> = {};

beforeAll(async () => {
  server = await startContractServer({ issuer: [...FEW, ...MANY] });
  registry = fleetRegistry(server);
  state = await openAt(await freshLocation('sqlite'), { masterKey: randomBytes(32) });
  for (const cred of ['cred-few', 'cred-many']) {
    const secret = `initial-${randomBytes(16).toString('base64url')}`;
    versions[cred] = await state.credentials.importCurrent(cred, secret, 'test', `v-${randomBytes(6).toString('hex')}`);
    server.seed('issuer', versions[cred]!, secret);
  }
  for (const c of FEW) server.preinstall(c, versions['cred-few']!);
  for (const c of MANY) server.preinstall(c, versions['cred-many']!);
}, 60_000);

afterAll(async () => {
  await server?.close();
  await state?.close();
});

/** Rotates `credentialId` on a worker holding the 10,000-service registry; returns the result and the history's payload sizes. */
async function rotateAtScale(credentialId: string) {
  const taskQueue = uniqueTaskQueue('rot-scale');
  const activities = { ...createRegistryActivities(staticRegistry(registry)), ...createRotationActivities({ store: state.credentials, registry: staticRegistry(registry) }) };
  return withTestWorker({ taskQueue, activities }, async () => {
    const client = await testClient();
    // Before the registry went by reference, a fleet this size never ended (its workflow task failed
    // on the 2 MiB payload limit, again and again): fail with a message rather than the test's timeout.
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      rotate(client, { credentialId, taskQueue }),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`rotation of ${credentialId} did not end in 50 s (a failing workflow task? see the Web UI)`)), 50_000))),
    ]).finally(() => clearTimeout(timer));
    const history = await client.workflow.getHandle(result.workflowId).fetchHistory();
    return { result, sizes: payloadSizes(history), events: history.events?.length ?? 0 };
  });
}

test('a credential with 3 consumers in a fleet of 10,000 rotates; no payload in its history reaches 512 KB', async () => {
  expect(registry.services).toHaveLength(FLEET);
  const { result, sizes } = await rotateAtScale('cred-few');
  expect(result.cause).toBeUndefined();
  expect(result.status).toBe('completed');
  for (const c of FEW) expect(server.consumer(c).versionId).toBe(result.versionId);
  expect(sizes[0]).toBeLessThan(WARN_BYTES);
  // The registry is not in history, not even in part: the run's payloads together stay small.
  expect(sizes.reduce((a, b) => a + b, 0)).toBeLessThan(64 * 1024);
}, 60_000);

test('a credential with 3,000 consumers of a fleet of 10,000 rotates; no payload in its history reaches 512 KB', async () => {
  const { result, sizes } = await rotateAtScale('cred-many');
  expect(result.cause).toBeUndefined();
  expect(result.status).toBe('completed');
  expect(result.services.filter((s) => s.status === 'ok' && s.holds === 'current')).toHaveLength(MANY.length);
  for (const c of [MANY[0]!, MANY[1500]!, MANY[2999]!]) expect(server.consumer(c).versionId).toBe(result.versionId);
  expect(sizes[0]).toBeLessThan(WARN_BYTES);
}, 90_000);

test('a rollback of 3,000 consumers restores them in pages: few events, no payload reaches 512 KB', async () => {
  const before = (await state.credentials.labels('cred-many')).CURRENT!.versionId;
  const last = MANY[MANY.length - 1]!;
  server.behaviour(last).rejectInstall = true;
  try {
    const { result, sizes, events } = await rotateAtScale('cred-many');
    expect(result.status).toBe('rolled_back');
    expect(result.cause).toContain(`${last}:`);
    // Every consumer that took the new version is back on CURRENT; the one that refused it never left.
    for (const c of MANY) expect(server.consumer(c).versionId).toBe(before);
    expect(result.services.filter((s) => s.step === 'restore' && s.status === 'ok')).toHaveLength(MANY.length - 1);
    expect(sizes[0]).toBeLessThan(WARN_BYTES);
    // Three install pages and three restore pages, not an activity per consumer.
    expect(events).toBeLessThan(200);
  } finally {
    server.behaviour(last).rejectInstall = false;
  }
}, 90_000);
