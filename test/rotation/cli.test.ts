/**
 * The credential commands as a user runs them: a real CLI process against the
 * dev server, a worker with the same payload codec, the contract server and
 * the store. Output never holds a secret value.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AesGcmCodec } from '../../src/codec/aes-gcm-codec';
import { loadCodecKeys } from '../../src/codec/keys';
import { createRegistryActivities, staticRegistry } from '../../src/activities/registry';
import { createRotationActivities } from '../../src/activities/rotation';
import { createStateReadActivities } from '../../src/activities/state-read';
import { closeTestClient, testAddress, testClient, withTestWorker } from '../helpers/temporal';
import { rotationFixture, type RotationFixture } from './support';

afterAll(closeTestClient);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(fx: RotationFixture, masterKey: Buffer, args: string[], input?: string): Promise<Run> {
  const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), join(__dirname, '..', 'helpers', 'cli-entry.ts'), ...args], {
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: testAddress(),
      TEMPORAL_TASK_QUEUE: fx.taskQueue,
      INTEGRATION_AGENT_DATA_DIR: fx.dataDir,
      INTEGRATION_AGENT_MASTER_KEY: masterKey.toString('base64'),
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

test('rotate, credentials import/list, audit: JSON shapes, exit codes, and no secret in any output', async () => {
  const masterKey = randomBytes(32);
  const fx = await rotationFixture([{ id: 'web' }, { id: 'jobs', dependsOn: ['web'] }], { masterKey });
  // The workers' registry has a second credential, other-cred, for the imports.
  const registry = { ...fx.registry, credentials: [...fx.registry.credentials, { ...fx.registry.credentials[0]!, id: 'other-cred' }] };
  const outputs: string[] = [];
  const keep = (r: Run) => {
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  try {
    await withTestWorker(
      {
        taskQueue: fx.taskQueue,
        // credentials list|status and audit read the store through the worker (state-read workflows).
        activities: { ...createRegistryActivities(staticRegistry(registry)), ...createRotationActivities({ store: fx.store, registry: staticRegistry(registry) }), ...createStateReadActivities({ credentials: fx.store }) },
        dataConverter: { payloadCodecs: [new AesGcmCodec(loadCodecKeys(fx.dataDir))] },
      },
      async () => {
        // import: from stdin and from a file; never from argv (an extra argument is refused).
        const imported = keep(await cli(fx, masterKey, ['credentials', 'import', 'other-cred', '--json'], 'piped-secret-value-123\n'));
        expect(imported.code).toBe(0);
        expect(JSON.parse(imported.stdout)).toMatchObject({ credentialId: 'other-cred', label: 'CURRENT' });
        const file = join(fx.dataDir, 'secret.txt');
        writeFileSync(file, 'file-secret-value-456\n', { mode: 0o600 });
        const fromFile = keep(await cli(fx, masterKey, ['credentials', 'import', 'other-cred', '--file', file]));
        expect(fromFile.code).toBe(0);
        expect(fromFile.stdout).toMatch(/is now PREVIOUS/);
        expect(await fx.store.readSecret('other-cred')).toBe('file-secret-value-456');
        const argv = keep(await cli(fx, masterKey, ['credentials', 'import', 'other-cred', 'argv-secret']));
        expect(argv.code).not.toBe(0);
        const empty = keep(await cli(fx, masterKey, ['credentials', 'import', 'other-cred'], ''));
        expect(empty.code).toBe(1);
        expect(empty.stderr).toContain('is empty');

        // Unknown ids: refused with a did-you-mean from the workers' registry (the CLI has no registry file); nothing written or started.
        const typo = keep(await cli(fx, masterKey, ['credentials', 'import', 'other-crde'], 'typo-secret-value-789\n'));
        expect(typo.code).toBe(1);
        expect(typo.stderr).toBe(`integration-agent: unknown credential "other-crde" in the registry ${fx.credentialId}.json (did you mean "other-cred"?)\n`);
        expect(Object.values(await fx.store.labels('other-crde')).filter(Boolean)).toEqual([]);
        const typoRotation = fx.credentialId.replace('cred-', 'cerd-');
        const notRotated = keep(await cli(fx, masterKey, ['rotate', typoRotation]));
        expect(notRotated.code).toBe(1);
        expect(notRotated.stderr).toBe(`integration-agent: unknown credential "${typoRotation}" in the registry ${fx.credentialId}.json (did you mean "${fx.credentialId}"?)\n`);
        expect((await (await testClient()).workflow.count(`WorkflowId = "rotation/${typoRotation}"`)).count).toBe(0);
        for (const args of [['credentials', 'status', typoRotation], ['credentials', 'cancel', typoRotation], ['credentials', 'end-grace', typoRotation], ['audit', '--credential', typoRotation]]) {
          const r = keep(await cli(fx, masterKey, args));
          expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 1, stderr: `integration-agent: unknown credential "${typoRotation}" in the registry ${fx.credentialId}.json (did you mean "${fx.credentialId}"?)\n` });
        }

        const list = keep(await cli(fx, masterKey, ['credentials', 'list', '--json']));
        const rows = JSON.parse(list.stdout) as Array<{ credentialId: string; current: string }>;
        expect(rows.map((r) => r.credentialId).sort()).toEqual([fx.credentialId, 'other-cred'].sort());

        const dry = keep(await cli(fx, masterKey, ['rotate', fx.credentialId, '--dry-run']));
        expect(dry.code).toBe(0);
        expect(dry.stdout).toContain('batch 1: web');
        expect(dry.stdout).toContain('batch 2: jobs');
        expect(dry.stdout).toContain('fan-out: workflow (an activity per consumer step)');

        const ok = keep(await cli(fx, masterKey, ['rotate', fx.credentialId, '--json']));
        expect(ok.code).toBe(0);
        const result = JSON.parse(ok.stdout);
        expect(result).toMatchObject({ credentialId: fx.credentialId, workflowId: `rotation/${fx.credentialId}`, status: 'completed' });
        expect(result.versionId).toMatch(/^v-/);
        expect(result.services).toEqual(
          expect.arrayContaining([
            { id: 'issuer', step: 'revoke', status: 'ok' },
            { id: 'web', step: 'verify', status: 'ok', holds: 'current' },
            { id: 'jobs', step: 'verify', status: 'ok', holds: 'current' },
          ]),
        );
        // After the promotion the consumers hold the CURRENT version, and `credentials status` says so.
        const status = keep(await cli(fx, masterKey, ['credentials', 'status', fx.credentialId, '--json']));
        expect(status.code).toBe(0);
        const shown = JSON.parse(status.stdout);
        expect(shown.credential).toMatchObject({ credentialId: fx.credentialId, current: result.versionId, pending: null });
        expect(shown.result.services.filter((s: { id: string }) => s.id !== 'issuer').map((s: { holds: string }) => s.holds)).toEqual(['current', 'current']);
        const statusText = keep(await cli(fx, masterKey, ['credentials', 'status', fx.credentialId]));
        expect(statusText.stdout).toMatch(/^web\s+verify\s+ok\s+current/m);
        expect(statusText.stdout).not.toMatch(/\bpending\b/);

        fx.server.behaviour('jobs').acceptOnly = new Set([result.versionId]);
        const failed = keep(await cli(fx, masterKey, ['rotate', fx.credentialId]));
        expect(failed.code).toBe(1);
        expect(failed.stdout).toContain(`rotation of ${fx.credentialId}: rolled_back`);
        // web took the new version and is restored; jobs refused it (422), so it still holds CURRENT and is left alone.
        expect(failed.stdout).toMatch(/web\s+restore\s+ok\s+current/);
        expect(failed.stdout).toMatch(/jobs\s+install\s+failed\s+current/);

        const audit = keep(await cli(fx, masterKey, ['audit', '--credential', fx.credentialId, '--json']));
        const entries = JSON.parse(audit.stdout) as Array<{ step: string; outcome: string }>;
        expect(entries.filter((e) => e.step === 'rotation').map((e) => e.outcome)).toEqual(['started', 'completed', 'started', 'rolled_back']);
        const human = keep(await cli(fx, masterKey, ['audit']));
        expect(human.stdout).toContain('discard_pending');

        const bad = keep(await cli(fx, masterKey, ['rotate', 'Not_A_Slug']));
        expect(bad.code).toBe(1);
        expect(bad.stderr).toContain('invalid credential id "Not_A_Slug"');
      },
    );
    const secrets = [fx.initialSecret, 'piped-secret-value-123', 'typo-secret-value-789', 'file-secret-value-456', ...fx.server.secrets()];
    const all = outputs.join('\n');
    for (const s of secrets) if (all.includes(s)) throw new Error('a secret value appears in CLI output');
  } finally {
    await fx.close();
  }
});
