/**
 * One Temporal dev server for the whole jest run (not one per file), and one
 * prebuilt workflow bundle that every test worker reuses.
 * Exposes them to test files through environment variables.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { startDevServer, type DevServer } from '../../src/dev/dev-server';

declare global {
  // eslint-disable-next-line no-var
  var __DEV_SERVER__: DevServer | undefined;
}

export default async function globalSetup(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ia-test-'));
  // With DEV_SERVER_DYNAMIC_CONFIG (startDevServer's default): fast history-queue reads, a 10 ms
  // timer floor, eager activities and eager workflow start, as `dev` runs (docs/temporal-overhead.md).
  const server = await startDevServer({ uiPort: false, dbFilename: join(dir, 'temporal.db') });
  globalThis.__DEV_SERVER__ = server;
  process.env.IA_TEST_TEMPORAL_ADDRESS = server.address;
  process.env.IA_TEST_TMP = dir;
  const { code } = await bundleWorkflowCode({
    workflowsPath: require.resolve('../../src/workflows'),
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error: (m: string) => console.error(m), log() {} } as never,
  });
  const bundlePath = join(dir, 'workflow-bundle.js');
  writeFileSync(bundlePath, code);
  process.env.IA_TEST_WORKFLOW_BUNDLE = bundlePath;
}
