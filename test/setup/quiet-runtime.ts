/**
 * Test workers log through the SDK's default logger at ERROR, so a run's
 * output is the test results and real problems, not worker state changes or
 * the activity failures that failure tests cause on purpose (WARN). A test
 * that needs the SDK's logs runs its worker in a child process with a logger
 * of its own (test/rotation/worker-process.ts).
 * (Each test file gets a fresh module registry; the Runtime is installed once per process.)
 */
import { DefaultLogger, Runtime } from '@temporalio/worker';

try {
  Runtime.install({ logger: new DefaultLogger('ERROR'), shutdownSignals: [] });
} catch {
  // Already installed by an earlier file in this process.
}
