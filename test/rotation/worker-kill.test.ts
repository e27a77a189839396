/**
 * The worker killed (SIGKILL) at every step boundary of a rotation, right
 * after the step reached the service and before the activity could report,
 * then restarted: every run ends consistent (completed, one CURRENT, no
 * PENDING) and no step is applied twice (the contract server counts applied
 * Idempotency-Keys and version changes), nor written twice in the audit
 * trail. On both state backends.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRotation } from '../../src/client/rotation';
import type { RotationResult } from '../../src/domain/rotation';
import type { ContractEvent } from '../fixtures/rotation-contract';
import { progressQuery } from '../../src/workflows/rotation';
import { closeTestClient, testClient } from '../helpers/temporal';
import { rotationFixture, type RotationFixture } from './support';
import { STATE_BACKENDS, useStateBackends, type BackendKind } from '../helpers/state';
import { kill, startWorker } from './child-worker';

afterAll(closeTestClient);
useStateBackends();

/** The child worker's environment: the fixture's state (data dir or database URL) and master key. */
const childEnv = (fx: RotationFixture, registryPath: string) => ({
  ROT_TASK_QUEUE: fx.taskQueue,
  ROT_DATA_DIR: fx.dataDir,
  ...(fx.location.databaseUrl ? { ROT_DATABASE_URL: fx.location.databaseUrl } : {}),
  ROT_MASTER_KEY: fx.masterKey.toString('base64'),
  ROT_REGISTRY: registryPath,
});

type Boundary = { name: string; when: (e: ContractEvent) => boolean };

const boundaries: Boundary[] = [
  { name: 'after mint reached the issuer', when: (e) => e.kind === 'mint' },
  { name: 'after the first batch install reached a consumer', when: (e) => e.kind === 'install' && e.service === 'k1' },
  { name: 'after a verify in the second batch', when: (e) => e.kind === 'verify' && e.service === 'k2' },
  { name: 'after the revocation of PREVIOUS reached the issuer', when: (e) => e.kind === 'revoke' },
];

describe.each(STATE_BACKENDS.flatMap((backend) => boundaries.map((b) => ({ ...b, backend }))))('worker killed $name ($backend)', ({ when, backend }: Boundary & { backend: BackendKind }) => {
  test('the restarted worker finishes the rotation consistently with no step applied or audited twice', async () => {
    const fx = await rotationFixture([{ id: 'k1', rotation: { stepTimeout: '2s' } }, { id: 'k2', dependsOn: ['k1'], rotation: { stepTimeout: '2s' } }], {
      issuerRotation: { stepTimeout: '2s' },
      backend,
    });
    const store = fx.store;
    const initial = fx.initialVersionId;
    const registryPath = join(fx.dataDir, 'registry.json');
    writeFileSync(registryPath, JSON.stringify(fx.registry));
    const env = childEnv(fx, registryPath);
    let worker = await startWorker(env);
    let killed: Promise<void> | undefined;
    fx.server.onEvent = (e) => {
      if (!killed && when(e)) killed = kill(worker);
    };
    try {
      const client = await testClient();
      const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
      for (let i = 0; i < 300 && !killed; i++) await new Promise((r) => setTimeout(r, 50));
      expect(killed).toBeDefined();
      await killed;
      worker = await startWorker(env);
      const result = (await started.handle.result()) as RotationResult;

      expect(result.status).toBe('completed');
      const labels = await store.labels(fx.credentialId);
      expect(labels.CURRENT?.versionId).toBe(result.versionId);
      expect(labels.PREVIOUS?.versionId).toBe(initial);
      expect(labels.PENDING).toBeNull();
      const issuer = fx.server.issuer('issuer');
      expect(issuer.minted).toEqual([result.versionId]);
      expect(issuer.revoked).toEqual([initial]);
      for (const id of ['k1', 'k2']) {
        const c = fx.server.consumer(id);
        expect(c.versionId).toBe(result.versionId);
        expect(c.installs).toEqual([result.versionId]);
        expect(c.appliedKeys.size).toBe(1);
      }
      const trail = await store.auditTrail({ credentialId: fx.credentialId });
      expect(trail.filter((e) => e.step === 'finish' && e.outcome === 'ok')).toHaveLength(1);
      // Every successful step of the run is in the trail exactly once, however often its activity ran.
      const steps = trail.filter((e) => e.outcome === 'ok' && e.actor.startsWith(`rotation/${fx.credentialId}#`)).map((e) => `${e.step} ${e.serviceId} ${e.versionId}`);
      expect(steps.length).toBeGreaterThan(0);
      expect(new Set(steps).size).toBe(steps.length);
    } finally {
      await kill(worker);
      await fx.close();
    }
  });
});

test('worker killed during the grace period: the durable timer survives and the restarted worker revokes PREVIOUS once', async () => {
  const fx = await rotationFixture([{ id: 'g1', rotation: { stepTimeout: '2s' } }], { gracePeriod: '3s', issuerRotation: { stepTimeout: '2s' } });
  const registryPath = join(fx.dataDir, 'registry.json');
  writeFileSync(registryPath, JSON.stringify(fx.registry));
  const env = childEnv(fx, registryPath);
  let worker = await startWorker(env);
  try {
    const client = await testClient();
    const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
    let phase: string | undefined;
    for (let i = 0; i < 200 && phase !== 'grace'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      phase = await started.handle.query(progressQuery).then((p) => p.phase).catch(() => undefined);
    }
    expect(phase).toBe('grace');
    await kill(worker);
    expect(fx.server.issuer('issuer').revoked).toEqual([]);
    worker = await startWorker(env);
    const result = (await started.handle.result()) as RotationResult;
    expect(result.status).toBe('completed');
    expect(result.previousRevoked).toBe(true);
    expect(fx.server.issuer('issuer').revoked).toEqual([fx.initialVersionId]);
    expect(fx.server.consumer('g1').installs).toEqual([result.versionId]);
  } finally {
    await kill(worker);
    await fx.close();
  }
});
