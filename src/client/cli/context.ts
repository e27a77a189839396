/**
 * What every CLI command shares: output in human or `--json` form, user-facing
 * errors (one line, non-zero exit, never a stack trace), and a lazily
 * connected Temporal client.
 */

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
