/**
 * Operator reads of state through Temporal (the `state-read` workflows and
 * their activities, on a real worker, on both backends): credentials page by
 * id, one credential's summary, the audit trail paged back with `before`;
 * bad input refused before anything starts; no worker is an error, not a
 * hang; no result holds a secret value.
 *
 * With IA_CAPTURE_STATE_READ_HISTORIES=1 it also writes the history of one
 * `auditPage` run (through the payload codec with the fixture key) to
 * test/histories/ for the replay test.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { AesGcmCodec } from '../../src/codec/aes-gcm-codec';
import { parseCodecKeys } from '../../src/codec/keys';
import { createStateReadActivities } from '../../src/activities/state-read';
import { NoWorkerError, pollingTaskQueues } from '../../src/client/connect';
import { allCredentials, getCredential, listCredentials, readAuditTrail } from '../../src/client/state';
import type { StateBackend } from '../../src/state/types';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { eventually, freshLocation, openAt, STATE_BACKENDS, useStateBackends } from '../helpers/state';

useStateBackends();
afterAll(closeTestClient);

describe.each(STATE_BACKENDS)('state reads through a worker (%s)', (kind) => {
  let state: StateBackend;
  const secrets: string[] = [];
  const ids = ['alpha', 'bravo', 'charlie', 'delta', 'echo'];

  beforeAll(async () => {
    state = await openAt(await freshLocation(kind), { masterKey: randomBytes(32) });
    for (const id of ids) {
      const secret = `secret-${randomBytes(12).toString('hex')}`;
      secrets.push(secret);
      await state.credentials.importCurrent(id, secret, 'test');
    }
    // Two more versions of `charlie` (three versions, CURRENT and PREVIOUS labelled), and some audit entries.
    for (let i = 0; i < 2; i++) {
      const secret = `secret-${randomBytes(12).toString('hex')}`;
      secrets.push(secret);
      await state.credentials.importCurrent('charlie', secret, 'test');
    }
    for (let i = 0; i < 5; i++) await state.credentials.audit({ credentialId: 'delta', step: 'verify', serviceId: `svc-${i}`, versionId: null, outcome: 'ok', actor: 'test', detail: null });
  });
  afterAll(() => state?.close());

  const run = <T>(fn: (taskQueue: string) => Promise<T>, codec?: AesGcmCodec) => {
    const taskQueue = uniqueTaskQueue('state-read');
    return withTestWorker({ taskQueue, activities: createStateReadActivities({ credentials: state.credentials }), ...(codec ? { dataConverter: { payloadCodecs: [codec] } } : {}) }, async () => {
      // The client checks for a poller first; a worker that has just started may not have polled yet.
      const client = await testClient();
      await eventually(async () => (await pollingTaskQueues(client, [taskQueue])).has(taskQueue), `a poller on ${taskQueue}`);
      return fn(taskQueue);
    });
  };

  test('credentials page by id with a cursor; every page bounded; the summary of one matches its row', async () => {
    const client = await testClient();
    await run(async (taskQueue) => {
      const p1 = await listCredentials(client, { taskQueue, limit: 2 });
      expect(p1.credentials.map((c) => c.credentialId)).toEqual(['alpha', 'bravo']);
      expect(p1.next).toBe('bravo');
      const p2 = await listCredentials(client, { taskQueue, limit: 2, after: p1.next! });
      expect(p2.credentials.map((c) => c.credentialId)).toEqual(['charlie', 'delta']);
      const p3 = await listCredentials(client, { taskQueue, limit: 2, after: p2.next! });
      expect(p3).toEqual({ credentials: [expect.objectContaining({ credentialId: 'echo' })], next: null });
      const exact = await listCredentials(client, { taskQueue, limit: 5 });
      expect(exact.next).toBeNull(); // a last page that is exactly full says so

      const all: string[] = [];
      for await (const c of allCredentials(client, { taskQueue, limit: 2 })) all.push(c.credentialId);
      expect(all).toEqual(ids);

      const charlie = p2.credentials[0];
      expect(charlie).toMatchObject({ versions: 3, pending: null });
      expect(charlie.current).not.toBeNull();
      expect(charlie.previous).not.toBeNull();
      expect(await getCredential(client, 'charlie', { taskQueue })).toEqual(charlie);
      expect(await getCredential(client, 'nobody', { taskQueue })).toBeNull();

      const text = JSON.stringify([p1, p2, p3, charlie]);
      for (const s of secrets) expect(text).not.toContain(s);
    });
  });

  test('the audit trail pages back with `before`, oldest first, nothing lost or repeated', async () => {
    const client = await testClient();
    await run(async (taskQueue) => {
      const whole = await state.credentials.auditTrail();
      const seen: number[] = [];
      let before: number | undefined;
      for (let i = 0; i < 20; i++) {
        const page = await readAuditTrail(client, { taskQueue, limit: 3, before });
        expect(page.entries.length).toBeLessThanOrEqual(3);
        const pageIds = page.entries.map((e) => e.id);
        expect(pageIds).toEqual([...pageIds].sort((a, b) => a - b));
        seen.unshift(...pageIds);
        if (page.before === null) break;
        expect(page.before).toBe(pageIds[0]);
        before = page.before;
      }
      expect(seen).toEqual(whole.map((e) => e.id));

      const delta = await readAuditTrail(client, { taskQueue, credentialId: 'delta', limit: 4 });
      expect(delta.entries.map((e) => e.serviceId)).toEqual(['svc-1', 'svc-2', 'svc-3', 'svc-4']);
      expect(delta.before).toBe(delta.entries[0].id);
      const older = await readAuditTrail(client, { taskQueue, credentialId: 'delta', before: delta.before! });
      expect(older.entries.map((e) => [e.step, e.serviceId])).toEqual([
        ['import', null],
        ['verify', 'svc-0'],
      ]);
      expect(older.before).toBeNull();
      expect((await readAuditTrail(client, { taskQueue })).entries).toHaveLength(whole.length); // default limit 100 holds it all
    });
  });

  if (process.env.IA_CAPTURE_STATE_READ_HISTORIES === '1' && kind === 'sqlite') {
    test('capture: one auditPage history through the codec', async () => {
      const dir = join(__dirname, '..', 'histories');
      const codec = new AesGcmCodec(parseCodecKeys(readFileSync(join(dir, 'codec.keys'), 'utf8'), 'test/histories/codec.keys'));
      const plain = await testClient();
      const client = new Client({ connection: plain.connection, dataConverter: { payloadCodecs: [codec] } });
      await run(async (taskQueue) => {
        await readAuditTrail(client, { taskQueue, credentialId: 'delta', limit: 2 });
        let found: { workflowId: string; runId: string } | undefined;
        await eventually(async () => {
          for await (const w of client.workflow.list({ query: `TaskQueue = '${taskQueue}'` })) found = w;
          return found !== undefined;
        }, 'the auditPage run in the visibility store');
        const history = await client.workflow.getHandle(found!.workflowId, found!.runId).fetchHistory();
        writeFileSync(join(dir, 'state-read-audit-page.json'), JSON.stringify({ workflowId: found!.workflowId, history: JSON.parse(historyToJSON(history)) }, null, 1) + '\n');
      }, codec);
    });
  }
});

test('bad page sizes are refused before anything starts; no worker on the task queue is an error naming it', async () => {
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('state-read-nobody');
  await expect(listCredentials(client, { taskQueue, limit: 0 })).rejects.toThrow(RangeError);
  await expect(listCredentials(client, { taskQueue, limit: 1001 })).rejects.toThrow('limit: expected an integer from 1 to 1000, got 1001');
  await expect(readAuditTrail(client, { taskQueue, limit: 1.5 })).rejects.toThrow(RangeError);
  await expect(readAuditTrail(client, { taskQueue, before: -1 })).rejects.toThrow('before: expected an integer');
  await expect(listCredentials(client, { taskQueue })).rejects.toThrow(NoWorkerError);
  await expect(readAuditTrail(client, { taskQueue })).rejects.toThrow(`no worker is polling task queue "${taskQueue}"`);
});
