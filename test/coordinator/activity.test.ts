/**
 * `callService` on a real Temporal dev server: the failure classification
 * becomes Temporal's retry behaviour (nextRetryDelay, nonRetryable), and a
 * workflow's cancellation reaches the HTTP call through heartbeats.
 */
import { createCoordinator, createCoordinatorActivities, type Coordinator } from '../../src/activities/coordinator';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { registryOf, startBlackHole, startServer, staticRegistry, type TestServer } from './servers';
import type { callServiceOnce, callServiceThenCancel } from './workflows';

const servers: TestServer[] = [];
let coordinator: Coordinator;
let taskQueue: string;
let flaky: TestServer;
let hole: TestServer;

beforeAll(async () => {
  let calls = 0;
  flaky = await startServer((req, res) => {
    calls++;
    if (req.url === '/retry-after' && calls % 2 === 1) {
      res.writeHead(503, { 'retry-after': '1' });
      return res.end('busy');
    }
    if (req.url === '/missing') {
      res.writeHead(404);
      return res.end('no such thing');
    }
    if (req.url === '/always-503') {
      res.writeHead(503);
      return res.end('down');
    }
    res.end('fine');
  });
  hole = await startBlackHole();
  servers.push(flaky, hole);
  coordinator = createCoordinator({
    registry: staticRegistry(
      registryOf([
        { id: 'flaky', endpoints: [{ url: flaky.origin }] },
        { id: 'hole', endpoints: [{ url: hole.origin }] },
      ]),
    ),
    reporterId: 'activity-test',
  });
  taskQueue = uniqueTaskQueue('coordinator');
});

afterAll(async () => {
  await coordinator.close(100);
  await Promise.all(servers.map((s) => s.close()));
  await closeTestClient();
});

async function run<T>(fn: () => Promise<T>): Promise<T> {
  return withTestWorker(
    {
      taskQueue,
      workflowBundle: undefined,
      workflowsPath: require.resolve('./workflows'),
      activities: createCoordinatorActivities(coordinator, { backoff: { baseMs: 100, capMs: 1_000 } }),
    },
    fn,
  );
}

it('retries a 503 after its Retry-After, not after the retry policy interval, and a 404 not at all; POST without a key is not retried', async () => {
  const client = await testClient();
  await run(async () => {
    const t0 = Date.now();
    const ok = await client.workflow.execute<typeof callServiceOnce>('callServiceOnce', {
      taskQueue,
      workflowId: uniqueTaskQueue('wf'),
      args: ['flaky', { path: '/retry-after' }, 3],
    });
    expect(ok).toEqual({ ok: true, status: 200, body: 'fine' });
    const elapsed = Date.now() - t0;
    // Retry-After: 1 -> about 1 s; the policy's initialInterval would be 60 s.
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(20_000);
    expect(flaky.seen.filter((s) => s.url === '/retry-after')).toHaveLength(2);

    const missing = await client.workflow.execute<typeof callServiceOnce>('callServiceOnce', {
      taskQueue,
      workflowId: uniqueTaskQueue('wf'),
      args: ['flaky', { path: '/missing' }, 5],
    });
    expect(missing).toMatchObject({ ok: false, type: 'HTTP_404', nonRetryable: true });
    expect((missing as { message: string }).message).toMatch(/GET \/missing on service "flaky" .*HTTP 404: no such thing/);
    expect(flaky.seen.filter((s) => s.url === '/missing')).toHaveLength(1);

    const post = await client.workflow.execute<typeof callServiceOnce>('callServiceOnce', {
      taskQueue,
      workflowId: uniqueTaskQueue('wf'),
      args: ['flaky', { method: 'POST', path: '/always-503', body: 'x' }, 5],
    });
    expect(post).toMatchObject({ ok: false, type: 'HTTP_503', nonRetryable: true });
    const keyed = await client.workflow.execute<typeof callServiceOnce>('callServiceOnce', {
      taskQueue,
      workflowId: uniqueTaskQueue('wf'),
      args: ['flaky', { method: 'POST', path: '/always-503', body: 'x', idempotencyKey: 'k-1' }, 3],
    });
    // Retried with full-jitter backoff (base 100 ms) until the attempts ran out.
    expect(keyed).toMatchObject({ ok: false, type: 'HTTP_503', nonRetryable: false });
    expect(flaky.seen.filter((s) => s.url === '/always-503')).toHaveLength(1 + 3);
  });
});

it('a workflow cancelling the activity aborts the call to a black hole and closes its socket', async () => {
  const client = await testClient();
  await run(async () => {
    const t0 = Date.now();
    const result = await client.workflow.execute<typeof callServiceThenCancel>('callServiceThenCancel', {
      taskQueue,
      workflowId: uniqueTaskQueue('wf'),
      args: ['hole', { path: '/never', timeoutMs: 60_000 }, 500],
    });
    expect(result).toMatchObject({ ok: false, cancelled: true });
    // Cancellation rides on the heartbeat (every heartbeatTimeout / 3), well before the 60 s deadline.
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(hole.connections).toBe(1);
    const deadline = Date.now() + 2_000;
    while (hole.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(hole.sockets.size).toBe(0);
  });
});
