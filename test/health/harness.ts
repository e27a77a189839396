/**
 * A health test bench on real parts: the shared dev server, a worker with
 * the real activities (probes, SQLite store in a temp dir, publish with a
 * real client, webhook delivery), loopback services and a webhook receiver.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { createActivities } from '../../src/activities';
import { openState } from '../../src/state';
import type { Registry } from '../../src/domain/registry';
import type { Alert } from '../../src/domain/health';
import type { AlertWebhook } from '../../src/domain/alert-receivers';
import { healthSweep, type HealthSweepInput, type HealthSweepResult } from '../../src/workflows/sweep';
import { testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { registryOf } from './fleet';

export interface Receiver {
  url: string;
  alerts: Alert[];
  /** Requests seen (including repeats by idempotency key). */
  requests: { key: string; body: unknown }[];
  /** Answer with this status (default 200). */
  status: number;
  close(): Promise<void>;
}

/** A webhook receiver on 127.0.0.1 that stores each alert once per idempotency key. */
export async function startReceiver(): Promise<Receiver> {
  const seen = new Set<string>();
  const r: Receiver = { url: '', alerts: [], requests: [], status: 200, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const key = String(req.headers['idempotency-key'] ?? '');
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Alert;
      r.requests.push({ key, body });
      if (r.status >= 200 && r.status < 300 && !seen.has(key)) {
        seen.add(key);
        r.alerts.push(body);
      }
      res.writeHead(r.status).end();
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/alerts`;
  r.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  };
  return r;
}

/** A slug prefix unique to one test, so `service/<id>` workflows never collide across tests. */
export const uniquePrefix = () => `t${randomUUID().slice(0, 6)}`;

export interface Bench {
  client: Client;
  taskQueue: string;
  dataDir: string;
  registry: { current: Registry };
  /** Runs one sweep to completion (worker must be running: inside `run`). */
  sweep(input?: HealthSweepInput): Promise<HealthSweepResult>;
  /** Runs `fn` with a worker polling the bench's task queue (call again to "restart" the worker). */
  run<T>(fn: () => Promise<T>): Promise<T>;
}

/**
 * @param opts.alertWebhooks receivers instead of one JSON webhook at `receiverUrl` (e.g. from `parseAlertWebhooks`).
 */
export async function healthBench(services: unknown[], receiverUrl: string, opts: { dataDir?: string; ca?: string[]; alertWebhooks?: AlertWebhook[] } = {}): Promise<Bench> {
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('health');
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'ia-health-'));
  const registry = { current: registryOf(services) };
  let n = 0;
  const bench: Bench = {
    client,
    taskQueue,
    dataDir,
    registry,
    sweep: (input = {}) =>
      client.workflow.execute(healthSweep, { taskQueue, workflowId: `sweep/${taskQueue}-${++n}`, args: [{ intervalMs: 1000, ...input }] }),
    // Each run is a worker process's life: the state backend is opened for it and closed after.
    run: async (fn) => {
      const state = await openState({ dataDir });
      try {
        return await withTestWorker(
          {
            taskQueue,
            activities: createActivities({
              registry: { current: () => registry.current },
              state,
              ...(opts.ca ? { probes: { ca: opts.ca } } : {}),
              health: { client, alertWebhooks: opts.alertWebhooks ?? [{ name: 'ops', url: receiverUrl, format: 'json', timeoutMs: 2000 }], figuresEveryMs: 0 },
            }),
          },
          fn,
        );
      } finally {
        await state.close();
      }
    },
  };
  return bench;
}

/** Polls `predicate` every 50 ms until true, or fails after `timeoutMs` with `what`. */
export async function eventually(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
