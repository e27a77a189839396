/**
 * Reads of the state store through Temporal: the credentials with their
 * staging labels, one credential's summary, and the audit trail. Each call
 * starts a short `state-read` workflow whose activity reads the store on a
 * worker, so a client needs only a Temporal connection (with the
 * deployment's codec keys): no data dir, no database URL. Who may read is
 * decided by Temporal (namespace permissions, mTLS, API keys).
 *
 * Every answer is one bounded page (ids, labels, counts and times; never a
 * secret value); page with the cursor each page returns.
 */
import { randomUUID } from 'node:crypto';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { rootCauseMessage } from './failure';
import { DEFAULT_TASK_QUEUE } from '../domain/constants';
import { AUDIT_PAGE_MAX, CREDENTIALS_PAGE_MAX, type AuditPageInput, type CredentialsPageInput } from '../domain/state-read';
import type { AuditPage, CredentialsPage } from '../activities/state-read';
import type { AuditEntry, CredentialSummary } from '../state/types';
import type { auditPage, credentialSummary, credentialsPage } from '../workflows/state-read';
import { requireWorker } from './connect';

export type { AuditEntry, AuditPage, AuditPageInput, CredentialSummary, CredentialsPage, CredentialsPageInput };
export { AUDIT_PAGE_DEFAULT, AUDIT_PAGE_MAX, CREDENTIALS_PAGE_DEFAULT, CREDENTIALS_PAGE_MAX } from '../domain/state-read';

/** Longest a state read may take from start to result, ms; then it fails instead of waiting on a stuck worker. */
export const STATE_READ_TIMEOUT_MS = 60_000;

export interface StateReadOptions {
  /** The workers' task queue; default `integration-agent` (DEFAULT_TASK_QUEUE). */
  taskQueue?: string;
}

/** A state read that failed or timed out; the message names the workflow id and what to check. */
export class StateReadError extends Error {
  constructor(
    readonly workflowId: string,
    message: string,
  ) {
    super(message);
    this.name = 'StateReadError';
  }
}

function check(name: string, value: number | undefined, max: number): void {
  if (value !== undefined && (!Number.isInteger(value) || value < 1 || value > max)) throw new RangeError(`${name}: expected an integer from 1 to ${max}, got ${value}`);
}

async function read<W extends (input: never) => Promise<unknown>>(client: Client, what: string, workflowType: string, arg: Parameters<W>[0], opts: StateReadOptions): Promise<Awaited<ReturnType<W>>> {
  const taskQueue = opts.taskQueue ?? DEFAULT_TASK_QUEUE;
  await requireWorker(client, taskQueue);
  const workflowId = `state-read/${what}/${randomUUID()}`; // what: credentials, credential/<id>, audit
  try {
    return (await client.workflow.execute(workflowType, {
      taskQueue,
      workflowId,
      args: [arg],
      workflowExecutionTimeout: STATE_READ_TIMEOUT_MS,
    })) as Awaited<ReturnType<W>>;
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err;
    const timedOut = err.cause?.name === 'TimeoutFailure' || /timed out/i.test(err.message);
    throw new StateReadError(
      workflowId,
      timedOut
        ? `state read ${workflowId} did not finish within ${STATE_READ_TIMEOUT_MS / 1000}s: check that the workers of task queue "${taskQueue}" are running and reach their state store (their logs say why)`
        : `state read ${workflowId} failed: ${rootCauseMessage(err)}`,
    );
  }
}

/**
 * One page of credentials ordered by id, each with its CURRENT, PENDING and
 * PREVIOUS version ids, version count and last activity (epoch ms).
 * @param opts.after the `next` of the previous page; opts.limit 1..1000 (default 500).
 * @returns `{ credentials, next }`, `next` null on the last page.
 * @throws RangeError for a bad limit; NoWorkerError when no worker polls the task queue; StateReadError when the read fails or times out.
 */
export async function listCredentials(client: Client, opts: StateReadOptions & CredentialsPageInput = {}): Promise<CredentialsPage> {
  check('limit', opts.limit, CREDENTIALS_PAGE_MAX);
  return read<typeof credentialsPage>(client, 'credentials', 'credentialsPage', { after: opts.after, limit: opts.limit }, opts);
}

/**
 * Every credential, page after page (each page one bounded workflow).
 * @param opts.limit credentials per page (default 500).
 * @throws as {@link listCredentials}.
 */
export async function* allCredentials(client: Client, opts: StateReadOptions & { limit?: number } = {}): AsyncGenerator<CredentialSummary> {
  let after: string | undefined;
  do {
    const page = await listCredentials(client, { ...opts, after });
    yield* page.credentials;
    after = page.next ?? undefined;
  } while (after !== undefined);
}

/**
 * What {@link listCredentials} shows for one credential.
 * @returns null when the store holds no version of it.
 * @throws NoWorkerError, StateReadError.
 */
export async function getCredential(client: Client, credentialId: string, opts: StateReadOptions = {}): Promise<CredentialSummary | null> {
  return read<typeof credentialSummary>(client, `credential/${credentialId}`, 'credentialSummary', { credentialId }, opts);
}

/**
 * One page of the append-only audit trail, oldest first: the newest `limit`
 * entries with an id below `before` (never secret values).
 * @param opts.credentialId only this credential; opts.before the `before` of the previous page (page back); opts.limit 1..1000 (default 100).
 * @returns `{ entries, before }`, `before` null when no older entry exists.
 * @throws RangeError for a bad limit or cursor; NoWorkerError; StateReadError.
 */
export async function readAuditTrail(client: Client, opts: StateReadOptions & AuditPageInput = {}): Promise<AuditPage> {
  check('limit', opts.limit, AUDIT_PAGE_MAX);
  check('before', opts.before, Number.MAX_SAFE_INTEGER);
  return read<typeof auditPage>(client, 'audit', 'auditPage', { credentialId: opts.credentialId, before: opts.before, limit: opts.limit }, opts);
}
