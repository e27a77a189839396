/**
 * `auth: true` end to end on real parts (dev server, worker with the real
 * activities, SQLite credential store, a loopback API and alert receiver):
 * a credential revoked outside the agent is caught by the next sweep, the
 * TRIGGERED names it and the rotate command, and the secret is in no
 * workflow history (payloads decoded and searched), result or alert.
 */
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createActivities } from '../../../src/activities';
import { healthShardWorkflowId, shardOf } from '../../../src/domain/health-shard';
import { parseRegistry } from '../../../src/domain/registry-parse';
import { openState } from '../../../src/state';
import { healthSweep } from '../../../src/workflows/sweep';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker } from '../../helpers/temporal';
import { eventually, startReceiver, uniquePrefix, type Receiver } from '../harness';

const GOOD = 'live-token-7c0e5a9d';
const REVOKED = 'revoked-token-41b8e2f6';
let api: Server;
let apiUrl: string;
let accepted = GOOD;
let receiver: Receiver;
beforeAll(async () => {
  api = createServer((req, res) => res.writeHead(req.headers.authorization === `Bearer ${accepted}` ? 200 : 401).end());
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
  receiver = await startReceiver();
});
afterAll(async () => {
  api.closeAllConnections();
  await new Promise((r) => api.close(r));
  await receiver.close();
  await closeTestClient();
});

/** Every payload's bytes in a history, decoded as UTF-8 (what a codec-less history would show). */
function payloadText(node: unknown, out: string[] = []): string[] {
  if (node instanceof Uint8Array) out.push(Buffer.from(node).toString('utf8'));
  else if (Array.isArray(node)) for (const n of node) payloadText(n, out);
  else if (node && typeof node === 'object') for (const v of Object.values(node)) payloadText(v, out);
  return out;
}

test('a credential revoked outside the agent: credential_rejected by the next sweep, one TRIGGERED naming it, the secret nowhere in history', async () => {
  const id = `${uniquePrefix()}-orders`;
  const doc = {
    services: [
      { id, type: 'api', endpoints: [{ url: apiUrl }], credential: 'orders-key', healthCheck: { path: '/health', timeout: '1s', auth: true, failureThreshold: 1, successThreshold: 1 } },
      { id: `${id}-issuer`, type: 'api', endpoints: [{ url: 'http://127.0.0.1:9' }] },
    ],
    credentials: [{ id: 'orders-key', issuer: `${id}-issuer` }],
  };
  const parsed = parseRegistry(JSON.stringify(doc), 'auth.json');
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.problems));
  // Only the probed service: the issuer has no health check of interest here.
  const registry = { ...parsed.registry, services: parsed.registry.services.slice(0, 1) };
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('auth');
  const state = await openState({ dataDir: mkdtempSync(join(tmpdir(), 'ia-auth-')) });
  try {
    await state.credentials.importCurrent('orders-key', GOOD, 'test');
    const activities = createActivities({
      registry: { current: () => registry },
      state,
      health: { client, alertWebhooks: [{ name: 'ops', url: receiver.url, format: 'json', timeoutMs: 2000 }], figuresEveryMs: 0 },
    });
    const sweepIds: string[] = [];
    const sweep = () => {
      const workflowId = `sweep/${taskQueue}-${sweepIds.length + 1}`;
      sweepIds.push(workflowId);
      return client.workflow.execute(healthSweep, { taskQueue, workflowId, args: [{ intervalMs: 1000 }] });
    };
    await withTestWorker({ taskQueue, activities }, async () => {
      expect((await sweep()).services[0]).toMatchObject({ id, status: 'healthy' });
      // Revoked at the service, outside the agent (the store still holds it as CURRENT).
      await state.credentials.importCurrent('orders-key', REVOKED, 'test');
      const failed = await sweep();
      expect(failed.services[0]).toMatchObject({ id, status: 'unhealthy', failureKind: 'credential_rejected' });
      await eventually(() => receiver.alerts.some((a) => a.serviceId === id && a.kind === 'TRIGGERED'), 'TRIGGERED delivered');
      const alert = receiver.alerts.find((a) => a.serviceId === id)!;
      expect(alert).toMatchObject({ summary: `${id} is unhealthy (credential_rejected: orders-key)`, credentialId: 'orders-key' });
      expect(alert.action).toContain('integration-agent rotate orders-key');

      // The sweeps and the health shard holding the service's state and alert decisions.
      const histories = [...sweepIds, healthShardWorkflowId(taskQueue, shardOf(id))].map((wid) => client.workflow.getHandle(wid).fetchHistory());
      const text = payloadText(await Promise.all(histories)).join('\n');
      expect(text).toContain('credential_rejected'); // the payloads were read, in clear
      expect(text).not.toContain(GOOD);
      expect(text).not.toContain(REVOKED);
      expect(JSON.stringify(receiver.requests)).not.toMatch(new RegExp(`${GOOD}|${REVOKED}`));
    });
  } finally {
    await state.close();
  }
});
