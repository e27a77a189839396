/**
 * `fanOut: activity`: each batch is one heartbeating activity that works on
 * its consumers in parallel. Same saga guarantees: dependency order, verify
 * with backoff, compensation of exactly the touched consumers, and a worker
 * killed mid-batch resumes without applying a step twice.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { rotate, startRotation } from '../../src/client/rotation';
import type { RotationResult } from '../../src/domain/rotation';
import { closeTestClient, testClient } from '../helpers/temporal';
import { kill, killOnEvent, startWorker, workerEnv } from './child-worker';
import { registryFor, rotationFixture } from './support';

afterAll(closeTestClient);

const consumers = [
  { id: 'f1' },
  { id: 'f2' },
  { id: 'f3', dependsOn: ['f1'], rotation: { verifyAttempts: 6, verifyInterval: '50ms' } },
  { id: 'f4', dependsOn: ['f2'] },
];

test('completes in dependency order with propagation delay; each install applied once', async () => {
  const fx = await rotationFixture(consumers, { fanOut: 'activity', maxParallel: 2 });
  try {
    fx.server.behaviour('f3').propagationDelayMs = 300;
    const order: string[] = [];
    fx.server.onEvent = (e) => {
      if (e.kind === 'install' && e.applied) order.push(e.service);
    };
    const result = await fx.run(async () => rotate(await testClient(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
    expect(result.status).toBe('completed');
    expect(order.slice(0, 2).sort()).toEqual(['f1', 'f2']);
    expect(order.slice(2).sort()).toEqual(['f3', 'f4']);
    for (const c of consumers) {
      expect(fx.server.consumer(c.id).installs).toEqual([result.versionId]);
      expect(result.services.find((s) => s.id === c.id)).toMatchObject({ step: 'verify', status: 'ok', holds: 'current' });
    }
    expect(fx.server.issuer('issuer').revoked).toEqual([fx.initialVersionId]);
  } finally {
    await fx.close();
  }
});

test('a rejection rolls back exactly the touched consumers', async () => {
  const fx = await rotationFixture(consumers, { fanOut: 'activity' });
  try {
    fx.server.behaviour('f4').acceptOnly = new Set([fx.initialVersionId]);
    const result = await fx.run(async () => rotate(await testClient(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
    expect(result.status).toBe('rolled_back');
    expect(result.cause).toContain('f4:');
    for (const c of consumers) expect(fx.server.consumer(c.id).versionId).toBe(fx.initialVersionId);
    expect(result.services.find((s) => s.id === 'f1')).toMatchObject({ step: 'restore', status: 'ok' });
    const labels = await fx.store.labels(fx.credentialId);
    expect([labels.CURRENT?.versionId, labels.PENDING]).toEqual([fx.initialVersionId, null]);
    expect(fx.server.issuer('issuer').revoked).toEqual([result.versionId]);
    // IA_CAPTURE_ROTATION_HISTORIES (see secrets.test.ts): this run's history, for the replay test (restores in pages).
    const capture = process.env.IA_CAPTURE_ROTATION_HISTORIES;
    if (capture) {
      const history = await (await testClient()).workflow.getHandle(result.workflowId).fetchHistory();
      const file = `rotation-rolled-back-fan-out-activity${capture === '1' ? '' : `-${capture}`}.json`;
      writeFileSync(join(__dirname, '..', 'histories', file), JSON.stringify({ workflowId: result.workflowId, history: JSON.parse(historyToJSON(history)) }, null, 1) + '\n');
    }
  } finally {
    await fx.close();
  }
});

test('worker killed mid-batch: the retried batch skips finished consumers and applies nothing twice', async () => {
  const masterKey = randomBytes(32);
  const many = Array.from({ length: 6 }, (_, i) => ({ id: `m${i}`, rotation: { stepTimeout: '2s' } }));
  const fx = await rotationFixture(many, { fanOut: 'activity', maxParallel: 2, masterKey, issuerRotation: { stepTimeout: '2s' } });
  for (const c of many) fx.server.behaviour(c.id).installDelayMs = 300;
  const registryPath = join(fx.dataDir, 'registry.json');
  writeFileSync(registryPath, JSON.stringify(fx.registry));
  const env = { ROT_TASK_QUEUE: fx.taskQueue, ROT_DATA_DIR: fx.dataDir, ROT_MASTER_KEY: masterKey.toString('base64'), ROT_REGISTRY: registryPath };
  let worker = await startWorker(env);
  let killed: Promise<void> | undefined;
  let applied = 0;
  fx.server.onEvent = (e) => {
    if (e.kind === 'install' && e.applied && ++applied === 3 && !killed) killed = kill(worker);
  };
  try {
    const started = await startRotation(await testClient(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
    for (let i = 0; i < 300 && !killed; i++) await new Promise((r) => setTimeout(r, 50));
    await killed;
    worker = await startWorker(env);
    const result = (await started.handle.result()) as RotationResult;
    expect(result.status).toBe('completed');
    for (const c of many) {
      expect(fx.server.consumer(c.id).installs).toEqual([result.versionId]);
      expect(fx.server.consumer(c.id).appliedKeys.size).toBe(1);
    }
    expect(fx.server.issuer('issuer').minted).toEqual([result.versionId]);
  } finally {
    await kill(worker);
    await fx.close();
  }
});

/** Three dependency levels: a* first, then b*, then c1. */
const levels = [{ id: 'a1' }, { id: 'a2' }, { id: 'b1', dependsOn: ['a1'] }, { id: 'b2', dependsOn: ['a2'] }, { id: 'c1', dependsOn: ['b1'] }];

describe('several batches in one activity (installBatches)', () => {
  const scheduled = (events: { activityTaskScheduledEventAttributes?: { activityType?: { name?: string | null } | null } | null }[]) =>
    events.map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name).filter((n): n is string => !!n);

  test('one activity for all levels, a BatchStarted signal before each later level; dependency order kept', async () => {
    const fx = await rotationFixture(levels, { fanOut: 'activity' });
    try {
      const order: string[] = [];
      fx.server.onEvent = (e) => {
        if (e.kind === 'install' && e.applied) order.push(e.service);
      };
      const result = await fx.run(async () => rotate(await testClient(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
      expect(result.status).toBe('completed');
      expect([order.slice(0, 2).sort(), order.slice(2, 4).sort(), order.slice(4)]).toEqual([['a1', 'a2'], ['b1', 'b2'], ['c1']]);
      for (const c of levels) expect(result.services.find((s) => s.id === c.id)).toMatchObject({ step: 'verify', status: 'ok', holds: 'current' });
      const history = await (await testClient()).workflow.getHandle(result.workflowId).fetchHistory();
      const events = history.events ?? [];
      const installs = scheduled(events).filter((n) => n.startsWith('install'));
      expect(installs).toEqual(['installBatches']);
      const signals = events.filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'rotationBatchStarted');
      expect(signals).toHaveLength(2);
      // IA_CAPTURE_ROTATION_HISTORIES (see secrets.test.ts): this run's history, for the replay test.
      const capture = process.env.IA_CAPTURE_ROTATION_HISTORIES;
      if (capture) {
        const file = `rotation-completed-batches-in-one-activity${capture === '1' ? '' : `-${capture}`}.json`;
        writeFileSync(join(__dirname, '..', 'histories', file), JSON.stringify({ workflowId: result.workflowId, history: JSON.parse(historyToJSON(history)) }, null, 1) + '\n');
      }
    } finally {
      await fx.close();
    }
  });

  test('a cancel stops the run at the next batch boundary (before any heartbeat told the activity): the batch in flight is restored, later ones get nothing', async () => {
    const fx = await rotationFixture(levels, { fanOut: 'activity' });
    try {
      // Level 1 takes ~0.5 s; the activity's first heartbeat goes out 1 s in: only the server knows of the cancel at the boundary.
      for (const id of ['a1', 'a2']) fx.server.behaviour(id).verifyDelayMs = 500;
      const client = await testClient();
      const result = await fx.run(async () => {
        const { handle } = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
        let cancelled = false;
        fx.server.onEvent = (e) => {
          if (e.kind === 'install' && e.service === 'a1' && !cancelled) {
            cancelled = true;
            void handle.cancel();
          }
        };
        return (await handle.result()) as RotationResult;
      });
      expect([result.status, result.cause]).toEqual(['rolled_back', 'cancelled']);
      for (const c of levels) expect(fx.server.consumer(c.id).versionId).toBe(fx.initialVersionId);
      for (const id of ['a1', 'a2']) {
        expect(fx.server.consumer(id).installs).toEqual([result.versionId, fx.initialVersionId]);
        expect(result.services.find((s) => s.id === id)).toMatchObject({ step: 'restore', status: 'ok', holds: 'current' });
      }
      // No later batch was announced or touched: not even a restore.
      for (const id of ['b1', 'b2', 'c1']) expect([id, fx.server.consumer(id).installRequests]).toEqual([id, 0]);
      const events = (await client.workflow.getHandle(result.workflowId).fetchHistory()).events ?? [];
      expect(events.filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'rotationBatchStarted')).toHaveLength(0);
      expect(fx.server.issuer('issuer').revoked).toEqual([result.versionId]);
    } finally {
      await fx.close();
    }
  });

  test('worker killed in the second level, the retry on a worker without the run\'s registry version: rolled back, and the verified first level is restored too', async () => {
    const masterKey = randomBytes(32);
    const defs = levels.map((c) => ({ ...c, rotation: { stepTimeout: '2s' } }));
    const fx = await rotationFixture(defs, { fanOut: 'activity', masterKey, issuerRotation: { stepTimeout: '2s' } });
    for (const id of ['b1', 'b2']) fx.server.behaviour(id).installDelayMs = 300;
    // The same services, another registry version: what a worker restarted after the file changed reads.
    const next = registryFor(fx.server, fx.credentialId, 'issuer', defs, { fanOut: 'activity', gracePeriod: '1m', issuerRotation: { stepTimeout: '2s' } });
    expect(next.versionHash).not.toBe(fx.registry.versionHash);
    let worker = await startWorker(workerEnv(fx, masterKey, fx.registry));
    const killer = killOnEvent(fx.server, () => worker, (e) => e.kind === 'install' && e.service === 'b1' && e.applied);
    try {
      const client = await testClient();
      const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
      await killer.killed();
      worker = await startWorker(workerEnv(fx, masterKey, next, 'registry-next.json'));
      const result = (await started.handle.result()) as RotationResult;
      expect(result.status).toBe('rolled_back');
      expect(result.cause).toContain(`registry version ${fx.registry.versionHash} is not known to this worker`);
      // Every consumer that took the new version is back on CURRENT (a1 and a2 were verified before the kill).
      for (const c of levels) expect([c.id, fx.server.consumer(c.id).versionId]).toEqual([c.id, fx.initialVersionId]);
      for (const id of ['a1', 'a2', 'b1', 'b2']) expect(result.services.find((s) => s.id === id)).toMatchObject({ step: 'restore', status: 'ok', holds: 'current' });
      expect(fx.server.consumer('c1').installRequests).toBe(0);
      expect(fx.server.issuer('issuer').revoked).toEqual([result.versionId]);
    } finally {
      await kill(worker);
      await fx.close();
    }
  });

  test('worker killed in the second level: the retried attempt skips what is done, signals again, applies nothing twice', async () => {
    const masterKey = randomBytes(32);
    const defs = levels.map((c) => ({ ...c, rotation: { stepTimeout: '2s' } }));
    const fx = await rotationFixture(defs, { fanOut: 'activity', masterKey, issuerRotation: { stepTimeout: '2s' } });
    for (const id of ['b1', 'b2']) fx.server.behaviour(id).installDelayMs = 300;
    const env = workerEnv(fx, masterKey, fx.registry);
    let worker = await startWorker(env);
    const killer = killOnEvent(fx.server, () => worker, (e) => e.kind === 'install' && e.service === 'b1' && e.applied);
    try {
      const client = await testClient();
      const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
      await killer.killed();
      worker = await startWorker(env);
      const result = (await started.handle.result()) as RotationResult;
      expect(result.status).toBe('completed');
      for (const c of levels) {
        expect(fx.server.consumer(c.id).installs).toEqual([result.versionId]);
        expect(fx.server.consumer(c.id).appliedKeys.size).toBe(1);
      }
      const events = (await client.workflow.getHandle(result.workflowId).fetchHistory()).events ?? [];
      expect(scheduled(events).filter((n) => n.startsWith('install'))).toEqual(['installBatches']);
      // The level-2 signal came at least once before the kill; the retried attempt announced level 2 again.
      const announced = events.map((e) => e.workflowExecutionSignaledEventAttributes).filter((a) => a?.signalName === 'rotationBatchStarted');
      expect(announced.length).toBeGreaterThanOrEqual(3);
    } finally {
      await kill(worker);
      await fx.close();
    }
  });
});
