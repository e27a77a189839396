/**
 * `integration-agent doctor`, the real CLI process: a healthy setup (a worker
 * polling, the same keys) exits 0 and lists the worker's identity; a
 * namespace missing one attribute exits 1 with its exact command; two
 * workers on different keys and data dirs are named as disagreeing; a
 * database URL is never echoed with its password.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Client } from '@temporalio/client';
import { SEARCH_ATTRIBUTES } from '../../src/domain/constants';
import type { DoctorReport } from '../../src/client/cli/commands/doctor';
import { openState } from '../../src/state';
import { startPostgres } from '../helpers/postgres';
import { testAddress, uniqueTaskQueue } from '../helpers/temporal';
import { runCli, useClusterFile, WorkerProcess } from './harness';
import { addKeywordAttributes, freshNamespace } from './namespaces';

const cluster = useClusterFile('ia-doctor-');
const { workers, tempDir } = cluster;

const statuses = (r: DoctorReport) => Object.fromEntries(r.checks.map((c) => [c.name, c.status]));

test('a healthy setup: exit 0, every check ok, the worker listed with its key and state', async () => {
  const env = {
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_TASK_QUEUE: uniqueTaskQueue('doctor'),
    INTEGRATION_AGENT_DATA_DIR: join(tempDir(), 'data'),
    INTEGRATION_AGENT_CODEC_KEYS: `k1:${randomBytes(32).toString('base64')}`,
    LOG_LEVEL: 'warn',
  };
  const worker = new WorkerProcess('worker', env);
  workers.push(worker);
  await worker.start(new Client({ connection: cluster.connection }));

  const r = await runCli(['doctor', '--json'], env);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  const report = JSON.parse(r.stdout) as DoctorReport;
  expect(report.ok).toBe(true);
  expect(statuses(report)).toEqual({ temporal: 'ok', namespace: 'ok', 'search attributes': 'ok', pollers: 'ok', 'codec keys': 'ok', state: 'ok', limits: 'ok', database: 'ok' });
  expect(report.temporal.serverVersion).toMatch(/^\d+\.\d+/);
  expect(report.searchAttributes?.missing).toEqual([]);
  expect(report.pollers).toEqual([
    expect.objectContaining({ process: `${hostname()}:${worker.pid}`, codec: report.self.codec, kinds: ['workflow', 'activity'], state: expect.stringMatching(/^[0-9a-f]{8}$/) }),
  ]);

  const human = await runCli(['doctor'], env);
  expect(human.code).toBe(0);
  expect(human.stdout).toMatch(/^CHECK\s+STATUS\s+DETAIL$/m);
  expect(human.stdout).toMatch(/^search attributes\s+ok\s+ServiceId, CredentialId, Phase, BreakerState, HealthStatus present$/m);
  expect(human.stdout).toContain(`${hostname()}:${worker.pid} codec=${report.self.codec} state=`);
  expect(human.stdout.trim().split('\n').at(-1)).toBe('ok');

  // A second worker on another key and another data dir is refused; doctor, from its side, says why.
  const other = { ...env, INTEGRATION_AGENT_DATA_DIR: join(tempDir(), 'data'), INTEGRATION_AGENT_CODEC_KEYS: `k2:${randomBytes(32).toString('base64')}` };
  const fromOther = JSON.parse((await runCli(['doctor', '--json'], other)).stdout) as DoctorReport;
  expect(fromOther.ok).toBe(false);
  expect(fromOther.checks.find((c) => c.name === 'codec keys')).toEqual(
    expect.objectContaining({ status: 'fail', detail: expect.stringContaining(`the pollers encrypt with ${report.self.codec}, which this process (codec=${fromOther.self.codec}) does not hold`) }),
  );
  await worker.kill();
});

test('a namespace missing one attribute: exit 1, the attribute named with its command', async () => {
  const namespace = await freshNamespace(cluster.connection, 'ia-doctor');
  const present = Object.keys(SEARCH_ATTRIBUTES).filter((n) => n !== 'HealthStatus');
  await addKeywordAttributes(cluster.connection, namespace, present);
  const env = {
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_NAMESPACE: namespace,
    TEMPORAL_TASK_QUEUE: uniqueTaskQueue('doctor-ns'),
    INTEGRATION_AGENT_DATA_DIR: join(tempDir(), 'data'),
  };
  const r = await runCli(['doctor', '--json'], env);
  expect(r.code).toBe(1);
  const report = JSON.parse(r.stdout) as DoctorReport;
  expect(report.searchAttributes).toEqual(expect.objectContaining({ present, missing: ['HealthStatus'], commands: [`temporal operator search-attribute create --namespace ${namespace} --name HealthStatus --type Keyword`] }));
  expect(statuses(report)).toEqual(expect.objectContaining({ temporal: 'ok', 'search attributes': 'fail', pollers: 'warn' }));
  // doctor only reports: nothing was created.
  expect(Object.keys((await cluster.connection.operatorService.listSearchAttributes({ namespace })).customAttributes ?? {})).not.toContain('HealthStatus');

  const human = await runCli(['doctor'], env);
  expect(human.code).toBe(1);
  expect(human.stdout).toMatch(/^search attributes\s+FAIL\s+namespace .* lacks the search attribute HealthStatus/m);
  expect(human.stdout).toContain(`\n      temporal operator search-attribute create --namespace ${namespace} --name HealthStatus --type Keyword\n`);
  expect(human.stdout.trim().split('\n').at(-1)).toBe('problems found');
});

test('an unreachable Temporal and database: exit 1, each named, the password never printed', async () => {
  const password = `pw-${randomBytes(8).toString('hex')}`;
  const env = {
    TEMPORAL_ADDRESS: '127.0.0.1:1',
    INTEGRATION_AGENT_DATA_DIR: join(tempDir(), 'data'),
    INTEGRATION_AGENT_DATABASE_URL: `postgres://agent:${password}@127.0.0.1:1/agent`,
  };
  const [r, human] = await Promise.all([runCli(['doctor', '--json'], env, { timeoutMs: 60_000 }), runCli(['doctor'], env, { timeoutMs: 60_000 })]);
  expect(r.code).toBe(1);
  expect(r.stdout + r.stderr).not.toContain(password);
  const report = JSON.parse(r.stdout) as DoctorReport;
  expect(statuses(report)).toEqual(expect.objectContaining({ temporal: 'fail', 'search attributes': 'skipped', database: 'fail' }));
  expect(report.database.where).toBe('postgres://***@127.0.0.1:1/agent');
  expect(human.code).toBe(1);
  expect(human.stdout + human.stderr).not.toContain(password);
  expect(human.stdout).toMatch(/^temporal\s+FAIL\s+cannot reach 127\.0\.0\.1:1/m);
});

test('a PostgreSQL database: pending migrations are reported, then reachable and migrated with its instance id; the password never printed', async () => {
  const pg = await startPostgres();
  try {
    const password = `pw-${randomBytes(8).toString('hex')}`;
    await pg.sql(`CREATE ROLE agent LOGIN PASSWORD '${password}'`);
    await pg.sql('CREATE DATABASE agent OWNER agent');
    const databaseUrl = pg.url('agent', password).replace(/\/postgres$/, '/agent');
    const dataDir = join(tempDir(), 'data');
    const env = { TEMPORAL_ADDRESS: testAddress(), TEMPORAL_TASK_QUEUE: uniqueTaskQueue('doctor-pg'), INTEGRATION_AGENT_DATA_DIR: dataDir, INTEGRATION_AGENT_DATABASE_URL: databaseUrl };

    const fresh = await runCli(['doctor', '--json'], env);
    expect(fresh.stdout + fresh.stderr).not.toContain(password);
    const before = JSON.parse(fresh.stdout) as DoctorReport;
    expect(before.database).toEqual(expect.objectContaining({ kind: 'postgres', reachable: true, applied: [], where: expect.stringMatching(/^postgres:\/\/\*\*\*@127\.0\.0\.1:\d+\/agent$/) }));
    expect(before.database.pending!.length).toBeGreaterThan(0);
    expect(before.checks.find((c) => c.name === 'database')).toEqual(expect.objectContaining({ status: 'warn', fix: expect.stringContaining('start a worker') }));

    const state = await openState({ dataDir, databaseUrl, masterKey: randomBytes(32) });
    const instanceId = state.instanceId;
    await state.close();
    const migrated = await runCli(['doctor', '--json'], env);
    expect(migrated.stdout + migrated.stderr).not.toContain(password);
    const after = JSON.parse(migrated.stdout) as DoctorReport;
    expect(after.database).toEqual(expect.objectContaining({ reachable: true, pending: [], instanceId }));
    expect(after.self.state).toBe(instanceId.slice(0, 8));
    expect(after.checks.find((c) => c.name === 'database')).toEqual(expect.objectContaining({ status: 'ok', detail: expect.stringContaining(`instance ${instanceId.slice(0, 8)}`) }));
  } finally {
    await pg.stop();
  }
});
