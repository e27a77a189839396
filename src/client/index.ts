/**
 * `IntegrationClient`: the typed facade other programs import to drive the
 * agent through Temporal — start, await and query sweeps, rotations and
 * breakers. Every method is a thin call to the functional API re-exported
 * below (use those directly with your own `Client` if you prefer).
 *
 * ```ts
 * import { IntegrationClient } from 'integration-agent';
 * const agent = await IntegrationClient.connect();            // TEMPORAL_ADDRESS etc. from the environment
 * const sweep = await agent.runSweep();
 * const rotation = await agent.rotate('shared-api-key');      // { status: 'completed' | 'rolled_back' | ... }
 * await agent.close();
 * ```
 */
import type { Client } from '@temporalio/client';
import { loadConfig, type Config } from '../worker/config';
import { connectClient } from './connect';
import * as breakers from './breakers';
import * as health from './health';
import * as rotation from './rotation';
import * as state from './state';
import * as registryLookup from './registry-lookup';
import type { RegistryIdKind } from '../domain/ids';

export * from './breakers';
export * from './health';
export * from './rotation';
export * from './state';
export * from './registry-lookup';
export { WorkflowRunFailedError, describeWorkflowFailure } from './failure';
export { UnknownIdError, type RegistryIdKind } from '../domain/ids';
export { connectClient, TemporalUnreachableError } from './connect';
export { loadConfig, type Config } from '../worker/config';

export class IntegrationClient {
  /**
   * @param temporal a connected Temporal client (with the deployment's payload codec).
   * @param taskQueue where the workers poll (default `integration-agent`).
   */
  constructor(
    readonly temporal: Client,
    readonly taskQueue: string = 'integration-agent',
  ) {}

  /**
   * Connects with the same environment configuration as the worker
   * (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API key, codec keys).
   * @throws TemporalUnreachableError naming the address.
   */
  static async connect(config: Config = loadConfig()): Promise<IntegrationClient> {
    return new IntegrationClient(await connectClient(config), config.taskQueue);
  }

  /** Runs one health sweep now and waits for it. */
  runSweep(opts: { concurrency?: number } = {}) {
    return health.runSweep(this.temporal, { ...opts, taskQueue: this.taskQueue });
  }
  /** One service's durable health (status, root cause, p50/p95/p99, availability); undefined if never swept. */
  getHealth(serviceId: string) {
    return health.getHealth(this.temporal, serviceId, { taskQueue: this.taskQueue });
  }
  /** Every service's durable health. */
  listHealth() {
    return health.listHealth(this.temporal, { taskQueue: this.taskQueue });
  }

  /** Starts a rotation; throws RotationAlreadyRunningError when one of that credential runs. */
  startRotation(credentialId: string, opts: Omit<rotation.StartRotationOptions, 'credentialId' | 'taskQueue'> = {}) {
    return rotation.startRotation(this.temporal, { ...opts, credentialId, taskQueue: this.taskQueue });
  }
  /** Starts a rotation and waits for its result. */
  rotate(credentialId: string, opts: Omit<rotation.StartRotationOptions, 'credentialId' | 'taskQueue'> = {}) {
    return rotation.rotate(this.temporal, { ...opts, credentialId, taskQueue: this.taskQueue });
  }
  /** The latest rotation of a credential (status, live progress or result). */
  getRotation(credentialId: string) {
    return rotation.getRotation(this.temporal, credentialId);
  }
  /** Cancels a running rotation (it compensates); false when none runs. */
  cancelRotation(credentialId: string) {
    return rotation.cancelRotation(this.temporal, credentialId);
  }

  /**
   * Refuses a service or credential id the workers' registry lacks, with a
   * did-you-mean (UnknownIdError, a RangeError). The methods below check an
   * id's form only: `forceOpen('biling-api')` starts a breaker for a service
   * that does not exist, `getBreaker` shows any id as a fresh CLOSED breaker.
   * Call this first where the id comes from a person.
   */
  requireRegistryId(kind: RegistryIdKind, id: string) {
    return registryLookup.requireRegistryId(this.temporal, kind, id, { taskQueue: this.taskQueue });
  }

  /** A service's breaker state (state, generation, rates, when OPEN ends, transitions). */
  getBreaker(serviceId: string) {
    return breakers.getBreaker(this.temporal, serviceId);
  }
  /** Every breaker's summary. */
  listBreakers() {
    return breakers.listBreakers(this.temporal);
  }
  forceOpen(serviceId: string, note?: string) {
    return breakers.forceOpen(this.temporal, serviceId, { note, taskQueue: this.taskQueue });
  }
  forceClose(serviceId: string, note?: string) {
    return breakers.forceClose(this.temporal, serviceId, { note, taskQueue: this.taskQueue });
  }
  reset(serviceId: string, note?: string) {
    return breakers.reset(this.temporal, serviceId, { note, taskQueue: this.taskQueue });
  }
  disable(serviceId: string, note?: string) {
    return breakers.disable(this.temporal, serviceId, { note, taskQueue: this.taskQueue });
  }

  /** One page of credentials with their staging labels (read on a worker: no database access needed). */
  listCredentials(opts: state.CredentialsPageInput = {}) {
    return state.listCredentials(this.temporal, { ...opts, taskQueue: this.taskQueue });
  }
  /** One credential's labels, version count and last activity; null when the store has none of it. */
  getCredential(credentialId: string) {
    return state.getCredential(this.temporal, credentialId, { taskQueue: this.taskQueue });
  }
  /** One page of the audit trail, oldest first (`before` pages back). */
  readAuditTrail(opts: state.AuditPageInput = {}) {
    return state.readAuditTrail(this.temporal, { ...opts, taskQueue: this.taskQueue });
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    await this.temporal.connection.close();
  }
}
