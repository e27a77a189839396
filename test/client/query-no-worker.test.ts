/**
 * Reading a workflow that no worker can answer for: each workflow is started
 * (never run) on a task queue no worker polls, then read through the CLI and
 * the client. The answer must come at once, as one line naming the workflow,
 * its task queue, the namespace and the command that starts a worker, never
 * Temporal's raw query error nor a wait for the query's deadline.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IntegrationClient } from '../../src/client';
import { NoWorkerError } from '../../src/client/connect';
import { healthShardWorkflowId, shardOf } from '../../src/domain/health-shard';
import { closeTestClient, testAddress, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';

afterAll(closeTestClient);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(env: Record<string, string>, args: string[]): Promise<Run> {
  const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), join(__dirname, '..', 'helpers', 'cli-entry.ts'), ...args], {
    env: { ...process.env, TEMPORAL_ADDRESS: testAddress(), LOG_LEVEL: 'warn', INTEGRATION_AGENT_DEBUG: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

/** One line on stderr naming the workflow, its queue and namespace, and how to start a worker on that queue; exit 1, no stack. */
function expectNoWorkerLine(run: Run, workflowId: string, taskQueue: string): void {
  expect(run.code).toBe(1);
  expect(run.stdout).toBe('');
  const lines = run.stderr.split('\n').filter(Boolean);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^integration-agent: /);
  expect(lines[0]).toContain(workflowId);
  expect(lines[0]).toContain(`task queue "${taskQueue}"`);
  expect(lines[0]).toContain('namespace default');
  expect(lines[0]).toContain(`TEMPORAL_TASK_QUEUE=${taskQueue} integration-agent worker`);
  expect(run.stderr).not.toMatch(/\bat .+:\d+:\d+|ServiceError|FAILED_PRECONDITION|DEADLINE_EXCEEDED|Failed to query/);
}

const taskQueue = uniqueTaskQueue('no-worker-query');
const serviceId = `svc-${randomUUID().slice(0, 8)}`;
const credentialId = `cred-${randomUUID().slice(0, 8)}`;
const shardId = healthShardWorkflowId(taskQueue, shardOf(serviceId));
const breakerId = `breaker/${serviceId}`;
const rotationId = `rotation/${credentialId}`;
let env: Record<string, string>;

beforeAll(async () => {
  const client = await testClient();
  // Started, never run: no worker ever polls this queue.
  for (const [type, workflowId] of [
    ['healthShard', shardId],
    ['circuitBreaker', breakerId],
    ['rotateCredential', rotationId],
  ]) {
    await client.workflow.start(type!, { taskQueue, workflowId: workflowId!, args: [] });
  }
  env = { TEMPORAL_TASK_QUEUE: taskQueue, INTEGRATION_AGENT_DATA_DIR: mkdtempSync(join(tmpdir(), 'ia-no-worker-query-')) };
});

afterAll(async () => {
  const client = await testClient();
  for (const id of [shardId, breakerId, rotationId]) await client.workflow.getHandle(id).terminate('test over').catch(() => undefined);
});

test('status SERVICE names the health shard, its task queue and the worker command', async () => {
  expectNoWorkerLine(await cli(env, ['status', serviceId]), shardId, taskQueue);
});

test('status (every service) names the shard that cannot answer and the worker command', async () => {
  expectNoWorkerLine(await cli(env, ['status']), shardId, taskQueue);
});

test('breaker show names the breaker workflow, its task queue and the worker command', async () => {
  expectNoWorkerLine(await cli(env, ['breaker', 'show', serviceId]), breakerId, taskQueue);
});

test('credentials status of a running rotation names the rotation workflow, its task queue and the worker command', async () => {
  expectNoWorkerLine(await cli(env, ['credentials', 'status', credentialId]), rotationId, taskQueue);
});

test('status SERVICE whose worker stopped a moment ago (Temporal still lists it) gives up after the query deadline with the same pointers', async () => {
  const stoppedQueue = uniqueTaskQueue('stopped-worker');
  await withTestWorker({ taskQueue: stoppedQueue, activities: {} }, () => new Promise((r) => setTimeout(r, 500)));
  const client = await testClient();
  const id = healthShardWorkflowId(stoppedQueue, shardOf(serviceId));
  const h = await client.workflow.start('healthShard', { taskQueue: stoppedQueue, workflowId: id, args: [] });
  try {
    const run = await cli({ ...env, TEMPORAL_TASK_QUEUE: stoppedQueue }, ['status', serviceId]);
    expectNoWorkerLine(run, id, stoppedQueue);
    expect(run.stderr).toContain(`did not answer its healthShard query within 5000ms`);
  } finally {
    await h.terminate('test over');
  }
});

test('IntegrationClient methods reject with a NoWorkerError that names the workflow', async () => {
  const agent = new IntegrationClient(await testClient(), taskQueue);
  for (const [read, workflowId] of [
    [() => agent.getHealth(serviceId), shardId],
    [() => agent.getBreaker(serviceId), breakerId],
    [() => agent.getRotation(credentialId), rotationId],
  ] as const) {
    const err = await read().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NoWorkerError);
    expect(err).toMatchObject({ workflowId, taskQueue, namespace: 'default' });
    expect((err as Error).message).toContain(`TEMPORAL_TASK_QUEUE=${taskQueue} integration-agent worker`);
  }
});
