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
 * Each fleet figure is measured for both fan-out modes (`credentials[].fanOut`):
 * `workflow` (an activity per consumer step) and `activity` (one heartbeating
 * activity per batch).
 * Target: the fleet run within 1.3x of the critical-path run (and far below sequential).
 */
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startDevServer } from '../src/dev/dev-server';
import { createRegistryActivities, staticRegistry } from '../src/activities/registry';
import { createRotationActivities } from '../src/activities/rotation';
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
const RUNS = 3;

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
  const cred = (id: string, consumers: string[], maxParallel: number, fanOut: 'workflow' | 'activity' = 'workflow') => ({
    id,
    issuer: 'issuer',
    consumers,
    provider: 'http',
    gracePeriod: '0s',
    maxParallel,
    fanOut,
  });
  const doc = {
    services,
    credentials: [
      cred('fleet', fleetIds.flat(), 32),
      cred('fleet-batched', fleetIds.flat(), 32, 'activity'),
      cred('sequential', fleetIds.flat(), 1),
      cred('chain', chainIds, 32),
      cred('chain-batched', chainIds, 32, 'activity'),
      cred('warm', chainIds.slice(0, 2), 32),
    ],
  };
  const parsed = parseRegistry(JSON.stringify(doc), 'rotation-bench');
  if (!parsed.ok) throw new Error(`bench registry invalid: ${JSON.stringify(parsed.problems)}`);
  const registry = parsed.registry;
  const bound = criticalPath(registry.services, () => STEP_MS, fleetIds.flat()).durationMs;

  const dev = await startDevServer({ uiPort: false });
  const dataDir = mkdtempSync(join(tmpdir(), 'ia-bench-rot-'));
  const state = await openState({ dataDir, masterKey: randomBytes(32) });
  const store = state.credentials;
  const taskQueue = 'bench-rotation';
  const nc = await NativeConnection.connect({ address: dev.address });
  const worker = await Worker.create({
    connection: nc,
    taskQueue,
    workflowsPath: require.resolve('../src/workflows'),
    activities: { ...createRegistryActivities(staticRegistry(registry)), ...createRotationActivities({ store }) },
    maxConcurrentActivityTaskExecutions: 200,
    // A batch schedules up to maxParallel activities at once: poll (and eagerly take) that many.
    maxConcurrentActivityTaskPolls: 20,
    maxEagerActivityReservationsPerWorkflowTask: 32,
  });
  const connection = await Connection.connect({ address: dev.address });
  const client = new Client({ connection });
  try {
    return await worker.runUntil(async () => {
      const timed = async (credentialId: string): Promise<number> => {
        const t0 = performance.now();
        const r: RotationResult = await rotate(client, { credentialId, taskQueue });
        const ms = performance.now() - t0;
        if (r.status !== 'completed') throw new Error(`bench rotation of ${credentialId} ended ${r.status}: ${r.cause}`);
        return ms;
      };
      for (let i = 0; i < 3; i++) await timed('warm');
      const chain: number[] = [];
      const fleet: number[] = [];
      const chainBatched: number[] = [];
      const fleetBatched: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        chain.push(await timed('chain'));
        fleet.push(await timed('fleet'));
        chainBatched.push(await timed('chain-batched'));
        fleetBatched.push(await timed('fleet-batched'));
      }
      const cb = summarize(chainBatched).p50;
      const fb = summarize(fleetBatched).p50;
      const sequential = await timed('sequential');
      const c = summarize(chain).p50;
      const f = summarize(fleet).p50;
      const fig = (name: string, value: number, extra: Partial<Figure> = {}): Figure => ({ bench: 'rotation', name, value: Math.round(value), unit: 'ms', ...extra });
      return [
        fig(`critical-path bound (${LEVELS} levels x ${STEP_MS} ms install+verify)`, bound),
        fig(`critical path run alone (${LEVELS} consumers in a chain), median of ${RUNS}`, c, { baseline: { name: 'critical-path bound', value: bound }, ratio: c / bound }),
        fig(`fleet run (${LEVELS * PER_LEVEL} consumers, ${LEVELS} levels), median of ${RUNS}`, f, {
          baseline: { name: 'critical path run alone', value: c },
          ratio: f / c,
          target: '<= 1.3x the critical path run',
          met: f / c <= 1.3,
        }),
        fig('fleet run vs the bare critical-path bound', f, { baseline: { name: 'critical-path bound', value: bound }, ratio: f / bound }),
        fig(`fleet run with fanOut: activity (one activity per batch), median of ${RUNS}`, fb, {
          baseline: { name: 'critical path run alone, fanOut: activity', value: cb },
          ratio: fb / cb,
          target: '<= 1.3x the critical path run',
          met: fb / cb <= 1.3,
        }),
        fig('fleet run with fanOut: activity vs the bare critical-path bound', fb, { baseline: { name: 'critical-path bound', value: bound }, ratio: fb / bound }),
        fig(`sequential run (${LEVELS * PER_LEVEL} consumers one at a time)`, sequential, {
          baseline: { name: 'fleet run', value: f },
          ratio: f / sequential,
          target: 'fleet < 0.15x sequential (>85% faster)',
          met: f / sequential < 0.15,
        }),
        fig('sequential run vs fleet run with fanOut: activity', sequential, {
          baseline: { name: 'fleet run, fanOut: activity', value: fb },
          ratio: fb / sequential,
          target: 'fleet < 0.15x sequential (>85% faster)',
          met: fb / sequential < 0.15,
        }),
      ];
    });
  } finally {
    await connection.close();
    await nc.close();
    await server.close();
    await state.close();
    await dev.stop();
  }
}
