/**
 * The state layer's interfaces: everything the agent keeps outside Temporal
 * (credential versions and labels, the audit trail, the health history, the
 * webhook dead letters) sits behind these, with two implementations side by
 * side — `sqlite/` (the embedded file under the data dir: one host) and
 * `postgres/` (any number of workers on any number of hosts). `openState`
 * (index.ts) picks one from the configuration.
 */
import type { CallOutcome } from '../domain/outcome';
import type { AvailabilitySpan, HealthFigures, ProbeResult } from '../domain/health';
import type { StagingLabel } from '../domain/rotation';
import type { SecretReader } from '../activities/ports';

/** One version of a credential, without its value. */
export interface CredentialVersion {
  credentialId: string;
  versionId: string;
  /** Staging label, or null for a deprecated version. */
  label: StagingLabel | null;
  /** Epoch ms. */
  createdAt: number;
  /** Epoch ms the issuer confirmed the revocation, or null. */
  revokedAt: number | null;
  /** Who created it: `import`, or the rotation (`rotation/<id>#<runId>`) that minted it. */
  createdBy: string;
  /**
   * Where the version id comes from: `issuer` (the issuer minted it, or it was
   * imported with the issuer's id, `credentials import --version-id`) or
   * `local` (invented by `credentials import`: the issuer has never seen it,
   * so it cannot be revoked there by id).
   */
  versionIdSource: VersionIdSource;
  /**
   * A leftover PENDING that a forced rotation replaced: the version that took
   * its PENDING label. Until `revokedAt` is set, consumers may still hold it
   * and the next preflight reports it; null otherwise.
   */
  supersededBy: string | null;
}

/** See {@link CredentialVersion.versionIdSource}. */
export type VersionIdSource = 'issuer' | 'local';

/** One line of the audit trail. Never holds a secret value. */
export interface AuditEntry {
  /** Increasing with insertion order (AUTOINCREMENT / BIGSERIAL). */
  id: number;
  /** Epoch ms. */
  at: number;
  credentialId: string;
  /** e.g. `import`, `mint`, `install`, `verify`, `finish`, `revoke`, `restore`, `discard_pending`, `rotation`. */
  step: string;
  serviceId: string | null;
  versionId: string | null;
  /** `ok`, `failed`, `started`, `completed`, `rolled_back`, `needs_attention`, ... */
  outcome: string;
  /** Who acted: `cli:<user>`, or `rotation/<id>#<runId>`. */
  actor: string;
  /** One line of detail (an error message), never a secret. */
  detail: string | null;
}

export type NewAuditEntry = Omit<AuditEntry, 'id' | 'at'> & {
  /** Epoch ms; default now. */
  at?: number;
  /**
   * Idempotency key of the event: when given, an entry with the same key is
   * written at most once whoever inserts it and however often (a retried
   * activity, two workers). Rotation activities derive it from workflow id,
   * run id, activity id, step and service.
   */
  eventKey?: string;
};

/** Summary of one credential for listings. */
export interface CredentialSummary {
  credentialId: string;
  current: string | null;
  pending: string | null;
  previous: string | null;
  /** Superseded leftover PENDING versions not yet revoked at the issuer (see {@link CredentialVersion.supersededBy}). */
  superseded: string[];
  versions: number;
  /** Epoch ms of the last audit entry, or null. */
  lastActivityAt: number | null;
}

/**
 * Versioned secrets with AWS Secrets Manager staging labels (CURRENT,
 * PENDING, PREVIOUS) and an append-only audit trail. Each method is atomic;
 * label moves happen in one transaction, serialised per credential across
 * every process sharing the database.
 */
export interface CredentialStore extends SecretReader {
  /** Version ids by label, or null. */
  labels(credentialId: string): Promise<Record<StagingLabel, CredentialVersion | null>>;
  getVersion(credentialId: string, versionId: string): Promise<CredentialVersion | undefined>;
  listVersions(credentialId: string): Promise<CredentialVersion[]>;
  /**
   * Credentials ordered by id. `after` starts the page after that id (a
   * cursor: pass the last id of the previous page); `limit` keeps at most
   * that many (default: all).
   */
  listCredentials(opts?: { after?: string; limit?: number }): Promise<CredentialSummary[]>;
  /**
   * Records an existing secret as CURRENT (the old CURRENT becomes PREVIOUS).
   * @param versionId the issuer's id of this version (source `issuer`); when
   *   omitted a local id `v-<12 chars>` is invented (source `local`).
   * @returns the new version id.
   * @throws Error when the credential already has a version with that id.
   */
  importCurrent(credentialId: string, secret: string, actor: string, versionId?: string): Promise<string>;
  /**
   * Records `versionId` as PENDING, created by `createdBy`. Idempotent: when
   * that version is already PENDING it is kept as is.
   *
   * With `opts.supersede` (a forced rotation replacing a leftover PENDING), in
   * the same transaction that version loses its PENDING label and records
   * `supersededBy = versionId`: it stays known (and reported) until revoked.
   * @throws Error when another version is PENDING (a leftover of another run) and it is not `opts.supersede`.
   */
  putPending(credentialId: string, versionId: string, secret: string, createdBy: string, opts?: { supersede?: string }): Promise<void>;
  /**
   * finishSecret: in one transaction, the old PREVIOUS loses its label, CURRENT
   * becomes PREVIOUS and PENDING `versionId` becomes CURRENT. Idempotent when
   * `versionId` is already CURRENT.
   * @returns the version now PREVIOUS (the old CURRENT), or null when there was none.
   * @throws Error when `versionId` is neither PENDING nor CURRENT.
   */
  promotePending(credentialId: string, versionId: string): Promise<string | null>;
  /** Removes the PENDING label from `versionId` (rollback); idempotent. */
  discardPending(credentialId: string, versionId: string): Promise<void>;
  /** Marks a version revoked at its issuer (epoch ms `at`); idempotent. */
  markRevoked(credentialId: string, versionId: string, at?: number): Promise<void>;
  /**
   * Appends to the audit trail (at most once per `eventKey`); resolves once
   * the entry is committed, its time (`at`, default now) taken at the call.
   * SQLite commits the entries of one event-loop turn in one transaction
   * (group commit, see `SqliteCredentialStore.audit`): they succeed or fail
   * together, and each caller is told which.
   */
  audit(entry: NewAuditEntry): Promise<void>;
  /**
   * Audit entries, oldest first; `credentialId` filters, `before` keeps
   * entries whose id is below it (a cursor: pass the first id of the previous
   * page to page back), `limit` keeps the newest n of those.
   */
  auditTrail(opts?: { credentialId?: string; before?: number; limit?: number }): Promise<AuditEntry[]>;
}

/**
 * The long health history: run-length availability spans per service and
 * hourly HDR latency histograms per service, source and writer process.
 * Several processes may write at once: spans are extended under a lock
 * serialising writers, each process writes only its own histogram rows, and
 * figures merge every writer's rows.
 */
export interface HealthHistory {
  /**
   * Records probe results in one transaction.
   * @param validityMs how long each result stands for, ms, per service (twice
   *   its check interval is the usual choice); must be > 0.
   * @throws RangeError when a validity is not > 0.
   */
  recordProbes(results: readonly ProbeResult[], validityMs: (serviceId: string) => number): Promise<void>;
  /**
   * Records real call outcomes (passive monitoring). Calls that never reached
   * the service (breaker open, local rate limit, aborted by the caller) are skipped.
   */
  recordCalls(outcomes: readonly CallOutcome[]): Promise<void>;
  /** Availability spans of a service overlapping `[fromMs, toMs)`, oldest first. */
  spans(serviceId: string, fromMs: number, toMs: number): Promise<AvailabilitySpan[]>;
  /**
   * Figures for one service at `now` (epoch ms): availability over
   * 1h/24h/7d/30d (src/domain/health.ts), p50/p95/p99 in ms and the error
   * rate over the last 24 clock hours, probes and real calls of every writer together.
   */
  figures(serviceId: string, now: number, slaAvailability?: number): Promise<HealthFigures>;
  /** Writes this process's buffered latency histograms now (worker shutdown). */
  flush(): Promise<void>;
  /** Deletes history older than the retention (epoch ms `now`). */
  prune(now: number): Promise<void>;
}

/** A webhook delivery that failed after the final attempt. */
export interface WebhookDeadLetter {
  id: number;
  eventId: string;
  subscriberId: string;
  /** The endpoints tried, in order. */
  endpoints: string[];
  idempotencyKey: string;
  attempts: number;
  lastError: string;
  /** Workflow that gave up (`webhook/<eventId>`). */
  workflowId: string;
  /** Epoch ms. */
  createdAt: number;
  updatedAt: number;
  /** Set once a redelivery succeeded. */
  resolvedAt?: number;
  resolvedBy?: string;
}

export interface RecordDeadLetterInput {
  eventId: string;
  subscriberId: string;
  endpoints: string[];
  payload: unknown;
  idempotencyKey: string;
  attempts: number;
  lastError: string;
  workflowId: string;
  /** When this was a redelivery of a dead letter, its id: that record is updated instead of a new one. */
  redeliveryOf?: number;
}

/** Webhook dead letters: one per (workflow, subscriber). */
export interface DeadLetterStore {
  /** Records (or, for a redelivery, updates) a dead letter; idempotent per workflow and subscriber. @returns its id. */
  record(input: RecordDeadLetterInput, now: number): Promise<number>;
  get(id: number): Promise<WebhookDeadLetter | undefined>;
  /** The stored payload of a dead letter (for redelivery); undefined when unknown. */
  payload(id: number): Promise<unknown>;
  /** Marks a dead letter delivered (epoch ms `now`). @returns false when it does not exist. */
  resolve(id: number, by: string, now: number): Promise<boolean>;
  /** Dead letters, newest first; `state` default open, `limit` default 100. */
  list(opts?: { state?: 'open' | 'resolved' | 'all'; limit?: number }): Promise<WebhookDeadLetter[]>;
}

/** Names of the schema migrations, in order. */
export interface MigrationStatus {
  applied: string[];
  pending: string[];
}

/** All state outside Temporal, on one backend. */
export interface StateBackend {
  kind: 'sqlite' | 'postgres';
  /**
   * Random UUID written into the database by its first migration: the same
   * for every process sharing the database, different for two databases.
   */
  instanceId: string;
  credentials: CredentialStore;
  health: HealthHistory;
  deadLetters: DeadLetterStore;
  /** Applied and pending schema migrations (`doctor`). */
  migrationStatus(): Promise<MigrationStatus>;
  /** Writes what is buffered (health histograms; on SQLite, audit entries waiting for their group commit) and closes connections; idempotent. */
  close(): Promise<void>;
}
