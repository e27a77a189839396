/**
 * One client process of bench/admission.bench.ts: a real coordinator, with
 * the cluster-wide admission of ADM_BENCH_STORE_URL (`postgres://…` or
 * `redis://…`; none: the in-process limiter alone), serving three services
 * of the bench server: `limited` (perSecond from ADM_BENCH_HIGH: high
 * enough that the limiter's cost bounds the rate), `binding` (perSecond
 * ADM_BENCH_BINDING), `free` (no limit, warm-up only).
 *
 * stdin commands, one per line: `run <service> <durationMs> <concurrency>`
 * runs a closed loop and prints `{"done":n,"errors":n,"firstError":...}`;
 * `exit` closes everything and exits. Prints `ready` once warm.
 */
import { createInterface } from 'node:readline';
import { createCoordinator } from '../src/activities/coordinator';
import { staticRegistry } from '../src/activities/registry';
import { registrySchema } from '../src/domain/registry';
import { openSharedAdmission, type SharedAdmission } from '../src/state/admission';

async function main(): Promise<void> {
  const origin = process.env.ADM_BENCH_ORIGIN!;
  const url = process.env.ADM_BENCH_STORE_URL ?? '';
  let shared: SharedAdmission | undefined;
  if (url.startsWith('redis')) shared = await openSharedAdmission({ redisUrl: url });
  else if (url.startsWith('postgres')) shared = await openSharedAdmission({ databaseUrl: url });
  const doc = registrySchema.parse({
    services: [
      { id: 'limited', type: 'api', endpoints: [{ url: origin }], rateLimit: { perSecond: Number(process.env.ADM_BENCH_HIGH) } },
      { id: 'binding', type: 'api', endpoints: [{ url: origin }], rateLimit: { perSecond: Number(process.env.ADM_BENCH_BINDING) } },
      { id: 'free', type: 'api', endpoints: [{ url: origin }] },
    ],
  });
  const coordinator = createCoordinator({ registry: staticRegistry({ ...doc, versionHash: 'bench', source: 'bench' }), reporterId: `bench:${process.pid}`, sharedAdmission: shared });
  for (let i = 0; i < 200; i++) await coordinator.request('free', { path: '/warm-up', cache: false });
  process.stdout.write('ready\n');
  let seq = 0;
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, service, duration, concurrency] = line.trim().split(/\s+/);
    if (cmd === 'exit') break;
    if (cmd !== 'run') continue;
    let done = 0;
    let errors = 0;
    let firstError: string | undefined;
    const end = performance.now() + Number(duration);
    await Promise.all(
      Array.from({ length: Number(concurrency) }, async () => {
        while (performance.now() < end) {
          try {
            await coordinator.request(service!, { path: `/b/${service}/${seq++}`, cache: false, timeoutMs: 60_000 });
            done++;
          } catch (err) {
            if (errors++ === 0) firstError = String(err);
          }
        }
      }),
    );
    process.stdout.write(JSON.stringify({ done, errors, firstError, stats: shared?.stats }) + '\n');
  }
  await coordinator.close();
  await shared?.close();
  process.stdin.destroy();
}

main().catch((err) => {
  process.stderr.write(`admission-client: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
