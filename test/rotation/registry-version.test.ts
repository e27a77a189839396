/**
 * The run takes the registry by reference (its version hash): what happens
 * when the worker that picks up a step no longer has that version (the
 * registry file changed mid-rotation and the worker restarted, or another
 * worker reads a different file). Forward steps refuse with an error naming
 * the run, the version and what to do; the rollback still works, with each
 * service's entry in the worker's current registry.
 */
import { randomBytes } from 'node:crypto';
import { createRegistryActivities, type VersionedRegistry } from '../../src/activities/registry';
import { createRotationActivities } from '../../src/activities/rotation';
import { rotate, startRotation } from '../../src/client/rotation';
import type { RotationResult } from '../../src/domain/rotation';
import type { Registry } from '../../src/domain/registry';
import { closeTestClient, testClient, withTestWorker } from '../helpers/temporal';
import { kill, killOnEvent, startWorker, workerEnv } from './child-worker';
import { registryFor, rotationFixture, type RotationFixture } from './support';

afterAll(closeTestClient);

/** A registry that knows only its current version (a worker restarted after the file changed). */
function swappable(first: Registry): VersionedRegistry & { swap(r: Registry): void } {
  let current = first;
  return {
    current: () => current,
    byVersion: (h) => (current.versionHash === h ? current : undefined),
    swap(r) {
      current = r;
    },
  };
}

/** Runs a rotation of `fx`'s credential; the registry becomes `next` once `swapAfter` applied the new version. */
async function rotateWithSwap(fx: RotationFixture, swapAfter: string, next: Registry) {
  const registry = swappable(fx.registry);
  fx.server.onEvent = (e) => {
    if (e.kind === 'install' && e.applied && e.service === swapAfter && e.versionId !== fx.initialVersionId) registry.swap(next);
  };
  const activities = { ...createRegistryActivities(registry), ...createRotationActivities({ store: fx.store, registry }) };
  return withTestWorker({ taskQueue: fx.taskQueue, activities }, async () => rotate(await testClient(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
}

const consumers = [{ id: 'r1' }, { id: 'r2', dependsOn: ['r1'] }];

test.each(['workflow', 'activity'] as const)('fanOut %s: the registry changes mid-rotation: the next install refuses (run, version, what to do), the rollback restores with the current registry', async (fanOut) => {
  const fx = await rotationFixture(consumers, { fanOut });
  try {
    // Same services, another version (a longer grace period): what a reload of an edited file gives.
    const next = registryFor(fx.server, fx.credentialId, 'issuer', consumers, { gracePeriod: '1m', fanOut });
    expect(next.versionHash).not.toBe(fx.registry.versionHash);
    const result = await rotateWithSwap(fx, 'r1', next);
    expect(result.status).toBe('rolled_back');
    expect(result.cause).toContain(`rotation/${fx.credentialId}#`);
    expect(result.cause).toContain(`registry version ${fx.registry.versionHash}`);
    expect(result.cause).toContain(`its registry is ${next.versionHash}`);
    expect(result.cause).toContain("Make every worker's registry the same, then rotate again");
    // r2 was never sent anything (so nothing to restore there either).
    expect(fx.server.consumer('r2').installRequests).toBe(0);
    expect(result.services.find((s) => s.id === 'r2')).toMatchObject({ status: 'failed', holds: 'current' });
    expect(fx.server.consumer('r1').versionId).toBe(fx.initialVersionId);
    expect(result.services.find((s) => s.id === 'r1')).toMatchObject({ step: 'restore', status: 'ok', holds: 'current' });
    const labels = await fx.store.labels(fx.credentialId);
    expect([labels.CURRENT?.versionId, labels.PENDING]).toEqual([fx.initialVersionId, null]);
    expect(fx.server.issuer('issuer').revoked).toEqual([result.versionId]);
  } finally {
    await fx.close();
  }
});

test('a consumer gone from the registry too cannot be restored: PENDING stays valid, needs_attention names it and what to do', async () => {
  const fx = await rotationFixture(consumers);
  try {
    // r1 left the registry altogether.
    const next = registryFor(fx.server, fx.credentialId, 'issuer', [{ id: 'r2' }]);
    const result = await rotateWithSwap(fx, 'r1', next);
    expect(result.status).toBe('needs_attention');
    expect(result.cause).toContain('restoring CURRENT failed in r1');
    const r1 = result.services.find((s) => s.id === 'r1')!;
    expect(r1).toMatchObject({ step: 'restore', status: 'failed' });
    expect(r1.error).toContain(`service "r1" is in neither registry version ${fx.registry.versionHash}`);
    expect(r1.error).toContain('put the credential');
    expect(r1.error).toContain(`integration-agent rotate ${fx.credentialId} --force`);
    // r1 may hold PENDING: it is not revoked.
    expect(fx.server.issuer('issuer').revoked).toEqual([]);
    expect((await fx.store.labels(fx.credentialId)).PENDING?.versionId).toBe(result.versionId);
  } finally {
    await fx.close();
  }
});

test('fanOut workflow: an install applied by a worker that died, retried on a worker without the run\'s registry version, is restored (an earlier attempt may have applied it)', async () => {
  const masterKey = randomBytes(32);
  const defs = [{ id: 'k1', rotation: { stepTimeout: '2s' } }, { id: 'k2', dependsOn: ['k1'], rotation: { stepTimeout: '2s' } }];
  const fx = await rotationFixture(defs, { fanOut: 'workflow', masterKey, issuerRotation: { stepTimeout: '2s' } });
  const next = registryFor(fx.server, fx.credentialId, 'issuer', defs, { fanOut: 'workflow', gracePeriod: '1m', issuerRotation: { stepTimeout: '2s' } });
  let worker = await startWorker(workerEnv(fx, masterKey, fx.registry));
  // k1 applies the install; its worker dies before the activity completes.
  const killer = killOnEvent(fx.server, () => worker, (e) => e.kind === 'install' && e.service === 'k1' && e.applied);
  try {
    const client = await testClient();
    const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
    await killer.killed();
    worker = await startWorker(workerEnv(fx, masterKey, next, 'registry-next.json'));
    const result = (await started.handle.result()) as RotationResult;
    expect(result.status).toBe('rolled_back');
    expect(result.cause).toContain(`registry version ${fx.registry.versionHash} is not known to this worker`);
    expect(fx.server.consumer('k1').versionId).toBe(fx.initialVersionId);
    expect(result.services.find((s) => s.id === 'k1')).toMatchObject({ step: 'restore', status: 'ok', holds: 'current' });
    expect(fx.server.consumer('k2').installRequests).toBe(0);
  } finally {
    await kill(worker);
    await fx.close();
  }
});
