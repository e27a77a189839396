/**
 * The saga's failure paths against real servers: a consumer that rejects the
 * new secret, one that accepts it only after a delay, one slower than the step
 * timeout, an issuer that fails to revoke, a refused preflight, a leftover
 * PENDING, cancellation, and a credential with nothing to roll back to.
 * After every run: exactly one CURRENT (when there was one), no PENDING unless
 * the run says `needs_attention`.
 */
import { closeTestClient, testClient } from '../helpers/temporal';
import { cancelRotation, getRotation, rotate, startRotation } from '../../src/client/rotation';
import type { RotationResult } from '../../src/domain/rotation';
import { rotationFixture, type ConsumerDef, type RotationFixture } from './support';

afterAll(closeTestClient);

async function withFixture<T>(consumers: ConsumerDef[], fn: (fx: RotationFixture) => Promise<T>, extra: Parameters<typeof rotationFixture>[1] = {}): Promise<T> {
  const fx = await rotationFixture(consumers, extra);
  try {
    return await fn(fx);
  } finally {
    await fx.close();
  }
}

/** The invariant after a rolled-back run: CURRENT unchanged, no PENDING, the minted version revoked, every consumer on CURRENT. */
async function expectRolledBack(fx: RotationFixture, result: RotationResult, consumers: string[]): Promise<void> {
  expect(result.status).toBe('rolled_back');
  const labels = await fx.store.labels(fx.credentialId);
  expect(labels.CURRENT?.versionId).toBe(fx.initialVersionId);
  expect(labels.PENDING).toBeNull();
  expect(fx.server.issuer('issuer').revoked).toEqual([result.versionId]);
  expect((await fx.store.getVersion(fx.credentialId, result.versionId!))?.revokedAt).not.toBeNull();
  for (const id of consumers) expect(fx.server.consumer(id).versionId).toBe(fx.initialVersionId);
}

test('a consumer that rejects the new secret: touched consumers restored in reverse batch order, PENDING revoked -> rolled_back', async () => {
  await withFixture(
    [{ id: 'a' }, { id: 'b', dependsOn: ['a'] }, { id: 'c', dependsOn: ['b'] }],
    async (fx) => {
      fx.server.behaviour('b').acceptOnly = new Set([fx.initialVersionId]);
      const events: string[] = [];
      fx.server.onEvent = (e) => {
        if (e.kind === 'install' && e.applied) events.push(`${e.service}:${e.versionId === fx.initialVersionId ? 'old' : 'new'}`);
      };
      const result = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
      await expectRolledBack(fx, result, ['a', 'b', 'c']);
      expect(result.cause).toContain('b:');
      expect(result.cause).toContain('422');
      expect(result.services.find((s) => s.id === 'a')).toMatchObject({ step: 'restore', status: 'ok', holds: 'current' });
      // b refused the new version (422): it still holds CURRENT, so nothing is "restored" there.
      expect(result.services.find((s) => s.id === 'b')).toMatchObject({ step: 'install', status: 'failed', holds: 'current' });
      // c was never touched (its batch never started).
      expect(result.services.find((s) => s.id === 'c')).toMatchObject({ step: 'planned', status: 'pending' });
      expect(fx.server.consumer('c').installRequests).toBe(0);
      // a got new, then old again: each applied once; b got nothing.
      expect(events).toEqual(['a:new', 'a:old']);
      const trail = await fx.store.auditTrail({ credentialId: fx.credentialId });
      expect(trail.map((e) => `${e.step}:${e.serviceId ?? ''}:${e.outcome}`)).toEqual(
        expect.arrayContaining(['install:b:failed', 'restore:a:ok', 'discard_pending:issuer:ok', 'rotation::rolled_back']),
      );
    },
  );
});

// A tiny indirection so the tests read top-down; the client is shared per file.
let clientRef: Awaited<ReturnType<typeof testClient>>;
beforeAll(async () => {
  clientRef = await testClient();
});
function await_client() {
  return clientRef;
}

test('a consumer that takes the new version only after a propagation delay: verify retries with backoff -> completed', async () => {
  await withFixture([{ id: 'slowprop', rotation: { verifyAttempts: 8, verifyInterval: '100ms' } }], async (fx) => {
    fx.server.behaviour('slowprop').propagationDelayMs = 700;
    let verifies = 0;
    fx.server.onEvent = (e) => {
      if (e.kind === 'verify') verifies++;
    };
    const result = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
    expect(result.status).toBe('completed');
    expect(verifies).toBeGreaterThan(1);
    expect(fx.server.consumer('slowprop').versionId).toBe(result.versionId);
  });
});

test('a consumer whose new version never propagates within the verify attempts -> rolled_back', async () => {
  await withFixture([{ id: 'never', rotation: { verifyAttempts: 3, verifyInterval: '50ms' } }], async (fx) => {
    fx.server.behaviour('never').propagationDelayMs = 60_000;
    const result = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
    await expectRolledBack(fx, result, ['never']);
    expect(result.cause).toMatch(/reports .* in use, expected/);
  });
});

test('a consumer slower than the step timeout: install attempts time out -> rolled_back, no late install sticks', async () => {
  await withFixture([{ id: 'fast' }, { id: 'sluggish', rotation: { stepTimeout: '400ms' } }], async (fx) => {
    Object.assign(fx.server.behaviour('sluggish'), { installDelayMs: 1_000, slowInstallsLeft: 3 });
    const result = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
    expect(result.cause).toMatch(/sluggish/);
    // Late installs of the revoked version arrive after the restore and are refused by the consumer's check with the issuer.
    await new Promise((r) => setTimeout(r, 1_200));
    await expectRolledBack(fx, result, ['fast', 'sluggish']);
  });
});

test('an issuer that fails to revoke PREVIOUS: rotated, but needs_attention says PREVIOUS is still valid', async () => {
  await withFixture([{ id: 'x' }], async (fx) => {
    fx.server.behaviour('issuer').failRevoke = true;
    const result = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
    expect(result.status).toBe('needs_attention');
    expect(result.previousRevoked).toBe(false);
    expect(result.cause).toContain(`revoking PREVIOUS ${fx.initialVersionId}`);
    expect(result.services.find((s) => s.id === 'issuer')).toMatchObject({ step: 'revoke', status: 'failed' });
    const labels = await fx.store.labels(fx.credentialId);
    expect(labels.CURRENT?.versionId).toBe(result.versionId);
    expect(labels.PREVIOUS?.versionId).toBe(fx.initialVersionId);
    expect(labels.PENDING).toBeNull();
  });
});

test('an issuer that fails to revoke PENDING during rollback: needs_attention with PENDING kept and each service state', async () => {
  await withFixture([{ id: 'p' }, { id: 'q' }], async (fx) => {
    fx.server.behaviour('q').acceptOnly = new Set([fx.initialVersionId]);
    fx.server.behaviour('issuer').failRevoke = true;
    const result = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
    expect(result.status).toBe('needs_attention');
    expect(result.cause).toContain(`revoking PENDING ${result.versionId}`);
    const labels = await fx.store.labels(fx.credentialId);
    expect(labels.CURRENT?.versionId).toBe(fx.initialVersionId);
    expect(labels.PENDING?.versionId).toBe(result.versionId);
    expect(result.services.find((s) => s.id === 'issuer')).toMatchObject({ step: 'revoke', status: 'failed' });
    expect(result.services.find((s) => s.id === 'p')).toMatchObject({ step: 'restore', status: 'ok', holds: 'current' });
    // q refused the new version: it holds CURRENT without a restore.
    expect(result.services.find((s) => s.id === 'q')).toMatchObject({ step: 'install', status: 'failed', holds: 'current' });
    for (const id of ['p', 'q']) expect(fx.server.consumer(id).versionId).toBe(fx.initialVersionId);
  });
});

test('preflight refuses an unhealthy issuer or an OPEN breaker without changing anything; --force rotates anyway', async () => {
  await withFixture([{ id: 'm' }, { id: 'n' }], async (fx) => {
    const preflight = { serviceHealthy: async () => false, breakerState: async (id: string) => (id === 'n' ? 'OPEN' : 'CLOSED') };
    const refused = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }), preflight);
    expect(refused.status).toBe('failed');
    expect(refused.cause).toContain('issuer issuer is unhealthy');
    expect(refused.cause).toContain('circuit breaker of consumer n is OPEN');
    expect(refused.versionId).toBeUndefined();
    expect(fx.server.issuer('issuer').minted).toEqual([]);
    expect(fx.server.consumer('m').installRequests + fx.server.consumer('n').installRequests).toBe(0);

    const forced = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue, force: true }), preflight);
    expect(forced.status).toBe('completed');
  });
});

test('preflight over many consumers checks them a few at once and lists at most 50 problems, in consumer order', async () => {
  const many = Array.from({ length: 80 }, (_, i) => ({ id: `o${String(i).padStart(2, '0')}` }));
  await withFixture(many, async (fx) => {
    let inFlight = 0;
    let most = 0;
    const preflight = {
      breakerState: async () => {
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setTimeout(r, 20));
        inFlight--;
        return 'OPEN';
      },
    };
    const refused = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue, dryRun: true }), preflight);
    expect(refused.status).toBe('failed');
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(16);
    const listed = refused.cause!.replace(/^preflight: /, '').split('; ');
    expect(listed).toHaveLength(50);
    expect(listed[0]).toBe('circuit breaker of consumer o00 is OPEN');
    expect(listed[48]).toBe('circuit breaker of consumer o48 is OPEN');
    expect(listed[49]).toBe('and 31 more problems');
  });
});

test('a leftover PENDING from an earlier run is reported; --force revokes it and rotates', async () => {
  await withFixture([{ id: 'k' }], async (fx) => {
    await fx.store.putPending(fx.credentialId, 'v-leftover', 'leftover-secret', 'rotation/old#run');
    fx.server.seed('issuer', 'v-leftover', 'leftover-secret');
    const refused = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
    expect(refused.status).toBe('failed');
    expect(refused.cause).toContain('PENDING version v-leftover left by rotation/old#run');
    const forced = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue, force: true }));
    expect(forced.status).toBe('completed');
    expect(fx.server.issuer('issuer').revoked).toEqual(expect.arrayContaining(['v-leftover', fx.initialVersionId]));
    const labels = await fx.store.labels(fx.credentialId);
    expect(labels.CURRENT?.versionId).toBe(forced.versionId);
    expect(labels.PENDING).toBeNull();
  });
});

test('a dry run plans and preflights only', async () => {
  await withFixture([{ id: 'd1' }, { id: 'd2', dependsOn: ['d1'] }], async (fx) => {
    const result = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue, dryRun: true }));
    expect(result.status).toBe('completed');
    expect(result.dryRun).toBe(true);
    expect(result.plan?.batches).toEqual([['d1'], ['d2']]);
    expect(result.workflowId).toMatch(new RegExp(`^rotation/${fx.credentialId}/dry-run/`));
    expect(fx.server.issuer('issuer').minted).toEqual([]);
    expect(await fx.store.auditTrail({ credentialId: fx.credentialId })).toHaveLength(1); // the import only
  });
});

test('cancelling during set compensates -> rolled_back', async () => {
  await withFixture([{ id: 'c1' }, { id: 'c2', dependsOn: ['c1'] }], async (fx) => {
    const client = await_client();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    fx.server.onEvent = async (e) => {
      if (e.kind === 'install' && e.service === 'c2' && e.versionId !== fx.initialVersionId) await gate;
    };
    const result = await fx.run(async () => {
      const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
      for (let i = 0; i < 100 && fx.server.consumer('c2').installRequests === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect((await getRotation(client, fx.credentialId))?.progress?.phase).toBe('set');
      expect(await cancelRotation(client, fx.credentialId)).toBe(true);
      release();
      return (await started.handle.result()) as RotationResult;
    });
    expect(result.cause).toBe('cancelled');
    await expectRolledBack(fx, result, ['c1', 'c2']);
  });
});

test('a credential with no CURRENT version can be rotated; there is nothing to revoke', async () => {
  await withFixture(
    [{ id: 'fresh' }],
    async (fx) => {
      const result = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
      expect(result.status).toBe('completed');
      expect(result.previousRevoked).toBe(false);
      const labels = await fx.store.labels(fx.credentialId);
      expect(labels.CURRENT?.versionId).toBe(result.versionId);
      expect(labels.PREVIOUS).toBeNull();
    },
    { importCurrent: false },
  );
});

test('cancelling during the grace period ends completed without revoking PREVIOUS', async () => {
  await withFixture(
    [{ id: 'gc' }],
    async (fx) => {
      const client = await_client();
      const result = await fx.run(async () => {
        const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
        for (let i = 0; i < 200 && (await getRotation(client, fx.credentialId))?.progress?.phase !== 'grace'; i++) await new Promise((r) => setTimeout(r, 50));
        expect(await cancelRotation(client, fx.credentialId)).toBe(true);
        return (await started.handle.result()) as RotationResult;
      });
      expect(result.status).toBe('completed');
      expect(result.previousRevoked).toBe(false);
      expect(result.cause).toContain(`PREVIOUS ${fx.initialVersionId} was not revoked`);
      expect(fx.server.issuer('issuer').revoked).toEqual([]);
      const labels = await fx.store.labels(fx.credentialId);
      expect([labels.CURRENT?.versionId, labels.PREVIOUS?.versionId, labels.PENDING]).toEqual([result.versionId, fx.initialVersionId, null]);
    },
    { gracePeriod: '1h' },
  );
});

test('no CURRENT and a consumer fails: nothing to restore, PENDING revoked -> rolled_back, still no CURRENT', async () => {
  await withFixture(
    [{ id: 'n1' }, { id: 'n2', dependsOn: ['n1'] }],
    async (fx) => {
      fx.server.behaviour('n2').rejectInstall = true;
      const result = await fx.run(() => rotate(await_client(), { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
      expect(result.status).toBe('rolled_back');
      expect(result.services.find((s) => s.id === 'n1')).toMatchObject({ step: 'restore', status: 'skipped', error: 'no CURRENT version to restore' });
      expect(fx.server.issuer('issuer').revoked).toEqual([result.versionId]);
      const labels = await fx.store.labels(fx.credentialId);
      expect([labels.CURRENT, labels.PENDING]).toEqual([null, null]);
    },
    { importCurrent: false },
  );
});
