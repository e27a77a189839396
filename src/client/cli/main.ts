/**
 * `integration-agent`: the command line for people and scripts.
 * Every command takes `--json`; user errors print one line and exit non-zero
 * (no stack traces; set INTEGRATION_AGENT_DEBUG=1 to see one).
 */
import { Command, CommanderError } from 'commander';
import { CliError } from './context';
import { describeWorkflowFailure, isWorkflowFailure } from '../failure';
import { register as registerDev } from './commands/dev';
import { register as registerDemoFleet } from './commands/demo-fleet';
import { register as registerWorker } from './commands/worker';
import { register as registerSweep } from './commands/sweep';
import { register as registerCodecServer } from './commands/codec-server';
import { register as registerRegistry } from './commands/registry';
import { register as registerCredentials } from './commands/credentials';
import { register as registerBreakers } from './commands/breakers';
import { register as registerHealth } from './commands/health';
import { register as registerWebhooks } from './commands/webhooks';
import { register as registerDoctor } from './commands/doctor';
import { register as registerState } from './commands/state';
import { register as registerDashboard } from './commands/dashboard';

/** Builds the program with every command registered (exported for tests). */
export function buildProgram(): Command {
  const program = new Command('integration-agent')
    .description('Keeps a fleet of external services healthy and their credentials fresh, on Temporal.')
    .version(require('../../../package.json').version as string)
    .exitOverride();
  for (const register of [
    registerDev,
    registerDemoFleet,
    registerWorker,
    registerSweep,
    registerHealth,
    registerCredentials,
    registerBreakers,
    registerRegistry,
    registerWebhooks,
    registerCodecServer,
    registerDoctor,
    registerState,
    registerDashboard,
  ]) register(program);
  return program;
}

/** Turns any error into one line a user can act on. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const grpcDetails = (err as { details?: string }).details;
    const first = (grpcDetails || err.message).split('\n')[0];
    if (err.name === 'WorkflowNotFoundError') return `workflow not found: ${first}`;
    if (isWorkflowFailure(err)) return describeWorkflowFailure(err);
    if (err.name === 'RegistryValidationError') return err.message; // one problem per line, by design
    if (err.name === 'ClusterCheckError') return err.message; // the commands to run, one per line
    return first ?? String(err);
  }
  return String(err);
}

/** Runs the CLI with `argv` and exits the process with the command's code. */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    process.stderr.write(`integration-agent: ${describeError(err)}\n`);
    if (process.env.INTEGRATION_AGENT_DEBUG) console.error(err);
    process.exitCode = err instanceof CliError ? err.exitCode : 1;
  }
}
