/**
 * A process that takes the one concurrency slot of `IA_TEST_KEY` (maxConcurrent
 * 1) through the cluster limiter of the environment's store, with the lease
 * of `IA_TEST_LEASE_MS` (renewed every `IA_TEST_RENEW_MS`), prints `held`, and
 * keeps it until it is killed: the test kills it with SIGKILL, as a crash
 * would, so nothing is released.
 */
import { openClusterLimiter } from '../../src/state/admission';

async function main(): Promise<void> {
  const limiter = await openClusterLimiter({
    databaseUrl: process.env.INTEGRATION_AGENT_DATABASE_URL,
    redisUrl: process.env.INTEGRATION_AGENT_REDIS_URL,
    leaseMs: Number(process.env.IA_TEST_LEASE_MS),
    renewEveryMs: Number(process.env.IA_TEST_RENEW_MS),
  });
  if (!limiter) throw new Error('no shared store configured');
  const grant = await limiter.tryAcquire(process.env.IA_TEST_KEY!, [], 1, 1);
  if (grant.granted !== 1) throw new Error(`could not take the slot: ${JSON.stringify(grant)}`);
  process.stdout.write('held\n');
  setInterval(() => {}, 60_000);
}

main().catch((err) => {
  process.stderr.write(`lease-holder: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
