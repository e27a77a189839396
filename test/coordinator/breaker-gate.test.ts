/**
 * The coordinator with the real breaker gate (issue 5) against real breaker
 * workflows on the shared dev server: failures seen through the coordinator
 * trip the service's breaker, and the next call fails fast with the breaker's
 * time to its next trial, without reaching the service.
 */
import { randomUUID } from 'node:crypto';
import { createAlertActivities } from '../../src/activities/alerts';
import { createBreakerActivities } from '../../src/activities/breaker';
import { BreakerGate } from '../../src/activities/breaker-gate';
import { createCoordinator, CoordinatorError, toApplicationFailure } from '../../src/activities/coordinator';
import { workflowIds } from '../../src/domain/constants';
import { Client, Connection } from '@temporalio/client';
import { closeTestClient, testAddress, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { collectOutcomes, registryOf, sleep, startServer, staticRegistry } from './servers';

afterAll(async () => {
  await closeTestClient();
});

it('503s through the coordinator trip the breaker; then calls fail fast with breaker_open and never reach the service', async () => {
  const taskQueue = uniqueTaskQueue('coord-gate');
  const serviceId = `coord-${randomUUID().slice(0, 8)}`;
  const s = await startServer((_req, res) => {
    res.writeHead(503);
    res.end('down');
  });
  const client = await testClient();
  // The gate gets its own connection, as in a worker process.
  const gateConnection = await Connection.connect({ address: testAddress() });
  await withTestWorker({ taskQueue, activities: { ...createBreakerActivities(), ...createAlertActivities({ webhooks: [] }) } }, async () => {
    const gate = new BreakerGate({
      client: new Client({ connection: gateConnection }),
      taskQueue,
      reporter: 'coord-test',
      optionsFor: () => ({ slidingWindowSize: 10, minimumNumberOfCalls: 5, failureRateThreshold: 50, waitDurationInOpenStateMs: 30_000 }),
    });
    const outcomes = collectOutcomes();
    const coordinator = createCoordinator({
      registry: staticRegistry(registryOf([{ id: serviceId, endpoints: [{ url: s.origin }] }])),
      gate,
      outcomes,
      reporterId: gate.reporter,
    });
    try {
      for (let i = 0; i < 5; i++) {
        const err = await coordinator.request(serviceId, { path: '/' }).catch((e: unknown) => e);
        expect(err).toMatchObject({ status: 503 });
      }
      expect(s.seen).toHaveLength(5);
      // The gate learns of the trip within its refresh interval.
      let err: CoordinatorError | undefined;
      const until = Date.now() + 10_000;
      while (Date.now() < until) {
        err = (await coordinator.request(serviceId, { path: '/' }).catch((e: unknown) => e)) as CoordinatorError;
        if (err.kind === 'breaker_open') break;
        await sleep(100);
      }
      expect(err).toMatchObject({ kind: 'breaker_open', retryable: true, notSent: true });
      expect(err!.retryAfterMs).toBeGreaterThan(20_000);
      expect(err!.retryAfterMs).toBeLessThanOrEqual(30_000);
      const seen = s.seen.length;
      await expect(coordinator.request(serviceId, { method: 'POST', path: '/' })).rejects.toMatchObject({ kind: 'breaker_open' });
      expect(s.seen).toHaveLength(seen);
      const failure = toApplicationFailure(err, { attempt: 1, method: 'GET' });
      expect(failure).toMatchObject({ type: 'BREAKER_OPEN', nonRetryable: false });
      expect(Number(failure.nextRetryDelay)).toBe(Math.round(err!.retryAfterMs!));
      // Every real call went to the outcome sink; rejected ones did not.
      expect(outcomes.all).toHaveLength(seen);
    } finally {
      await coordinator.close(100);
      await gate.close();
      // Let the gate's last state query finish while the worker still answers it.
      await sleep(300);
      await gateConnection.close();
      await client.workflow.getHandle(workflowIds.breaker(serviceId)).terminate('test done').catch(() => {});
      await s.close();
    }
  });
});
