/**
 * Where the dashboard's data comes from: the one module that reads the
 * fleet, so the status page can be repointed (say, at the shared health
 * store of the scale work) by changing this file alone.
 *
 * Every read goes through the public client facade (src/client) that other
 * programs use: durable health (`listHealth`/`getHealth`), breakers
 * (`listBreakers`/`getBreaker`), credentials and the audit trail (state reads
 * run on a worker, so this process needs no database), rotations (`getRotation`,
 * whose `progress` is the query the CLI's progress bar polls) and the
 * Schedules. Nothing here reads a worker's private files, and nothing here
 * can return a secret value: the facade's views carry ids, labels, statuses,
 * figures and times only.
 */
import type { Client } from '@temporalio/client';
import {
  allCredentials,
  describeRotationSchedule,
  describeSweepSchedule,
  getBreaker,
  getHealth,
  getRotation,
  listBreakers,
  listHealth,
  readAuditTrail,
  type BreakerInfo,
  type BreakerSummary,
  type CredentialSummary,
  type RotationScheduleInfo,
  type RotationView,
  type ServiceHealthView,
  type SweepScheduleInfo,
} from '../client';
import type { Registry } from '../domain/registry';

/** What the dashboard reads; {@link temporalFleetSource} is the real one, benches pass a synthetic one. */
export interface FleetSource {
  /** The registry in force (services, dependencies, owners, tags, SLAs, credentials), when known. */
  registry(): Registry | undefined;
  /** Every service's durable health. */
  health(): Promise<ServiceHealthView[]>;
  /** One service's durable health; undefined when never swept. */
  serviceHealth(serviceId: string): Promise<ServiceHealthView | undefined>;
  /** Every running breaker's summary. */
  breakers(): Promise<BreakerSummary[]>;
  /** One breaker with its recent transitions. */
  breaker(serviceId: string): Promise<BreakerInfo>;
  /** Every credential in the store with its staging labels. */
  credentials(): Promise<CredentialSummary[]>;
  /** When `versionId` of `credentialId` was created (minted or imported), epoch ms; undefined when the audit trail has no record of it. */
  versionCreatedAt(credentialId: string, versionId: string): Promise<number | undefined>;
  /** The latest rotation of a credential (live progress while it runs). */
  rotation(credentialId: string): Promise<RotationView | undefined>;
  /** The credential's rotation Schedule, when it has one. */
  rotationSchedule(credentialId: string): Promise<RotationScheduleInfo | undefined>;
  /** The sweep Schedule; undefined when there is none. */
  sweepSchedule(): Promise<SweepScheduleInfo | undefined>;
}

/**
 * The dashboard's reads against a deployment, through the client facade.
 * @param opts.taskQueue the workers' task queue (state reads run there).
 * @param opts.registry the registry the workers follow, when this process has it (a file watcher's `current`).
 */
export function temporalFleetSource(client: Client, opts: { taskQueue: string; registry?: () => Registry }): FleetSource {
  const { taskQueue } = opts;
  return {
    registry: () => opts.registry?.(),
    health: () => listHealth(client, { taskQueue }),
    serviceHealth: (id) => getHealth(client, id, { taskQueue }),
    breakers: () => listBreakers(client),
    breaker: (id) => getBreaker(client, id),
    async credentials() {
      const out: CredentialSummary[] = [];
      for await (const c of allCredentials(client, { taskQueue })) out.push(c);
      return out;
    },
    async versionCreatedAt(credentialId, versionId) {
      const page = await readAuditTrail(client, { taskQueue, credentialId, limit: 200 });
      const made = page.entries.find((e) => e.versionId === versionId && (e.step === 'mint' || e.step === 'import'));
      return (made ?? page.entries.find((e) => e.versionId === versionId))?.at;
    },
    rotation: (id) => getRotation(client, id),
    rotationSchedule: (id) => describeRotationSchedule(client, id),
    async sweepSchedule() {
      try {
        return await describeSweepSchedule(client);
      } catch (err) {
        if ((err as Error).name === 'ScheduleNotFoundError') return undefined;
        throw err;
      }
    },
  };
}
