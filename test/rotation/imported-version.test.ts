/**
 * A version recorded by `credentials import` is revoked at the issuer only
 * when the issuer knows its id: imported with `--version-id <issuer's id>` it
 * is revoked there like a minted one; imported without, its id is local (the
 * issuer never minted it), so when it becomes PREVIOUS the result says
 * `previousRevoked: false` with a cause naming it and what to do, and the
 * ALERT_WEBHOOKS receivers get an alert. A real CLI process for the imports,
 * the real worker activities, the loopback contract issuer and a loopback receiver.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { createActivities } from '../../src/activities';
import { staticRegistry } from '../../src/activities/registry';
import { rotate } from '../../src/client/rotation';
import type { Alert } from '../../src/domain/health';
import { eventually, startReceiver, type Receiver } from '../health/harness';
import { closeTestClient, testAddress, testClient, withTestWorker } from '../helpers/temporal';
import { rotationFixture, type RotationFixture } from './support';

afterAll(closeTestClient);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The CLI as a user runs it, on the fixture's store, with a registry file (so it needs no worker to check ids). */
function cli(fx: RotationFixture, registryFile: string, args: string[], input?: string): Promise<Run> {
  const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), join(__dirname, '..', 'helpers', 'cli-entry.ts'), ...args], {
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: testAddress(),
      TEMPORAL_TASK_QUEUE: fx.taskQueue,
      INTEGRATION_AGENT_DATA_DIR: fx.dataDir,
      INTEGRATION_AGENT_MASTER_KEY: fx.masterKey.toString('base64'),
      INTEGRATION_AGENT_REGISTRY: registryFile,
      LOG_LEVEL: 'warn',
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(input ?? '');
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

let receiver: Receiver;
let fx: RotationFixture;
let registryFile: string;
let client: Client;
beforeAll(async () => {
  receiver = await startReceiver();
  fx = await rotationFixture([{ id: 'app' }], { importCurrent: false, credentialId: `imp-${randomBytes(3).toString('hex')}` });
  registryFile = join(fx.dataDir, 'registry.json');
  writeFileSync(
    registryFile,
    JSON.stringify({
      services: [
        { id: 'issuer', type: 'api', endpoints: [{ url: fx.server.base('issuer') }], rotation: { provider: 'http' } },
        { id: 'app', type: 'api', endpoints: [{ url: fx.server.base('app') }], credential: fx.credentialId, rotation: { provider: 'http' } },
      ],
      credentials: [{ id: fx.credentialId, issuer: 'issuer', consumers: ['app'], provider: 'http', gracePeriod: '0s' }],
    }),
  );
  client = await testClient();
});
afterAll(async () => {
  await fx.close();
  await receiver.close();
});

const withWorker = <T>(fn: () => Promise<T>) =>
  withTestWorker({ taskQueue: fx.taskQueue, activities: createActivities({ registry: staticRegistry(fx.registry), state: fx.state, health: { alertWebhooks: [{ url: receiver.url }] } }) }, fn);

const alertsFor = () => receiver.alerts.filter((a) => (a as Alert & { credentialId?: string }).credentialId === fx.credentialId);

test('imported without --version-id: the id is local, so PREVIOUS is reported not revoked (the issuer still accepts it) and an alert says what to do', async () => {
  // The secret in use today, which the issuer knows under its own id.
  const secret = `live-${randomBytes(12).toString('hex')}`;
  fx.server.seed('issuer', 'iss-live-1', secret);
  fx.server.preinstall('app', 'iss-live-1');
  const imported = await cli(fx, registryFile, ['credentials', 'import', fx.credentialId, '--json'], `${secret}\n`);
  expect(imported.code).toBe(0);
  const out = JSON.parse(imported.stdout) as { versionId: string; versionIdSource: string };
  expect(out.versionIdSource).toBe('local');
  expect((await fx.store.getVersion(fx.credentialId, out.versionId))?.versionIdSource).toBe('local');
  // The human form says the id is local and how to avoid it.
  const again = await cli(fx, registryFile, ['credentials', 'import', fx.credentialId], `${secret}\n`);
  expect(again.code).toBe(0);
  expect(again.stdout).toContain('--version-id');
  const local = (await fx.store.labels(fx.credentialId)).CURRENT!;
  expect(local.versionIdSource).toBe('local');

  const { first, second } = await withWorker(async () => {
    const first = await rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
    await eventually(() => alertsFor().length > 0, 'the alert for the unrevoked PREVIOUS', 60_000);
    // The next rotation revokes a version the issuer minted: revoked there, no alert.
    const second = await rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
    return { first, second };
  });
  expect(first.status).toBe('completed');
  expect(first.previousVersionId).toBe(local.versionId);
  expect(first.previousRevoked).toBe(false);
  expect(first.cause).toContain(local.versionId);
  expect(first.cause).toContain('--version-id');
  // Nothing was revoked at the issuer: the imported secret still works there.
  expect(fx.server.issuer('issuer').versions.get('iss-live-1')!.revoked).toBe(false);
  expect((await fx.store.getVersion(fx.credentialId, local.versionId))?.revokedAt).toBeNull();
  const trail = await fx.store.auditTrail({ credentialId: fx.credentialId });
  expect(trail.find((e) => e.step === 'revoke' && e.versionId === local.versionId)).toMatchObject({ outcome: 'not_revoked' });

  const alerts = alertsFor();
  expect(alerts).toHaveLength(1);
  expect(alerts[0]).toMatchObject({ source: 'rotation', status: 'completed', severity: 'warning', credentialId: fx.credentialId, previousVersionId: local.versionId });
  expect((alerts[0] as Alert & { action: string }).action).toContain(local.versionId);

  expect(second).toMatchObject({ status: 'completed', previousVersionId: first.versionId, previousRevoked: true });
  expect(fx.server.issuer('issuer').revoked).toEqual([first.versionId]);
  expect(alertsFor()).toHaveLength(1);
});

test('imported with --version-id of a version the issuer knows: revoked at the issuer, previousRevoked true, no alert', async () => {
  const secret = `known-${randomBytes(12).toString('hex')}`;
  fx.server.seed('issuer', 'iss-known-2', secret);
  const imported = await cli(fx, registryFile, ['credentials', 'import', fx.credentialId, '--version-id', 'iss-known-2', '--json'], `${secret}\n`);
  expect(imported.code).toBe(0);
  expect(JSON.parse(imported.stdout)).toMatchObject({ versionId: 'iss-known-2', versionIdSource: 'issuer', label: 'CURRENT' });
  fx.server.preinstall('app', 'iss-known-2');
  const before = alertsFor().length;
  const r = await withWorker(() => rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
  expect(r).toMatchObject({ status: 'completed', previousVersionId: 'iss-known-2', previousRevoked: true });
  expect(fx.server.issuer('issuer').versions.get('iss-known-2')!.revoked).toBe(true);
  const history = await client.workflow.getHandle(r.workflowId).fetchHistory();
  expect(history.events!.filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes)).toHaveLength(0);
  expect(alertsFor()).toHaveLength(before);
});

test('--version-id is validated: empty, odd characters, too long, already in the store or the secret itself are refused with a clear error and nothing is written', async () => {
  const before = await fx.store.listVersions(fx.credentialId);
  for (const [value, message] of [
    ['', '--version-id'],
    ['has space', '--version-id "has space"'],
    ['x'.repeat(129), 'at most 128'],
    ['../etc', '--version-id "../etc"'],
    ['iss-known-2', `already has version iss-known-2`],
  ] as const) {
    const r = await cli(fx, registryFile, ['credentials', 'import', fx.credentialId, '--version-id', value], 'some-secret-value\n');
    expect({ value, code: r.code }).toEqual({ value, code: 1 });
    expect(r.stderr).toContain(message);
    expect(r.stderr + r.stdout).not.toContain('some-secret-value');
  }
  // The secret given as its own version id would be printed, listed and alerted: refused, not echoed.
  const same = await cli(fx, registryFile, ['credentials', 'import', fx.credentialId, '--version-id', 'Secret-As-Id-42'], 'Secret-As-Id-42\n');
  expect(same.code).toBe(1);
  expect(same.stderr).toContain('--version-id is the secret itself');
  expect(same.stderr + same.stdout).not.toContain('Secret-As-Id-42');
  expect(await fx.store.listVersions(fx.credentialId)).toEqual(before);
});
