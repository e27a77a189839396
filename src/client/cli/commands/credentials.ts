/**
 * Credential commands:
 *
 * - `rotate ID [--dry-run] [--force] [--grace-period 30s] [--json]`: run the
 *   rotation saga and wait, with a progress bar on a terminal; exit 0 only
 *   when the result is `completed`. `--json` prints
 *   `{ credentialId, workflowId, status, versionId, services: [{ id, step, status }] }`.
 * - `credentials import ID [--file PATH]`: record an existing secret as
 *   CURRENT; the value comes from stdin or a file, never from argv.
 * - `credentials list`, `credentials status ID`, `credentials cancel ID`, `credentials end-grace ID`.
 * - `audit [--credential ID] [--limit N]`: the append-only audit trail.
 *
 * Secret values are never printed: output carries credential and version ids only.
 */
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { SqliteCredentialStore } from '../../../activities/credential-store';
import { formatDuration, parseDuration } from '../../../domain/duration';
import type { RotationResult } from '../../../domain/rotation';
import { loadConfig } from '../../../worker/config';
import { connectClient, requireWorker } from '../../connect';
import { cancelRotation, endGracePeriod, getRotation, rotate, RotationAlreadyRunningError, type RotationProgress } from '../../rotation';
import { CliError, emit, withClient } from '../context';
import { formatTable } from '../table';

const SLUG = /^[a-z0-9][a-z0-9-]*$/;

function credentialIdArg(id: string): string {
  if (!SLUG.test(id)) throw new CliError(`invalid credential id "${id}": use the registry id (lowercase letters, digits and "-")`);
  return id;
}

/** `{ credentialId, workflowId, status, versionId, services: [{ id, step, status }] }` plus cause/plan when present. */
export function rotationJson(r: RotationResult): Record<string, unknown> {
  return {
    credentialId: r.credentialId,
    workflowId: r.workflowId,
    status: r.status,
    versionId: r.versionId ?? null,
    services: r.services.map((s) => ({ id: s.id, step: s.step, status: s.status, ...(s.holds ? { holds: s.holds } : {}), ...(s.error ? { error: s.error } : {}) })),
    ...(r.previousVersionId ? { previousVersionId: r.previousVersionId } : {}),
    ...(r.previousRevoked !== undefined ? { previousRevoked: r.previousRevoked } : {}),
    ...(r.cause ? { cause: r.cause } : {}),
    ...(r.dryRun ? { dryRun: true, plan: r.plan } : {}),
  };
}

/** The human form of a rotation result. */
export function formatRotation(r: RotationResult): string {
  const head = r.dryRun
    ? `dry run of ${r.credentialId}: ${r.status === 'completed' ? 'ready to rotate' : 'would be refused'}`
    : `rotation of ${r.credentialId}: ${r.status}${r.versionId ? ` (version ${r.versionId})` : ''}`;
  const lines = [head];
  if (r.cause) lines.push(`cause: ${r.cause}`);
  if (r.dryRun && r.plan) {
    lines.push(`issuer ${r.plan.issuer} (${r.plan.provider}) mints; grace period ${formatDuration(r.plan.gracePeriodMs)}; up to ${r.plan.maxParallel} at once`);
    r.plan.batches.forEach((b, i) => lines.push(`batch ${i + 1}: ${b.join(', ')}`));
    if (!r.previousVersionId) lines.push('no CURRENT version: nothing to roll back to if a consumer fails');
    return lines.join('\n');
  }
  lines.push(formatTable(['SERVICE', 'STEP', 'STATUS', 'HOLDS', 'ERROR'], r.services.map((s) => [s.id, s.step, s.status, s.holds ?? '', s.error ?? ''])));
  return lines.join('\n');
}

/** One line: `[#####-----] 5/10 verified  phase set`. */
export function progressLine(p: RotationProgress, width = 24): string {
  const consumers = p.services.filter((s) => s.role === 'consumer');
  const done = consumers.filter((s) => s.status === 'ok' || s.status === 'skipped').length;
  const total = Math.max(consumers.length, 1);
  const filled = Math.round((done / total) * width);
  const running = consumers.filter((s) => s.status === 'running').map((s) => s.id);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${consumers.length} ${p.phase === 'compensate' ? 'restored' : 'done'}  phase ${p.phase}${running.length ? `  working on ${running.slice(0, 3).join(', ')}${running.length > 3 ? ', ...' : ''}` : ''}`;
}

function openStore(): SqliteCredentialStore {
  return new SqliteCredentialStore({ dataDir: loadConfig().dataDir });
}

async function readSecretInput(file: string | undefined): Promise<string> {
  let text: string;
  if (file) {
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read --file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  } else {
    if (process.stdin.isTTY) throw new CliError('pipe the secret on stdin (e.g. `pass show x | integration-agent credentials import ID`) or pass --file PATH; it is never taken from the command line');
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    text = Buffer.concat(chunks).toString('utf8');
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret.trim().length === 0) throw new CliError(`the secret read from ${file ? `--file ${file}` : 'stdin'} is empty or only white space`);
  return secret;
}

const time = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z'));

export function register(program: Command): void {
  program
    .command('rotate <credentialId>')
    .description('rotate a credential through its issuer and consumers (the rotation saga) and wait for the end')
    .option('--dry-run', 'show the plan and the preflight checks; change nothing')
    .option('--force', 'rotate even if a consumer breaker is OPEN, the issuer is unhealthy or a PENDING version is left over')
    .option('--grace-period <duration>', 'how long PREVIOUS stays valid after the switch (e.g. 30s, 1h); default from the registry')
    .option('--json', 'print the result as JSON')
    .action(async (id: string, opts: { dryRun?: boolean; force?: boolean; gracePeriod?: string; json?: boolean }) => {
      const credentialId = credentialIdArg(id);
      let gracePeriodMs: number | undefined;
      if (opts.gracePeriod !== undefined) {
        try {
          gracePeriodMs = parseDuration(opts.gracePeriod);
        } catch (err) {
          throw new CliError(`--grace-period: ${(err as Error).message}`);
        }
      }
      const config = loadConfig();
      const client = await connectClient(config);
      const tty = process.stderr.isTTY && !opts.json;
      let lastLine = '';
      try {
        await requireWorker(client, config.taskQueue);
        const result = await rotate(
          client,
          { credentialId, taskQueue: config.taskQueue, force: opts.force, dryRun: opts.dryRun, gracePeriodMs },
          {
            onProgress: (p) => {
              const line = progressLine(p);
              if (line === lastLine) return;
              lastLine = line;
              if (tty) process.stderr.write(`\r\x1b[2K${line}`);
            },
          },
        );
        if (tty && lastLine) process.stderr.write('\r\x1b[2K');
        // A run that failed before touching any service (unknown credential, refused plan) is a user error: one line.
        if (result.status === 'failed' && result.services.length === 0 && !opts.json) throw new CliError(`rotation of ${credentialId} failed: ${result.cause ?? 'see the workflow in the Web UI'}`);
        emit(opts, rotationJson(result), () => formatRotation(result));
        if (result.status !== 'completed') process.exitCode = 1;
      } catch (err) {
        if (err instanceof RotationAlreadyRunningError) throw new CliError(err.message);
        throw err;
      } finally {
        await client.connection.close();
      }
    });

  const creds = program.command('credentials').description('the credential store: import, list, rotation status');

  creds
    .command('import <credentialId>')
    .description('record an existing secret as the CURRENT version (read from stdin or --file, never from the command line)')
    .option('--file <path>', 'read the secret from this file instead of stdin')
    .option('--json', 'print the result as JSON')
    .action(async (id: string, opts: { file?: string; json?: boolean }) => {
      const credentialId = credentialIdArg(id);
      const secret = await readSecretInput(opts.file);
      const store = openStore();
      const labels = await store.labels(credentialId);
      if (labels.PENDING) {
        throw new CliError(`credential ${credentialId} has PENDING version ${labels.PENDING.versionId} (a rotation is running or needs attention); finish or roll it back first`);
      }
      const versionId = await store.importCurrent(credentialId, secret, `cli:${userInfo().username}`);
      emit(opts, { credentialId, versionId, label: 'CURRENT', previousVersionId: labels.CURRENT?.versionId ?? null }, () =>
        `imported ${credentialId} as CURRENT version ${versionId}${labels.CURRENT ? ` (${labels.CURRENT.versionId} is now PREVIOUS)` : ''}`,
      );
    });

  creds
    .command('list')
    .description('credentials in the store with their CURRENT, PENDING and PREVIOUS versions')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { json?: boolean }) => {
      const list = await openStore().listCredentials();
      emit(opts, list, () =>
        list.length === 0
          ? 'no credentials in the store (add one with `integration-agent credentials import ID`)'
          : formatTable(
              ['CREDENTIAL', 'CURRENT', 'PENDING', 'PREVIOUS', 'VERSIONS', 'LAST ACTIVITY'],
              list.map((c) => [c.credentialId, c.current ?? '-', c.pending ?? '-', c.previous ?? '-', String(c.versions), time(c.lastActivityAt)]),
            ),
      );
    });

  creds
    .command('status <credentialId>')
    .description('the latest rotation of a credential: progress while running, the result once done')
    .option('--json', 'print the result as JSON')
    .action(async (id: string, opts: { json?: boolean }) => {
      const credentialId = credentialIdArg(id);
      await withClient(async (client) => {
      const view = await getRotation(client, credentialId);
      if (!view) throw new CliError(`no rotation of ${credentialId} found (workflow id rotation/${credentialId})`);
      emit(opts, view, () => {
        if (view.progress) return `rotation of ${credentialId} is running (run ${view.runId})\n${progressLine(view.progress)}`;
        if (view.result) return formatRotation(view.result);
        return `rotation of ${credentialId}: workflow ${view.executionStatus.toLowerCase()} (run ${view.runId})`;
      });
      });
    });

  creds
    .command('cancel <credentialId>')
    .description('cancel the running rotation (before finish it rolls back)')
    .option('--json', 'print the result as JSON')
    .action(async (id: string, opts: { json?: boolean }) => {
      const credentialId = credentialIdArg(id);
      await withClient(async (client) => {
      const cancelled = await cancelRotation(client, credentialId);
      if (!cancelled) throw new CliError(`no rotation of ${credentialId} is running`);
      emit(opts, { credentialId, cancelRequested: true }, () => `cancellation of rotation/${credentialId} requested`);
      });
    });

  creds
    .command('end-grace <credentialId>')
    .description('end the grace period of the running rotation now (PREVIOUS is revoked at once)')
    .option('--json', 'print the result as JSON')
    .action(async (id: string, opts: { json?: boolean }) => {
      const credentialId = credentialIdArg(id);
      await withClient(async (client) => {
      await endGracePeriod(client, credentialId);
      emit(opts, { credentialId, signalled: true }, () => `grace period of rotation/${credentialId} ended`);
      });
    });

  program
    .command('audit')
    .description('the append-only audit trail of credential steps (never secret values)')
    .option('--credential <id>', 'only this credential')
    .option('--limit <n>', 'only the newest n entries', (v) => {
      const n = Number.parseInt(v, 10);
      if (!Number.isInteger(n) || n < 1) throw new CliError(`--limit: expected a positive integer, got "${v}"`);
      return n;
    })
    .option('--json', 'print the result as JSON')
    .action(async (opts: { credential?: string; limit?: number; json?: boolean }) => {
      const trail = await openStore().auditTrail({ credentialId: opts.credential === undefined ? undefined : credentialIdArg(opts.credential), limit: opts.limit });
      emit(opts, trail, () =>
        trail.length === 0
          ? 'no audit entries'
          : formatTable(
              ['TIME', 'CREDENTIAL', 'STEP', 'SERVICE', 'VERSION', 'OUTCOME', 'ACTOR', 'DETAIL'],
              trail.map((e) => [time(e.at), e.credentialId, e.step, e.serviceId ?? '-', e.versionId ?? '-', e.outcome, e.actor, e.detail ?? '']),
            ),
      );
    });
}
