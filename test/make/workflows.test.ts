import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { createMakeActivities } from '../../src/activities/make';
import { openState } from '../../src/state';
import type { StateBackend } from '../../src/state/types';
import type { DeliverWebhookInput, deliverWebhook, makeScenarioRun, redeliverWebhookDeadLetter, webhookDeadLetters } from '../../src/workflows/make';
import { startFakeMake, type FakeMake } from '../fixtures/make-server';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker, workflowSource } from '../helpers/temporal';
import { makeRegistryYaml, makeRig, type MakeRig } from './helpers';

/** A webhook receiver: each path answers with the statuses queued for it (then the last one), recording every call. */
class Receiver {
  calls: Array<{ path: string; headers: IncomingHttpHeaders; body: string }> = [];
  plan = new Map<string, number[]>();
  private server!: Server;
  url = '';
  async start() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = req.url ?? '/';
        this.calls.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString() });
        const q = this.plan.get(path) ?? [200];
        const status = q.length > 1 ? q.shift()! : q[0]!;
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'nope');
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  close() {
    this.server.closeAllConnections();
    return new Promise<void>((r) => this.server.close(() => r()));
  }
}

let fake: FakeMake;
let rig: MakeRig;
let rx: Receiver;
let dataDir: string;
let state: StateBackend;
const taskQueue = uniqueTaskQueue('make');

beforeAll(async () => {
  fake = await startFakeMake({ apiLimitPerMinute: 1000, responsiveLimitMs: 400 });
  rig = makeRig(fake, makeRegistryYaml(fake, 'hooks: [{ id: 5 }]'));
  rx = new Receiver();
  await rx.start();
  dataDir = mkdtempSync(join(tmpdir(), 'ia-make-'));
  state = await openState({ dataDir });
});
afterAll(async () => {
  await rig.close();
  await fake.close();
  await rx.close();
  await state.close();
  rmSync(dataDir, { recursive: true, force: true });
  await closeTestClient();
});

const activities = () => createMakeActivities({ registry: rig.registry, transportFor: () => { throw new Error('unused'); }, deadLetters: state.deadLetters }, rig.clients);
const run = <T>(fn: () => Promise<T>) => withTestWorker({ taskQueue, activities: activities() }, fn);
const fastRetry = { maximumAttempts: 3, initialIntervalMs: 20, maximumIntervalMs: 100, backoffCoefficient: 2 };

describe('scenario runs', () => {
  test('a run longer than the responsive limit is followed to its end through the execution endpoint', async () => {
    fake.addScenario({ id: 111, runDurationMs: 1_200, runOutcome: 'SUCCESS', outputs: { total: 42 } });
    // What the responsive mode would do: Make gives up waiting and the answer has no execution id.
    const direct = await fetch(`${fake.apiBase}/scenarios/111/run`, { method: 'POST', headers: { authorization: `Token ${fake.token}`, 'content-type': 'application/json' }, body: '{"responsive":true}' });
    expect(direct.status).toBe(504);
    expect(await direct.json()).not.toHaveProperty('executionId');

    const client = await testClient();
    const result = await run(() =>
      client.workflow.execute<typeof makeScenarioRun>('makeScenarioRun', {
        taskQueue,
        workflowId: `make-run/test/${Date.now()}`,
        args: [{ serviceId: 'make-prod', scenarioId: 111, data: { orderId: 7 }, pollIntervalMs: 100, maxPollIntervalMs: 300 }],
      }),
    );
    expect(result).toMatchObject({ serviceId: 'make-prod', scenarioId: 111, outcome: 'success', outputs: { total: 42 } });
    expect((result as { polls: number }).polls).toBeGreaterThan(1);
    expect((result as { durationMs: number }).durationMs).toBeGreaterThanOrEqual(1_000);
    const e = fake.executions.get((result as { executionId: string }).executionId)!;
    expect(e.data).toEqual({ orderId: 7 });
  });

  test('an execution that ends in ERROR fails the step with Make\'s message', async () => {
    fake.addScenario({ id: 112, runDurationMs: 100, runOutcome: 'ERROR' });
    const client = await testClient();
    const err = await run(() =>
      client.workflow.execute<typeof makeScenarioRun>('makeScenarioRun', { taskQueue, workflowId: `make-run/test-err/${Date.now()}`, args: [{ serviceId: 'make-prod', scenarioId: 112, pollIntervalMs: 50 }] }).catch((e: unknown) => e),
    );
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as Error & { type?: string };
    expect(cause.type).toBe('MakeScenarioFailed');
    expect(cause.message).toMatch(/Make scenario 112 \(service make-prod\) execution [0-9a-f]+ ended in ERROR: The operation failed with an error\./);
  });

  test('an inactive scenario is refused at once, without retries', async () => {
    fake.addScenario({ id: 113, isActive: false });
    const client = await testClient();
    const before = fake.requests.filter((r) => r.path === '/api/v2/scenarios/113/run').length;
    const err = await run(() =>
      client.workflow.execute<typeof makeScenarioRun>('makeScenarioRun', { taskQueue, workflowId: `make-run/test-off/${Date.now()}`, args: [{ serviceId: 'make-prod', scenarioId: 113 }] }).catch((e: unknown) => e),
    );
    expect(String(((err as WorkflowFailedError).cause?.cause as Error | undefined)?.message)).toMatch(/Scenario is not active/);
    expect(fake.requests.filter((r) => r.path === '/api/v2/scenarios/113/run').length - before).toBe(1);
  });
});

describe('deliverWebhook', () => {
  test('one event to several subscribers: failover to the next endpoint, a Make hook, the same idempotency key on every attempt', async () => {
    const hook = fake.hooks.get(5) ?? fake.addHook({ id: 5 });
    rx.plan.set('/crm-a', [503]);
    rx.plan.set('/crm-b', [200]);
    const input: DeliverWebhookInput = {
      eventId: `evt-${Date.now()}`,
      payload: { type: 'order.created', id: 1 },
      subscribers: [
        { id: 'crm', endpoints: [`${rx.url}/crm-a`, `${rx.url}/crm-b`] },
        { id: 'make-orders', makeHooks: { serviceId: 'make-prod', hookIds: [5] } },
      ],
      retry: fastRetry,
    };
    const client = await testClient();
    const r = await run(() => client.workflow.execute<typeof deliverWebhook>('deliverWebhook', { taskQueue, workflowId: `webhook/${input.eventId}`, args: [input] }));
    expect(r).toMatchObject({ eventId: input.eventId, delivered: 2, failed: 0 });
    expect(r.subscribers[0]).toMatchObject({ subscriberId: 'crm', delivered: true, attempts: 2, endpoint: `${rx.url}/crm-b`, status: 200 });
    expect(r.subscribers[1]).toMatchObject({ subscriberId: 'make-orders', delivered: true, attempts: 1, endpoint: fake.hookUrl(hook.udid) });

    const crmCalls = rx.calls.filter((c) => c.path.startsWith('/crm-'));
    expect(crmCalls.map((c) => c.path)).toEqual(['/crm-a', '/crm-b']);
    expect(new Set(crmCalls.map((c) => c.headers['idempotency-key']))).toEqual(new Set([`${input.eventId}:crm`]));
    expect(JSON.parse(crmCalls[1]!.body)).toEqual(input.payload);
    const hookCall = fake.hookDeliveries.find((d) => d.headers['x-webhook-event-id'] === input.eventId)!;
    expect(hookCall.headers['idempotency-key']).toBe(`${input.eventId}:make-orders`);
    expect(JSON.parse(hookCall.body)).toEqual(input.payload);
  });

  test('after the final attempt a dead letter holds the last error; it is listed, and a redelivery resolves it', async () => {
    rx.plan.set('/erp', [500, 500, 502, 200]);
    const eventId = `evt-dl-${Date.now()}`;
    const client = await testClient();
    await run(async () => {
      const r = await client.workflow.execute<typeof deliverWebhook>('deliverWebhook', {
        taskQueue,
        workflowId: `webhook/${eventId}`,
        args: [{ eventId, payload: { n: 1 }, subscribers: [{ id: 'erp', endpoints: [`${rx.url}/erp`] }], retry: fastRetry }],
      });
      expect(r.subscribers[0]).toMatchObject({ delivered: false, attempts: 3, status: 502, lastError: expect.stringMatching(/HTTP 502/) });
      const id = r.subscribers[0]!.deadLetterId!;
      expect(typeof id).toBe('number');

      const open = await client.workflow.execute<typeof webhookDeadLetters>('webhookDeadLetters', { taskQueue, workflowId: `webhook-dead-letters/${eventId}`, args: [{ state: 'open' }] });
      expect(open.find((d) => d.id === id)).toMatchObject({ eventId, subscriberId: 'erp', attempts: 3, endpoints: [`${rx.url}/erp`], idempotencyKey: `${eventId}:erp` });

      const again = await client.workflow.execute<typeof redeliverWebhookDeadLetter>('redeliverWebhookDeadLetter', { taskQueue, workflowId: `webhook-redeliver/${id}`, args: [{ id, retry: fastRetry }] });
      expect(again).toMatchObject({ delivered: true, attempts: 1, eventId });
      const all = await client.workflow.execute<typeof webhookDeadLetters>('webhookDeadLetters', { taskQueue, workflowId: `webhook-dead-letters/${eventId}/2`, args: [{ state: 'resolved' }] });
      expect(all.find((d) => d.id === id)).toMatchObject({ resolvedBy: `webhook-redeliver/${id}` });
    });
    const erp = rx.calls.filter((c) => c.path === '/erp');
    expect(erp).toHaveLength(4);
    expect(new Set(erp.map((c) => c.headers['idempotency-key']))).toEqual(new Set([`${eventId}:erp`]));
  });

  test('an endpoint that answers 410 Gone is dropped at once; with none left the event is dead-lettered without more attempts', async () => {
    rx.plan.set('/gone', [410]);
    const eventId = `evt-gone-${Date.now()}`;
    const client = await testClient();
    const r = await run(() =>
      client.workflow.execute<typeof deliverWebhook>('deliverWebhook', {
        taskQueue,
        workflowId: `webhook/${eventId}`,
        args: [{ eventId, payload: {}, subscribers: [{ id: 'old', endpoints: [`${rx.url}/gone`] }], retry: { ...fastRetry, maximumAttempts: 5 } }],
      }),
    );
    expect(r.subscribers[0]).toMatchObject({ delivered: false, attempts: 1, status: 410 });
    expect(r.subscribers[0]!.deadLetterId).toBeDefined();
  });

  test('bad input is refused with the field named, before anything is sent', async () => {
    const client = await testClient();
    const calls = rx.calls.length;
    const err = await run(() =>
      client.workflow
        .execute<typeof deliverWebhook>('deliverWebhook', { taskQueue, workflowId: `webhook/bad-${Date.now()}`, args: [{ eventId: 'x', payload: {}, subscribers: [{ id: 'a', endpoints: ['ftp://nope'] }] }] })
        .catch((e: unknown) => e),
    );
    expect(((err as WorkflowFailedError).cause as Error).message).toMatch(/subscribers\[0\]\.endpoints\[0\] must be an http:\/\/ or https:\/\/ URL/);
    expect(rx.calls.length).toBe(calls);
  });
});

test('the scenario run and the delivery with failover, backoff and a dead letter replay deterministically', async () => {
  fake.addScenario({ id: 114, runDurationMs: 300 });
  rx.plan.set('/replay-a', [503]);
  rx.plan.set('/replay-b', [500]);
  const client = await testClient();
  const eventId = `evt-replay-${Date.now()}`;
  const [runHandle, hookHandle] = await run(async () => {
    const r = await client.workflow.start<typeof makeScenarioRun>('makeScenarioRun', { taskQueue, workflowId: `make-run/replay/${Date.now()}`, args: [{ serviceId: 'make-prod', scenarioId: 114, pollIntervalMs: 50 }] });
    const h = await client.workflow.start<typeof deliverWebhook>('deliverWebhook', {
      taskQueue,
      workflowId: `webhook/${eventId}`,
      args: [{ eventId, payload: { x: 1 }, subscribers: [{ id: 'a', endpoints: [`${rx.url}/replay-a`, `${rx.url}/replay-b`] }], retry: fastRetry }],
    });
    await Promise.all([r.result(), h.result()]);
    return [r, h] as const;
  });
  for (const h of [runHandle, hookHandle]) {
    await Worker.runReplayHistory(workflowSource(), await h.fetchHistory(), h.workflowId);
  }
});
