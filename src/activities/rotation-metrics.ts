/**
 * Prometheus metrics of credential rotations (prom-client):
 *
 * - `integration_agent_rotations_total{credential,outcome}` counter: rotations
 *   that ended, by how (`completed`, `rolled_back`, `needs_attention`,
 *   `failed`; the `RotationStatus` of src/domain/rotation.ts). Counted by the
 *   `auditRotation` activity that writes the rotation's final audit entry,
 *   which runs once per rotation on one worker, so `sum` over processes counts
 *   each rotation once (twice only if that activity is retried after it ran).
 *   Dry runs are not counted.
 */
import { Counter, type Registry } from 'prom-client';

export interface RotationMetrics {
  /** Counts one rotation of `credentialId` that ended with `outcome`. */
  observeRotation(credentialId: string, outcome: string): void;
}

/**
 * Registers the rotation metrics on `registry`.
 * @throws Error from prom-client when a metric of this name is already registered there.
 */
export function registerRotationMetrics(registry: Registry, prefix = 'integration_agent_'): RotationMetrics {
  const rotations = new Counter({
    name: `${prefix}rotations_total`,
    help: 'Credential rotations that ended, by outcome (completed, rolled_back, needs_attention, failed)',
    labelNames: ['credential', 'outcome'] as const,
    registers: [registry],
  });
  return { observeRotation: (credentialId, outcome) => rotations.inc({ credential: credentialId, outcome }) };
}
