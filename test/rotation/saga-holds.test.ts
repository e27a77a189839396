/**
 * What each consumer is known to hold drives the saga's compensation and its
 * repairs, against the real contract server and the real dev server:
 * - a consumer that definitively refused the new version is not "restored"
 *   (it never held it), in both fan-out modes;
 * - `rotate --force` after an interrupted run never revokes the leftover
 *   PENDING while a consumer may hold it, and a rollback of the forced run
 *   brings every consumer that may hold the leftover back to CURRENT first;
 * - a cancel while a consumer is in its verify retries ends as a cancellation;
 * - a cancel while an install is in flight waits for it before restoring.
 *
 * With IA_CAPTURE_REPAIR_HISTORIES=1 it also writes the histories of a forced
 * repair (completed and rolled back) and of a refusal rolled back with
 * `fanOut: activity` to test/histories/ (the replay test then guards them).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { cancelRotation, rotate, startRotation } from '../../src/client/rotation';
import { progressQuery } from '../../src/workflows/rotation';
import type { RotationResult } from '../../src/domain/rotation';
import { STATE_BACKENDS, useStateBackends } from '../helpers/state';
import { closeTestClient, testAddress, testClient, workflowSource } from '../helpers/temporal';
import { rotationFixture, type ConsumerDef, type RotationFixture } from './support';

afterAll(closeTestClient);
useStateBackends();

let client: Client;
beforeAll(async () => {
  client = await testClient();
});

async function withFixture<T>(consumers: ConsumerDef[], fn: (fx: RotationFixture) => Promise<T>, extra: Parameters<typeof rotationFixture>[1] = {}): Promise<T> {
  const fx = await rotationFixture(consumers, extra);
  try {
    return await fn(fx);
  } finally {
    await fx.close();
  }
}

const waitFor = async (what: string, check: () => boolean | Promise<boolean>, tries = 400) => {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
};

/** Saves the latest run of the credential's rotation to test/histories/<file> when IA_CAPTURE_REPAIR_HISTORIES=1. */
async function capture(fx: RotationFixture, file: string): Promise<void> {
  if (process.env.IA_CAPTURE_REPAIR_HISTORIES !== '1') return;
  const workflowId = `rotation/${fx.credentialId}`;
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  writeFileSync(join(__dirname, '..', 'histories', file), JSON.stringify({ workflowId, history: JSON.parse(historyToJSON(history)) }, null, 1) + '\n');
}

/** No consumer holds a version the issuer revoked. */
function expectNoConsumerOnRevoked(fx: RotationFixture, consumers: string[]): void {
  const revoked = new Set(fx.server.issuer('issuer').revoked);
  for (const id of consumers) expect({ id, onRevoked: revoked.has(fx.server.consumer(id).versionId ?? '') }).toEqual({ id, onRevoked: false });
}

describe.each(['workflow', 'activity'] as const)('fanOut: %s', (fanOut) => {
  test('a consumer that definitively refused the new version is not restored: rolled_back, PENDING revoked', async () => {
    await withFixture(
      [{ id: 'a' }, { id: 'b', dependsOn: ['a'] }],
      async (fx) => {
        // b refuses every install (422), the redundant restore too.
        fx.server.behaviour('b').rejectInstall = true;
        const result = await fx.run(() => rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
        expect(result.cause).toContain('b:');
        expect(result.status).toBe('rolled_back');
        expect(fx.server.consumer('b').installRequests).toBe(1);
        expect(result.services.find((s) => s.id === 'b')).toMatchObject({ step: 'install', status: 'failed', holds: 'current' });
        expect(result.services.find((s) => s.id === 'a')).toMatchObject({ step: 'restore', status: 'ok', holds: 'current' });
        const labels = await fx.store.labels(fx.credentialId);
        expect([labels.CURRENT?.versionId, labels.PENDING]).toEqual([fx.initialVersionId, null]);
        expect(fx.server.issuer('issuer').revoked).toEqual([result.versionId]);
        expectNoConsumerOnRevoked(fx, ['a', 'b']);
        if (fanOut === 'activity') await capture(fx, 'rotation-refused-fan-out-activity.json');
      },
      { fanOut },
    );
  });

  test('a cancel while a consumer is in its verify retries ends rolled_back with cause cancelled', async () => {
    await withFixture(
      [
        { id: 'slow', rotation: { verifyAttempts: 40, verifyInterval: '100ms', stepTimeout: '2s' } },
        { id: 'slower', rotation: { verifyAttempts: 40, verifyInterval: '100ms', stepTimeout: '2s' } },
      ],
      async (fx) => {
        fx.server.behaviour('slow').propagationDelayMs = 600_000;
        // slower's verify answers take a while: the cancel finds a verify attempt in flight.
        Object.assign(fx.server.behaviour('slower'), { propagationDelayMs: 600_000, verifyDelayMs: 700 });
        let verifies = 0;
        fx.server.onEvent = (e) => {
          if (e.kind === 'verify') verifies++;
        };
        const result = await fx.run(async () => {
          const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
          await waitFor('verify retries', () => verifies >= 3);
          expect(await cancelRotation(client, fx.credentialId)).toBe(true);
          return (await started.handle.result()) as RotationResult;
        });
        expect([result.status, result.cause]).toEqual(['rolled_back', 'cancelled']);
        for (const id of ['slow', 'slower']) expect(fx.server.consumer(id).versionId).toBe(fx.initialVersionId);
      },
      { fanOut },
    );
  });

  test('a cancel while an install is in flight waits for it: the late install cannot land after the restore and leave the consumer on the revoked PENDING', async () => {
    await withFixture(
      [{ id: 'late', rotation: { stepTimeout: '10s' } }],
      async (fx) => {
        // The first install is applied only after 1.5 s (the restore that follows is applied at once).
        // It checked the secret when the request came in (as a real consumer would), not after the delay.
        Object.assign(fx.server.behaviour('late'), { installDelayMs: 1_500, slowInstallsLeft: 1, validate: async () => true });
        let installsApplied = 0;
        fx.server.onEvent = (e) => {
          if (e.kind === 'install') installsApplied++;
        };
        const result = await fx.run(async () => {
          const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
          await waitFor('install request in flight', () => fx.server.consumer('late').installRequests >= 1);
          expect(installsApplied).toBe(0);
          expect(await cancelRotation(client, fx.credentialId)).toBe(true);
          return (await started.handle.result()) as RotationResult;
        });
        expect([result.status, result.cause]).toEqual(['rolled_back', 'cancelled']);
        // The late install and the restore have both been handled by the consumer.
        await waitFor('both installs handled', () => installsApplied >= 2);
        // Whatever the order of answers, the consumer ends on CURRENT, not on the PENDING the rollback revoked.
        expect(fx.server.consumer('late').versionId).toBe(fx.initialVersionId);
        expectNoConsumerOnRevoked(fx, ['late']);
      },
      { fanOut },
    );
  });
});

test('a cancel that reaches the workflow together with the verify\'s final failure ends rolled_back with cause cancelled', async () => {
  await withFixture([{ id: 'late', rotation: { verifyAttempts: 5, verifyInterval: '300ms', stepTimeout: '2s' } }], async (fx) => {
    fx.server.behaviour('late').propagationDelayMs = 600_000;
    const events = async (h: WorkflowHandle) => (await h.fetchHistory()).events ?? [];
    const connection = await NativeConnection.connect({ address: testAddress() });
    try {
      // Activities and workflow tasks on separate workers, so workflow tasks can be held back. The workflow
      // workers run the saga's local activities (store steps run where the workflow task is) and no others.
      const activityWorker = await Worker.create({ connection, namespace: 'default', taskQueue: fx.taskQueue, activities: fx.activities() });
      const workflowWorker = () => Worker.create({ connection, namespace: 'default', taskQueue: fx.taskQueue, ...workflowSource(), activities: fx.activities(), enableNonLocalActivities: false });
      const result = await activityWorker.runUntil(async () => {
        let handle!: WorkflowHandle;
        const first = await workflowWorker();
        await first.runUntil(async () => {
          handle = (await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue })).handle;
          await waitFor('verifyVersion scheduled', async () => (await events(handle)).some((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'verifyVersion'));
        });
        // No workflow worker: the verify runs out of attempts, then the cancel is requested; one workflow task sees both.
        await waitFor('verifyVersion failed', async () => (await events(handle)).some((e) => e.activityTaskFailedEventAttributes), 600);
        await handle.cancel();
        await waitFor('cancel recorded', async () => (await events(handle)).some((e) => e.workflowExecutionCancelRequestedEventAttributes));
        const second = await workflowWorker();
        return second.runUntil(() => handle.result() as Promise<RotationResult>);
      });
      expect([result.status, result.cause]).toEqual(['rolled_back', 'cancelled']);
      expect(fx.server.consumer('late').versionId).toBe(fx.initialVersionId);
    } finally {
      await connection.close();
    }
  });
});

test("a cancel that reaches the workflow together with preflight's result ends rolled_back with cause cancelled, nothing minted", async () => {
  await withFixture([{ id: 'k1' }], async (fx) => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let asked = false;
    const events = async (h: WorkflowHandle) => (await h.fetchHistory()).events ?? [];
    const connection = await NativeConnection.connect({ address: testAddress() });
    try {
      // Preflight waits on the issuer's health (the worker's health view) until released.
      const held = { serviceHealthy: async () => ((asked = true), await gate, true) };
      const activityWorker = await Worker.create({ connection, namespace: 'default', taskQueue: fx.taskQueue, activities: fx.activities(held) });
      const workflowWorker = () => Worker.create({ connection, namespace: 'default', taskQueue: fx.taskQueue, ...workflowSource(), activities: fx.activities(), enableNonLocalActivities: false });
      const result = await activityWorker.runUntil(async () => {
        let handle!: WorkflowHandle;
        const first = await workflowWorker();
        await first.runUntil(async () => {
          handle = (await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue })).handle;
          await waitFor('preflight asking for the issuer\'s health', () => asked);
        });
        // No workflow worker: preflight completes, then the cancel is requested; one workflow task sees both.
        release();
        await waitFor('preflight completed', async () => (await events(handle)).some((e) => e.activityTaskCompletedEventAttributes));
        await handle.cancel();
        await waitFor('cancel recorded', async () => (await events(handle)).some((e) => e.workflowExecutionCancelRequestedEventAttributes));
        const second = await workflowWorker();
        return second.runUntil(() => handle.result() as Promise<RotationResult>);
      });
      expect([result.status, result.cause, result.versionId]).toEqual(['rolled_back', 'cancelled', undefined]);
      expect(await fx.store.labels(fx.credentialId)).toMatchObject({ CURRENT: { versionId: fx.initialVersionId }, PENDING: null });
      expect(fx.server.consumer('k1').installRequests).toBe(0);
    } finally {
      await connection.close();
    }
  });
});

/**
 * An interrupted rotation: k1 and k2 installed the new version, then the run
 * is terminated while k2 verifies. Its PENDING is left over, held by both.
 */
async function interruptedRun(fx: RotationFixture): Promise<string> {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let gated = false;
  fx.server.onEvent = async (e) => {
    if (e.kind === 'verify' && e.service === 'k2') {
      gated = true;
      await gate;
    }
  };
  await fx.run(async () => {
    const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
    await waitFor('k2 verifying', () => gated);
    await started.handle.terminate('test: interrupted rotation');
  });
  release();
  fx.server.onEvent = undefined;
  const leftover = (await fx.store.labels(fx.credentialId)).PENDING!.versionId;
  expect(fx.server.consumer('k1').versionId).toBe(leftover);
  expect(fx.server.consumer('k2').versionId).toBe(leftover);
  return leftover;
}

const repairConsumers: ConsumerDef[] = [{ id: 'k1' }, { id: 'k2', dependsOn: ['k1'] }, { id: 'k3', dependsOn: ['k2'] }];

test('the refusal names the consumers that may hold the leftover PENDING and says --force once', async () => {
  await withFixture(repairConsumers, async (fx) => {
    const leftover = await interruptedRun(fx);
    const refused = await fx.run(() => rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
    expect(refused.status).toBe('failed');
    expect(refused.cause).toContain(`PENDING version ${leftover}`);
    expect(refused.cause).toMatch(/may be held by k1, k2\b/);
    expect(refused.cause).not.toMatch(/k3/);
    expect(refused.cause!.split('--force').length - 1).toBe(1);
    expect(fx.server.issuer('issuer').revoked).toEqual([]);
  });
});

test('a consumer that reports the leftover in use counts as holding it even without an audit entry; --force rolling back restores it', async () => {
  await withFixture(repairConsumers, async (fx) => {
    // A leftover whose install in k2 never reached the audit trail (its run was terminated mid-step).
    await fx.store.putPending(fx.credentialId, 'v-leftover', 'leftover-secret', 'rotation/old#run');
    fx.server.seed('issuer', 'v-leftover', 'leftover-secret');
    fx.server.preinstall('k2', 'v-leftover');
    const refused = await fx.run(() => rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
    expect(refused.cause).toMatch(/PENDING version v-leftover left by rotation\/old#run; it may be held by k2 /);
    fx.server.behaviour('k1').acceptOnly = new Set([fx.initialVersionId]);
    const forced = await fx.run(() => rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue, force: true }));
    expect(forced.status).toBe('rolled_back');
    expect(fx.server.consumer('k2').versionId).toBe(fx.initialVersionId);
    expect(fx.server.issuer('issuer').revoked.sort()).toEqual(['v-leftover', forced.versionId].sort());
    expectNoConsumerOnRevoked(fx, ['k1', 'k2', 'k3']);
  });
});

test.each(STATE_BACKENDS)('--force after an interrupted run (%s): the new version everywhere first, then the leftover revoked with PREVIOUS; the leftover stays visible until then', async (backend) => {
  await withFixture(repairConsumers, async (fx) => {
    const leftover = await interruptedRun(fx);
    const order: string[] = [];
    let sawLeftoverWhileRunning = false;
    fx.server.onEvent = async (e) => {
      if (e.kind === 'install' && e.applied) order.push(`install:${e.service}`);
      if (e.kind === 'revoke') order.push(`revoke:${e.versionId === leftover ? 'leftover' : e.versionId === fx.initialVersionId ? 'previous' : e.versionId}`);
      if (e.kind === 'install' && e.service === 'k3') {
        // Mid-run: the store still knows the leftover is valid at the issuer.
        const v = await fx.store.getVersion(fx.credentialId, leftover);
        const summary = (await fx.store.listCredentials()).find((c) => c.credentialId === fx.credentialId);
        sawLeftoverWhileRunning = v?.revokedAt === null && v?.supersededBy !== null && (summary?.superseded ?? []).includes(leftover);
      }
    };
    const forced = await fx.run(() => rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue, force: true }));
    expect(forced.status).toBe('completed');
    expect(forced.previousRevoked).toBe(true);
    expect(sawLeftoverWhileRunning).toBe(true);
    expect(order.slice(0, 3)).toEqual(['install:k1', 'install:k2', 'install:k3']);
    expect(order.slice(3).sort()).toEqual(['revoke:leftover', 'revoke:previous']);
    for (const id of ['k1', 'k2', 'k3']) expect(fx.server.consumer(id).versionId).toBe(forced.versionId);
    const labels = await fx.store.labels(fx.credentialId);
    expect([labels.CURRENT?.versionId, labels.PENDING]).toEqual([forced.versionId, null]);
    expect((await fx.store.getVersion(fx.credentialId, leftover))?.revokedAt).not.toBeNull();
    expectNoConsumerOnRevoked(fx, ['k1', 'k2', 'k3']);
    if (backend === 'sqlite') await capture(fx, 'rotation-force-completed.json');
  }, { backend });
});

test('--force that rolls back: every consumer that may hold the leftover is restored to CURRENT before the leftover and the new version are revoked', async () => {
  await withFixture(repairConsumers, async (fx) => {
    const leftover = await interruptedRun(fx);
    // k1 refuses the forced run's version: nothing else of the forced run is installed.
    fx.server.behaviour('k1').acceptOnly = new Set([fx.initialVersionId, leftover]);
    const forced = await fx.run(() => rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue, force: true }));
    expect(forced.status).toBe('rolled_back');
    for (const id of ['k1', 'k2', 'k3']) expect(fx.server.consumer(id).versionId).toBe(fx.initialVersionId);
    expect(fx.server.issuer('issuer').revoked.sort()).toEqual([leftover, forced.versionId].sort());
    expectNoConsumerOnRevoked(fx, ['k1', 'k2', 'k3']);
    const labels = await fx.store.labels(fx.credentialId);
    expect([labels.CURRENT?.versionId, labels.PENDING]).toEqual([fx.initialVersionId, null]);
    await capture(fx, 'rotation-force-rolled-back.json');
  });
});

test('--force that rolls back and cannot restore a holder of the leftover: needs_attention naming it, the leftover not revoked and still tracked', async () => {
  await withFixture(repairConsumers, async (fx) => {
    const leftover = await interruptedRun(fx);
    fx.server.behaviour('k1').acceptOnly = new Set([leftover]);
    fx.server.behaviour('k2').acceptOnly = new Set([leftover]);
    const forced = await fx.run(() => rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue, force: true }));
    expect(forced.status).toBe('needs_attention');
    expect(forced.cause).toContain('k2');
    expect(forced.cause).toContain(leftover);
    expect(fx.server.issuer('issuer').revoked).not.toContain(leftover);
    expectNoConsumerOnRevoked(fx, ['k1', 'k2', 'k3']);
    const v = await fx.store.getVersion(fx.credentialId, leftover);
    expect(v?.revokedAt).toBeNull();
    // The next preflight still sees it.
    const again = await fx.run(() => rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
    expect(again.status).toBe('failed');
    expect(again.cause).toContain(leftover);
  });
});

test('a PREVIOUS left valid (a run cancelled during its grace period) is revoked by the next rotation, after the new version is verified everywhere, not dropped still valid', async () => {
  await withFixture(
    [{ id: 'a' }, { id: 'b', dependsOn: ['a'] }],
    async (fx) => {
      const first = await fx.run(async () => {
        const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue, gracePeriodMs: 600_000 });
        await waitFor('grace period', async () => (await started.handle.query(progressQuery)).phase === 'grace');
        expect(await cancelRotation(client, fx.credentialId)).toBe(true);
        return (await started.handle.result()) as RotationResult;
      });
      expect([first.status, first.previousRevoked]).toEqual(['completed', false]);
      const stale = fx.initialVersionId;
      expect(fx.server.issuer('issuer').revoked).not.toContain(stale);

      const second = await fx.run(() => rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue, gracePeriodMs: 0 }));
      expect([second.status, second.previousRevoked]).toEqual(['completed', true]);
      // Both the PREVIOUS of this run and the one the first run left valid are revoked at the issuer.
      expect(fx.server.issuer('issuer').revoked).toEqual(expect.arrayContaining([first.versionId, stale]));
      expect((await fx.store.getVersion(fx.credentialId, stale))?.revokedAt).not.toBeNull();
      for (const id of ['a', 'b']) expect(fx.server.consumer(id).versionId).toBe(second.versionId);
      expectNoConsumerOnRevoked(fx, ['a', 'b']);
    },
  );
});
