/**
 * One "worker process" for the cluster-wide admission tests: builds a real
 * coordinator with the shared admission opened from the environment (as the
 * worker does: INTEGRATION_AGENT_REDIS_URL, else INTEGRATION_AGENT_DATABASE_URL),
 * warms up with one call to an unlimited service (`/warm-up`), prints `ready`, waits for `go` on stdin, fires its burst of calls at one
 * service, prints one JSON line with the outcome and exits.
 *
 * Input (env IA_TEST_BURST, JSON): { origin, perSecond?, maxConcurrent?, calls, timeoutMs }.
 * Output: `{"ok":n,"failed":[{"code":..,"kind":..,"message":..}]}`.
 */
import { createCoordinator, CoordinatorError } from '../../src/activities/coordinator';
import { staticRegistry } from '../../src/activities/registry';
import { registrySchema } from '../../src/domain/registry';
import { openSharedAdmission } from '../../src/state/admission';

interface Burst {
  origin: string;
  perSecond?: number;
  maxConcurrent?: number;
  calls: number;
  timeoutMs: number;
}

async function main(): Promise<void> {
  const burst = JSON.parse(process.env.IA_TEST_BURST ?? '{}') as Burst;
  const shared = await openSharedAdmission({ databaseUrl: process.env.INTEGRATION_AGENT_DATABASE_URL, redisUrl: process.env.INTEGRATION_AGENT_REDIS_URL });
  if (!shared) throw new Error('no shared store configured: set INTEGRATION_AGENT_DATABASE_URL or INTEGRATION_AGENT_REDIS_URL');
  const doc = registrySchema.parse({
    services: [
      { id: 'limited', type: 'api', endpoints: [{ url: burst.origin }], rateLimit: { perSecond: burst.perSecond, maxConcurrent: burst.maxConcurrent } },
      { id: 'free', type: 'api', endpoints: [{ url: burst.origin }] },
    ],
  });
  const coordinator = createCoordinator({
    registry: staticRegistry({ ...doc, versionHash: 'test', source: 'test' }),
    reporterId: `pid:${process.pid}`,
    sharedAdmission: shared,
  });
  // A worker is warm long before a burst: its first request loads undici's parser (tens of ms), which no guard is meant to cover.
  await coordinator.request('free', { path: '/warm-up', cache: false });
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => {
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d: string) => d.includes('go') && resolve());
  });
  let ok = 0;
  const failed: { code?: string; kind?: string; message: string }[] = [];
  await Promise.all(
    Array.from({ length: burst.calls }, (_, i) =>
      coordinator.request('limited', { path: `/burst?pid=${process.pid}&i=${i}`, cache: false, timeoutMs: burst.timeoutMs }).then(
        () => void ok++,
        (err: unknown) => void failed.push(err instanceof CoordinatorError ? { code: err.code, kind: err.kind, message: err.message } : { message: String(err) }),
      ),
    ),
  );
  await coordinator.close();
  await shared.close();
  process.stdout.write(JSON.stringify({ ok, failed }) + '\n');
  process.stdin.destroy();
}

main().catch((err) => {
  process.stderr.write(`limited-process: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
