/**
 * Credential commands:
 *
 * - `rotate ID [--dry-run] [--force] [--grace-period 30s] [--json]`: run the
 *   rotation saga and wait, with a progress bar on a terminal; exit 0 only
 *   when the result is `completed`. `--json` prints
 *   `{ credentialId, workflowId, status, versionId, services: [{ id, step, status }] }`.
 * - `credentials import ID [--file PATH] [--version-id ISSUER_ID]`: record an
 *   existing secret as CURRENT; the value comes from stdin or a file, never
 *   from argv. `--version-id` is the issuer's id of that version, so a later
 *   rotation can revoke it there; without it the id is local (invented here).
 * - `credentials list [--limit N] [--after ID]`, `credentials status ID`, `credentials cancel ID`, `credentials end-grace ID`.
 * - `audit [--credential ID] [--limit N] [--before ID]`: the append-only audit trail, one page.
 *
 * `credentials list|status` and `audit` read the store through Temporal (the
 * `state-read` workflows run the read on a worker): they need no data dir and
 * no database URL, only what every client needs (address, task queue, codec keys).
 *
 * A credential id the registry does not have (INTEGRATION_AGENT_REGISTRY's
 * file, else the workers' registry, asked through Temporal) is refused with a
 * did-you-mean: always by `rotate` and `credentials import` (nothing is
 * started or written), and by the others when nothing is recorded for it
 * (the store and the trail keep credentials since removed from the registry).
 *
 * Secret values are never printed: output carries credential and version ids only.
 */
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { Command } from 'commander';
import { openState, type StateBackend } from '../../../state';
import { formatDuration, parseDuration } from '../../../domain/duration';
import type { RotationResult } from '../../../domain/rotation';
import { listPollers } from '../../../worker/cluster-check';
import { loadConfig, type Config } from '../../../worker/config';
import { connectClient, NoWorkerError, requireWorker } from '../../connect';
import { cancelRotation, endGracePeriod, getRotation, rotate, RotationAlreadyRunningError, type RotationProgress } from '../../rotation';
import { AUDIT_PAGE_MAX, CREDENTIALS_PAGE_MAX, getCredential, listCredentials, readAuditTrail, StateReadError, type CredentialSummary } from '../../state';
import { CliError, emit, withClient } from '../context';
import { requireKnownId } from '../registry-source';
import { formatTable } from '../table';

const SLUG = /^[a-z0-9][a-z0-9-]*$/;

/** The issuer's version ids we accept: what issuers use (UUIDs, numbers, `v-…`, `2024-01-01T00:00:00Z`), safe in a URL path segment and a log line. */
const VERSION_ID = /^[A-Za-z0-9][A-Za-z0-9._:+=-]*$/;
/** Longest `--version-id` accepted, characters (AWS Secrets Manager's VersionId is at most 64; room for longer issuer ids). */
export const VERSION_ID_MAX = 128;

/**
 * Commander parser for `credentials import --version-id`.
 * @throws CliError naming the value (a version id is not secret) and the rule.
 */
export function versionIdOption(v: string): string {
  const rule = `use the issuer's id of this version: 1 to ${VERSION_ID_MAX} characters, letters, digits and . _ : + = -, starting with a letter or digit`;
  if (v.length === 0) throw new CliError(`--version-id is empty: ${rule}`);
  if (v.length > VERSION_ID_MAX) throw new CliError(`--version-id is ${v.length} characters long, at most ${VERSION_ID_MAX} are allowed: ${rule}`);
  if (!VERSION_ID.test(v)) throw new CliError(`--version-id ${JSON.stringify(v)}: ${rule}`);
  return v;
}

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
    // The fan-out depends on the number of consumers when the credential sets none (defaultFanOut).
    const fanOut = r.plan.fanOut === 'activity' ? 'activity (one activity for consecutive batches)' : 'workflow (an activity per consumer step)';
    lines.push(`fan-out: ${fanOut}`);
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

/**
 * `credentials import` writes secret material, so it goes to the store
 * itself (the configured backend: INTEGRATION_AGENT_DATABASE_URL or the
 * embedded file in the data dir), never through workflow history.
 */
async function withStore<T>(fn: (store: StateBackend['credentials']) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const state = await openState({ dataDir: config.dataDir, databaseUrl: config.databaseUrl });
  try {
    await refuseOtherStore(config, state);
    return await fn(state.credentials);
  } finally {
    await state.close();
  }
}

/**
 * Refuses to write to a store the workers of the task queue do not use: a
 * CLI without the workers' INTEGRATION_AGENT_DATABASE_URL would otherwise
 * import into a local embedded file no worker reads, and say it succeeded.
 * The workers' identities carry their store's id (`state=<id8>`). When
 * Temporal cannot be reached or no worker polls (a first install, the
 * workers not started yet), there is nothing to compare with and the write goes on.
 * @throws CliError naming the workers' store and what to set.
 */
async function refuseOtherStore(config: Config, state: StateBackend): Promise<void> {
  let client;
  try {
    client = await connectClient(config);
  } catch {
    return;
  }
  try {
    const mine = state.instanceId.slice(0, 8);
    const pollers = await listPollers(client.connection, config.namespace, config.taskQueue).catch(() => []);
    const other = pollers.find((p) => p.state && p.state !== mine);
    if (other) {
      const here = state.kind === 'postgres' ? 'the database of INTEGRATION_AGENT_DATABASE_URL' : `the embedded database in ${config.dataDir}`;
      throw new CliError(
        `the workers on task queue "${config.taskQueue}" use another state store (state=${other.state}, worker "${other.identity}") than this command (state=${mine}, ${here}): ` +
          'nothing was imported. Set INTEGRATION_AGENT_DATABASE_URL (and INTEGRATION_AGENT_MASTER_KEY) to the values the workers use, then run the import again.',
      );
    }
  } finally {
    await client.connection.close();
  }
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

const CREDENTIAL_COLUMNS = ['CREDENTIAL', 'CURRENT', 'PENDING', 'PREVIOUS', 'VERSIONS', 'LAST ACTIVITY'];
/** PENDING shows, after the label's holder, every superseded leftover PENDING not yet revoked (a forced rotation is replacing it). */
const pendingCell = (c: CredentialSummary) => [c.pending, ...(c.superseded ?? []).map((v) => `${v} (superseded, not revoked)`)].filter(Boolean).join(', ') || '-';
const credentialRow = (c: CredentialSummary) => [c.credentialId, c.current ?? '-', pendingCell(c), c.previous ?? '-', String(c.versions), time(c.lastActivityAt)];

/** Commander parser for `--limit`: an integer in 1..max. */
const limitOption = (max: number) => (v: string) => {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1 || n > max) throw new CliError(`--limit: expected an integer from 1 to ${max}, got "${v}"`);
  return n;
};

/** State reads fail as one line for the user (which workflow, what to check). */
async function stateRead<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StateReadError) throw new CliError(err.message);
    throw err;
  }
}

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
        // An unknown id is refused before a `rotation/<id>` workflow is started only to fail: first of all when
        // INTEGRATION_AGENT_REGISTRY's file can tell, else once a worker is there to ask.
        if (config.registryPath) await requireKnownId(client, config, 'credential', credentialId);
        await requireWorker(client, config.taskQueue);
        if (!config.registryPath) await requireKnownId(client, config, 'credential', credentialId);
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
    .option(
      '--version-id <id>',
      "the issuer's id of this version, so a rotation can revoke it there once it is PREVIOUS; without it the id is local and the issuer is never asked (the rotation reports it not revoked)",
      versionIdOption,
    )
    .option('--json', 'print the result as JSON')
    .action(async (id: string, opts: { file?: string; versionId?: string; json?: boolean }) => {
      const credentialId = credentialIdArg(id);
      const { labels, versionId } = await withStore(async (store) => {
        // After the check that this is the workers' store (the deeper mistake), before the secret is read and any write.
        await requireKnownId(undefined, loadConfig(), 'credential', credentialId);
        const secret = await readSecretInput(opts.file);
        const labels = await store.labels(credentialId);
        if (labels.PENDING) {
          throw new CliError(`credential ${credentialId} has PENDING version ${labels.PENDING.versionId} (a rotation is running or needs attention); finish or roll it back first`);
        }
        // A version id is printed, listed, audited and alerted: the secret itself must never be one (never echoed here).
        if (opts.versionId !== undefined && opts.versionId === secret) {
          throw new CliError(`--version-id is the secret itself: nothing was imported. Pass the issuer's id of this version (its name or number at the issuer), never the secret`);
        }
        if (opts.versionId !== undefined && (await store.getVersion(credentialId, opts.versionId))) {
          throw new CliError(`credential ${credentialId} already has version ${opts.versionId} in the store: nothing was imported. Pass the issuer's id of this secret, or leave --version-id out`);
        }
        return { labels, versionId: await store.importCurrent(credentialId, secret, `cli:${userInfo().username}`, opts.versionId) };
      });
      const versionIdSource = opts.versionId === undefined ? 'local' : 'issuer';
      emit(opts, { credentialId, versionId, versionIdSource, label: 'CURRENT', previousVersionId: labels.CURRENT?.versionId ?? null }, () =>
        [
          `imported ${credentialId} as CURRENT version ${versionId}${labels.CURRENT ? ` (${labels.CURRENT.versionId} is now PREVIOUS)` : ''}`,
          ...(versionIdSource === 'local'
            ? [
                `${versionId} is a local id: the issuer never saw it, so a rotation cannot revoke this secret there and will say so (previousRevoked: false).`,
                `Import with --version-id <the issuer's id> to have it revoked.`,
              ]
            : []),
        ].join('\n'),
      );
    });

  creds
    .command('list')
    .description('credentials in the store with their CURRENT, PENDING and PREVIOUS versions (read on a worker, through Temporal)')
    .option('--limit <n>', `only one page of n credentials (1..${CREDENTIALS_PAGE_MAX}); default: every credential, page after page`, limitOption(CREDENTIALS_PAGE_MAX))
    .option('--after <id>', 'start after this credential id (the last one of the previous page)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { limit?: number; after?: string; json?: boolean }) => {
      await withClient(async (client, config) => {
        const list: CredentialSummary[] = [];
        let after = opts.after;
        let more = false;
        // Each page is its own bounded workflow; without --limit the CLI walks them all.
        for (;;) {
          const page = await stateRead(() => listCredentials(client, { taskQueue: config.taskQueue, after, limit: opts.limit }));
          list.push(...page.credentials);
          if (page.next === null) break;
          if (opts.limit !== undefined) {
            more = true;
            break;
          }
          after = page.next;
        }
        emit(opts, list, () =>
          list.length === 0
            ? opts.after !== undefined
              ? `no credentials after ${opts.after}`
              : 'no credentials in the store (add one with `integration-agent credentials import ID`)'
            : formatTable(CREDENTIAL_COLUMNS, list.map(credentialRow)) + (more ? `\nmore: --after ${list[list.length - 1].credentialId}` : ''),
        );
      });
    });

  creds
    .command('status <credentialId>')
    .description('a credential as `credentials list` shows it, and its latest rotation: progress while running, the result once done')
    .option('--json', 'print the result as JSON')
    .action(async (id: string, opts: { json?: boolean }) => {
      const credentialId = credentialIdArg(id);
      await withClient(async (client, config) => {
        // The rotation is described by Temporal alone; the labels need a worker. Without one, the rotation is still shown.
        const [{ credential, error }, view] = await Promise.all([
          getCredential(client, credentialId, { taskQueue: config.taskQueue }).then(
            (found) => ({ credential: found, error: undefined as Error | undefined }),
            (err: unknown) => {
              if (err instanceof StateReadError || err instanceof NoWorkerError) return { credential: null, error: err as Error };
              throw err;
            },
          ),
          getRotation(client, credentialId),
        ]);
        if (!view && error) throw new CliError(error.message);
        if (!view && !credential) await requireKnownId(client, config, 'credential', credentialId);
        if (!view && !credential) throw new CliError(`credential ${credentialId} is not in the store and was never rotated (workflow id rotation/${credentialId}); import it with \`integration-agent credentials import ${credentialId}\``);
        emit(opts, { ...(view ?? { credentialId, workflowId: `rotation/${credentialId}`, executionStatus: null }), credential, ...(error ? { credentialError: error.message } : {}) }, () => {
          const head = credential
            ? formatTable(CREDENTIAL_COLUMNS, [credentialRow(credential)])
            : error
              ? `credential ${credentialId}: labels unavailable (${error.message})`
              : `credential ${credentialId}: no version in the store`;
          if (!view) return `${head}\nno rotation of ${credentialId} yet (workflow id rotation/${credentialId})`;
          if (view.progress) return `${head}\nrotation of ${credentialId} is running (run ${view.runId})\n${progressLine(view.progress)}`;
          if (view.result) return `${head}\n${formatRotation(view.result)}`;
          return `${head}\nrotation of ${credentialId}: workflow ${view.executionStatus.toLowerCase()} (run ${view.runId})`;
        });
      });
    });

  creds
    .command('cancel <credentialId>')
    .description('cancel the running rotation (before finish it rolls back)')
    .option('--json', 'print the result as JSON')
    .action(async (id: string, opts: { json?: boolean }) => {
      const credentialId = credentialIdArg(id);
      await withClient(async (client, config) => {
      const cancelled = await cancelRotation(client, credentialId);
      if (!cancelled) {
        await requireKnownId(client, config, 'credential', credentialId);
        throw new CliError(`no rotation of ${credentialId} is running`);
      }
      emit(opts, { credentialId, cancelRequested: true }, () => `cancellation of rotation/${credentialId} requested`);
      });
    });

  creds
    .command('end-grace <credentialId>')
    .description('end the grace period of the running rotation now (PREVIOUS is revoked at once)')
    .option('--json', 'print the result as JSON')
    .action(async (id: string, opts: { json?: boolean }) => {
      const credentialId = credentialIdArg(id);
      await withClient(async (client, config) => {
      try {
        await endGracePeriod(client, credentialId);
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
        await requireKnownId(client, config, 'credential', credentialId);
        throw new CliError(`no rotation of ${credentialId} is running (workflow id rotation/${credentialId})`);
      }
      emit(opts, { credentialId, signalled: true }, () => `grace period of rotation/${credentialId} ended`);
      });
    });

  program
    .command('audit')
    .description('the append-only audit trail of credential steps, one page, oldest first (never secret values; read on a worker, through Temporal)')
    .option('--credential <id>', 'only this credential')
    .option('--limit <n>', `only the newest n entries (1..${AUDIT_PAGE_MAX}, default 100)`, limitOption(AUDIT_PAGE_MAX))
    .option('--before <id>', 'only entries older than this entry id (page back: the first ID of the previous page)', (v) => {
      const n = Number(v);
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1) throw new CliError(`--before: expected an audit entry id (a positive integer), got "${v}"`);
      return n;
    })
    .option('--json', 'print the result as JSON')
    .action(async (opts: { credential?: string; limit?: number; before?: number; json?: boolean }) => {
      const credentialId = opts.credential === undefined ? undefined : credentialIdArg(opts.credential);
      await withClient(async (client, config) => {
        const page = await stateRead(() => readAuditTrail(client, { taskQueue: config.taskQueue, credentialId, limit: opts.limit, before: opts.before }));
        const trail = page.entries;
        // The trail keeps credentials since removed from the registry: only an id with no entry at all is checked.
        if (credentialId !== undefined && trail.length === 0 && opts.before === undefined) await requireKnownId(client, config, 'credential', credentialId);
        emit(opts, trail, () =>
          trail.length === 0
            ? 'no audit entries'
            : formatTable(
                ['ID', 'TIME', 'CREDENTIAL', 'STEP', 'SERVICE', 'VERSION', 'OUTCOME', 'ACTOR', 'DETAIL'],
                trail.map((e) => [String(e.id), time(e.at), e.credentialId, e.step, e.serviceId ?? '-', e.versionId ?? '-', e.outcome, e.actor, e.detail ?? '']),
              ) + (page.before !== null ? `\nolder entries: --before ${page.before}` : ''),
        );
      });
    });
}
