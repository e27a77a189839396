/**
 * Connecting to Temporal as a client, with the same payload codec as the workers.
 */
import { hostname } from 'node:os';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { AesGcmCodec, CodecKeyError } from '../codec/aes-gcm-codec';
import { loadCodecKeys, SHARE_CODEC_KEYS_HINT } from '../codec/keys';
import { CODEC_KEY_ROTATION_ORDER, disagreements, listPollers } from '../worker/cluster-check';
import { clientConnectionOptions, type Config } from '../worker/config';

/** Thrown when the server cannot be reached; the message names the address and what to check. */
export class TemporalUnreachableError extends Error {
  constructor(address: string, namespace: string, cause: Error) {
    super(`cannot reach Temporal at ${address} (namespace ${namespace}): ${cause.message.split('\n')[0]}. Start one with \`integration-agent dev\` or set TEMPORAL_ADDRESS.`);
    this.name = 'TemporalUnreachableError';
  }
}

/**
 * Connects and checks the namespace answers (so a wrong address fails here, once, clearly).
 * @throws TemporalUnreachableError
 */
export async function connectClient(config: Config): Promise<Client> {
  let connection: Connection;
  try {
    connection = await Connection.connect(clientConnectionOptions(config));
    await connection.workflowService.getSystemInfo({});
  } catch (err) {
    throw new TemporalUnreachableError(config.address, config.namespace, err as Error);
  }
  return new Client({
    connection,
    namespace: config.namespace,
    dataConverter: { payloadCodecs: [new AesGcmCodec(loadCodecKeys(config.dataDir))] },
  });
}

/**
 * Thrown when nothing polls the task queue: a started workflow would wait
 * forever, and a query of a workflow on it cannot be answered. With
 * `opts.workflowId` (a query, see ./query.ts) the message names that workflow
 * and the exact command that starts a worker on its queue.
 */
export class NoWorkerError extends Error {
  /** The workflow that could not answer, for a query; undefined for a start. */
  readonly workflowId?: string;
  constructor(
    readonly taskQueue: string,
    readonly namespace: string,
    opts: { workflowId?: string; query?: string; cause?: unknown } = {},
  ) {
    super(
      opts.workflowId === undefined
        ? `no worker is polling task queue "${taskQueue}" in namespace ${namespace}: start one with \`integration-agent worker\` (or run \`integration-agent dev\`), or set TEMPORAL_TASK_QUEUE to the workers' queue`
        : `workflow ${opts.workflowId} cannot answer ${opts.query ? `its ${opts.query} query` : 'a query'}: no worker is polling its task queue "${taskQueue}" in namespace ${namespace}; ${startWorkerHint(taskQueue, namespace)}`,
      opts.cause === undefined ? undefined : { cause: opts.cause },
    );
    this.name = 'NoWorkerError';
    if (opts.workflowId !== undefined) this.workflowId = opts.workflowId;
  }
}

/**
 * What to run so a worker polls `taskQueue` of `namespace`, in the words of
 * the README: `TEMPORAL_TASK_QUEUE=<queue> integration-agent worker`
 * (`TEMPORAL_NAMESPACE` too when not `default`), with the same
 * TEMPORAL_ADDRESS. `npm start` / `integration-agent dev` are named for the
 * local setup only: they start a dev server of their own, with its worker.
 */
export function startWorkerHint(taskQueue: string, namespace: string): string {
  const ns = namespace === 'default' ? '' : `TEMPORAL_NAMESPACE=${namespace} `;
  return `start a worker on it: \`${ns}TEMPORAL_TASK_QUEUE=${taskQueue} integration-agent worker\` against this server (for a local setup, \`npm start\` / \`integration-agent dev\` start a dev server with its worker)`;
}

/**
 * Which of the task queues have a worker polling them (Temporal keeps pollers
 * of the last few minutes). A queue whose status cannot be read counts as polled.
 */
export async function pollingTaskQueues(client: Client, names: Iterable<string>): Promise<Set<string>> {
  const polled = new Set<string>();
  await Promise.all(
    [...new Set(names)].map(async (name) => {
      try {
        const r = await client.workflowService.describeTaskQueue({
          namespace: client.options.namespace,
          taskQueue: { name, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
          taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        });
        if ((r.pollers ?? []).length > 0) polled.add(name);
      } catch {
        polled.add(name);
      }
    }),
  );
  return polled;
}

/**
 * Checks that a worker polls `taskQueue`, and that the workers encrypt with a
 * key this client holds, so commands that start a workflow and wait for it
 * fail at once instead of hanging (a workflow started with a key its workers
 * lack would fail every workflow task).
 * @throws NoWorkerError, CodecKeyError (naming the workers' key and the fix)
 */
export async function requireWorker(client: Client, taskQueue: string): Promise<void> {
  if (!(await pollingTaskQueues(client, [taskQueue])).has(taskQueue)) throw new NoWorkerError(taskQueue, client.options.namespace);
  await requireSameCodecKeys(client, taskQueue);
}

/**
 * Refuses when a live worker on `taskQueue` encrypts with a codec key this
 * client does not hold (its identity carries `codec=<fingerprint>…`), or does
 * not hold the key this client encrypts with (its identity lists every key it
 * holds: `codec=<fp1>+<fp2>`). Workers that do not say, or a task queue that
 * cannot be described, pass.
 * @throws CodecKeyError (its keyId: the key missing on one side)
 */
export async function requireSameCodecKeys(client: Client, taskQueue: string): Promise<void> {
  const codec = client.options.loadedDataConverter.payloadCodecs.find((c): c is AesGcmCodec => c instanceof AesGcmCodec);
  if (!codec) return;
  let pollers;
  try {
    pollers = await listPollers(client.connection, client.options.namespace, taskQueue, { timeoutMs: 5_000 });
  } catch {
    return;
  }
  const found = disagreements({ codec: codec.activeFingerprint, codecFingerprints: codec.fingerprints }, pollers, taskQueue);
  const first = found.find((d) => d.kind === 'codec');
  const unheld = found.find((d) => d.kind === 'codec-unheld');
  if (first) {
    throw new CodecKeyError(
      first.poller.codec!,
      `the workers of task queue "${taskQueue}" encrypt with codec key ${first.poller.codec} ("${first.poller.identity}"), which this process (${hostname()}:${process.pid}, codec=${codec.activeFingerprint}) does not hold: a workflow started from here would fail on them and its result could not be read here. ${SHARE_CODEC_KEYS_HINT}`,
    );
  }
  if (unheld) {
    throw new CodecKeyError(
      codec.activeFingerprint,
      `the worker "${unheld.poller.identity}" of task queue "${taskQueue}" does not hold codec key ${codec.activeFingerprint}, which this process (${hostname()}:${process.pid}) encrypts with: a workflow started from here would fail on it. ${CODEC_KEY_ROTATION_ORDER}`,
    );
  }
}
