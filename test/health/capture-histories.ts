/**
 * `npx tsx test/health/capture-histories.ts`: runs health workflows on a
 * fresh in-memory dev server against loopback services and saves their
 * histories to test/histories/ for the replay test (test/replay.test.ts):
 *
 * - sweep-gateway-outage.json: a `healthSweep` over a gateway that fails
 *   under dependents, a timeout, a TLS-less TCP check and healthy services;
 * - sweep-service-status.json: the `serviceHealth` workflow of the gateway
 *   through TRIGGERED and RESOLVED (alert activities included);
 * - sweep-service-warning.json (`npx tsx test/health/capture-histories.ts warning`
 *   captures only this one): the `serviceHealth` workflow of a service
 *   answering health+json `warn`, through WARNING and its RESOLVED
 *   (`patched('health-warning-alerts')`).
 *
 * - sweep-by-reference-outage.json and health-shard-gateway.json (`… shards`,
 *   what `npm run histories:capture` runs): the sweep by reference and the
 *   gateway's health shard through TRIGGERED and RESOLVED (issue 16).
 *
 * The first three are histories of the per-service design (before the
 * shards); sweeps no longer start `serviceHealth` workflows, so they are kept
 * for replay and are not captured again.
 *
 * Payloads are plain (the replay test's codec passes them through).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../../src/activities';
import { openState } from '../../src/state';
import { startDevServer } from '../../src/dev/dev-server';
import { workflowIds } from '../../src/domain/constants';
import { healthShardWorkflowId, shardOf } from '../../src/domain/health-shard';
import { parseRegistry } from '../../src/domain/registry-parse';
import type { HealthSweepResult } from '../../src/workflows/sweep';

async function main(): Promise<void> {
  const out = join(__dirname, '..', 'histories');
  const server = await startDevServer({ uiPort: false });
  const only = process.argv[2];
  let gatewayStatus = 502;
  let edgeStatus = 'warn';
  const fleet = createServer((req, res) => {
    if (req.url === '/gw') return void res.writeHead(gatewayStatus).end('{}');
    if (req.url === '/stall') return; // never answers
    if (req.url === '/edge') return void res.writeHead(200, { 'content-type': 'application/health+json' }).end(JSON.stringify({ status: edgeStatus }));
    res.writeHead(200, { 'content-type': 'application/health+json' }).end('{"status":"pass"}');
  });
  const receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200).end());
  });
  await new Promise<void>((r) => fleet.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const u = `http://127.0.0.1:${(fleet.address() as AddressInfo).port}`;
  const check = { timeout: '500ms', failureThreshold: 2, successThreshold: 1 };
  const parsed = parseRegistry(
    JSON.stringify({
      services: [
        { id: 'gateway', type: 'api', endpoints: [{ url: `${u}/gw` }], healthCheck: check },
        { id: 'orders', type: 'api', endpoints: [{ url: `${u}/orders` }], dependsOn: ['gateway'], healthCheck: check },
        { id: 'billing', type: 'api', endpoints: [{ url: `${u}/billing` }], dependsOn: ['orders'], healthCheck: check },
        { id: 'search', type: 'api', endpoints: [{ url: `${u}/stall` }], healthCheck: check },
        { id: 'db', type: 'database', endpoints: [{ url: `tcp://127.0.0.1:${(fleet.address() as AddressInfo).port}` }], healthCheck: { type: 'tcp' } },
        { id: 'auth', type: 'api', endpoints: [{ url: `${u}/auth` }], healthCheck: check, sla: { availability: 99.9 } },
      ].filter(() => only !== 'warning').concat(only === 'warning' ? [{ id: 'edge', type: 'api', endpoints: [{ url: `${u}/edge` }], healthCheck: check }] : []),
    }),
    'capture.json',
  );
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const nc = await NativeConnection.connect({ address: server.address });
  const taskQueue = 'capture-health';
  const worker = await Worker.create({
    connection: nc,
    taskQueue,
    workflowsPath: require.resolve('../../src/workflows'),
    activities: createActivities({
      registry: { current: () => parsed.registry },
      state: await openState({ dataDir: mkdtempSync(join(tmpdir(), 'ia-capture-health-')) }),
      health: { client, alertWebhooks: [{ url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/`, format: 'slack' }] },
    }),
  });
  const save = async (workflowId: string, file: string) => {
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    writeFileSync(join(out, file), JSON.stringify({ workflowId, history: JSON.parse(historyToJSON(history)) }, null, 1) + '\n');
    process.stdout.write(`saved ${file} (${history.events?.length} events)\n`);
  };
  try {
    await worker.runUntil(async () => {
      let n = 0;
      const sweep = () => client.workflow.execute('healthSweep', { taskQueue, workflowId: `sweep/capture-${++n}`, args: [{ concurrency: 4, intervalMs: 1000 }] }) as Promise<HealthSweepResult>;
      const delivered = async (id: string) => {
        const h = client.workflow.getHandle(workflowIds.service(id));
        for (let i = 0; i < 100 && ((await h.query('pendingAlerts')) as unknown[]).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
        return h;
      };
      if (only === 'warning') {
        await sweep();
        await sweep(); // the second warn: WARNING
        await delivered('edge');
        edgeStatus = 'pass';
        await sweep(); // successThreshold 1: RESOLVED of the warning
        const edge = await delivered('edge');
        await edge.terminate('capture done');
        await save(workflowIds.service('edge'), 'sweep-service-warning.json');
        return;
      }
      if (only === 'shards') {
        // The registry by reference and the status state in shards (issue 16): a sweep of the
        // gateway outage, and the gateway's shard through TRIGGERED and RESOLVED.
        await sweep();
        const outage = await sweep();
        if (outage.services.find((s) => s.id === 'billing')?.rootCause !== 'gateway') throw new Error('capture: billing should be impacted by gateway');
        await save(outage.workflowId, 'sweep-by-reference-outage.json');
        gatewayStatus = 200;
        await sweep();
        const shardId = healthShardWorkflowId(taskQueue, shardOf('gateway'));
        const shard = client.workflow.getHandle(shardId);
        for (let i = 0; i < 100 && ((await shard.query('pendingAlerts')) as unknown[]).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
        await shard.terminate('capture done');
        await save(shardId, 'health-shard-gateway.json');
        return;
      }
      await sweep();
      const outage = await sweep(); // the gateway's second failure: TRIGGERED naming orders and billing
      if (outage.services.find((s) => s.id === 'billing')?.rootCause !== 'gateway') throw new Error('capture: billing should be impacted by gateway');
      await save(outage.workflowId, 'sweep-gateway-outage.json');
      gatewayStatus = 200;
      await sweep(); // recovery: RESOLVED
      const gw = client.workflow.getHandle(workflowIds.service('gateway'));
      for (let i = 0; i < 100 && ((await gw.query('pendingAlerts')) as unknown[]).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
      await gw.terminate('capture done'); // a closed history replays to its end
      await save(workflowIds.service('gateway'), 'sweep-service-status.json');
    });
  } finally {
    await connection.close();
    await nc.close();
    fleet.closeAllConnections();
    fleet.close();
    receiver.close();
    await server.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
