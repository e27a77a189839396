/**
 * Scheduled rotation: one Temporal Schedule per credential with `schedule`,
 * starting `scheduledRotation`, which runs `rotateCredential` as child
 * `rotation/<id>` so the one-rotation-per-credential rule holds.
 */
import { applyRotationSchedules, rotationScheduleId, startRotation, endGracePeriod } from '../../src/client/rotation';
import type { RotationResult } from '../../src/domain/rotation';
import { closeTestClient, testClient } from '../helpers/temporal';
import { registryFor, rotationFixture } from './support';

afterAll(closeTestClient);

async function triggeredRun(client: Awaited<ReturnType<typeof testClient>>, scheduleId: string, after: number): Promise<RotationResult> {
  const handle = client.schedule.getHandle(scheduleId);
  await handle.trigger();
  for (let i = 0; i < 100; i++) {
    const d = await handle.describe();
    if (d.info.recentActions.length > after) {
      const wid = d.info.recentActions[d.info.recentActions.length - 1]!.action.workflow.workflowId;
      return (await client.workflow.getHandle(wid).result()) as RotationResult;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`schedule ${scheduleId} did not start a run`);
}

test('a schedule per credential: created, updated, triggered (rotates; skips while one runs), deleted when the registry drops it', async () => {
  const client = await testClient();
  const fx = await rotationFixture([{ id: 'nightly' }], { schedule: '1d', gracePeriod: '1h' });
  const scheduleId = rotationScheduleId(fx.credentialId);
  try {
    await fx.run(async () => {
      expect(await applyRotationSchedules(client, fx.registry, { taskQueue: fx.taskQueue })).toMatchObject({ created: [scheduleId], updated: [] });
      const again = await applyRotationSchedules(client, fx.registry, { taskQueue: fx.taskQueue });
      expect(again.updated).toEqual([scheduleId]);
      const desc = await client.schedule.getHandle(scheduleId).describe();
      expect(desc.spec.intervals?.[0]?.every).toBe(86_400_000);
      expect(desc.action).toMatchObject({ workflowType: 'scheduledRotation', args: [{ credentialId: fx.credentialId }] });

      // A manual rotation is running (held in its grace period): the scheduled run is skipped with the reason.
      const manual = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
      const skipped = await triggeredRun(client, scheduleId, 0);
      expect(skipped.status).toBe('failed');
      expect(skipped.cause).toContain(`rotation of ${fx.credentialId} is already running`);
      await endGracePeriod(client, fx.credentialId);

      expect(((await manual.handle.result()) as RotationResult).status).toBe('completed');

      // Nothing running: the scheduled run rotates as rotation/<id> (its grace period ended by signal as soon as it runs).
      let done = false;
      const ender = (async () => {
        while (!done) {
          await new Promise((r) => setTimeout(r, 200));
          const d = await client.workflow.getHandle(`rotation/${fx.credentialId}`).describe();
          if (d.status.name === 'RUNNING' && d.runId !== manual.runId) await endGracePeriod(client, fx.credentialId).catch(() => undefined);
        }
      })();
      const scheduled = await triggeredRun(client, scheduleId, 1);
      done = true;
      await ender;
      expect(scheduled.status).toBe('completed');
      expect(scheduled.workflowId).toBe(`rotation/${fx.credentialId}`);
      expect(fx.server.issuer('issuer').minted).toHaveLength(2);
    });

    const withoutSchedule = registryFor(fx.server, fx.credentialId, 'issuer', [{ id: 'nightly' }]);
    let deleted: string[] = [];
    for (let i = 0; i < 50 && !deleted.includes(scheduleId); i++) {
      deleted = (await applyRotationSchedules(client, withoutSchedule, { taskQueue: fx.taskQueue })).deleted;
      if (!deleted.includes(scheduleId)) await new Promise((r) => setTimeout(r, 200));
    }
    expect(deleted).toContain(scheduleId);
  } finally {
    await client.schedule.getHandle(scheduleId).delete().catch(() => undefined);
    await fx.close();
  }
});
