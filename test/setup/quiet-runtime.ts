/**
 * Test workers log through the SDK's default logger at WARN, so a run's
 * output is the test results and real problems, not worker state changes.
 * (Each test file gets a fresh module registry; the Runtime is installed once per process.)
 */
import { DefaultLogger, Runtime } from '@temporalio/worker';

try {
  Runtime.install({ logger: new DefaultLogger('WARN'), shutdownSignals: [] });
} catch {
  // Already installed by an earlier file in this process.
}
