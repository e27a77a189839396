/**
 * Opens the state backend in a child process (migrations run at open) and
 * prints `{ instanceId, applied, pending }` as JSON. Env: STATE_DATA_DIR,
 * STATE_DATABASE_URL (optional), STATE_MASTER_KEY (base64), STATE_GO (a
 * file whose appearance releases every child at once).
 */
import { existsSync } from 'node:fs';
import { openState } from '../../src/state';

async function main(): Promise<void> {
  const env = process.env;
  // Start together: wait for the parent's go file, so the children race the migrations.
  while (env.STATE_GO && !existsSync(env.STATE_GO)) await new Promise((r) => setTimeout(r, 5));
  const state = await openState({ dataDir: env.STATE_DATA_DIR!, databaseUrl: env.STATE_DATABASE_URL, masterKey: Buffer.from(env.STATE_MASTER_KEY!, 'base64') });
  const status = await state.migrationStatus();
  await state.close();
  process.stdout.write(JSON.stringify({ instanceId: state.instanceId, ...status }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
