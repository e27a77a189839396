/**
 * Reads of the state store for operators, run on a worker (the `state-read`
 * workflows start them). The CLI and other programs reach state through
 * Temporal, so they need neither a data dir nor database credentials, and
 * access control is Temporal's (namespace permissions, mTLS, API keys).
 *
 * Every answer is one bounded page (no payload grows with the fleet) and
 * holds ids, labels, counts and times only: never a secret value.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { AuditEntry, CredentialStore, CredentialSummary } from '../state/types';
import { AUDIT_PAGE_DEFAULT, AUDIT_PAGE_MAX, CREDENTIALS_PAGE_DEFAULT, CREDENTIALS_PAGE_MAX, type AuditPageInput, type CredentialsPageInput } from '../domain/state-read';

export type { AuditPageInput, CredentialsPageInput } from '../domain/state-read';

/** One page of credentials; `next` is the `after` of the next page, null on the last. */
export interface CredentialsPage {
  credentials: CredentialSummary[];
  next: string | null;
}

/** One page of the audit trail, oldest first; `before` is the cursor of the next older page, null when none is older. */
export interface AuditPage {
  entries: AuditEntry[];
  before: number | null;
}

export interface StateReadDeps {
  /** The same store the rotation activities write (embedded SQLite or the shared backend). */
  credentials: CredentialStore;
}

function pageSize(name: string, value: number | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw ApplicationFailure.nonRetryable(`${name}: expected an integer from 1 to ${max}, got ${value}`, 'BadStateReadInput');
  }
  return value;
}

/**
 * `readCredentialsPage`, `readCredentialSummary`, `readAuditPage`.
 * Bad input (a page size out of range) fails non-retryably with type `BadStateReadInput`.
 */
export function createStateReadActivities(deps: StateReadDeps) {
  const store = deps.credentials;
  return {
    /**
     * One page of credentials ordered by id.
     * @returns `{ credentials, next }`; `next` is the cursor (`after`) of the next page, null on the last one.
     */
    async readCredentialsPage(input: CredentialsPageInput = {}): Promise<CredentialsPage> {
      const limit = pageSize('limit', input.limit, CREDENTIALS_PAGE_DEFAULT, CREDENTIALS_PAGE_MAX);
      // One extra row tells whether a next page exists without a second query.
      const rows = await store.listCredentials({ after: input.after, limit: limit + 1 });
      const credentials = rows.slice(0, limit);
      return { credentials, next: rows.length > limit ? credentials[credentials.length - 1].credentialId : null };
    },

    /** What `readCredentialsPage` shows for one credential, or null when the store has no version of it. */
    async readCredentialSummary(input: { credentialId: string }): Promise<CredentialSummary | null> {
      const [labels, versions, last] = await Promise.all([
        store.labels(input.credentialId),
        store.listVersions(input.credentialId),
        store.auditTrail({ credentialId: input.credentialId, limit: 1 }),
      ]);
      if (versions.length === 0) return null;
      return {
        credentialId: input.credentialId,
        current: labels.CURRENT?.versionId ?? null,
        pending: labels.PENDING?.versionId ?? null,
        previous: labels.PREVIOUS?.versionId ?? null,
        superseded: versions.filter((v) => v.supersededBy !== null && v.revokedAt === null).map((v) => v.versionId).sort(),
        versions: versions.length,
        lastActivityAt: last[0]?.at ?? null,
      };
    },

    /**
     * One page of the audit trail, oldest first: the newest `limit` entries
     * below `before` (all entries when unset), optionally of one credential.
     * @returns `{ entries, before }`; `before` is the cursor of the next older page, null when there is none.
     */
    async readAuditPage(input: AuditPageInput = {}): Promise<AuditPage> {
      const limit = pageSize('limit', input.limit, AUDIT_PAGE_DEFAULT, AUDIT_PAGE_MAX);
      if (input.before !== undefined && (!Number.isSafeInteger(input.before) || input.before < 1)) {
        throw ApplicationFailure.nonRetryable(`before: expected a positive audit entry id, got ${input.before}`, 'BadStateReadInput');
      }
      const rows: AuditEntry[] = await store.auditTrail({ credentialId: input.credentialId, before: input.before, limit: limit + 1 });
      // Oldest first: an extra row at the front means older entries exist.
      const entries = rows.length > limit ? rows.slice(rows.length - limit) : rows;
      return { entries, before: rows.length > limit ? entries[0].id : null };
    },
  };
}

export type StateReadActivities = ReturnType<typeof createStateReadActivities>;
