/**
 * Keys that cannot collide silently, with real processes: two workers with
 * different generated keys on one task queue (the second refuses, naming the
 * first; a second worker on the same data dir is welcome), a client with another key (refuses to start a workflow the workers
 * could not decode; reading a result it cannot decode says which key and
 * what to do — never a stuck workflow), and a worker pointed at a
 * non-loopback address without explicit keys (refuses before sending anything).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { Client } from '@temporalio/client';
import { AesGcmCodec } from '../../src/codec/aes-gcm-codec';
import { parseCodecKeys } from '../../src/codec/keys';
import { activityRoundTrips, ping } from '../../src/workflows/diagnostics';
import { testAddress, uniqueTaskQueue } from '../helpers/temporal';
import { BIN, runCli, useClusterFile, waitFor, WorkerProcess } from './harness';

const cluster = useClusterFile('ia-keys-');
const { workers, tempDir } = cluster;

/** A client with the codec keys generated into `dataDir` (what a CLI with that data dir uses). */
function clientWithKeysOf(dataDir: string): Client {
  const file = join(dataDir, 'codec.keys');
  return new Client({ connection: cluster.connection, dataConverter: { payloadCodecs: [new AesGcmCodec(parseCodecKeys(readFileSync(file, 'utf8'), file))] } });
}

test('two workers with different generated keys on one task queue: the second refuses; a client with another key fails clearly, no workflow stuck', async () => {
  const taskQueue = uniqueTaskQueue('keys');
  const base = { TEMPORAL_ADDRESS: testAddress(), TEMPORAL_TASK_QUEUE: taskQueue, LOG_LEVEL: 'warn' };
  const dirA = join(tempDir(), 'a');
  const dirB = join(tempDir(), 'b');
  const first = new WorkerProcess('worker A', { ...base, INTEGRATION_AGENT_DATA_DIR: dirA });
  workers.push(first);
  await first.start(new Client({ connection: cluster.connection }));
  const clientA = clientWithKeysOf(dirA);
  const keyA = (clientA.options.loadedDataConverter.payloadCodecs[0] as AesGcmCodec).activeFingerprint;
  expect(readFileSync(join(dirA, 'codec.keys'), 'utf8')).toMatch(new RegExp(`^${keyA}:`));

  // The second worker, on its own data dir (its own generated key), refuses at start and names the first.
  const second = await runCli(['worker'], { ...base, INTEGRATION_AGENT_DATA_DIR: dirB }, { timeoutMs: 60_000 });
  expect(second.code).toBe(1);
  const keyB = readFileSync(join(dirB, 'codec.keys'), 'utf8').split(':')[0]!;
  expect(keyB).not.toBe(keyA);
  expect(second.stderr).toContain(
    `another worker polls task queue "${taskQueue}" with a different codec key: "${hostname()}:${first.pid} codec=${keyA} state=`,
  );
  expect(second.stderr).toMatch(new RegExp(`this process with codec=${keyB} and does not hold ${keyA}\\..*must share INTEGRATION_AGENT_CODEC_KEYS`));
  expect(second.stderr).toMatch(/another state store: .*Set INTEGRATION_AGENT_DATABASE_URL .* or give each embedded data dir's deployment a Temporal namespace of its own \(TEMPORAL_NAMESPACE\)/);
  expect(first.running()).toBe(true);

  // A CLI with key B does not start a workflow worker A could not decode.
  const sweep = await runCli(['sweep', '--json'], { ...base, INTEGRATION_AGENT_DATA_DIR: dirB }, { timeoutMs: 30_000 });
  expect(sweep.code).toBe(1);
  expect(sweep.stderr.trim().split('\n')).toEqual([
    expect.stringMatching(new RegExp(`^integration-agent: the workers of task queue "${taskQueue}" encrypt with codec key ${keyA} .*which this process \\(${hostname()}:\\d+, codec=${keyB}\\) does not hold.*must share INTEGRATION_AGENT_CODEC_KEYS`)),
  ]);
  expect((await cluster.connection.workflowService.countWorkflowExecutions({ namespace: 'default', query: `TaskQueue = "${taskQueue}"` })).count?.toString()).toBe('0');

  // A result written with key A, read with key B: the message names key A, this process and the fix.
  const workflowId = `keys-ping-${taskQueue}`;
  await clientA.workflow.execute(ping, { taskQueue, workflowId, workflowExecutionTimeout: '30s' });
  const clientB = clientWithKeysOf(dirB);
  await expect(clientB.workflow.getHandle(workflowId).result()).rejects.toThrow(
    new RegExp(`codec key "${keyA}": that key is missing in this process \\(${hostname()}:${process.pid}, holding "${keyB}"\\); every worker and client .*must share INTEGRATION_AGENT_CODEC_KEYS`),
  );
  expect((await clientB.workflow.getHandle(workflowId).describe()).status.name).toBe('COMPLETED');

  // A client that skips the check and starts anyway: the worker's failed workflow task says the same (in history and the Web UI).
  const forced = await clientB.workflow.start(activityRoundTrips, { args: [1], taskQueue, workflowId: `keys-forced-${taskQueue}`, workflowExecutionTimeout: '60s' });
  const failure = await waitFor(
    'the workflow task failure',
    async () => {
      const events = (await forced.fetchHistory()).events ?? [];
      return events.find((e) => e.workflowTaskFailedEventAttributes)?.workflowTaskFailedEventAttributes?.failure?.message;
    },
    { timeoutMs: 20_000, everyMs: 250, detail: () => first.logs() },
  );
  expect(failure).toMatch(new RegExp(`codec key "${keyB}": that key is missing in this process \\(${hostname()}:${first.pid}, holding "${keyA}"\\); every worker and client .*must share INTEGRATION_AGENT_CODEC_KEYS`));
  await forced.terminate('test: started with a key the workers lack');

  // A second worker on the same data dir (same generated key, same embedded state) is welcome.
  const sibling = new WorkerProcess('worker A2', { ...base, INTEGRATION_AGENT_DATA_DIR: dirA });
  workers.push(sibling);
  await sibling.start(new Client({ connection: cluster.connection }));
  await Promise.all([first.kill(), sibling.kill()]);
});

/** A non-loopback IPv4 address of this machine, if it has one. */
function externalAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return undefined;
}

test('a worker pointed at a non-loopback address without explicit keys refuses at once, sending nothing', async () => {
  const ip = externalAddress();
  // A listener on this machine's own non-loopback address counts whoever connects: nobody may.
  let connections = 0;
  let server: Server | undefined;
  let address = 'temporal.example.invalid:7233';
  if (ip) {
    server = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((resolve) => server!.listen(0, ip, resolve));
    address = `${ip}:${(server.address() as { port: number }).port}`;
  }
  try {
    const dir = tempDir();
    for (const [env, missing] of [
      [{}, 'INTEGRATION_AGENT_CODEC_KEYS and INTEGRATION_AGENT_MASTER_KEY are'],
      [{ INTEGRATION_AGENT_CODEC_KEYS: `k1:${Buffer.alloc(32, 1).toString('base64')}` }, 'INTEGRATION_AGENT_MASTER_KEY is'],
    ] as const) {
      const r = spawnSync(process.execPath, [BIN, 'worker'], {
        encoding: 'utf8',
        timeout: 30_000,
        env: { PATH: process.env.PATH, HOME: dir, TEMPORAL_ADDRESS: address, TEMPORAL_TASK_QUEUE: uniqueTaskQueue('remote'), INTEGRATION_AGENT_DATA_DIR: join(dir, 'data'), ...env },
      });
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toEqual([
        expect.stringMatching(
          new RegExp(`^integration-agent: refusing to start a worker against Temporal at ${address.replace(/\./g, '\\.')} with generated keys: ${missing} not set.*same values on every worker and client`),
        ),
      ]);
    }
    expect(connections).toBe(0);
  } finally {
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  }
});
