/**
 * A worker checks its cluster at start: in a namespace without this project's
 * search attributes it creates them, and a rotation (which upserts
 * CredentialId and Phase) completes; where the server refuses to create them
 * it exits non-zero with the exact commands to run.
 *
 * The refusal is the server's own: the dev server's SQL visibility store holds
 * at most 10 custom Keyword attributes per namespace (Temporal 1.29,
 * "cannot have more than 10 search attribute of type Keyword"), so a
 * namespace already holding 10 others cannot take ours.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@temporalio/client';
import { AesGcmCodec } from '../../src/codec/aes-gcm-codec';
import { parseCodecKeys } from '../../src/codec/keys';
import { SEARCH_ATTRIBUTES } from '../../src/domain/constants';
import { parseRegistry } from '../../src/domain/registry-parse';
import { checkSearchAttributes } from '../../src/worker/cluster-check';
import { startContractServer, type ContractServer } from '../fixtures/rotation-contract';
import { testAddress, uniqueTaskQueue } from '../helpers/temporal';
import { cliJson, runCli, useClusterFile, waitFor, WorkerProcess } from './harness';
import { addKeywordAttributes, freshNamespace } from './namespaces';

const OURS = Object.keys(SEARCH_ATTRIBUTES);
const cluster = useClusterFile('ia-sa-');
const { workers, tempDir } = cluster;
let server: ContractServer | undefined;

afterAll(async () => {
  await server?.close().catch(() => undefined);
});

test('a worker in a namespace without the search attributes creates them, and a rotation completes', async () => {
  const namespace = await freshNamespace(cluster.connection, 'ia-sa');
  expect(Object.keys((await cluster.connection.operatorService.listSearchAttributes({ namespace })).customAttributes ?? {})).toEqual([]);

  const root = tempDir();
  const tag = `sa${randomBytes(3).toString('hex')}`;
  const c = { credentialId: `${tag}-cred`, issuer: `${tag}-iss`, consumer: `${tag}-api` };
  server = await startContractServer({ [c.issuer]: [c.consumer] });
  const step = { provider: 'http', stepTimeout: '4s' };
  const registry = JSON.stringify({
    services: [
      { id: c.issuer, type: 'api', endpoints: [{ url: server.base(c.issuer) }], rotation: step },
      { id: c.consumer, type: 'api', endpoints: [{ url: server.base(c.consumer) }], credential: c.credentialId, rotation: { ...step, verifyAttempts: 4, verifyInterval: '100ms' } },
    ],
    credentials: [{ id: c.credentialId, issuer: c.issuer, consumers: [c.consumer], provider: 'http', gracePeriod: '0s' }],
  });
  expect(parseRegistry(registry, 'registry.json').ok).toBe(true);
  writeFileSync(join(root, 'registry.json'), registry);
  const keys = `k1:${randomBytes(32).toString('base64')}`;
  const env = {
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_NAMESPACE: namespace,
    TEMPORAL_TASK_QUEUE: uniqueTaskQueue('sa'),
    INTEGRATION_AGENT_DATA_DIR: join(root, 'data'),
    INTEGRATION_AGENT_CODEC_KEYS: keys,
    INTEGRATION_AGENT_REGISTRY: join(root, 'registry.json'),
    LOG_LEVEL: 'info',
  };
  const secret = `initial-${randomBytes(16).toString('base64url')}`;
  const imported = cliJson<{ versionId: string }>('credentials import', await runCli(['credentials', 'import', c.credentialId, '--version-id', `v-${randomBytes(6).toString('hex')}`, '--json'], env, { input: `${secret}\n` }));
  server.seed(c.issuer, imported.versionId, secret);
  server.preinstall(c.consumer, imported.versionId);

  const client = new Client({ connection: cluster.connection, namespace, dataConverter: { payloadCodecs: [new AesGcmCodec(parseCodecKeys(keys, 'test keys'))] } });
  const worker = new WorkerProcess('worker', env);
  workers.push(worker);
  await worker.start(client);
  expect(worker.logs()).toContain('search attributes created');
  const listed = (await cluster.connection.operatorService.listSearchAttributes({ namespace })).customAttributes ?? {};
  expect(Object.keys(listed).sort()).toEqual([...OURS].sort());

  const rotated = cliJson<{ status: string; versionId: string }>('rotate', await runCli(['rotate', c.credentialId, '--json'], env));
  expect(rotated.status).toBe('completed');
  expect(server.consumer(c.consumer).versionId).toBe(rotated.versionId);
  // The attributes the rotation upserted are searchable.
  await waitFor(
    'the rotation to be found by CredentialId and Phase',
    async () => (await client.workflow.count(`CredentialId = "${c.credentialId}" AND Phase = "completed"`)).count === 1,
    { timeoutMs: 15_000, everyMs: 250 },
  );
  await worker.kill();
});

test('where the server refuses to create them, the worker exits non-zero with the exact commands', async () => {
  const namespace = await freshNamespace(cluster.connection, 'ia-sa-full');
  // Ten other Keyword attributes: the SQL visibility store has no slot left for ours.
  await addKeywordAttributes(cluster.connection, namespace, Array.from({ length: 10 }, (_, i) => `Other${String(i + 1).padStart(2, '0')}`));
  const root = tempDir();
  const r = await runCli(['worker'], {
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_NAMESPACE: namespace,
    TEMPORAL_TASK_QUEUE: uniqueTaskQueue('sa-full'),
    INTEGRATION_AGENT_DATA_DIR: join(root, 'data'),
    LOG_LEVEL: 'warn',
  }, { timeoutMs: 60_000 });
  expect(r.code).toBe(1); // not null: it did not hang until the runner's timeout
  const lines = r.stderr.split('\n');
  expect(lines.find((l) => l.startsWith('integration-agent: '))).toMatch(
    new RegExp(`namespace ${namespace} lacks the search attributes ${OURS.join(', ')}.*cannot create search attributes .*cannot have more than 10 search attribute of type Keyword`),
  );
  for (const name of OURS) expect(lines).toContain(`  temporal operator search-attribute create --namespace ${namespace} --name ${name} --type Keyword`);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  // Nothing was created half-way.
  const listed = Object.keys((await cluster.connection.operatorService.listSearchAttributes({ namespace })).customAttributes ?? {});
  expect(listed.filter((n) => OURS.includes(n))).toEqual([]);
});

test('workers starting at once in a fresh namespace: every check ends with all attributes present, none fails on "already exists"', async () => {
  const namespace = await freshNamespace(cluster.connection, 'ia-sa-race');
  const reports = await Promise.all([1, 2, 3].map(() => checkSearchAttributes(cluster.connection, namespace, { create: true })));
  for (const r of reports) expect({ missing: r.missing, error: r.error, present: [...r.present].sort() }).toEqual({ missing: [], error: undefined, present: [...OURS].sort() });
  expect(reports.some((r) => r.created.length > 0)).toBe(true);
});

test('a namespace that does not exist: the worker exits 1 saying so, with the command to create it', async () => {
  const namespace = `ia-absent-${randomBytes(4).toString('hex')}`;
  const r = await runCli(['worker'], { TEMPORAL_ADDRESS: testAddress(), TEMPORAL_NAMESPACE: namespace, INTEGRATION_AGENT_DATA_DIR: join(tempDir(), 'data'), LOG_LEVEL: 'warn' }, { timeoutMs: 60_000 });
  expect(r.code).toBe(1);
  expect(r.stderr.trim().split('\n')).toEqual([
    `integration-agent: namespace ${namespace} does not exist on the Temporal server at ${testAddress()}: set TEMPORAL_NAMESPACE to an existing one, or create it: temporal operator namespace create --namespace ${namespace}`,
  ]);
});
