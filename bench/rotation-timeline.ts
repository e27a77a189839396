/**
 * Where a rotation's time goes, from its history's event timestamps (not a
 * figure of `npm run bench`: a tool for reading one). Rotates, on one tuned dev
 * server (`DEV_SERVER_DYNAMIC_CONFIG`), the rotation bench's shapes — a chain of
 * 5 consumers and a fleet of 100 in 5 levels, each consumer's install + verify
 * 50 ms, both fan-out modes — and prints per run: the client's wall time, the
 * workflow tasks and activities (scheduled -> completed, ms; and split at
 * their start: the server's part, scheduled -> started, and the worker's,
 * started -> completed), and the spans
 * before the first install level, of each level, between levels, and after.
 *
 *   npx tsx bench/rotation-timeline.ts                 # the saga as it is
 *   BEFORE=1 npx tsx bench/rotation-timeline.ts        # store steps as normal activities
 *   CREDS=fleet,fleetb RUNS=5 npx tsx bench/rotation-timeline.ts
 *   EAGER_START=1 npx tsx bench/rotation-timeline.ts  # started as `dev` starts rotations (eager start); =alt every other run
 *   EAGER_ACTIVITIES=3 npx tsx bench/rotation-timeline.ts  # eager activity reservations (default WORKER_EAGER_ACTIVITIES' 32; the SDK's is 3)
 *
 * CREDS: any of chain, chainb, fleet, fleetb (b: `fanOut: activity`); RUNS per
 * credential (default 5; the first 2 warm up and are not printed).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { NativeConnection, Worker } from '@temporalio/worker';
import { startDevServer } from '../src/dev/dev-server';
import { DEFAULT_EAGER_ACTIVITIES } from '../src/worker/config';
import { workflowPreloadModules } from '../src/worker/bundle';
import { createRegistryActivities, staticRegistry } from '../src/activities/registry';
import { createRotationActivities } from '../src/activities/rotation';
import { openState } from '../src/state';
import { parseRegistry } from '../src/domain/registry-parse';
import { rotate } from '../src/client/rotation';
import { BATCH_STARTED_SIGNAL } from '../src/domain/rotation';
import { startContractServer } from '../test/fixtures/rotation-contract';

const INSTALLS = new Set(['installVersion', 'installBatch', 'installBatches']);

async function main(): Promise<void> {
  const chainIds = Array.from({ length: 5 }, (_, l) => `chain${l}`);
  const fleetIds = Array.from({ length: 5 }, (_, l) => Array.from({ length: 20 }, (_, i) => `c${l}-${i}`));
  const consumers = [...chainIds, ...fleetIds.flat()];
  const server = await startContractServer({ issuer: consumers });
  for (const id of consumers) Object.assign(server.behaviour(id), { installDelayMs: 25, verifyDelayMs: 25 });
  const svc = (id: string, dependsOn: string[]) => ({ id, type: 'api', endpoints: [{ url: server.base(id) }], dependsOn, rotation: { provider: 'http', stepTimeout: '10s', verifyAttempts: 3, verifyInterval: '50ms' } });
  const cred = (id: string, ids: string[], fanOut: 'workflow' | 'activity') => ({ id, issuer: 'issuer', consumers: ids, provider: 'http', gracePeriod: '0s', maxParallel: 32, fanOut });
  const doc = {
    services: [
      { id: 'issuer', type: 'api', endpoints: [{ url: server.base('issuer') }] },
      ...chainIds.map((id, l) => svc(id, l === 0 ? [] : [chainIds[l - 1]!])),
      ...fleetIds.flatMap((level, l) => level.map((id, i) => svc(id, l === 0 ? [] : [fleetIds[l - 1]![i]!, fleetIds[l - 1]![(i + 1) % 20]!]))),
    ],
    credentials: [cred('chain', chainIds, 'workflow'), cred('chainb', chainIds, 'activity'), cred('fleet', fleetIds.flat(), 'workflow'), cred('fleetb', fleetIds.flat(), 'activity')],
  };
  const parsed = parseRegistry(JSON.stringify(doc), 'rotation-timeline');
  if (!parsed.ok) throw new Error(`registry invalid: ${JSON.stringify(parsed.problems)}`);
  const registry = parsed.registry;
  const state = await openState({ dataDir: mkdtempSync(join(tmpdir(), 'ia-timeline-')), masterKey: randomBytes(32) });
  const dev = await startDevServer({ uiPort: false });
  const nc = await NativeConnection.connect({ address: dev.address });
  const connection = await Connection.connect({ address: dev.address });
  try {
    const worker = await Worker.create({
      connection: nc,
      taskQueue: 'timeline',
      workflowsPath: require.resolve('../src/workflows'),
      // Bundled as `worker` and `dev` bundle it (zod and the domain modules evaluated once per worker, not per run).
      bundlerOptions: { preloadModules: workflowPreloadModules() },
      ...(process.env.BEFORE ? { interceptors: { workflowModules: [require.resolve('./store-steps-as-activities')] } } : {}),
      activities: { ...createRegistryActivities(staticRegistry(registry)), ...createRotationActivities({ store: state.credentials, registry: staticRegistry(registry) }) },
      maxConcurrentActivityTaskExecutions: 200,
      maxConcurrentActivityTaskPolls: 20,
      maxEagerActivityReservationsPerWorkflowTask: Number(process.env.EAGER_ACTIVITIES ?? DEFAULT_EAGER_ACTIVITIES),
    });
    // EAGER_START=1: the client on the worker's connection with eager workflow start, as `dev` starts rotations.
    // EAGER_START=alt: every other run so (side by side on one server, to read what eager start saves).
    const eagerOf = (run: number) => (process.env.EAGER_START === 'alt' ? run % 2 === 1 : !!process.env.EAGER_START);
    const eagerClient = new Client({ connection: nc });
    const plainClient = new Client({ connection });
    const runs = Number(process.env.RUNS ?? 5);
    await worker.runUntil(async () => {
      for (const credentialId of (process.env.CREDS ?? 'chain,chainb,fleet,fleetb').split(',')) {
        for (let i = 0; i < runs; i++) {
          const t0 = Date.now();
          const eager = eagerOf(i);
          const client = eager ? eagerClient : plainClient;
          const r = await rotate(client, { credentialId, taskQueue: 'timeline', ...(eager ? { requestEagerStart: true } : {}) });
          const wall = Date.now() - t0;
          if (r.status !== 'completed') throw new Error(`${credentialId} ended ${r.status}: ${r.cause}`);
          if (i < 2) continue;
          const events = (await client.workflow.getHandle(r.workflowId).fetchHistory()).events ?? [];
          const ev = events.map((e) => ({
            e,
            t: Number(e.eventTime!.seconds) * 1000 + (e.eventTime!.nanos ?? 0) / 1e6,
            type: String(temporal.api.enums.v1.EventType[e.eventType as number]).replace('EVENT_TYPE_', ''),
          }));
          const start = ev[0]!.t;
          const end = ev[ev.length - 1]!.t;
          const typeOf = new Map<string, string>();
          const wfts: number[] = [];
          const acts: number[] = [];
          // Each task split at its start: 'queue+dispatch/run' (scheduled -> started, started -> completed).
          const wftSplit: string[] = [];
          const actSplit: string[] = [];
          let wftStarted = 0;
          const actStarted = new Map<string, number>();
          const levels: { from: number; to: number }[] = [];
          let wftScheduled = 0;
          let wftDone = 0;
          const actScheduled = new Map<string, number>();
          for (const x of ev) {
            if (x.type === 'WORKFLOW_TASK_SCHEDULED') wftScheduled = x.t;
            if (x.type === 'WORKFLOW_TASK_STARTED') wftStarted = x.t;
            if (x.type === 'ACTIVITY_TASK_STARTED') actStarted.set(String(x.e.activityTaskStartedEventAttributes!.scheduledEventId), x.t);
            if (x.type === 'WORKFLOW_TASK_COMPLETED') {
              wfts.push(Math.round(x.t - wftScheduled));
              wftSplit.push(`${Math.round(wftStarted - wftScheduled)}/${Math.round(x.t - wftStarted)}`);
              wftDone = x.t;
            }
            if (x.type === 'ACTIVITY_TASK_SCHEDULED') {
              const id = String(x.e.eventId);
              typeOf.set(id, x.e.activityTaskScheduledEventAttributes!.activityType!.name!);
              actScheduled.set(id, x.t);
              // A level begins with the workflow task that schedules its first install.
              if (INSTALLS.has(typeOf.get(id)!) && levels[levels.length - 1]?.from !== wftDone) levels.push({ from: wftDone, to: x.t });
            }
            // installBatches (several levels in one activity): a level ends, and the next begins, at its BatchStarted signal.
            if (x.type === 'WORKFLOW_EXECUTION_SIGNALED' && x.e.workflowExecutionSignaledEventAttributes?.signalName === BATCH_STARTED_SIGNAL) {
              levels[levels.length - 1]!.to = x.t;
              levels.push({ from: x.t, to: x.t });
            }
            if (x.type === 'ACTIVITY_TASK_COMPLETED') {
              const id = String(x.e.activityTaskCompletedEventAttributes!.scheduledEventId);
              acts.push(Math.round(x.t - actScheduled.get(id)!));
              const st = actStarted.get(id);
              if (st !== undefined) actSplit.push(`${Math.round(st - actScheduled.get(id)!)}/${Math.round(x.t - st)}`);
              if (INSTALLS.has(typeOf.get(id)!)) levels[levels.length - 1]!.to = x.t;
            }
          }
          const spans = [`before ${Math.round(levels[0]!.from - start)}`];
          levels.forEach((l, k) => {
            spans.push(`L${k + 1} ${Math.round(l.to - l.from)}`);
            if (k + 1 < levels.length) spans.push(`gap ${Math.round(levels[k + 1]!.from - l.to)}`);
          });
          spans.push(`after ${Math.round(end - levels[levels.length - 1]!.to)}`);
          const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
          console.log(`${credentialId} run ${i + 1}${eager ? ' (eager start)' : ''}: client ${wall} ms, history ${Math.round(end - start)} ms; ${wfts.length} workflow tasks, ${acts.length} activities`);
          console.log(`  spans (ms): ${spans.join(', ')}`);
          console.log(`  workflow tasks, scheduled -> completed (ms): ${wfts.join(' ')} (sum ${sum(wfts)})`);
          console.log(`  workflow tasks, scheduled -> started / started -> completed (ms): ${wftSplit.join(' ')}`);
          if (acts.length <= 20) {
            console.log(`  activities, scheduled -> completed (ms): ${acts.join(' ')}`);
            console.log(`  activities, scheduled -> started / started -> completed (ms): ${actSplit.join(' ')}`);
          }
        }
      }
    });
  } finally {
    await connection.close();
    await nc.close();
    await dev.stop();
    await server.close();
    await state.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
