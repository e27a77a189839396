/**
 * Test workers log through the SDK's default logger at ERROR (and core's own logs too), so a run's
 * output is the test results and real problems, not worker state changes or
 * the activity failures that failure tests cause on purpose (WARN). A test
 * that needs the SDK's logs runs its worker in a child process with a logger
 * of its own (test/rotation/worker-process.ts).
 * (Each test file gets a fresh module registry; the Runtime is installed once per process.)
 */
import { DefaultLogger, Runtime } from '@temporalio/worker';

try {
  // Core's own (Rust) logs go to stderr independently of `logger`: keep them at ERROR too
  // (a cancelled activity finishing late is a WARN, expected in cancellation tests).
  Runtime.install({ logger: new DefaultLogger('ERROR'), shutdownSignals: [], telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' }, console: {} } } });
} catch {
  // Already installed by an earlier file in this process.
}
