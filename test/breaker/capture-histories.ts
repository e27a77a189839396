/**
 * `npx tsx test/breaker/capture-histories.ts`: runs the breaker lifecycle
 * scenario on a fresh in-memory dev server and saves the first run's history (through `temporal workflow show --output json`)
 * to test/histories/breaker-lifecycle.json, for the replay test
 * (test/replay.test.ts). Payloads are not encoded (the codec passes them through).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createAlertActivities } from '../../src/activities/alerts';
import { createBreakerActivities } from '../../src/activities/breaker';
import { startDevServer } from '../../src/dev/dev-server';
import { resolveTemporalCli } from '../../src/dev/temporal-cli';
import { workflowIds } from '../../src/domain/constants';
import { breakerLifecycle } from './scenario';

async function main(): Promise<void> {
  const server = await startDevServer({ uiPort: false });
  const connection = await Connection.connect({ address: server.address });
  const native = await NativeConnection.connect({ address: server.address });
  try {
    const client = new Client({ connection });
    const taskQueue = 'breaker-capture';
    const worker = await Worker.create({ connection: native, taskQueue, workflowsPath: require.resolve('../../src/workflows'), activities: { ...createBreakerActivities(), ...createAlertActivities({ webhooks: [] }) } });
    const serviceId = 'captured-service';
    const { runId } = await worker.runUntil(() => breakerLifecycle(client, taskQueue, serviceId));
    const workflowId = workflowIds.breaker(serviceId);
    // The form `temporal workflow show --output json` prints, which historyFromJSON / runReplayHistory accept.
    const json = execFileSync(resolveTemporalCli(), ['workflow', 'show', '--workflow-id', workflowId, '--run-id', runId, '--address', server.address, '--output', 'json'], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    const file = join(__dirname, '..', 'histories', 'breaker-lifecycle.json');
    writeFileSync(file, JSON.stringify({ workflowId, history: JSON.parse(json) }, null, 1) + '\n');
    process.stdout.write(`saved ${file}\n`);
  } finally {
    await connection.close();
    await native.close();
    await server.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
