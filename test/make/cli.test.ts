import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { AesGcmCodec } from '../../src/codec/aes-gcm-codec';
import { loadCodecKeys } from '../../src/codec/keys';
import { createMakeActivities } from '../../src/activities/make';
import { openState } from '../../src/state';
import type { StateBackend } from '../../src/state/types';
import { register } from '../../src/client/cli/commands/webhooks';
import { CliError } from '../../src/client/cli/context';
import { deliverWebhookEvent, listWebhookDeadLetters } from '../../src/client/make';
import { startFakeMake, type FakeMake } from '../fixtures/make-server';
import { Client, Connection } from '@temporalio/client';
import { testAddress, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { makeRegistryYaml, makeRig, type MakeRig } from './helpers';

let fake: FakeMake;
let rig: MakeRig;
let dataDir: string;
let state: StateBackend;
let server: Server;
let url = '';
let accept = false;
const taskQueue = uniqueTaskQueue('make-cli');
const savedEnv = { ...process.env };

beforeAll(async () => {
  fake = await startFakeMake();
  rig = makeRig(fake, makeRegistryYaml(fake, ''));
  dataDir = mkdtempSync(join(tmpdir(), 'ia-make-cli-'));
  state = await openState({ dataDir });
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(accept ? 204 : 503).end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  process.env.TEMPORAL_ADDRESS = testAddress();
  process.env.TEMPORAL_TASK_QUEUE = taskQueue;
  process.env.INTEGRATION_AGENT_DATA_DIR = dataDir;
});
afterAll(async () => {
  process.env = savedEnv;
  await rig.close();
  await fake.close();
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await state.close();
  rmSync(dataDir, { recursive: true, force: true });
  await connection?.close();
});

let connection: Connection | undefined;
/** A client with the CLI's payload codec (keys in the data dir), as `connectClient` builds it. */
async function codecClient(): Promise<Client> {
  connection ??= await Connection.connect({ address: testAddress() });
  return new Client({ connection, dataConverter: { payloadCodecs: [new AesGcmCodec(loadCodecKeys(dataDir))] } });
}

/** Runs `integration-agent <args>` in-process and returns what it printed. */
async function cli(args: string[]): Promise<string> {
  const program = new Command().exitOverride();
  register(program);
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => (out.push(String(chunk)), true)) as typeof process.stdout.write;
  try {
    await program.parseAsync(['node', 'integration-agent', ...args]);
  } finally {
    process.stdout.write = write;
  }
  return out.join('');
}

test('webhooks dead-letters lists failed deliveries and --redeliver delivers them', async () => {
  const client = await codecClient();
  const activities = createMakeActivities({ registry: rig.registry, transportFor: () => { throw new Error('unused'); }, deadLetters: state.deadLetters }, rig.clients);
  await withTestWorker({ taskQueue, activities, dataConverter: { payloadCodecs: [new AesGcmCodec(loadCodecKeys(dataDir))] } }, async () => {
    const eventId = `evt-cli-${Date.now()}`;
    const handle = await deliverWebhookEvent(client, { eventId, payload: { a: 1 }, subscribers: [{ id: 'sink', endpoints: [url] }], retry: { maximumAttempts: 2, initialIntervalMs: 10, maximumIntervalMs: 20 } }, { taskQueue });
    const r = await handle.result();
    expect(r.failed).toBe(1);
    await expect(deliverWebhookEvent(client, { eventId, payload: {}, subscribers: [{ id: 'sink', endpoints: [url] }] }, { taskQueue })).rejects.toThrow(`delivery of event ${eventId} was already started`);

    const listed = JSON.parse(await cli(['webhooks', 'dead-letters', '--json']));
    const dl = listed.find((d: { eventId: string }) => d.eventId === eventId);
    expect(dl).toMatchObject({ subscriberId: 'sink', attempts: 2, lastError: expect.stringMatching(/HTTP 503/) });

    const human = await cli(['webhooks', 'dead-letters']);
    expect(human).toMatch(/ID\s+EVENT\s+SUBSCRIBER\s+ATTEMPTS\s+LAST ERROR/);
    expect(human).toContain(eventId);

    accept = true;
    const again = JSON.parse(await cli(['webhooks', 'dead-letters', '--redeliver', String(dl.id), '--json']));
    expect(again).toMatchObject({ id: dl.id, delivered: true, status: 204, eventId });
    expect((await listWebhookDeadLetters(client, { taskQueue })).find((d) => d.id === dl.id)).toBeUndefined();
    expect(await cli(['webhooks', 'dead-letters', '--state', 'resolved'])).toMatch(/delivered \(webhook-redeliver\//);

    await expect(cli(['webhooks', 'dead-letters', '--redeliver', String(dl.id)])).rejects.toThrow(/already delivered/);
  });
});

test('bad options are one-line CLI errors naming the option', async () => {
  await expect(cli(['webhooks', 'dead-letters', '--state', 'closed'])).rejects.toThrow(new CliError('invalid --state "closed": use one of open, resolved, all'));
  await expect(cli(['webhooks', 'dead-letters', '--redeliver', 'abc'])).rejects.toThrow(/invalid dead letter id "abc"/);
  await expect(cli(['webhooks', 'dead-letters', '--limit', '0'])).rejects.toThrow(/invalid --limit "0"/);
});
