/**
 * `integration-agent state migrate --to postgres://…`: an embedded install's
 * state (credentials with every label, the audit trail, health history and
 * dead letters) copied into a real PostgreSQL database, secrets encrypted
 * again under the target's master key; a non-empty target refused unless --force.
 */
import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { register } from '../../src/client/cli/commands/state';
import { openState } from '../../src/state';
import type { StateBackend } from '../../src/state/types';
import type { ProbeResult } from '../../src/domain/health';
import { freshLocation, openAt, useStateBackends } from '../helpers/state';

useStateBackends();

const T0 = Date.UTC(2026, 5, 1, 0, 0, 0);
const savedEnv = { ...process.env };
afterAll(() => {
  process.env = savedEnv;
});

/** Runs `integration-agent state <args>` in-process and returns what it printed. */
async function cli(args: string[]): Promise<string> {
  const program = new Command().exitOverride();
  register(program);
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => (out.push(String(chunk)), true)) as typeof process.stdout.write;
  try {
    await program.parseAsync(['node', 'integration-agent', 'state', ...args]);
  } finally {
    process.stdout.write = write;
  }
  return out.join('');
}

/** Everything a backend holds that the copy must carry, as plain data. */
async function snapshot(st: StateBackend, now: number) {
  const creds = await st.credentials.listCredentials();
  const versions = [];
  for (const c of creds) {
    for (const v of await st.credentials.listVersions(c.credentialId)) versions.push({ ...v, secret: await st.credentials.readSecret(c.credentialId, v.versionId) });
  }
  return {
    creds,
    current: await Promise.all(creds.map((c) => st.credentials.readSecret(c.credentialId))),
    versions,
    audit: await st.credentials.auditTrail(),
    spans: await st.health.spans('svc', 0, now),
    figures: await st.health.figures('svc', now, 99.9),
    deadLetters: await st.deadLetters.list({ state: 'all' }),
  };
}

test('copies every kind of state, re-encrypted under the target key; refuses a non-empty target unless --force', async () => {
  const source = await freshLocation('sqlite');
  const sourceKey = randomBytes(32);
  const targetKey = randomBytes(32);
  const st = await openState({ dataDir: source.dataDir, masterKey: sourceKey });
  await st.credentials.importCurrent('api', 'api-one', 'cli:alice', 'v-api-1');
  await st.credentials.putPending('api', 'v-api-2', 'api-two', 'rotation/api#r1');
  await st.credentials.promotePending('api', 'v-api-2');
  await st.credentials.markRevoked('api', 'v-api-1', T0);
  await st.credentials.importCurrent('db', 'db-one', 'cli:bob', 'v-db-1');
  await st.credentials.putPending('db', 'v-db-2', 'db-two', 'rotation/db#r1'); // left PENDING
  await st.credentials.audit({ credentialId: 'api', step: 'install', serviceId: 's1', versionId: 'v-api-2', outcome: 'ok', actor: 'rotation/api#r1', detail: null, eventKey: 'k-1', at: T0 + 1 });
  await st.credentials.audit({ credentialId: 'api', step: 'verify', serviceId: 's1', versionId: 'v-api-2', outcome: 'failed', actor: 'rotation/api#r1', detail: 'HTTP 401', at: T0 + 2 });
  const probes: ProbeResult[] = Array.from({ length: 30 }, (_, i) => ({ serviceId: 'svc', at: T0 + i * 30_000, startedAt: T0 + i * 30_000, verdict: i % 7 === 3 ? 'fail' : 'pass', latencyMs: 5 + i }) as ProbeResult);
  for (const p of probes) await st.health.recordProbes([p], () => 60_000);
  await st.health.recordCalls(Array.from({ length: 20 }, (_, i) => ({ serviceId: 'svc', endpoint: 'http://127.0.0.1:1', ok: i % 5 !== 0, latencyMs: 10 + i, startedAt: T0 + i * 1000, reporter: 'test' })));
  const dl = { eventId: 'e1', subscriberId: 'sub', endpoints: ['https://a.example/hook'], payload: { n: 1 }, idempotencyKey: 'k', attempts: 3, lastError: 'HTTP 503', workflowId: 'webhook/e1' };
  const d1 = await st.deadLetters.record(dl, T0);
  await st.deadLetters.record({ ...dl, eventId: 'e2', workflowId: 'webhook/e2' }, T0 + 5);
  await st.deadLetters.resolve(d1, 'webhook/e1-redeliver', T0 + 10);
  const now = T0 + 20 * 60_000;
  const before = await snapshot(st, now);
  await st.close();

  const target = await freshLocation('postgres');
  process.env.INTEGRATION_AGENT_DATA_DIR = source.dataDir;
  process.env.INTEGRATION_AGENT_MASTER_KEY = sourceKey.toString('base64');
  process.env.INTEGRATION_AGENT_TARGET_MASTER_KEY = targetKey.toString('base64');
  delete process.env.INTEGRATION_AGENT_DATABASE_URL;
  const printed = JSON.parse(await cli(['migrate', '--to', target.databaseUrl!, '--json']));
  expect(printed).toMatchObject({ reencrypted: true, credentials: 2, credentialVersions: 4, auditEntries: before.audit.length, healthSpans: before.spans.length, deadLetters: 2 });
  expect(printed.healthBuckets).toBeGreaterThan(0);
  expect(JSON.stringify(printed)).not.toContain(target.databaseUrl!.split('@')[0]!.split(':')[2]!); // no password

  const moved = await openAt(target, { masterKey: targetKey });
  try {
    expect(await snapshot(moved, now)).toEqual(before);
    // New rows continue after the copied ids.
    await moved.credentials.audit({ credentialId: 'api', step: 'note', serviceId: null, versionId: null, outcome: 'ok', actor: 'test', detail: null });
    const trail = await moved.credentials.auditTrail();
    expect(trail[trail.length - 1]!.id).toBeGreaterThan(before.audit[before.audit.length - 1]!.id);
  } finally {
    await moved.close();
  }
  // The source key cannot read the target: the secrets were sealed again.
  await expect(openAt(target, { masterKey: sourceKey })).rejects.toThrow('which this process was not given');

  await expect(cli(['migrate', '--to', target.databaseUrl!])).rejects.toThrow(/the target database already holds state \(4 credential_versions, .*\): pass --force/);
  const again = await cli(['migrate', '--to', target.databaseUrl!, '--force']);
  expect(again).toContain('0 credential versions of 0 credentials');
  expect(again).toContain('0 webhook dead letters');
  await expect(cli(['migrate'])).rejects.toThrow('give the target with --to');
  // An unreachable target is named by where its URL came from.
  const closed = target.databaseUrl!.replace(/:(\d+)\//, ':1/');
  process.env.INTEGRATION_AGENT_TARGET_DATABASE_URL = closed;
  await expect(cli(['migrate'])).rejects.toThrow(/cannot connect to PostgreSQL at .*\(INTEGRATION_AGENT_TARGET_DATABASE_URL\)/);
  delete process.env.INTEGRATION_AGENT_TARGET_DATABASE_URL;
  await expect(cli(['migrate', '--to', closed])).rejects.toThrow(/cannot connect to PostgreSQL at .*\(--to\)/);
});
