/**
 * Test access to the run's shared dev server (started in test/setup/global-setup.ts).
 * Each test file gets its own task queue so files never steal each other's tasks.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';

export function testAddress(): string {
  const a = process.env.IA_TEST_TEMPORAL_ADDRESS;
  if (!a) throw new Error('IA_TEST_TEMPORAL_ADDRESS is not set: run tests through jest (global setup starts the dev server)');
  return a;
}

/** A task queue name unique to this test. */
export function uniqueTaskQueue(prefix = 'test'): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

let clientPromise: Promise<{ client: Client; connection: Connection }> | undefined;

/** A client on the shared dev server (one connection per test file; close it with {@link closeTestClient}). */
export async function testClient(): Promise<Client> {
  clientPromise ??= Connection.connect({ address: testAddress() }).then((connection) => ({ connection, client: new Client({ connection }) }));
  return (await clientPromise).client;
}

export async function closeTestClient(): Promise<void> {
  if (clientPromise) await (await clientPromise).connection.close();
  clientPromise = undefined;
}

/** The shared prebuilt workflow bundle, or the source path when run outside global setup. */
export function workflowSource(): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> {
  const p = process.env.IA_TEST_WORKFLOW_BUNDLE;
  return p ? { workflowBundle: { codePath: p } } : { workflowsPath: require.resolve('../../src/workflows') };
}

/**
 * Runs `fn` while a worker on the shared dev server (prebuilt bundle, given
 * activities) polls `opts.taskQueue`; shuts the worker down and closes its
 * connection afterwards, whether `fn` resolves or throws.
 */
export async function withTestWorker<T>(
  opts: Partial<WorkerOptions> & { taskQueue: string },
  fn: (worker: Worker) => Promise<T>,
): Promise<T> {
  const connection = await NativeConnection.connect({ address: testAddress() });
  try {
    const worker = await Worker.create({ connection, namespace: 'default', ...workflowSource(), ...opts });
    return await worker.runUntil(() => fn(worker));
  } finally {
    await connection.close();
  }
}
