/**
 * The Temporal dev server stopped and restarted from its database file in the
 * middle of a rotation (a consumer's install in flight): the run resumes from
 * the persisted history and ends consistent, with no step applied twice.
 * Uses its own dev server (not the shared one) and a worker in a child process.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { startDevServer, type DevServer } from '../../src/dev/dev-server';
import { startRotation } from '../../src/client/rotation';
import type { RotationResult } from '../../src/domain/rotation';
import { kill, startWorker, type ChildWorker } from './child-worker';
import { rotationFixture } from './support';

test('dev server restarted from its database file mid-rotation: the rotation completes, each step applied once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ia-restart-'));
  const dbFilename = join(dir, 'temporal.db');
  let server: DevServer = await startDevServer({ uiPort: false, dbFilename });
  const port = Number(server.address.split(':')[1]);
  const masterKey = randomBytes(32);
  const fx = await rotationFixture([{ id: 'r1', rotation: { stepTimeout: '2s' } }, { id: 'r2', dependsOn: ['r1'], rotation: { stepTimeout: '2s' } }], {
    masterKey,
    issuerRotation: { stepTimeout: '2s' },
  });
  const registryPath = join(fx.dataDir, 'registry.json');
  writeFileSync(registryPath, JSON.stringify(fx.registry));
  const env = {
    IA_TEST_TEMPORAL_ADDRESS: server.address,
    ROT_TASK_QUEUE: fx.taskQueue,
    ROT_DATA_DIR: fx.dataDir,
    ROT_MASTER_KEY: masterKey.toString('base64'),
    ROT_REGISTRY: registryPath,
  };
  let worker: ChildWorker | undefined;
  let connection: Connection | undefined;
  try {
    worker = await startWorker(env);
    connection = await Connection.connect({ address: server.address });
    const client = new Client({ connection });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let reached!: () => void;
    const atR2 = new Promise<void>((r) => (reached = r));
    fx.server.onEvent = async (e) => {
      if (e.kind === 'install' && e.service === 'r2') {
        reached();
        await gate;
      }
    };
    const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
    await atR2;
    // Stop the server with r2's install in flight, and the worker with it; restart both from the same database file.
    await server.stop();
    await kill(worker);
    release();
    server = await startDevServer({ uiPort: false, dbFilename, port });
    worker = await startWorker(env);
    await connection.close();
    connection = await Connection.connect({ address: server.address });
    const result = (await new Client({ connection }).workflow.getHandle(started.workflowId, started.runId).result()) as RotationResult;

    expect(result.status).toBe('completed');
    const labels = await fx.store.labels(fx.credentialId);
    expect(labels.CURRENT?.versionId).toBe(result.versionId);
    expect(labels.PENDING).toBeNull();
    expect(fx.server.issuer('issuer').minted).toEqual([result.versionId]);
    expect(fx.server.issuer('issuer').revoked).toEqual([fx.initialVersionId]);
    for (const id of ['r1', 'r2']) {
      expect(fx.server.consumer(id).installs).toEqual([result.versionId]);
      expect(fx.server.consumer(id).appliedKeys.size).toBe(1);
    }
  } finally {
    if (worker) await kill(worker);
    await connection?.close().catch(() => undefined);
    await server.stop();
    await fx.close();
  }
}, 120_000);
