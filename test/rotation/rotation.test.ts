/**
 * rotateCredential end to end: real dev server, real worker, real HTTP
 * contract server, on both state backends (a real SQLite file, a real PostgreSQL database).
 */
import { closeTestClient, testClient, withTestWorker } from '../helpers/temporal';
import { createCoordinator } from '../../src/activities/coordinator';
import { createRegistryActivities, staticRegistry } from '../../src/activities/registry';
import { createRotationActivities } from '../../src/activities/rotation';
import { getRotation, rotate, startRotation, endGracePeriod, RotationAlreadyRunningError } from '../../src/client/rotation';
import { rotationFixture, type RotationFixture } from './support';
import { STATE_BACKENDS, useStateBackends, type BackendKind } from '../helpers/state';

afterAll(closeTestClient);
useStateBackends();

describe.each(STATE_BACKENDS)('on %s', (backend: BackendKind) => {

  describe('a rotation with every consumer healthy', () => {
    let fx: RotationFixture;
    beforeAll(async () => {
      fx = await rotationFixture([{ id: 'api-a' }, { id: 'api-b', dependsOn: ['api-a'] }, { id: 'api-c' }], { backend });
    });
    afterAll(() => fx.close());

    test('completes: every consumer on the new version, labels moved, PREVIOUS revoked, each step applied once', async () => {
      const client = await testClient();
      const order: string[] = [];
      fx.server.onEvent = (e) => {
        if (e.kind === 'install' && e.applied) order.push(e.service);
      };
      const result = await fx.run(() => rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));

      expect(result.status).toBe('completed');
      expect(result.workflowId).toBe(`rotation/${fx.credentialId}`);
      const v = result.versionId!;
      expect(v).toMatch(/^v-/);
      expect(result.previousVersionId).toBe(fx.initialVersionId);
      expect(result.previousRevoked).toBe(true);
      for (const id of ['api-a', 'api-b', 'api-c']) {
        expect(fx.server.consumer(id).versionId).toBe(v);
        expect(fx.server.consumer(id).appliedKeys.size).toBe(1);
        expect(result.services.find((s) => s.id === id)).toMatchObject({ step: 'verify', status: 'ok' });
      }
      // api-b depends on api-a: api-a is installed first.
      expect(order.indexOf('api-a')).toBeLessThan(order.indexOf('api-b'));
      expect(fx.server.issuer('issuer').minted).toEqual([v]);
      expect(fx.server.issuer('issuer').revoked).toEqual([fx.initialVersionId]);

      const labels = await fx.store.labels(fx.credentialId);
      expect(labels.CURRENT?.versionId).toBe(v);
      expect(labels.PREVIOUS?.versionId).toBe(fx.initialVersionId);
      expect(labels.PENDING).toBeNull();
      expect((await fx.store.getVersion(fx.credentialId, fx.initialVersionId))?.revokedAt).not.toBeNull();

      const trail = await fx.store.auditTrail({ credentialId: fx.credentialId });
      const steps = trail.map((e) => `${e.step}:${e.serviceId ?? ''}:${e.outcome}`);
      expect(steps).toEqual(
        expect.arrayContaining(['rotation::started', 'mint:issuer:ok', 'install:api-a:ok', 'verify:api-b:ok', 'finish::ok', 'revoke:issuer:ok', 'rotation::completed']),
      );
      expect(trail.every((e) => e.actor.startsWith(`rotation/${fx.credentialId}#`) || e.actor === 'test')).toBe(true);

      const view = await getRotation(client, fx.credentialId);
      expect(view?.executionStatus).toBe('COMPLETED');
      // Findable in the Web UI by credential and phase.
      const desc = await client.workflow.getHandle(result.workflowId).describe();
      expect(desc.searchAttributes).toMatchObject({ CredentialId: [fx.credentialId], Phase: ['completed'] });
      expect(view?.result?.versionId).toBe(v);
    });
  });

  test('two rotations of one credential requested at once: exactly one starts, the other fails at once naming it', async () => {
    const fx = await rotationFixture([{ id: 'once' }], { backend, gracePeriod: '0s' });
    try {
      const client = await testClient();
      await fx.run(async () => {
        const settled = await Promise.allSettled([1, 2].map(() => startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue })));
        const ok = settled.filter((s) => s.status === 'fulfilled');
        const refused = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
        expect(ok).toHaveLength(1);
        expect(refused).toHaveLength(1);
        const runId = (ok[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof startRotation>>>).value.runId;
        expect(refused[0]!.reason).toBeInstanceOf(RotationAlreadyRunningError);
        expect(String(refused[0]!.reason.message)).toContain(`run id ${runId}`);
        const result = await (ok[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof startRotation>>>).value.handle.result();
        expect(result.status).toBe('completed');
        expect(fx.server.issuer('issuer').minted).toHaveLength(1);
      });
    } finally {
      await fx.close();
    }
  });

  describe('grace period and one rotation at a time', () => {
    let fx: RotationFixture;
    beforeAll(async () => {
      fx = await rotationFixture([{ id: 'svc-1' }, { id: 'svc-2' }], { backend, gracePeriod: '1h' });
    });
    afterAll(() => fx.close());

    test('a second start fails at once naming the run; the endGracePeriod signal ends the grace period early', async () => {
      const client = await testClient();
      await fx.run(async () => {
        const first = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
        const second = startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
        await expect(second).rejects.toThrow(RotationAlreadyRunningError);
        await expect(second).rejects.toThrow(`rotation of ${fx.credentialId} is already running (workflow id rotation/${fx.credentialId}, run id ${first.runId})`);

        // Wait for the grace phase: new version CURRENT, PREVIOUS still valid at the issuer.
        for (let i = 0; i < 200; i++) {
          const v = await getRotation(client, fx.credentialId);
          if (v?.progress?.phase === 'grace') break;
          await new Promise((r) => setTimeout(r, 100));
        }
        const during = await getRotation(client, fx.credentialId);
        expect(during?.progress?.phase).toBe('grace');
        expect(fx.server.issuer('issuer').revoked).toEqual([]);
        expect((await fx.store.labels(fx.credentialId)).PREVIOUS?.versionId).toBe(fx.initialVersionId);

        // Two more requested at the same moment: both refused, the running one untouched.
        const both = await Promise.allSettled([
          startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue }),
          startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue, force: true }),
        ]);
        expect(both.map((r) => r.status)).toEqual(['rejected', 'rejected']);

        await endGracePeriod(client, fx.credentialId);
        const result = (await first.handle.result()) as { status: string; previousRevoked: boolean };
        expect(result.status).toBe('completed');
        expect(result.previousRevoked).toBe(true);
        expect(fx.server.issuer('issuer').revoked).toEqual([fx.initialVersionId]);
      });
    });
  });

  describe('through the API coordinator', () => {
    let fx: RotationFixture;
    beforeAll(async () => {
      fx = await rotationFixture([{ id: 'co-1' }, { id: 'co-2', dependsOn: ['co-1'] }], { backend });
    });
    afterAll(() => fx.close());

    test('the http provider calls services via coordinator.request and the rotation completes; a rejection still rolls back', async () => {
      const client = await testClient();
      const coordinator = createCoordinator({ registry: staticRegistry(fx.registry), secrets: fx.store, reporterId: 'rotation-test' });
      try {
        const activities = { ...createRegistryActivities(staticRegistry(fx.registry)), ...createRotationActivities({ store: fx.store, coordinator, registry: staticRegistry(fx.registry) }) };
        await withTestWorker({ taskQueue: fx.taskQueue, activities }, async () => {
          const ok = await rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
          expect(ok.status).toBe('completed');
          expect(fx.server.consumer('co-2').versionId).toBe(ok.versionId);
          expect(fx.server.issuer('issuer').revoked).toEqual([fx.initialVersionId]);

          fx.server.behaviour('co-2').acceptOnly = new Set([ok.versionId!]);
          const back = await rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
          expect(back.status).toBe('rolled_back');
          expect(back.cause).toContain('via coordinator) answered 422');
          expect(fx.server.consumer('co-1').versionId).toBe(ok.versionId);
          expect((await fx.store.labels(fx.credentialId)).CURRENT?.versionId).toBe(ok.versionId);
        });
      } finally {
        await coordinator.close();
      }
    });
  });
});
