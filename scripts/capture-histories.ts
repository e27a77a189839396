/**
 * `npm run histories:capture`: runs the demo workflows (a sweep and a rotation
 * of every credential in examples/services.yaml) on a fresh in-memory dev
 * server and saves their histories to test/histories/ for the replay test.
 * Payloads go through the codec with the fixture key in test/histories/codec.keys.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { startDevServer } from '../src/dev/dev-server';
import { startFleet } from '../src/dev/fleet';
import { EXAMPLE_BEHAVIOURS, fleetSpecsFromRegistry } from '../src/dev/example-fleet';
import { workflowIds } from '../src/domain/constants';
import { staticRegistry } from '../src/activities/registry';
import { connectClient } from '../src/client/connect';
import { runSweep } from '../src/client/health';
import { readRegistry, EXAMPLE_REGISTRY } from '../src/client/cli/registry-source';
import { loadConfig } from '../src/worker/config';
import { createLogger } from '../src/worker/logger';
import { createAgentWorker } from '../src/worker/worker';

async function main(): Promise<void> {
  const out = join(__dirname, '..', 'test', 'histories');
  const keys = readFileSync(join(out, 'codec.keys'), 'utf8').trim();
  const registry = readRegistry(EXAMPLE_REGISTRY);
  const fleet = await startFleet(fleetSpecsFromRegistry(registry, EXAMPLE_BEHAVIOURS));
  const server = await startDevServer({ uiPort: false });
  const dataDir = mkdtempSync(join(tmpdir(), 'ia-capture-'));
  const config = { ...loadConfig({ ...process.env, INTEGRATION_AGENT_DATA_DIR: dataDir, LOG_LEVEL: 'warn' }), address: server.address };
  process.env.INTEGRATION_AGENT_CODEC_KEYS = keys;
  const logger = createLogger('warn', 'stderr');
  const agent = await createAgentWorker({ config, registry: staticRegistry(registry), logger });
  const running = agent.run();
  const client = await connectClient(config);
  try {
    const save = async (workflowId: string, file: string) => {
      const history = await client.workflow.getHandle(workflowId).fetchHistory();
      writeFileSync(join(out, file), JSON.stringify({ workflowId, history: JSON.parse(historyToJSON(history)) }, null, 1) + '\n');
      process.stdout.write(`saved ${file}\n`);
    };
    const sweep = await runSweep(client, { taskQueue: config.taskQueue });
    await save(sweep.workflowId, 'dev-sweep.json');
    for (const c of registry.credentials) {
      const workflowId = workflowIds.rotation(c.id);
      const h = await client.workflow.start('rotateCredential', { taskQueue: config.taskQueue, workflowId, args: [{ credentialId: c.id }] });
      await h.result();
      await save(workflowId, `dev-rotation-${c.id}.json`);
    }
  } finally {
    if (agent.worker.getState() === 'RUNNING') agent.worker.shutdown();
    await running;
    await client.connection.close();
    await server.stop();
    await fleet.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
