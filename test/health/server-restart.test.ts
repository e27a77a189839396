/**
 * Exactly one TRIGGERED and one RESOLVED per incident across Temporal server
 * restarts: the dev server (SQLite file) is killed (SIGKILL, a crash) and
 * restarted on the same file and port while a service is down, and stopped
 * and restarted again after it recovered; each time the worker goes too and a
 * new one (new activities, new clients) takes over. Real parts only: its own
 * dev server, an in-process worker with the real activities (probes, health
 * store in a temp dir, publishSweep with a client, deliverAlert to a loopback
 * receiver), a loopback service.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../../src/activities';
import { openState } from '../../src/state';
import { getHealth } from '../../src/client/health';
import { healthShardWorkflowId, shardOf } from '../../src/domain/health-shard';
import type { Alert } from '../../src/domain/health';
import { startDevServer, type DevServer } from '../../src/dev/dev-server';
import { healthShardPendingAlertsQuery } from '../../src/workflows/health-shard';
import { healthSweep, type HealthSweepResult } from '../../src/workflows/sweep';
import { uniqueTaskQueue, workflowSource } from '../helpers/temporal';
import { registryOf, startFleet, type Fleet } from './fleet';
import { eventually, sleep, startReceiver, uniquePrefix, type Receiver } from './harness';

/** A worker on our own server plus the client the test and publishSweep use; `stop` ends both. */
interface Epoch {
  client: Client;
  stop(): Promise<void>;
}

const dir = mkdtempSync(join(tmpdir(), 'ia-health-restart-'));
const dbFilename = join(dir, 'temporal.db');
const dataDir = join(dir, 'data');
const taskQueue = uniqueTaskQueue('health-restart');
const id = `${uniquePrefix()}-restart`;

let server: DevServer | undefined;
let epoch: Epoch | undefined;
let fleet: Fleet;
let receiver: Receiver;

afterAll(async () => {
  await epoch?.stop().catch(() => undefined);
  await server?.stop();
  await fleet?.close();
  await receiver?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function startEpoch(address: string): Promise<Epoch> {
  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  const native = await NativeConnection.connect({ address });
  const state = await openState({ dataDir });
  const registry = registryOf([
    {
      id,
      type: 'api',
      endpoints: [{ url: `${fleet.url}/${id}` }],
      healthCheck: { timeout: '300ms', failureThreshold: 2, successThreshold: 1 },
    },
  ]);
  const worker = await Worker.create({
    connection: native,
    namespace: 'default',
    taskQueue,
    ...workflowSource(),
    activities: createActivities({
      registry: { current: () => registry },
      state,
      health: { client, alertWebhooks: [{ name: 'ops', url: receiver.url, format: 'json', timeoutMs: 2000 }], figuresEveryMs: 0 },
    }),
  });
  const running = worker.run();
  return {
    client,
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running.catch(() => undefined);
      await native.close().catch(() => undefined);
      await connection.close().catch(() => undefined);
      await state.close();
    },
  };
}

/**
 * Stops the server (gracefully, or killed with SIGKILL like a crash) and the worker with it,
 * restarts the server from the same SQLite file and port, and starts a new worker.
 */
async function restart(port: number, how: 'crash' | 'graceful'): Promise<void> {
  if (how === 'crash') {
    const p = server!.process;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGKILL');
    await exited;
  } else await server!.stop();
  // The old worker shuts down while the server comes back: a call it was retrying when the
  // server went (say the answer to a query that had just returned) then ends at once, not after
  // ten seconds of retries. It polls no new tasks once shutdown has begun.
  const stopping = epoch!.stop();
  epoch = undefined;
  server = await startDevServer({ uiPort: false, dbFilename, port });
  await stopping;
  epoch = await startEpoch(server.address);
}

let sweeps = 0;
const sweep = (): Promise<HealthSweepResult> =>
  epoch!.client.workflow.execute(healthSweep, { taskQueue, workflowId: `sweep/${taskQueue}-${++sweeps}`, args: [{ intervalMs: 1000 }] });

/** Sweeps (at most `max` times) until `done` holds once the service's workflow has taken in the sweep. */
async function sweepUntil(done: () => boolean | Promise<boolean>, what: string, max = 6): Promise<void> {
  for (let i = 0; i < max; i++) {
    const { workflowId } = await sweep();
    // The observation reaches the service workflow by signal (signal-with-start), a moment after the sweep ends.
    await eventually(async () => (await health())?.lastProbe?.sweepId === workflowId, `${workflowId} observed`);
    if (await done()) return;
  }
  throw new Error(`not reached after ${max} sweeps: ${what}`);
}

const mine = (): Alert[] => receiver.alerts.filter((a) => a.serviceId === id);
const kinds = () => mine().map((a) => a.kind);
/** Distinct alert ids of one kind, from every request the receiver saw (repeats by idempotency key included). */
const idsOf = (kind: Alert['kind']) =>
  [...new Set(receiver.requests.map((r) => r.body as Alert).filter((a) => a.serviceId === id && a.kind === kind).map((a) => a.id))];
const health = () => getHealth(epoch!.client, id, { taskQueue });
const outboxEmpty = async () => (await epoch!.client.workflow.getHandle(healthShardWorkflowId(taskQueue, shardOf(id))).query(healthShardPendingAlertsQuery)).length === 0;
/** Waits until the service's workflow has taken in sweep `sweepId` and delivered every alert it decided. */
const settled = async (sweepId: string) => {
  await eventually(async () => (await health())?.lastProbe?.sweepId === sweepId, `${sweepId} observed`);
  await eventually(outboxEmpty, 'no alert pending');
};

test('dev server restarted from its database file while a service is down and after it recovered: one TRIGGERED, one RESOLVED', async () => {
  fleet = await startFleet();
  receiver = await startReceiver();
  server = await startDevServer({ uiPort: false, dbFilename });
  const port = Number(server.address.split(':')[1]);
  epoch = await startEpoch(server.address);

  // Healthy first.
  fleet.set(`/${id}`, { status: 200 });
  await sweepUntil(async () => (await health())?.status === 'healthy', 'healthy');

  // Outage: failureThreshold 2, so the second failing sweep triggers.
  fleet.set(`/${id}`, { status: 503 });
  await sweepUntil(async () => (await health())?.alertOpen === true, 'alert opened');
  expect(await health()).toMatchObject({ status: 'unhealthy', alertOpen: true });
  expect(sweeps).toBe(3); // one healthy sweep, then exactly failureThreshold failing ones
  await eventually(() => kinds().includes('TRIGGERED'), 'TRIGGERED delivered');
  await eventually(outboxEmpty, 'TRIGGERED delivery recorded');

  // The server crashes (and the worker goes) while the service is still down; both restart.
  await restart(port, 'crash');
  expect(await health()).toMatchObject({ status: 'unhealthy', alertOpen: true });
  let last = '';
  for (let i = 0; i < 2; i++) {
    const r = await sweep();
    expect(r.services[0]).toMatchObject({ id, status: 'unhealthy', failureKind: 'status' });
    last = r.workflowId;
  }
  await settled(last);
  expect(kinds()).toEqual(['TRIGGERED']);
  expect(await health()).toMatchObject({ status: 'unhealthy', alertOpen: true });

  // Recovery: successThreshold 1.
  fleet.set(`/${id}`, { status: 200 });
  await sweepUntil(async () => (await health())?.alertOpen === false, 'alert closed', 1);
  await eventually(() => kinds().includes('RESOLVED'), 'RESOLVED delivered');
  await eventually(outboxEmpty, 'RESOLVED delivery recorded');
  expect(await health()).toMatchObject({ status: 'healthy', alertOpen: false });

  // A graceful restart after RESOLVED; sweeps go on and find it healthy: nothing new to say.
  await restart(port, 'graceful');
  const first = await sweep();
  expect(first.services[0]).toMatchObject({ id, status: 'healthy' });
  // The new worker's publishSweep signals this first pass; the next one it may skip (steady service).
  await settled(first.workflowId);
  expect((await sweep()).services[0]).toMatchObject({ id, status: 'healthy' });
  await sleep(300);

  expect(kinds()).toEqual(['TRIGGERED', 'RESOLVED']);
  expect(idsOf('TRIGGERED')).toEqual([`health/${id}#1`]);
  expect(idsOf('RESOLVED')).toEqual([`health/${id}#2`]);
  expect(mine()[0]).toMatchObject({ kind: 'TRIGGERED', rootCause: id, failureKind: 'status' });
  const end = await health();
  expect(end).toMatchObject({ serviceId: id, status: 'healthy', alertOpen: false });
  expect(await outboxEmpty()).toBe(true);
}, 120_000);
