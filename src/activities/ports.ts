/**
 * Narrow interfaces between activity areas, so each can be built and tested
 * with real implementations of the others passed in as deps.
 */
import type { CallOutcome } from '../domain/outcome';

/** Reads secret material at call time. Values never leave the activity that asked. */
export interface SecretReader {
  /**
   * @param credentialId registry credential id.
   * @param versionId a specific version; default the CURRENT one.
   * @returns the secret value, or undefined when the credential has no such version.
   */
  readSecret(credentialId: string, versionId?: string): Promise<string | undefined>;
  /**
   * The same answer without a promise, for readers that need no I/O to give
   * it (an embedded database, a cache). The coordinator prefers it on every
   * call. Throws what `readSecret` would reject with.
   */
  readSecretSync?(credentialId: string, versionId?: string): string | undefined;
}

/** Receives every call outcome (breakers, passive health). Must not throw or block. */
export interface OutcomeSink {
  record(outcome: CallOutcome): void;
}

/** Admission to a service, consulted before every call (the circuit-breaker gate). */
export interface CallGate {
  /**
   * Resolves with a permit, or rejects with a typed error carrying the time
   * until the next trial when the breaker does not admit the call.
   */
  admit(serviceId: string): Promise<CallPermit>;
  /**
   * A permit at once when the gate can decide without waiting and admits
   * (a known CLOSED breaker); undefined when the caller must use `admit`.
   * Lets the coordinator skip a promise on the hot path.
   */
  admitNow?(serviceId: string): CallPermit | undefined;
}

export interface CallPermit {
  /** Breaker generation the call was admitted under. */
  generation: number;
  /** Reports how the admitted call ended; call exactly once. */
  report(outcome: CallOutcome): void;
}
