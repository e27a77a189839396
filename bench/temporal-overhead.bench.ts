/**
 * Baseline for every other figure: what one empty workflow and one empty
 * activity cost on the embedded dev server on this machine (median, p99).
 * Later benchmarks read their Temporal-bound figures against these.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { startDevServer } from '../src/dev/dev-server';
import { createActivities } from '../src/activities';
import { openState } from '../src/state';
import { staticRegistry } from '../src/activities/registry';
import { parseRegistry } from '../src/domain/registry-parse';
import { summarize, type Figure } from './harness';

const N_WORKFLOWS = 200;
const N_ACTIVITIES = 300;

export default async function run(): Promise<Figure[]> {
  const server = await startDevServer({ uiPort: false });
  const parsed = parseRegistry('services: []\n', 'bench');
  if (!parsed.ok) throw new Error('empty registry did not parse');
  const taskQueue = 'bench-overhead';
  const nc = await NativeConnection.connect({ address: server.address });
  const worker = await Worker.create({
    connection: nc,
    taskQueue,
    workflowsPath: require.resolve('../src/workflows'),
    activities: createActivities({ registry: staticRegistry(parsed.registry), state: await openState({ dataDir: mkdtempSync(join(tmpdir(), 'ia-bench-')) }) }),
  });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  try {
    return await worker.runUntil(async () => {
      // Warm up: first workflow tasks pay for isolate creation.
      for (let i = 0; i < 10; i++) await client.workflow.execute('ping', { taskQueue, workflowId: `warm-${i}` });
      const wf: number[] = [];
      for (let i = 0; i < N_WORKFLOWS; i++) {
        const t0 = performance.now();
        await client.workflow.execute('ping', { taskQueue, workflowId: `ping-${i}` });
        wf.push(performance.now() - t0);
      }
      const act = (await client.workflow.execute('activityRoundTrips', { taskQueue, workflowId: 'act', args: [N_ACTIVITIES] })) as number[];
      const w = summarize(wf);
      const a = summarize(act);
      const fig = (name: string, value: number): Figure => ({ bench: 'temporal-overhead', name, value, unit: 'ms' });
      return [
        fig(`empty workflow round trip p50 (start + result, n=${w.n})`, w.p50),
        fig(`empty workflow round trip p99 (n=${w.n})`, w.p99),
        fig(`empty activity round trip p50 (as the workflow sees it, n=${a.n})`, a.p50),
        fig(`empty activity round trip p99 (n=${a.n})`, a.p99),
      ];
    });
  } finally {
    await connection.close();
    await nc.close();
    await server.stop();
  }
}
