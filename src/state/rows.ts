/** Row shapes and errors shared by the SQLite and PostgreSQL stores, so both answer alike. */
import type { StagingLabel } from '../domain/rotation';
import type { AuditEntry, CredentialVersion, VersionIdSource, WebhookDeadLetter } from './types';

/** A `credential_versions` row (times may come back as strings from PostgreSQL BIGINT). */
export interface VersionRow {
  credential_id: string;
  version_id: string;
  label: StagingLabel | null;
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
  key_id: string;
  created_at: number | string;
  created_by: string;
  revoked_at: number | string | null;
  /** Since migration 0004. */
  version_id_source: VersionIdSource;
  /** Migration 0005; absent on rows read before it ran. */
  superseded_by?: string | null;
}

export const toVersion = (r: VersionRow): CredentialVersion => ({
  credentialId: r.credential_id,
  versionId: r.version_id,
  label: r.label,
  createdAt: Number(r.created_at),
  revokedAt: r.revoked_at === null ? null : Number(r.revoked_at),
  createdBy: r.created_by,
  versionIdSource: r.version_id_source === 'local' ? 'local' : 'issuer',
  supersededBy: r.superseded_by ?? null,
});

/** The error both backends throw when an import names a version id the credential already has. */
export const versionExists = (credentialId: string, versionId: string): Error =>
  new Error(`credential ${credentialId} already has version ${versionId}: import under another id (the issuer's id of this version, --version-id) or leave --version-id out`);

export interface AuditRow {
  id: number | string;
  at: number | string;
  credential_id: string;
  step: string;
  service_id: string | null;
  version_id: string | null;
  outcome: string;
  actor: string;
  detail: string | null;
}

export const toAuditEntry = (r: AuditRow): AuditEntry => ({
  id: Number(r.id),
  at: Number(r.at),
  credentialId: r.credential_id,
  step: r.step,
  serviceId: r.service_id,
  versionId: r.version_id,
  outcome: r.outcome,
  actor: r.actor,
  detail: r.detail,
});

/** The error both backends throw when another version is PENDING. */
export const pendingExists = (credentialId: string, pendingVersionId: string, createdBy: string): Error =>
  new Error(`credential ${credentialId} already has PENDING version ${pendingVersionId} (created by ${createdBy}); finish or discard it before minting another`);

export const versionReused = (credentialId: string, versionId: string): Error =>
  new Error(`credential ${credentialId} version ${versionId} already exists; the issuer reused a version id`);

export const notPending = (credentialId: string, versionId: string, label: StagingLabel | null | undefined): Error =>
  new Error(`credential ${credentialId} version ${versionId} is ${label === undefined ? 'unknown' : (label ?? 'deprecated')}, not PENDING: cannot finish`);

/** A `webhook_dead_letters` row (numbers may come back as strings from PostgreSQL BIGINT). */
export interface DeadLetterRow {
  id: number | string;
  event_id: string;
  subscriber_id: string;
  endpoints: string;
  payload: string;
  idempotency_key: string;
  attempts: number;
  last_error: string;
  workflow_id: string;
  created_at: number | string;
  updated_at: number | string;
  resolved_at: number | string | null;
  resolved_by: string | null;
}

export function toDeadLetter(r: DeadLetterRow): WebhookDeadLetter {
  const d: WebhookDeadLetter = {
    id: Number(r.id),
    eventId: r.event_id,
    subscriberId: r.subscriber_id,
    endpoints: JSON.parse(r.endpoints) as string[],
    idempotencyKey: r.idempotency_key,
    attempts: r.attempts,
    lastError: r.last_error,
    workflowId: r.workflow_id,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
  if (r.resolved_at !== null) d.resolvedAt = Number(r.resolved_at);
  if (r.resolved_by !== null) d.resolvedBy = r.resolved_by;
  return d;
}
