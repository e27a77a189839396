/**
 * Baseline for every other figure: what one empty workflow and one empty
 * activity cost on the embedded dev server on this machine (median, p99).
 * Later benchmarks read their Temporal-bound figures against these.
 *
 * Before and after, side by side: two dev servers run at once, one with the
 * server's stock dynamic config (`dynamicConfig: {}`, what a plain
 * `temporal server start-dev` does) and one with this project's
 * (`DEV_SERVER_DYNAMIC_CONFIG`), each with its own worker; the rounds
 * alternate between them so that load from other work on the machine weighs
 * on both alike; before each measured block an unmeasured `activityRoundTrips(15)`
 * spends the stock server's read burst, so both sides are in the steady state
 * of a busy server. On the tuned server, a workflow of empty local activities
 * and one of empty normal activities alternate too, timed from the client
 * (local activities resolve inside one workflow task, whose clock does not
 * move). Where the time goes: docs/temporal-overhead.md.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { startDevServer, type DevServer } from '../src/dev/dev-server';
import { createActivities } from '../src/activities';
import { openState, type StateBackend } from '../src/state';
import { staticRegistry } from '../src/activities/registry';
import { parseRegistry } from '../src/domain/registry-parse';
import { summarize, type Figure } from './harness';
import { workflowPreloadModules } from '../src/worker/bundle';

const ROUNDS = 8;
/** Workflows per side per round. */
const WF_PER_ROUND = 20;
/** Activities per side per round (one `activityRoundTrips` workflow). */
const ACT_PER_ROUND = 30;
const TASK_QUEUE = 'bench-overhead';

interface Rig {
  server: DevServer;
  nc: NativeConnection;
  connection: Connection;
  worker: Worker;
  state: StateBackend;
  /** Client on its own gRPC connection (a separate process would be the same). */
  client: Client;
  /** Client on the worker's NativeConnection: may start workflows eagerly. */
  local: Client;
}

async function rig(dynamicConfig?: Record<string, string | number | boolean>): Promise<Rig> {
  const server = await startDevServer({ uiPort: false, dynamicConfig });
  const parsed = parseRegistry('services: []\n', 'bench');
  if (!parsed.ok) throw new Error('empty registry did not parse');
  const nc = await NativeConnection.connect({ address: server.address });
  const state = await openState({ dataDir: mkdtempSync(join(tmpdir(), 'ia-bench-')) });
  const worker = await Worker.create({
    connection: nc,
    taskQueue: TASK_QUEUE,
    workflowsPath: require.resolve('../src/workflows'),
    // Bundled as `worker` and `dev` bundle it: without the preload list every new run re-evaluated zod
    // and the domain modules in its first workflow task (docs/temporal-overhead.md).
    bundlerOptions: { preloadModules: workflowPreloadModules() },
    activities: createActivities({ registry: staticRegistry(parsed.registry), state }),
  });
  const connection = await Connection.connect({ address: server.address });
  return { server, nc, connection, worker, state, client: new Client({ connection }), local: new Client({ connection: nc }) };
}

export default async function run(): Promise<Figure[]> {
  const before = await rig({});
  const after = await rig();
  try {
    return await before.worker.runUntil(() =>
      after.worker.runUntil(async () => {
        let seq = 0;
        const roundTrips = async (client: Client, n: number, into: number[], eager = false) => {
          for (let i = 0; i < n; i++) {
            const t0 = performance.now();
            const handle = await client.workflow.start('ping', { taskQueue: TASK_QUEUE, workflowId: `ping-${seq++}`, requestEagerStart: eager || undefined });
            await handle.result();
            into.push(performance.now() - t0);
            if (eager && !handle.eagerlyStarted) throw new Error('the dev server did not start a workflow eagerly: is system.enableEagerWorkflowStart set?');
          }
        };
        // The stock server's history-queue reads are a token bucket (20/s, burst 20): after idling
        // while the other server ran, its first ~20 task transitions pass at once. Spend that burst
        // (30 transitions) before each measured block, on both sides alike, so both are measured in
        // the steady state of a busy server (docs/temporal-overhead.md).
        const drain = (client: Client) => client.workflow.execute('activityRoundTrips', { taskQueue: TASK_QUEUE, workflowId: `drain-${seq++}`, args: [15] });
        // Warm up: first workflow tasks pay for isolate creation.
        for (const r of [before, after]) await roundTrips(r.client, 10, []);
        await roundTrips(after.local, 10, [], true);
        const wf = { before: [] as number[], after: [] as number[], eager: [] as number[] };
        const act = { before: [] as number[], after: [] as number[] };
        const perAct = { normal: [] as number[], local: [] as number[] };
        for (let round = 0; round < ROUNDS; round++) {
          // Alternate which side goes first, so neither always follows the other.
          const order = round % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const);
          for (const side of order) {
            const r = side === 'before' ? before : after;
            await drain(r.client);
            await roundTrips(r.client, WF_PER_ROUND, wf[side]);
            act[side].push(...((await r.client.workflow.execute('activityRoundTrips', { taskQueue: TASK_QUEUE, workflowId: `act-${seq++}`, args: [ACT_PER_ROUND] })) as number[]));
          }
          // Local activities resolve inside one workflow task, whose clock stands still: time normal and
          // local ones alike from the client, a whole workflow of ACT_PER_ROUND in sequence / ACT_PER_ROUND.
          for (const local of round % 2 === 0 ? [false, true] : [true, false]) {
            const t0 = performance.now();
            await after.client.workflow.execute('activityRoundTrips', { taskQueue: TASK_QUEUE, workflowId: `act-${seq++}`, args: [ACT_PER_ROUND, { local }] });
            perAct[local ? 'local' : 'normal'].push((performance.now() - t0) / ACT_PER_ROUND);
          }
          await drain(after.client);
          await roundTrips(after.local, WF_PER_ROUND, wf.eager, true);
        }
        const s = {
          wfBefore: summarize(wf.before),
          wfAfter: summarize(wf.after),
          wfEager: summarize(wf.eager),
          actBefore: summarize(act.before),
          actAfter: summarize(act.after),
          perActNormal: summarize(perAct.normal),
          perActLocal: summarize(perAct.local),
        };
        const fig = (name: string, value: number, extra: Partial<Figure> = {}): Figure => ({ bench: 'temporal-overhead', name, value: Math.round(value * 10) / 10, unit: 'ms', ...extra });
        const against = (name: string, base: number, value: number): Partial<Figure> => ({ baseline: { name, value: Math.round(base * 10) / 10 }, ratio: value / base });
        return [
          fig(`empty workflow round trip p50, stock dev server (start + result, n=${s.wfBefore.n})`, s.wfBefore.p50),
          fig(`empty workflow round trip p99, stock dev server`, s.wfBefore.p99),
          fig(`empty workflow round trip p50, DEV_SERVER_DYNAMIC_CONFIG (n=${s.wfAfter.n})`, s.wfAfter.p50, against('stock p50', s.wfBefore.p50, s.wfAfter.p50)),
          fig(`empty workflow round trip p99, DEV_SERVER_DYNAMIC_CONFIG`, s.wfAfter.p99, against('stock p99', s.wfBefore.p99, s.wfAfter.p99)),
          fig(`empty workflow round trip p50, DEV_SERVER_DYNAMIC_CONFIG + eager start (client on the worker's connection, n=${s.wfEager.n})`, s.wfEager.p50, against('stock p50', s.wfBefore.p50, s.wfEager.p50)),
          fig(`empty workflow round trip p99, DEV_SERVER_DYNAMIC_CONFIG + eager start`, s.wfEager.p99, against('stock p99', s.wfBefore.p99, s.wfEager.p99)),
          fig(`empty activity round trip p50, stock dev server (as the workflow sees it, n=${s.actBefore.n})`, s.actBefore.p50),
          fig(`empty activity round trip p99, stock dev server`, s.actBefore.p99),
          fig(`empty activity round trip p50, DEV_SERVER_DYNAMIC_CONFIG (n=${s.actAfter.n})`, s.actAfter.p50, against('stock p50', s.actBefore.p50, s.actAfter.p50)),
          fig(`empty activity round trip p99, DEV_SERVER_DYNAMIC_CONFIG`, s.actAfter.p99, against('stock p99', s.actBefore.p99, s.actAfter.p99)),
          fig(`empty activity, DEV_SERVER_DYNAMIC_CONFIG, from the client: ${ACT_PER_ROUND} in one workflow / ${ACT_PER_ROUND}, median of ${s.perActNormal.n}`, s.perActNormal.p50),
          fig(`empty local activity, from the client: ${ACT_PER_ROUND} in one workflow / ${ACT_PER_ROUND}, median of ${s.perActLocal.n}`, s.perActLocal.p50, against('normal activity, same server, side by side', s.perActNormal.p50, s.perActLocal.p50)),
        ];
      }),
    );
  } finally {
    for (const r of [before, after]) {
      await r.connection.close();
      await r.nc.close();
      await r.state.close();
      await r.server.stop();
    }
  }
}
