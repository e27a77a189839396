/**
 * A rotation worker in its own process, so tests can SIGKILL it mid-rotation.
 * Env: IA_TEST_TEMPORAL_ADDRESS, IA_TEST_WORKFLOW_BUNDLE, ROT_TASK_QUEUE,
 * ROT_DATA_DIR, ROT_DATABASE_URL (optional: PostgreSQL), ROT_MASTER_KEY (base64), ROT_REGISTRY (JSON file).
 * Prints `ready` on stdout once polling; logs everything (DEBUG, with metadata) to stderr.
 */
import { readFileSync } from 'node:fs';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createRegistryActivities, staticRegistry } from '../../src/activities/registry';
import { createRotationActivities } from '../../src/activities/rotation';
import { openState } from '../../src/state';
import type { Registry } from '../../src/domain/registry';

async function main(): Promise<void> {
  const env = process.env;
  // Every log line, with its metadata, to stderr: the secrets test searches it.
  Runtime.install({
    logger: new DefaultLogger('DEBUG', (entry) => process.stderr.write(`${entry.level} ${entry.message} ${JSON.stringify(entry.meta ?? {})}\n`)),
  });
  const registry = JSON.parse(readFileSync(env.ROT_REGISTRY!, 'utf8')) as Registry;
  const state = await openState({ dataDir: env.ROT_DATA_DIR!, databaseUrl: env.ROT_DATABASE_URL, masterKey: Buffer.from(env.ROT_MASTER_KEY!, 'base64') });
  const store = state.credentials;
  const connection = await NativeConnection.connect({ address: env.IA_TEST_TEMPORAL_ADDRESS! });
  const worker = await Worker.create({
    connection,
    taskQueue: env.ROT_TASK_QUEUE!,
    workflowBundle: { codePath: env.IA_TEST_WORKFLOW_BUNDLE! },
    activities: { ...createRegistryActivities(staticRegistry(registry)), ...createRotationActivities({ store, registry: staticRegistry(registry) }) },
    // A killed worker's sticky queue must not hold the next workflow task for long.
    stickyQueueScheduleToStartTimeout: '1s',
  });
  process.stdout.write('ready\n');
  await worker.run();
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
