/**
 * Eager workflow start: a starter in the worker's own process (the `dev`
 * command) starts a rotation through the worker's NativeConnection with
 * `requestEagerStart`, and the server hands the first workflow task back in the
 * start response instead of through the task queue.
 */
import { Client } from '@temporalio/client';
import { rotate, startRotation } from '../../src/client/rotation';
import { rotationFixture, type RotationFixture } from './support';

describe('startRotation with requestEagerStart, from the worker process', () => {
  let fx: RotationFixture;
  beforeAll(async () => {
    fx = await rotationFixture([{ id: 'api-a' }, { id: 'api-b', dependsOn: ['api-a'] }]);
  });
  afterAll(() => fx.close());

  test('is started eagerly on the local worker and completes like any rotation', async () => {
    const result = await fx.run(async (worker) => {
      const local = new Client({ connection: worker.connection! });
      const started = await startRotation(local, { credentialId: fx.credentialId, taskQueue: fx.taskQueue, requestEagerStart: true });
      expect(started.eagerlyStarted).toBe(true);
      return started.handle.result();
    });
    expect(result).toMatchObject({ status: 'completed', previousVersionId: fx.initialVersionId, previousRevoked: true });
    for (const id of ['api-a', 'api-b']) expect(fx.server.consumer(id).versionId).toBe(result.versionId);
  });

  test('rotate passes it through; without it the start is not eager', async () => {
    await fx.run(async (worker) => {
      const local = new Client({ connection: worker.connection! });
      const eager = await rotate(local, { credentialId: fx.credentialId, taskQueue: fx.taskQueue, requestEagerStart: true });
      expect(eager.status).toBe('completed');
      const plain = await startRotation(local, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
      expect(plain.eagerlyStarted).toBe(false);
      expect(await plain.handle.result()).toMatchObject({ status: 'completed' });
    });
  });
});
