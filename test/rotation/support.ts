/**
 * Shared set-up for the rotation tests: a registry pointing at the contract
 * server, a credential store on a fresh state backend (SQLite in a temp dir
 * by default, or PostgreSQL: `backend: 'postgres'`) with an imported CURRENT version
 * (seeded at the issuer and installed in every consumer), and a worker with
 * the real registry and rotation activities.
 */
import { randomBytes } from 'node:crypto';
import type { Worker } from '@temporalio/worker';
import { createRegistryActivities, staticRegistry } from '../../src/activities/registry';
import { createRotationActivities, type RotationPreflightChecks } from '../../src/activities/rotation';
import type { CredentialStore, StateBackend } from '../../src/state/types';
import { parseRegistry } from '../../src/domain/registry-parse';
import type { Registry } from '../../src/domain/registry';
import { startContractServer, type ContractServer } from '../fixtures/rotation-contract';
import { uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { freshLocation, openAt, type BackendKind, type StateLocation } from '../helpers/state';

export interface ConsumerDef {
  id: string;
  dependsOn?: string[];
  rotation?: Record<string, unknown>;
}

export interface RotationFixture {
  server: ContractServer;
  registry: Registry;
  /** The state backend the store belongs to (closed by `close()`). */
  state: StateBackend;
  store: CredentialStore;
  /** Where the state lives: the data dir, and the database URL on PostgreSQL. */
  location: StateLocation;
  dataDir: string;
  masterKey: Buffer;
  credentialId: string;
  issuerId: string;
  /** The imported CURRENT version and its secret. */
  initialVersionId: string;
  initialSecret: string;
  taskQueue: string;
  activities(preflight?: RotationPreflightChecks): Record<string, (...args: never[]) => unknown>;
  run<T>(fn: (worker: Worker) => Promise<T>, preflight?: RotationPreflightChecks): Promise<T>;
  close(): Promise<void>;
}

/** A registry document for one credential issued by `issuerId` and used by `consumers`. */
export function registryFor(
  server: ContractServer,
  credentialId: string,
  issuerId: string,
  consumers: ConsumerDef[],
  extra: { gracePeriod?: string; issuerRotation?: Record<string, unknown>; maxParallel?: number; schedule?: string; issuerUrl?: string; provider?: string; fanOut?: 'workflow' | 'activity' } = {},
): Registry {
  const doc = {
    services: [
      { id: issuerId, type: 'api', endpoints: [{ url: extra.issuerUrl ?? server.base(issuerId) }], rotation: { provider: extra.provider ?? 'http', stepTimeout: '5s', ...extra.issuerRotation } },
      ...consumers.map((c) => ({
        id: c.id,
        type: 'api',
        endpoints: [{ url: server.base(c.id) }],
        dependsOn: c.dependsOn ?? [],
        credential: credentialId,
        rotation: { provider: 'http', stepTimeout: '5s', verifyAttempts: 4, verifyInterval: '100ms', ...c.rotation },
      })),
    ],
    credentials: [
      {
        id: credentialId,
        issuer: issuerId,
        consumers: consumers.map((c) => c.id),
        provider: extra.provider ?? 'http',
        gracePeriod: extra.gracePeriod ?? '0s',
        ...(extra.schedule ? { schedule: extra.schedule } : {}),
        ...(extra.maxParallel ? { maxParallel: extra.maxParallel } : {}),
        ...(extra.fanOut ? { fanOut: extra.fanOut } : {}),
      },
    ],
  };
  const r = parseRegistry(JSON.stringify(doc), `${credentialId}.json`);
  if (!r.ok) throw new Error(`test registry invalid: ${JSON.stringify(r.problems)}`);
  return r.registry;
}

/** Starts the contract server, the store (with CURRENT imported everywhere) and returns helpers to run a worker. */
export async function rotationFixture(
  consumers: ConsumerDef[],
  extra: Parameters<typeof registryFor>[4] & { credentialId?: string; importCurrent?: boolean; masterKey?: Buffer; backend?: BackendKind } = {},
): Promise<RotationFixture> {
  const credentialId = extra.credentialId ?? `cred-${randomBytes(3).toString('hex')}`;
  const issuerId = 'issuer';
  const server = await startContractServer({ [issuerId]: consumers.map((c) => c.id) });
  const registry = registryFor(server, credentialId, issuerId, consumers, extra);
  const location = await freshLocation(extra.backend ?? 'sqlite');
  const masterKey = extra.masterKey ?? randomBytes(32);
  const state = await openAt(location, { masterKey });
  const store = state.credentials;
  const dataDir = location.dataDir;
  const initialSecret = `initial-${randomBytes(16).toString('base64url')}`;
  let initialVersionId = '';
  if (extra.importCurrent !== false) {
    // The issuer's own id (as `credentials import --version-id` records it), so rotations can revoke it there.
    initialVersionId = await store.importCurrent(credentialId, initialSecret, 'test', `v-${randomBytes(6).toString('hex')}`);
    server.seed(issuerId, initialVersionId, initialSecret);
    for (const c of consumers) server.preinstall(c.id, initialVersionId);
  }
  const taskQueue = uniqueTaskQueue('rot');
  const activities = (preflight?: RotationPreflightChecks) => ({
    ...createRegistryActivities(staticRegistry(registry)),
    ...createRotationActivities({ store, preflight, registry: staticRegistry(registry) }),
  });
  return {
    server,
    registry,
    state,
    store,
    location,
    dataDir,
    masterKey,
    credentialId,
    issuerId,
    initialVersionId,
    initialSecret,
    taskQueue,
    activities,
    run: (fn, preflight) => withTestWorker({ taskQueue, activities: activities(preflight) }, fn),
    close: async () => {
      await server.close();
      await state.close();
    },
  };
}
