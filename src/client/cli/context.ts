/**
 * What every CLI command shares: output in human or `--json` form, user-facing
 * errors (one line, non-zero exit, never a stack trace), and a lazily
 * connected Temporal client.
 */

import type { Client } from '@temporalio/client';
import { loadConfig, type Config } from '../../worker/config';
import { connectClient } from '../connect';

/** An error meant for the user: printed as one line, exit code `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export interface GlobalOptions {
  json?: boolean;
}

/** Prints `value` as JSON when `--json`, else the human text. */
export function emit(opts: GlobalOptions, value: unknown, human: () => string): void {
  if (opts.json) process.stdout.write(JSON.stringify(value, null, 2) + '\n');
  else process.stdout.write(human() + '\n');
}

/**
 * Runs `fn` with a Temporal client connected from the environment's
 * configuration, and closes the connection afterwards, whether `fn` resolves or throws.
 * @throws ConfigError for bad configuration, TemporalUnreachableError when the server cannot be reached.
 */
export async function withClient<T>(fn: (client: Client, config: Config) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const client = await connectClient(config);
  try {
    return await fn(client, config);
  } finally {
    await client.connection.close();
  }
}
