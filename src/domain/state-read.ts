/**
 * Page sizes and cursors of the operator reads of state (`credentials list`,
 * `audit`), shared by the client, the `state-read` workflows and their
 * activities. Pages keep every payload bounded, however large the fleet.
 */

/** Audit entries per page when no limit is given. */
export const AUDIT_PAGE_DEFAULT = 100;
/** Most audit entries one page may hold. */
export const AUDIT_PAGE_MAX = 1000;
/** Credentials per page when no limit is given. */
export const CREDENTIALS_PAGE_DEFAULT = 500;
/** Most credentials one page may hold. */
export const CREDENTIALS_PAGE_MAX = 1000;

/** One page of credentials, ordered by id. */
export interface CredentialsPageInput {
  /** Start after this credential id (the `next` of the previous page); default: from the first. */
  after?: string;
  /** 1..CREDENTIALS_PAGE_MAX, default CREDENTIALS_PAGE_DEFAULT. */
  limit?: number;
}

/** One page of the audit trail: the newest `limit` entries older than `before`. */
export interface AuditPageInput {
  /** Only this credential's entries. */
  credentialId?: string;
  /** Only entries with an id below this one (the `before` of the previous page); default: up to the newest. */
  before?: number;
  /** 1..AUDIT_PAGE_MAX, default AUDIT_PAGE_DEFAULT. */
  limit?: number;
}
