/**
 * Rotation across a fleet: 100 consumers in 5 dependency levels (20 per level,
 * each depending on two consumers of the level before), each consumer's
 * install + verify taking 50 ms (25 ms each, served by a real loopback HTTP
 * contract server), rotated by the real workflow on the embedded dev server.
 *
 * Read side by side, in the same run:
 * - the critical-path bound: 5 levels x 50 ms (CPM over the plan, `criticalPath` in src/domain/graph.ts);
 * - the critical path run alone: one consumer per level (5 in a chain), the same
 *   steps and Temporal round trips, so the fixed costs of a run are in it too;
 * - a sequential run: the same 100 consumers one at a time (maxParallel 1).
 * The fleet runs with the default fan-out (`credentials[].fanOut` unset: `activity`
 * at 100 consumers: one heartbeating activity for all 5 levels, a signal per level),
 * and again with `fanOut: workflow` (an activity per consumer step: the default
 * before, and still the default up to 10 consumers, so the chain's);
 * the chain also with `fanOut: activity`.
 * Targets: the fleet run within 1.3x of the critical-path run, within 2x of
 * the bare critical-path bound, and far below sequential.
 *
 * Before and after side by side: the chain and fleet runs go to three rigs in
 * turn, alternating their order from round to round, so load from other work
 * on the machine weighs on all alike (docs/temporal-overhead.md):
 * - `stock`: a dev server with the stock dynamic config (`dynamicConfig: {}`)
 *   and the store steps as normal activities; with `fanOut: workflow`, where issue 18 started;
 * - `activities`: `DEV_SERVER_DYNAMIC_CONFIG`, store steps as normal activities
 *   (a workflow interceptor, bench/store-steps-as-activities.ts, schedules the
 *   saga's local activities as normal ones): before local activities;
 * - `tuned`: `DEV_SERVER_DYNAMIC_CONFIG` and the saga as it is: the figures
 *   the targets are read on.
 * - the fleet with `fanOut: workflow` on the `tuned` server once more, by a worker taking the
 *   SDK's default 3 eager activities per workflow task instead of WORKER_EAGER_ACTIVITIES' 32:
 *   `worker` and `dev` before that setting.
 * BENCH_ROTATION_RUNS (default 3) sets the rounds; each figure is the median.
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startDevServer } from '../src/dev/dev-server';
import { DEFAULT_EAGER_ACTIVITIES } from '../src/worker/config';
import { workflowPreloadModules } from '../src/worker/bundle';
import { createRegistryActivities, staticRegistry } from '../src/activities/registry';
import { createRotationActivities } from '../src/activities/rotation';
import { createDiagnosticsActivities } from '../src/activities/diagnostics';
import { openState } from '../src/state';
import { parseRegistry } from '../src/domain/registry-parse';
import { criticalPath } from '../src/domain/graph';
import type { RotationResult } from '../src/domain/rotation';
import { rotate } from '../src/client/rotation';
import { startContractServer } from '../test/fixtures/rotation-contract';
import { summarize, type Figure } from './harness';

const LEVELS = 5;
const PER_LEVEL = 20;
const STEP_MS = 50;
const RUNS = Number(process.env.BENCH_ROTATION_RUNS ?? 3);

export default async function run(): Promise<Figure[]> {
  const fleetIds = Array.from({ length: LEVELS }, (_, l) => Array.from({ length: PER_LEVEL }, (_, i) => `c${l}-${i}`));
  const chainIds = Array.from({ length: LEVELS }, (_, l) => `chain${l}`);
  const allConsumers = [...fleetIds.flat(), ...chainIds];
  const server = await startContractServer({ issuer: allConsumers });
  for (const id of allConsumers) Object.assign(server.behaviour(id), { installDelayMs: STEP_MS / 2, verifyDelayMs: STEP_MS / 2 });

  const svc = (id: string, dependsOn: string[]) => ({
    id,
    type: 'api',
    endpoints: [{ url: server.base(id) }],
    dependsOn,
    rotation: { provider: 'http', stepTimeout: '10s', verifyAttempts: 3, verifyInterval: '50ms' },
    expectedDuration: `${STEP_MS}ms`,
  });
  const services = [
    { id: 'issuer', type: 'api', endpoints: [{ url: server.base('issuer') }] },
    ...fleetIds.flatMap((level, l) => level.map((id, i) => svc(id, l === 0 ? [] : [fleetIds[l - 1]![i]!, fleetIds[l - 1]![(i + 1) % PER_LEVEL]!]))),
    ...chainIds.map((id, l) => svc(id, l === 0 ? [] : [chainIds[l - 1]!])),
  ];
  // fanOut undefined: the default (defaultFanOut in src/domain/rotation.ts: `workflow` up to 10 consumers, `activity` above).
  const cred = (id: string, consumers: string[], maxParallel: number, fanOut?: 'workflow' | 'activity') => ({
    id,
    issuer: 'issuer',
    consumers,
    provider: 'http',
    gracePeriod: '0s',
    maxParallel,
    ...(fanOut ? { fanOut } : {}),
  });
  const doc = {
    services,
    credentials: [
      cred('fleet', fleetIds.flat(), 32),
      cred('fleet-per-step', fleetIds.flat(), 32, 'workflow'),
      cred('sequential', fleetIds.flat(), 1, 'workflow'),
      cred('chain', chainIds, 32),
      cred('chain-batched', chainIds, 32, 'activity'),
      cred('warm', chainIds.slice(0, 2), 32),
    ],
  };
  const parsed = parseRegistry(JSON.stringify(doc), 'rotation-bench');
  if (!parsed.ok) throw new Error(`bench registry invalid: ${JSON.stringify(parsed.problems)}`);
  const registry = parsed.registry;
  const bound = criticalPath(registry.services, () => STEP_MS, fleetIds.flat()).durationMs;

  const dataDir = mkdtempSync(join(tmpdir(), 'ia-bench-rot-'));
  // One store and one contract server for both dev servers: the rotations run one after another, never at once.
  const state = await openState({ dataDir, masterKey: randomBytes(32) });
  const store = state.credentials;
  const taskQueue = 'bench-rotation';
  const newWorker = (nc: NativeConnection, queue: string, storeStepsAsActivities: boolean, eagerActivities = DEFAULT_EAGER_ACTIVITIES) =>
    Worker.create({
      connection: nc,
      taskQueue: queue,
      workflowsPath: require.resolve('../src/workflows'),
      // Bundled as `worker` and `dev` bundle it (zod and the domain modules evaluated once per worker, not per run).
      bundlerOptions: { preloadModules: workflowPreloadModules() },
      ...(storeStepsAsActivities ? { interceptors: { workflowModules: [require.resolve('./store-steps-as-activities')] } } : {}),
      activities: { ...createRegistryActivities(staticRegistry(registry)), ...createRotationActivities({ store, registry: staticRegistry(registry) }), ...createDiagnosticsActivities({ registry: staticRegistry(registry), reporterId: 'bench' }) },
      maxConcurrentActivityTaskExecutions: 200,
      // A batch schedules up to maxParallel activities at once: poll that many; take as many eagerly as
      // `worker` and `dev` do (WORKER_EAGER_ACTIVITIES' default).
      maxConcurrentActivityTaskPolls: 20,
      maxEagerActivityReservationsPerWorkflowTask: eagerActivities,
    });
  const devs: { stop(): Promise<void> }[] = [];
  const rig = async (dynamicConfig?: Record<string, string | number | boolean>, storeStepsAsActivities = false) => {
    const dev = await startDevServer({ uiPort: false, dynamicConfig });
    devs.push(dev);
    const nc = await NativeConnection.connect({ address: dev.address });
    const worker = await newWorker(nc, taskQueue, storeStepsAsActivities);
    const connection = await Connection.connect({ address: dev.address });
    return { dev, nc, worker, connection, client: new Client({ connection }) };
  };
  // Before and after side by side (docs/temporal-overhead.md). A rig that fails to start leaves no dev server behind.
  const rigsStarted = async () => {
    try {
      return [await rig({}, true), await rig(undefined, true), await rig()] as const;
    } catch (err) {
      for (const d of devs) await d.stop();
      await server.close();
      await state.close();
      throw err;
    }
  };
  const [stock, activities, tuned] = await rigsStarted();
  // The fleet with fanOut: workflow on the tuned server as `worker` and `dev` ran it before
  // WORKER_EAGER_ACTIVITIES: the SDK's 3 eager activities per workflow task (its own task queue).
  const sdkEagerQueue = 'bench-rotation-sdk-eager';
  const sdkEager = await newWorker(tuned.nc, sdkEagerQueue, false, 3);
  const rigs = { stock, activities, tuned };
  const sides = ['stock', 'activities', 'tuned'] as const;
  try {
    return await stock.worker.runUntil(() =>
      activities.worker.runUntil(() =>
        tuned.worker.runUntil(() => sdkEager.runUntil(async () => {
          let drains = 0;
          const timed = async (client: Client, credentialId: string, queue = taskQueue): Promise<number> => {
            // The stock server's history-queue reads are a token bucket (20/s, burst 20): after the
            // server idled while the other one ran, its first ~20 task transitions would pass at
            // once. Spend the burst first (30 transitions), so both sides are measured in the steady
            // state a busy server is in (docs/temporal-overhead.md).
            await client.workflow.execute('activityRoundTrips', { taskQueue: queue, workflowId: `drain-${drains++}`, args: [15] });
            const t0 = performance.now();
            const r: RotationResult = await rotate(client, { credentialId, taskQueue: queue });
            const ms = performance.now() - t0;
            if (r.status !== 'completed') throw new Error(`bench rotation of ${credentialId} ended ${r.status}: ${r.cause}`);
            return ms;
          };
          for (let i = 0; i < 3; i++) for (const side of sides) await timed(rigs[side].client, 'warm');
          const runs = () => ({ chain: [] as number[], fleet: [] as number[], chainBatched: [] as number[], fleetPerStep: [] as number[] });
          const m = { stock: runs(), activities: runs(), tuned: runs(), sdkEager: runs() };
          for (let i = 0; i < RUNS; i++) {
            // Rotate which rig goes first.
            for (const side of [...sides.slice(i % 3), ...sides.slice(0, i % 3)]) {
              const client = rigs[side].client;
              m[side].chain.push(await timed(client, 'chain'));
              m[side].fleet.push(await timed(client, 'fleet'));
              if (side !== 'tuned') m[side].fleetPerStep.push(await timed(client, 'fleet-per-step'));
              else {
                // fanOut: workflow with 32 and with 3 eager activities, alternating which goes first.
                const both = [
                  async () => void m.tuned.fleetPerStep.push(await timed(client, 'fleet-per-step')),
                  async () => void m.sdkEager.fleetPerStep.push(await timed(client, 'fleet-per-step', sdkEagerQueue)),
                ];
                for (const f of i % 2 === 0 ? both : [...both].reverse()) await f();
              }
              m[side].chainBatched.push(await timed(client, 'chain-batched'));
            }
          }
          // Every sample, for reading the spread on a shared machine (stderr: not a figure).
          process.stderr.write(`rotation bench samples (ms): ${JSON.stringify(m, (_, v: unknown) => (typeof v === 'number' ? Math.round(v) : v))}\n`);
          const sequential = await timed(tuned.client, 'sequential');
          const p50 = (xs: number[]) => summarize(xs).p50;
          const c = p50(m.tuned.chain);
          const f = p50(m.tuned.fleet);
          const cb = p50(m.tuned.chainBatched);
          const fw = p50(m.tuned.fleetPerStep);
          const fig = (name: string, value: number, extra: Partial<Figure> = {}): Figure => ({ bench: 'rotation', name, value: Math.round(value), unit: 'ms', ...extra });
          const boundBaseline = { baseline: { name: 'critical-path bound', value: bound } };
          const label = { stock: 'stock dev server, store steps as activities', activities: 'DEV_SERVER_DYNAMIC_CONFIG, store steps as activities' } as const;
          /** The same run on the two "before" rigs, against the bound, and the saga as it is against them. */
          const before = (what: string, key: keyof ReturnType<typeof runs>): Figure[] =>
            (['activities', 'stock'] as const).flatMap((side) => [
              fig(`${what} vs the bare bound, ${label[side]} (side by side), median of ${RUNS}`, p50(m[side][key]), { ...boundBaseline, ratio: p50(m[side][key]) / bound }),
              fig(`${what}: the saga as it is vs ${label[side]} (side by side)`, p50(m.tuned[key]), { baseline: { name: label[side], value: Math.round(p50(m[side][key])) }, ratio: p50(m.tuned[key]) / p50(m[side][key]) }),
            ]);
          return [
            fig(`critical-path bound (${LEVELS} levels x ${STEP_MS} ms install+verify)`, bound),
            fig(`critical path run alone (${LEVELS} consumers in a chain, default fanOut: workflow), median of ${RUNS}`, c, { ...boundBaseline, ratio: c / bound }),
            ...before('critical path run alone', 'chain'),
            fig(`fleet run (${LEVELS * PER_LEVEL} consumers, ${LEVELS} levels, default fanOut: activity), median of ${RUNS}`, f, {
              baseline: { name: 'critical path run alone', value: Math.round(c) },
              ratio: f / c,
              target: '<= 1.3x the critical path run',
              met: f / c <= 1.3,
            }),
            fig('fleet run vs the bare critical-path bound', f, { ...boundBaseline, ratio: f / bound, target: '<= 2x the bound', met: f / bound <= 2 }),
            ...before('fleet run', 'fleet'),
            fig(`fleet run: the default (fanOut: activity at 100 consumers) vs the same fleet with fanOut: workflow, the default before (side by side), median of ${RUNS}`, f, {
              baseline: { name: 'fleet run, fanOut: workflow', value: Math.round(fw) },
              ratio: f / fw,
            }),
            fig(`fleet run with fanOut: workflow (an activity per consumer step) vs the bare bound, median of ${RUNS}`, fw, { ...boundBaseline, ratio: fw / bound }),
            ...before('fleet run with fanOut: workflow', 'fleetPerStep'),
            fig(`fleet run with fanOut: workflow: ${DEFAULT_EAGER_ACTIVITIES} eager activities per workflow task (WORKER_EAGER_ACTIVITIES) vs the SDK's 3 (side by side), median of ${RUNS}`, fw, {
              baseline: { name: "fleet run, fanOut: workflow, the SDK's 3 eager activities", value: Math.round(p50(m.sdkEager.fleetPerStep)) },
              ratio: fw / p50(m.sdkEager.fleetPerStep),
            }),
            fig(`critical path run alone with fanOut: activity (one activity, a signal per level), median of ${RUNS}`, cb, { ...boundBaseline, ratio: cb / bound }),
            ...before('critical path run alone with fanOut: activity', 'chainBatched'),
            fig(`sequential run (${LEVELS * PER_LEVEL} consumers one at a time, fanOut: workflow)`, sequential, {
              baseline: { name: 'fleet run', value: Math.round(f) },
              ratio: f / sequential,
              target: 'fleet < 0.15x sequential (>85% faster)',
              met: f / sequential < 0.15,
            }),
          ];
        })),
      ),
    );
  } finally {
    for (const r of [stock, activities, tuned]) {
      await r.connection.close();
      await r.nc.close();
      await r.dev.stop();
    }
    await server.close();
    await state.close();
  }
}
