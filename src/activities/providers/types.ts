/**
 * Rotation providers: one interface (mint, install, verify, revoke) over the
 * ways a credential can be rotated (HTTP contract, PostgreSQL role, Redis ACL
 * user). The issuer's provider mints and revokes; each consumer's provider
 * installs and verifies. Providers see secret values; nothing they throw or
 * return besides `secret` may contain one.
 */
import type { SecretReader } from '../ports';
import type { Coordinator } from '../coordinator';
import type { CredentialSpec, ServiceSpec } from '../../domain/registry';

/** What every provider call gets. */
export interface ProviderContext {
  credential: CredentialSpec;
  /** The issuer (mint, revoke) or the consumer (install, verify). */
  service: ServiceSpec;
  /** For providers that need an admin credential from the store (postgres, redis). */
  secrets: SecretReader;
  /** Deadline of the call, ms. */
  timeoutMs: number;
  /** Aborted when the activity is cancelled. */
  signal?: AbortSignal;
  /**
   * The process's API coordinator: when given, HTTP providers call services
   * through it (pooled connections, rate limits, breaker gate, outcomes), except
   * for services whose `rotation.baseUrl` points elsewhere than their endpoints.
   */
  coordinator?: Coordinator;
}

export interface MintRequest {
  /** Same key on every retry of the same step, so a retried mint returns the same version. */
  idempotencyKey: string;
  /** The CURRENT version, when there is one (alternating-users needs it). */
  currentVersionId?: string;
  currentSecret?: string;
}

export interface MintedVersion {
  versionId: string;
  secret: string;
}

export interface InstallRequest {
  versionId: string;
  secret: string;
  idempotencyKey: string;
}

export interface VerifyRequest {
  versionId: string;
  secret: string;
}

export interface RevokeRequest {
  versionId: string;
  /** The secret being revoked, when the store still has it (redis removes the password by value). */
  secret?: string;
}

/**
 * What the issuer answered a revoke: `revoked` (it no longer accepts the
 * version: revoked now, or found no longer valid by checking the secret
 * itself) or `not_found` (it does not know the version id, HTTP 404: already
 * revoked when the issuer minted that id).
 */
export type RevokeOutcome = 'revoked' | 'not_found';

export interface RotationProvider {
  readonly name: string;
  /**
   * How `revoke` finds the version at the issuer: `versionId` (default: by the
   * id the issuer minted; a version imported under a local id cannot be reached
   * this way) or `secret` (by the value itself, as postgres and redis do, so any
   * stored version can be revoked).
   */
  readonly revokesBy?: 'versionId' | 'secret';
  /** createSecret: a new secret version at the issuer. */
  mint(ctx: ProviderContext, req: MintRequest): Promise<MintedVersion>;
  /** setSecret: the consumer starts using `versionId`. Idempotent per `idempotencyKey`. */
  install(ctx: ProviderContext, req: InstallRequest): Promise<void>;
  /** testSecret: the version the consumer uses now (undefined when it reports none). */
  verify(ctx: ProviderContext, req: VerifyRequest): Promise<{ versionId: string | undefined }>;
  /**
   * The issuer stops accepting `versionId`. Idempotent: an already revoked
   * version is done. Resolves with what the issuer answered (undefined means
   * `revoked`, for providers written before {@link RevokeOutcome}).
   */
  revoke(ctx: ProviderContext, req: RevokeRequest): Promise<RevokeOutcome | void>;
  /**
   * Optional, read-only plan check for a consumer, run at preflight before
   * anything changes: each returned line is a reason the install would fail
   * (e.g. a Make connection whose data cannot be edited through the API).
   */
  preflight?(ctx: ProviderContext): Promise<string[]>;
}

/**
 * A provider failure. `retryable` follows the project's classification
 * (429, 502, 503, 504, timeouts, connection resets retry; other 4xx do not).
 * The message names the service and the step and never holds a secret.
 */
export class ProviderError extends Error {
  /** The request's idempotency key, when it carried one (a POST is retried only with one). */
  readonly idempotencyKey?: string;

  /**
   * @param options.cause the coordinator's error for a failed HTTP call
   *   (`httpProviderError`): its status, `Retry-After` and classification set
   *   Temporal's retry (`providerFailure`).
   */
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
    options?: { cause?: unknown; idempotencyKey?: string },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProviderError';
    this.idempotencyKey = options?.idempotencyKey;
  }
}

/** Base URL of a service's rotation endpoints: `rotation.baseUrl`, else its first endpoint (no trailing slash). */
export function rotationBaseUrl(service: ServiceSpec): string {
  const base = service.rotation?.baseUrl ?? service.endpoints[0]!.url;
  return base.replace(/\/+$/, '');
}

/** Reads a string option from `services[].rotation`, or throws naming it. */
export function stringOption(service: ServiceSpec, key: string, fallback?: string): string {
  const v = service.rotation?.[key] ?? fallback;
  if (typeof v !== 'string' || v === '') {
    throw new ProviderError(`services.${service.id}.rotation.${key}: expected a non-empty string, got ${JSON.stringify(v)}`, false);
  }
  return v;
}

/**
 * `install` and `verify` of a provider that only mints and revokes at the
 * issuer (a database, a server): each refuses, non-retryably, naming the
 * service and pointing to the consumer's own provider.
 * @param name the provider's name (`postgres`); @param where what it acts on (`the database`).
 */
export function issuerOnly(name: string, where: string): Pick<RotationProvider, 'install' | 'verify'> {
  const refuse = (ctx: ProviderContext, step: string): never => {
    throw new ProviderError(`services.${ctx.service.id}.rotation.provider: ${name} only mints and revokes at ${where}; consumers ${step} through their own provider (e.g. http)`, false);
  };
  return {
    install: async (ctx) => refuse(ctx, 'install'),
    verify: async (ctx) => refuse(ctx, 'verify'),
  };
}
