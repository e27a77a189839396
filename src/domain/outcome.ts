/**
 * The outcome of one real call to a service, as the coordinator reports it.
 * Consumed by the circuit breakers and by passive health monitoring.
 */

/** Why a call failed, as classified once in `src/domain` (see retry.ts). */
export type FailureKind =
  | 'timeout'
  | 'connection_refused'
  | 'connection_reset'
  | 'dns'
  | 'tls'
  | 'status'
  | 'body'
  | 'slow'
  | 'breaker_open'
  | 'rate_limited'
  | 'aborted'
  | 'other';

export interface CallOutcome {
  serviceId: string;
  /** Endpoint URL origin that served (or failed) the call. */
  endpoint: string;
  /** True when the call counts as a success for breakers and health. */
  ok: boolean;
  /** HTTP status, when a response arrived. */
  status?: number;
  /** `2xx`..`5xx`, or undefined when no response arrived. */
  statusClass?: '1xx' | '2xx' | '3xx' | '4xx' | '5xx';
  failureKind?: FailureKind;
  latencyMs: number;
  /** Epoch milliseconds when the call started. */
  startedAt: number;
  /** Who observed it: a stable id of the worker process (for breaker quorum). */
  reporter: string;
  /** Breaker generation the call was admitted under, when a breaker gated it. */
  generation?: number;
}
