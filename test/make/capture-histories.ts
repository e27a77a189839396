/**
 * `npx tsx test/make/capture-histories.ts`: runs a Make scenario run followed
 * past the responsive limit and a webhook delivery with failover and a dead
 * letter, on a fresh dev server against the fake Make API, and saves their
 * histories to test/histories/make-*.json for the replay test
 * (test/replay.test.ts). Payloads are not encoded.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createMakeActivities } from '../../src/activities/make';
import { openState } from '../../src/state';
import { startDevServer } from '../../src/dev/dev-server';
import { resolveTemporalCli } from '../../src/dev/temporal-cli';
import { startFakeMake } from '../fixtures/make-server';
import { makeRegistryYaml, makeRig } from './helpers';

async function main(): Promise<void> {
  const server = await startDevServer({ uiPort: false });
  const connection = await Connection.connect({ address: server.address });
  const native = await NativeConnection.connect({ address: server.address });
  const fake = await startFakeMake({ apiLimitPerMinute: 1000, responsiveLimitMs: 200 });
  const rig = makeRig(fake, makeRegistryYaml(fake, 'hooks: [{ id: 5 }]'));
  const dataDir = mkdtempSync(join(tmpdir(), 'ia-make-capture-'));
  const state = await openState({ dataDir });
  let calls = 0;
  const rx = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(req.url === '/b' && ++calls > 0 ? 200 : 503).end());
  });
  await new Promise<void>((r) => rx.listen(0, '127.0.0.1', r));
  const rxUrl = `http://127.0.0.1:${(rx.address() as AddressInfo).port}`;
  try {
    const client = new Client({ connection });
    const taskQueue = 'make-capture';
    fake.addScenario({ id: 111, runDurationMs: 600, outputs: { ok: true } });
    fake.addHook({ id: 5 });
    const activities = createMakeActivities({ registry: rig.registry, transportFor: () => { throw new Error('unused'); }, deadLetters: state.deadLetters }, rig.clients);
    const worker = await Worker.create({ connection: native, taskQueue, workflowsPath: require.resolve('../../src/workflows'), activities });
    const runs = await worker.runUntil(async () => {
      const run = await client.workflow.start('makeScenarioRun', { taskQueue, workflowId: 'make-run/make-prod/111/captured', args: [{ serviceId: 'make-prod', scenarioId: 111, pollIntervalMs: 100, maxPollIntervalMs: 200 }] });
      await run.result();
      const retry = { maximumAttempts: 3, initialIntervalMs: 20, maximumIntervalMs: 50 };
      const hook = await client.workflow.start('deliverWebhook', {
        taskQueue,
        workflowId: 'webhook/captured-event',
        args: [
          {
            eventId: 'captured-event',
            payload: { type: 'order.created', id: 1 },
            subscribers: [
              { id: 'crm', endpoints: [`${rxUrl}/a`, `${rxUrl}/b`] },
              { id: 'make-orders', makeHooks: { serviceId: 'make-prod', hookIds: [5] } },
              { id: 'down', endpoints: [`${rxUrl}/down`] },
            ],
            retry,
          },
        ],
      });
      await hook.result();
      return [
        { file: 'make-scenario-run.json', workflowId: run.workflowId, runId: run.firstExecutionRunId },
        { file: 'make-deliver-webhook.json', workflowId: hook.workflowId, runId: hook.firstExecutionRunId },
      ];
    });
    for (const r of runs) {
      const json = execFileSync(resolveTemporalCli(), ['workflow', 'show', '--workflow-id', r.workflowId, '--run-id', r.runId, '--address', server.address, '--output', 'json'], {
        encoding: 'utf8',
        maxBuffer: 64 * 1024 * 1024,
      });
      const file = join(__dirname, '..', 'histories', r.file);
      writeFileSync(file, JSON.stringify({ workflowId: r.workflowId, history: JSON.parse(json) }, null, 1) + '\n');
      process.stdout.write(`saved ${file}\n`);
    }
  } finally {
    await rig.close();
    await fake.close();
    rx.closeAllConnections();
    await new Promise<void>((r) => rx.close(() => r()));
    await state.close();
    rmSync(dataDir, { recursive: true, force: true });
    await connection.close();
    await native.close();
    await server.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
