/**
 * `integration-agent state migrate --to postgres://…`: moves an install's
 * state (by default the embedded SQLite file of the data dir, or whatever
 * INTEGRATION_AGENT_DATABASE_URL names) into a PostgreSQL database, which is
 * created and migrated first. See docs/state.md.
 *
 * The target URL may hold a password: it is taken from `--to` or, better
 * (argv is visible to other users of the host), from
 * INTEGRATION_AGENT_TARGET_DATABASE_URL, and never printed beyond host, port
 * and database. The target's master key is the source's unless
 * INTEGRATION_AGENT_TARGET_MASTER_KEY (base64 of 32 bytes) gives another:
 * secrets are then encrypted again under it.
 */
import type { Command } from 'commander';
import { loadConfig } from '../../../worker/config';
import { loadMasterKey, openPostgresState, openSqliteState, SecretCipher, type PostgresState, type SqliteState } from '../../../state';
import { copyState, TargetNotEmptyError } from '../../../state/copy';
import { describeUrl } from '../../../state/postgres';
import { CliError, emit } from '../context';

export function register(program: Command): void {
  const state = program.command('state').description('the state backend (credentials, audit trail, health history, dead letters)');

  state
    .command('migrate')
    .description('copy this install\'s state into a PostgreSQL database (then point every worker at it with INTEGRATION_AGENT_DATABASE_URL)')
    .option('--to <url>', 'target postgres:// URL (default: INTEGRATION_AGENT_TARGET_DATABASE_URL, which keeps the password off the command line)')
    .option('--force', 'copy into a target that already holds state (rows already there are kept)')
    .option('--json', 'print the counts as JSON')
    .action(async (opts: { to?: string; force?: boolean; json?: boolean }) => {
      const config = loadConfig();
      const to = opts.to ?? process.env.INTEGRATION_AGENT_TARGET_DATABASE_URL;
      if (!to) throw new CliError('state migrate: give the target with --to postgres://user:password@host:5432/db or INTEGRATION_AGENT_TARGET_DATABASE_URL');
      if (!/^postgres(ql)?:\/\/\S+$/.test(to)) throw new CliError('state migrate: the target must be a postgres:// or postgresql:// URL');
      if (config.databaseUrl !== undefined && describeUrl(config.databaseUrl) === describeUrl(to)) {
        throw new CliError(`state migrate: the target ${describeUrl(to)} is the database this install already uses (INTEGRATION_AGENT_DATABASE_URL)`);
      }
      const sourceKey = loadMasterKey(config.dataDir);
      const targetKeyText = process.env.INTEGRATION_AGENT_TARGET_MASTER_KEY;
      let targetKey = sourceKey;
      if (targetKeyText) {
        targetKey = Buffer.from(targetKeyText, 'base64');
        if (targetKey.length !== 32) throw new CliError(`INTEGRATION_AGENT_TARGET_MASTER_KEY must be base64 of exactly 32 bytes (got ${targetKey.length} bytes); generate one with: openssl rand -base64 32`);
      }
      const from = config.databaseUrl ? `PostgreSQL ${describeUrl(config.databaseUrl)}` : `the embedded database in ${config.dataDir}`;
      let source: SqliteState | PostgresState | undefined;
      let target: PostgresState | undefined;
      try {
        source = config.databaseUrl
          ? await openPostgresState({ databaseUrl: config.databaseUrl, masterKey: sourceKey, secretCache: { maxAgeMs: 0 } })
          : await openSqliteState({ dataDir: config.dataDir, masterKey: sourceKey });
        target = await openPostgresState({ databaseUrl: to, masterKey: targetKey, secretCache: { maxAgeMs: 0 }, urlSource: opts.to ? '--to' : 'INTEGRATION_AGENT_TARGET_DATABASE_URL' });
        const counts = await copyState(source, target, { sourceCipher: new SecretCipher(sourceKey), targetCipher: new SecretCipher(targetKey), force: opts.force });
        const reencrypted = !targetKey.equals(sourceKey);
        emit(opts, { from, to: describeUrl(to), instanceId: target.instanceId, reencrypted, ...counts }, () =>
          [
            `copied from ${from} to PostgreSQL ${describeUrl(to)}${reencrypted ? ' (secrets encrypted again under the target master key)' : ''}:`,
            `  ${counts.credentialVersions} credential versions of ${counts.credentials} credentials`,
            `  ${counts.auditEntries} audit entries`,
            `  ${counts.healthSpans} health spans, ${counts.healthBuckets} latency histogram rows`,
            `  ${counts.deadLetters} webhook dead letters`,
            `next: stop the workers; on every worker and CLI set INTEGRATION_AGENT_DATABASE_URL and INTEGRATION_AGENT_MASTER_KEY (${reencrypted ? 'the target key' : `the key this install used${process.env.INTEGRATION_AGENT_MASTER_KEY ? '' : `: the contents of ${config.dataDir}/master.key`}`}); start the workers again`,
          ].join('\n'),
        );
      } catch (err) {
        if (err instanceof TargetNotEmptyError) throw new CliError(`state migrate: ${err.message}`);
        throw err;
      } finally {
        await target?.close().catch(() => undefined);
        await source?.close().catch(() => undefined);
      }
    });
}
