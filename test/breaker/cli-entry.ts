/** The real CLI (lead's program) with the breaker commands registered, for the CLI test to spawn. */
import { CommanderError } from 'commander';
import { buildProgram, describeError } from '../../src/client/cli/main';
import { register } from '../../src/client/cli/commands/breakers';
import { CliError } from '../../src/client/cli/context';

async function run(): Promise<void> {
  const program = buildProgram();
  if (!program.commands.some((c) => c.name() === 'breakers')) register(program);
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    process.stderr.write(`integration-agent: ${describeError(err)}\n`);
    process.exitCode = err instanceof CliError ? err.exitCode : 1;
  }
}
void run();
