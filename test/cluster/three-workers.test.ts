/**
 * Many workers, one shared state, as the README promises: three real
 * `integration-agent worker` processes (the built lib/), each with a data dir
 * of its own, one PostgreSQL database, one Temporal server, shared codec and
 * master keys. Rotations of several credentials run while worker processes
 * are SIGKILLed and restarted; every rotation ends completed or rolled back
 * with one CURRENT, nothing PENDING and every consumer holding CURRENT. A
 * fourth process with no data dir and no database URL sees the same through
 * the CLI (`credentials list`, `audit`), and the audit trail has every step
 * of a run exactly once.
 *
 * Also on one host: the CLI with an empty data dir reads the state of a
 * worker on the embedded SQLite backend.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { AesGcmCodec } from '../../src/codec/aes-gcm-codec';
import { parseCodecKeys } from '../../src/codec/keys';
import { pollingTaskQueues } from '../../src/client/connect';
import { startRotation } from '../../src/client/rotation';
import { parseRegistry } from '../../src/domain/registry-parse';
import type { RotationResult } from '../../src/domain/rotation';
import { startContractServer, type ContractServer } from '../fixtures/rotation-contract';
import { startPostgres, type TestPostgres } from '../helpers/postgres';
import { testAddress, uniqueTaskQueue } from '../helpers/temporal';
import { cliJson, requireBuiltLib, runCli, waitFor, WorkerProcess } from './harness';

interface CredentialRow {
  credentialId: string;
  current: string | null;
  pending: string | null;
  previous: string | null;
  versions: number;
}

interface AuditRow {
  id: number;
  credentialId: string;
  step: string;
  serviceId: string | null;
  versionId: string | null;
  outcome: string;
  actor: string;
}

/** One credential per issuer, two consumers each (`b` depends on `a`); ids unique to this run (rotation and breaker workflow ids are global). */
function fleet(tag: string, count: number) {
  return Array.from({ length: count }, (_, i) => {
    const n = i + 1;
    return { credentialId: `${tag}-cred${n}`, issuer: `${tag}-iss${n}`, a: `${tag}-c${n}-a`, b: `${tag}-c${n}-b` };
  });
}
type Fleet = ReturnType<typeof fleet>;

/** A registry file (JSON is YAML) for the fleet, checked by the real parser before any worker reads it. */
function writeRegistry(dir: string, server: ContractServer, creds: Fleet): string {
  const step = { provider: 'http', stepTimeout: '4s' };
  const doc = {
    services: creds.flatMap((c) => [
      { id: c.issuer, type: 'api', endpoints: [{ url: server.base(c.issuer) }], rotation: step },
      { id: c.a, type: 'api', endpoints: [{ url: server.base(c.a) }], credential: c.credentialId, rotation: { ...step, verifyAttempts: 4, verifyInterval: '100ms' } },
      { id: c.b, type: 'api', endpoints: [{ url: server.base(c.b) }], dependsOn: [c.a], credential: c.credentialId, rotation: { ...step, verifyAttempts: 4, verifyInterval: '100ms' } },
    ]),
    credentials: creds.map((c) => ({ id: c.credentialId, issuer: c.issuer, consumers: [c.a, c.b], provider: 'http', gracePeriod: '0s' })),
  };
  const text = JSON.stringify(doc, null, 2);
  const parsed = parseRegistry(text, 'registry.json');
  if (!parsed.ok) throw new Error(`test registry invalid: ${JSON.stringify(parsed.problems)}`);
  const file = join(dir, 'registry.json');
  writeFileSync(file, text);
  return file;
}

/** Imports a fresh CURRENT secret for each credential through the CLI, then seeds the issuers and consumers with it. */
async function importAll(server: ContractServer, creds: Fleet, env: Record<string, string>): Promise<Map<string, string>> {
  const initial = new Map<string, string>();
  const one = async (c: Fleet[number]) => {
    const secret = `initial-${randomBytes(16).toString('base64url')}`;
    const r = cliJson<{ versionId: string }>(`credentials import ${c.credentialId}`, await runCli(['credentials', 'import', c.credentialId, '--version-id', `v-${randomBytes(6).toString('hex')}`, '--json'], env, { input: `${secret}\n` }));
    server.seed(c.issuer, r.versionId, secret);
    server.preinstall(c.a, r.versionId);
    server.preinstall(c.b, r.versionId);
    initial.set(c.credentialId, r.versionId);
  };
  // The first import alone (it migrates a fresh database), the others at once.
  await one(creds[0]);
  await Promise.all(creds.slice(1).map(one));
  return initial;
}

const TEMP: string[] = [];
function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  TEMP.push(d);
  return d;
}

const workers: WorkerProcess[] = [];
let pg: TestPostgres | undefined;
let server: ContractServer | undefined;
let connection: Connection | undefined;

beforeAll(() => requireBuiltLib());

afterAll(async () => {
  // Always: no worker outlives the test, whatever failed.
  await Promise.all(workers.map((w) => w.kill()));
  await connection?.close().catch(() => undefined);
  await server?.close().catch(() => undefined);
  await pg?.stop().catch(() => undefined);
  for (const d of TEMP) rmSync(d, { recursive: true, force: true });
});

function codecKeys(): string {
  return `k${randomBytes(4).toString('hex')}:${randomBytes(32).toString('base64')}`;
}

async function codecClient(keys: string): Promise<Client> {
  connection ??= await Connection.connect({ address: testAddress() });
  return new Client({ connection, dataConverter: { payloadCodecs: [new AesGcmCodec(parseCodecKeys(keys, 'test codec keys'))] } });
}

/** The environment of a process that may only talk to Temporal: no data dir (a home that does not exist), no database URL, no master key. */
function operatorEnv(root: string, taskQueue: string, keys: string): Record<string, string> {
  return {
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_TASK_QUEUE: taskQueue,
    INTEGRATION_AGENT_CODEC_KEYS: keys,
    HOME: join(root, 'operator-home'),
    XDG_DATA_HOME: join(root, 'operator-home', 'data'),
    LOG_LEVEL: 'warn',
  };
}

test('one host: `credentials list` with an empty data dir reads the state of a worker on the embedded SQLite backend', async () => {
  const root = tempDir('ia-one-host-');
  const tag = `oh${randomBytes(3).toString('hex')}`;
  const creds = fleet(tag, 1);
  server = await startContractServer({ [creds[0].issuer]: [creds[0].a, creds[0].b] });
  const keys = codecKeys();
  const taskQueue = uniqueTaskQueue('one-host');
  const workerDir = join(root, 'worker');
  const env = {
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_TASK_QUEUE: taskQueue,
    INTEGRATION_AGENT_DATA_DIR: workerDir,
    INTEGRATION_AGENT_CODEC_KEYS: keys,
    INTEGRATION_AGENT_REGISTRY: writeRegistry(root, server, creds),
    LOG_LEVEL: 'warn',
  };
  const initial = await importAll(server, creds, env);
  const client = await codecClient(keys);
  const worker = new WorkerProcess('one-host worker', { ...env, LOG_LEVEL: 'info' });
  workers.push(worker);
  await worker.start(client);
  // The CLI first checks that a worker polls the queue (as the server lists pollers); a worker that has just started may not show yet.
  await waitFor(`a poller on ${taskQueue}`, async () => (await pollingTaskQueues(client, [taskQueue])).has(taskQueue), { timeoutMs: 30_000, everyMs: 200 });

  const emptyDir = join(root, 'empty');
  mkdirSync(emptyDir);
  const list = cliJson<CredentialRow[]>('credentials list', await runCli(['credentials', 'list', '--json'], { ...operatorEnv(root, taskQueue, keys), INTEGRATION_AGENT_DATA_DIR: emptyDir }));
  expect(list).toEqual([expect.objectContaining({ credentialId: creds[0].credentialId, current: initial.get(creds[0].credentialId), pending: null, versions: 1 })]);

  const status = await runCli(['credentials', 'status', creds[0].credentialId], { ...operatorEnv(root, taskQueue, keys), INTEGRATION_AGENT_DATA_DIR: emptyDir });
  expect({ code: status.code, stderr: status.stderr }).toEqual({ code: 0, stderr: '' });
  expect(status.stdout).toContain(initial.get(creds[0].credentialId));
  expect(status.stdout).toContain(`no rotation of ${creds[0].credentialId} yet`);

  await worker.kill();
  await server.close();
  server = undefined;
});

test('three workers, three data dirs, one PostgreSQL: rotations survive SIGKILLed workers, and a fourth process with no data dir sees the same state', async () => {
  const root = tempDir('ia-three-');
  const tag = `tw${randomBytes(3).toString('hex')}`;
  const creds = fleet(tag, 4);
  const rollsBack = creds[3];
  server = await startContractServer(Object.fromEntries(creds.map((c) => [c.issuer, [c.a, c.b]])));
  for (const c of creds) {
    // Every `a` consumer is slow to install, so rotations are mid-flight when workers die.
    server.behaviour(c.a).installDelayMs = 1200;
  }

  pg = await startPostgres();
  const dbPassword = randomBytes(12).toString('hex');
  await pg.sql(`CREATE ROLE agent LOGIN PASSWORD '${dbPassword}'`);
  await pg.sql('CREATE DATABASE agent OWNER agent');
  const databaseUrl = pg.url('agent', dbPassword).replace(/\/postgres$/, '/agent');

  const keys = codecKeys();
  const masterKey = randomBytes(32).toString('base64');
  const taskQueue = uniqueTaskQueue('three');
  const registryFile = writeRegistry(root, server, creds);
  const shared = {
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_TASK_QUEUE: taskQueue,
    INTEGRATION_AGENT_DATABASE_URL: databaseUrl,
    INTEGRATION_AGENT_CODEC_KEYS: keys,
    INTEGRATION_AGENT_MASTER_KEY: masterKey,
    INTEGRATION_AGENT_REGISTRY: registryFile,
    LOG_LEVEL: 'warn',
  };
  const initial = await importAll(server, creds, { ...shared, INTEGRATION_AGENT_DATA_DIR: join(root, 'importer') });
  // The last credential's `b` consumer refuses every new version (so that rotation rolls back) but takes its old one back.
  server.behaviour(rollsBack.b).acceptOnly = new Set([initial.get(rollsBack.credentialId)!]);

  const client = await codecClient(keys);
  // Workers log at info: kept in memory, shown only when a start or the scenario fails.
  const three = [0, 1, 2].map((i) => new WorkerProcess(`worker ${i + 1}`, { ...shared, LOG_LEVEL: 'info', INTEGRATION_AGENT_DATA_DIR: join(root, `worker-${i + 1}`) }));
  workers.push(...three);
  await Promise.all(three.map((w) => w.start(client)));

  const settled = new Map<string, RotationResult>();
  const handles = await Promise.all(creds.map((c) => startRotation(client, { credentialId: c.credentialId, taskQueue })));
  const results = Promise.all(
    handles.map(async (s, i) => {
      const r = (await s.handle.result()) as RotationResult;
      settled.set(creds[i].credentialId, r);
      return r;
    }),
  );
  results.catch(() => undefined); // awaited below; a rejection before then must not go unhandled
  const progress = () =>
    `settled: ${[...settled.values()].map((r) => `${r.credentialId}=${r.status}`).join(', ') || 'none'}; install requests: ${creds
      .flatMap((c) => [c.a, c.b])
      .map((id) => `${id}=${server!.consumer(id).installRequests}`)
      .join(', ')}\n${three.map((w) => `--- ${w.name} (starts ${w.starts}, running ${w.running()}):\n${w.logs()}`).join('\n')}`;

  // Round 1: a slow install is in flight somewhere; two of the three workers die with it.
  await waitFor('a slow install to be in flight', () => creds.some((c) => server!.consumer(c.a).installRequests > 0), { timeoutMs: 30_000, everyMs: 20, detail: progress });
  const settledAtFirstKill = settled.size;
  await Promise.all([three[0].kill(), three[1].kill()]);
  await Promise.all([three[0].start(client), three[1].start(client)]);

  // Round 2: later in the rotations (or once they are all done), the third worker and a restarted one die too.
  await waitFor(
    'more installs or every rotation settled',
    () => settled.size === creds.length || creds.reduce((n, c) => n + server!.consumer(c.a).installRequests + server!.consumer(c.b).installRequests, 0) >= 5,
    { timeoutMs: 45_000, everyMs: 20, detail: progress },
  );
  await Promise.all([three[2].kill(), three[0].kill()]);
  await Promise.all([three[2].start(client), three[0].start(client)]);

  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`rotations not settled within 90 s\n${progress()}`)), 90_000).unref());
  const all = await Promise.race([results, timeout]);

  expect(settledAtFirstKill).toBeLessThan(creds.length); // the first kills hit rotations mid-flight
  // Every rotation ends completed or rolled_back; the one whose consumer refuses rolls back.
  for (const r of all) {
    const seen = { credentialId: r.credentialId, status: r.status, ok: ['completed', 'rolled_back'].includes(r.status), cause: r.cause, services: r.services };
    expect(seen).toEqual({ ...seen, ok: true });
  }
  expect(all[3].status).toBe('rolled_back');
  expect(all.some((r) => r.status === 'completed')).toBe(true);

  // A fourth process: only Temporal (address, task queue, codec keys); no data dir, no database URL, no master key.
  const op = operatorEnv(root, taskQueue, keys);
  const list = cliJson<CredentialRow[]>('credentials list from the operator', await runCli(['credentials', 'list', '--json'], op));
  expect(list.map((r) => r.credentialId).sort()).toEqual(creds.map((c) => c.credentialId).sort());
  for (const [i, c] of creds.entries()) {
    const r = all[i];
    const row = list.find((x) => x.credentialId === c.credentialId)!;
    const current = r.status === 'completed' ? r.versionId : initial.get(c.credentialId);
    expect({ credentialId: c.credentialId, current: row.current, pending: row.pending }).toEqual({ credentialId: c.credentialId, current, pending: null });
    // Every consumer (asked at the fixture service) holds CURRENT.
    expect({ credentialId: c.credentialId, a: server.consumer(c.a).versionId, b: server.consumer(c.b).versionId }).toEqual({ credentialId: c.credentialId, a: current, b: current });
    if (r.status === 'completed') expect(row.previous).toBe(initial.get(c.credentialId));
  }
  expect(existsSync(op.HOME)).toBe(false); // the operator's process created no data dir

  // The audit trail, read through the CLI (one page holds this fresh database's whole trail): every step of a run exactly once.
  const trail = cliJson<AuditRow[]>('audit', await runCli(['audit', '--limit', '1000', '--json'], op));
  expect(trail.length).toBeLessThan(1000);
  for (const [i, c] of creds.entries()) {
    const r = all[i];
    const run = trail.filter((e) => e.actor === `${handles[i].workflowId}#${handles[i].runId}`);
    const keysOf = (e: AuditRow) => `${e.step}/${e.serviceId ?? '-'}/${e.versionId ?? '-'}/${e.outcome}`;
    const done = run.filter((e) => e.outcome !== 'failed').map(keysOf);
    const duplicated = done.filter((k, j) => done.indexOf(k) !== j);
    expect({ credentialId: c.credentialId, duplicated }).toEqual({ credentialId: c.credentialId, duplicated: [] });
    const steps = run.filter((e) => e.outcome !== 'failed').map((e) => `${e.step}/${e.serviceId ?? '-'}/${e.outcome}`);
    const expected =
      r.status === 'completed'
        ? ['rotation/-/started', `mint/${c.issuer}/ok`, `install/${c.a}/ok`, `verify/${c.a}/ok`, `install/${c.b}/ok`, `verify/${c.b}/ok`, 'finish/-/ok', `revoke/${c.issuer}/ok`, 'rotation/-/completed']
        : ['rotation/-/started', `mint/${c.issuer}/ok`, `restore/${c.a}/ok`, `discard_pending/${c.issuer}/ok`, 'rotation/-/rolled_back'];
    expect({ credentialId: c.credentialId, steps: [...steps].sort() }).toEqual({ credentialId: c.credentialId, steps: expect.arrayContaining([...expected].sort()) });
    if (r.status === 'completed') expect({ credentialId: c.credentialId, steps: [...steps].sort() }).toEqual({ credentialId: c.credentialId, steps: [...expected].sort() });
  }

  // `credentials import` writes to the store itself: from a machine without the workers' database URL it would land in a
  // local embedded file the workers never read. It refuses, naming the workers' store, and writes nothing.
  const stray = await runCli(['credentials', 'import', `${tag}-stray`], { ...op, INTEGRATION_AGENT_MASTER_KEY: masterKey }, { input: 'stray-secret\n' });
  expect({ code: stray.code, stdout: stray.stdout }).toEqual({ code: 1, stdout: '' });
  expect(stray.stderr).toContain('INTEGRATION_AGENT_DATABASE_URL');
  expect(stray.stderr).toMatch(/state=[0-9a-f]{8}/);
  expect(stray.stderr).not.toContain('stray-secret');
  const after = cliJson<CredentialRow[]>('credentials list after the refused import', await runCli(['credentials', 'list', '--json'], op));
  expect(after.map((r) => r.credentialId)).not.toContain(`${tag}-stray`);
}, 180_000);
