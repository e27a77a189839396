/**
 * A property of the whole saga, against the real contract server and the real
 * dev server (fast-check drives the scenarios): whatever 2–4 consumers answer,
 * request after request (ok, a retryable 503, a definitive 422 refusal, an
 * install that applies but answers after the step timeout), in either fan-out
 * mode, and wherever the run is interrupted (a cancel at a random moment, or a
 * terminate at a random moment followed by `rotate --force`):
 * - no consumer ends on a version the issuer revoked;
 * - `previousRevoked` is true only when the issuer revoked PREVIOUS.
 *
 * Few runs with short timeouts (about two minutes in all). On failure
 * fast-check prints the seed and path; rerun one with `FC_SEED=<seed> FC_PATH=<path>`
 * (`FC_RUNS=n` for more runs, `FC_TRACE=1` to print each scenario and its outcome).
 */
import type { Client } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import fc from 'fast-check';
import { cancelRotation, rotate, startRotation } from '../../src/client/rotation';
import type { RotationResult } from '../../src/domain/rotation';
import { closeTestClient, testClient } from '../helpers/temporal';
import { rotationFixture, type ConsumerDef, type RotationFixture } from './support';

afterAll(closeTestClient);

let client: Client;
beforeAll(async () => {
  client = await testClient();
});

type Answer = 'ok' | 'retryable' | 'refusal' | 'timeout';

interface Scenario {
  /** Per consumer: its answers to its install (and restore) requests in order, `ok` once they run out. */
  consumers: Array<{ answers: Answer[]; dependsOnPrevious: boolean }>;
  fanOut: 'workflow' | 'activity';
  interruption: { kind: 'none' } | { kind: 'cancel'; afterMs: number } | { kind: 'terminate_then_force'; afterMs: number };
}

const scenarios: fc.Arbitrary<Scenario> = fc.record({
  consumers: fc.array(
    fc.record({
      answers: fc.array(fc.constantFrom<Answer>('ok', 'ok', 'retryable', 'refusal', 'timeout'), { maxLength: 6 }),
      dependsOnPrevious: fc.boolean(),
    }),
    { minLength: 2, maxLength: 4 },
  ),
  fanOut: fc.constantFrom<'workflow' | 'activity'>('workflow', 'activity'),
  interruption: fc.oneof(
    fc.constant({ kind: 'none' as const }),
    fc.record({ kind: fc.constant('cancel' as const), afterMs: fc.integer({ min: 100, max: 2000 }) }),
    fc.record({ kind: fc.constant('terminate_then_force' as const), afterMs: fc.integer({ min: 0, max: 1500 }) }),
  ),
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until the worker runs no activity (a terminated or cancelled run's activities finish on their own). */
async function drained(worker: Worker): Promise<void> {
  for (let i = 0; i < 400 && worker.getStatus().numInFlightActivities > 0; i++) await sleep(50);
}

function applyAnswers(fx: RotationFixture, s: Scenario, ids: string[]): void {
  s.consumers.forEach((c, i) => {
    fx.server.behaviour(ids[i]!).answers = [...c.answers];
  });
}

/** Runs one scenario; returns the results of the runs it made (the last one is the end state). */
async function runScenario(fx: RotationFixture, s: Scenario): Promise<RotationResult[]> {
  const opts = { credentialId: fx.credentialId, taskQueue: fx.taskQueue };
  return fx.run(async (worker) => {
    const i = s.interruption;
    if (i.kind === 'none') return [await rotate(client, opts)];
    const started = await startRotation(client, opts);
    await sleep(i.afterMs);
    if (i.kind === 'cancel') {
      await cancelRotation(client, fx.credentialId);
      const result = (await started.handle.result()) as RotationResult;
      await drained(worker);
      return [result];
    }
    await started.handle.terminate('property test: interrupted').catch(() => undefined);
    await drained(worker);
    const forced = await rotate(client, { ...opts, force: true });
    await drained(worker);
    return [forced];
  });
}

test('no consumer ends on a revoked version; previousRevoked only when the issuer revoked PREVIOUS', async () => {
  const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
  await fc.assert(
    fc.asyncProperty(scenarios, async (s) => {
      const defs: ConsumerDef[] = s.consumers.map((c, i) => ({
        id: `c${i}`,
        ...(c.dependsOnPrevious && i > 0 ? { dependsOn: [`c${i - 1}`] } : {}),
        rotation: { stepTimeout: '300ms', verifyAttempts: 3, verifyInterval: '50ms' },
      }));
      const fx = await rotationFixture(defs, { fanOut: s.fanOut });
      try {
        const ids = defs.map((d) => d.id);
        applyAnswers(fx, s, ids);
        const t0 = Date.now();
        const results = await runScenario(fx, s);
        if (process.env.FC_TRACE) process.stderr.write(`[property] ${Date.now() - t0} ms ${JSON.stringify(s)} -> ${results.map((r) => `${r.status} (${r.cause ?? ''})`).join(' / ')}\n`);
        const issuer = fx.server.issuer('issuer');
        const revoked = new Set(issuer.revoked);
        const onRevoked = ids.filter((id) => revoked.has(fx.server.consumer(id).versionId ?? ''));
        const last = results[results.length - 1]!;
        const context = `${JSON.stringify(s)} -> ${last.status} (${last.cause ?? ''}); consumers ${ids.map((id) => `${id}=${fx.server.consumer(id).versionId}`).join(' ')}; revoked ${[...revoked].join(' ')}`;
        if (onRevoked.length > 0) throw new Error(`consumers on a revoked version: ${onRevoked.join(', ')}; ${context}`);
        for (const r of results) {
          if (r.previousRevoked === true && !(r.previousVersionId && revoked.has(r.previousVersionId))) {
            throw new Error(`previousRevoked true but the issuer did not revoke ${r.previousVersionId}; ${context}`);
          }
        }
      } finally {
        await fx.close();
      }
    }),
    {
      numRuns: Number(process.env.FC_RUNS ?? 12),
      ...(seed !== undefined ? { seed } : {}),
      ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}),
      // Each run is a real rotation: report the failing case as found, with its seed, instead of shrinking for minutes.
      endOnFailure: true,
    },
  );
}, 300_000);
