/**
 * Operator reads of state as short workflows: `credentialsPage`,
 * `credentialSummary` and `auditPage` each run one activity that reads the
 * store on a worker, wherever the worker runs. A client (the CLI on an
 * operator's laptop) needs only Temporal: no data dir, no database URL, and
 * Temporal decides who may read (namespace permissions, mTLS, API keys).
 *
 * Inputs and results are ids, labels, counts and times, one bounded page at a
 * time; never a secret value. Workflow ids are `state-read/<what>/<uuid>`.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { AuditPage, CredentialsPage, StateReadActivities } from '../activities/state-read';
import type { CredentialSummary } from '../state/types';
import type { AuditPageInput, CredentialsPageInput } from '../domain/state-read';

// A read is cheap and idempotent: a few quick retries ride over a worker that dies mid-read;
// the whole read gives up within a minute (the client sets the run timeout) instead of hanging.
const acts = proxyActivities<StateReadActivities>({
  startToCloseTimeout: '15s',
  scheduleToCloseTimeout: '50s',
  retry: { initialInterval: '500ms', maximumInterval: '5s', maximumAttempts: 5 },
});

/** One page of credentials ordered by id: `{ credentials, next }` (`next`: the `after` of the next page, or null). */
export async function credentialsPage(input: CredentialsPageInput = {}): Promise<CredentialsPage> {
  return acts.readCredentialsPage(input);
}

/** One credential's labels, version count and last activity, or null when the store has none of it. */
export async function credentialSummary(input: { credentialId: string }): Promise<CredentialSummary | null> {
  return acts.readCredentialSummary(input);
}

/** One page of the audit trail, oldest first: `{ entries, before }` (`before`: the cursor of the next older page, or null). */
export async function auditPage(input: AuditPageInput = {}): Promise<AuditPage> {
  return acts.readAuditPage(input);
}
