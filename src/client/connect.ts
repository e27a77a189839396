/**
 * Connecting to Temporal as a client, with the same payload codec as the workers.
 */
import { Client, Connection } from '@temporalio/client';
import { AesGcmCodec } from '../codec/aes-gcm-codec';
import { loadCodecKeys } from '../codec/keys';
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
