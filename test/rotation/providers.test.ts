/**
 * The postgres and redis providers in a full rotation against real servers
 * (started here in temp dirs on free loopback ports). Consumers are contract
 * servers that accept a secret only after really logging in with it.
 */
import { Client } from 'pg';
import { parseUserPassword } from '../../src/activities/providers/secret-format';
import { getRotation, endGracePeriod, startRotation } from '../../src/client/rotation';
import type { RotationResult } from '../../src/domain/rotation';
import { startPostgres, type TestPostgres } from '../helpers/postgres';
import { startRedis, type TestRedis } from '../helpers/redis';
import { closeTestClient, testClient } from '../helpers/temporal';
import { rotationFixture, type RotationFixture } from './support';

afterAll(closeTestClient);

async function pgLogin(pg: TestPostgres, secret: string): Promise<boolean> {
  const { username, password } = JSON.parse(secret) as { username: string; password: string };
  const c = new Client({ connectionString: pg.url(username, password) });
  c.on('error', () => undefined);
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Runs a rotation with a long grace period; `during` sees the grace phase; then the grace period is ended. */
async function rotateThroughGrace(fx: RotationFixture, during: (versionId: string) => Promise<void>): Promise<RotationResult> {
  const client = await testClient();
  return fx.run(async () => {
    const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue, gracePeriodMs: 3_600_000 });
    let phase: string | undefined;
    for (let i = 0; i < 300 && phase !== 'grace' && phase !== 'rolled_back' && phase !== 'failed'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const v = await getRotation(client, fx.credentialId);
      phase = v?.progress?.phase ?? v?.result?.status;
    }
    expect(phase).toBe('grace');
    const view = await getRotation(client, fx.credentialId);
    await during(view!.progress!.versionId!);
    await endGracePeriod(client, fx.credentialId);
    return (await started.handle.result()) as RotationResult;
  });
}

describe('postgres: alternating users', () => {
  let pg: TestPostgres;
  beforeAll(async () => {
    pg = await startPostgres();
    await pg.sql(`CREATE ROLE app_blue LOGIN PASSWORD 'blue-initial-pw'; CREATE ROLE app_green LOGIN; GRANT pg_read_all_data TO app_blue, app_green;`);
  }, 60_000);
  afterAll(() => pg?.stop());

  test('each rotation sets the idle role; old and new both log in during grace; PREVIOUS stops working after revoke', async () => {
    const fx = await rotationFixture([{ id: 'pg-app' }], {
      provider: 'postgres',
      issuerUrl: `tcp://127.0.0.1:${pg.port}`,
      issuerRotation: { roles: ['app_blue', 'app_green'], adminCredential: 'pg-admin' },
      importCurrent: false,
    });
    try {
      await fx.store.importCurrent('pg-admin', pg.adminPassword, 'test');
      const initial = JSON.stringify({ username: 'app_blue', password: 'blue-initial-pw' });
      const initialVersion = await fx.store.importCurrent(fx.credentialId, initial, 'test');
      fx.server.preinstall('pg-app', initialVersion);
      fx.server.behaviour('pg-app').validate = (secret) => pgLogin(pg, secret);

      const first = await rotateThroughGrace(fx, async (versionId) => {
        const next = (await fx.store.readSecret(fx.credentialId, versionId))!;
        expect(parseUserPassword(next, 't').username).toBe('app_green');
        expect(await pgLogin(pg, next)).toBe(true);
        expect(await pgLogin(pg, initial)).toBe(true); // the live role keeps working through the grace period
      });
      expect(first.status).toBe('completed');
      expect(await pgLogin(pg, initial)).toBe(false); // revoked
      const green = (await fx.store.readSecret(fx.credentialId))!;
      expect(await pgLogin(pg, green)).toBe(true);

      // The next rotation alternates back to app_blue with a fresh password.
      const second = await rotateThroughGrace(fx, async () => undefined);
      expect(second.status).toBe('completed');
      const blue = (await fx.store.readSecret(fx.credentialId))!;
      expect(parseUserPassword(blue, 't').username).toBe('app_blue');
      expect(await pgLogin(pg, blue)).toBe(true);
      expect(await pgLogin(pg, green)).toBe(false);
      expect(fx.server.consumer('pg-app').versionId).toBe(second.versionId);
    } finally {
      await fx.close();
    }
  });
});

describe('redis: ACL user with old and new passwords during grace', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  }, 30_000);
  afterAll(() => redis?.stop());

  test('mint adds a password, revoke removes only the old one', async () => {
    const fx = await rotationFixture([{ id: 'cache-app' }], {
      provider: 'redis',
      issuerUrl: `tcp://127.0.0.1:${redis.port}`,
      issuerRotation: { user: 'app', adminCredential: 'redis-admin' },
      importCurrent: false,
    });
    try {
      await fx.store.importCurrent('redis-admin', redis.adminPassword, 'test');
      fx.server.behaviour('cache-app').validate = async (secret) => {
        const { username, password } = JSON.parse(secret) as { username: string; password: string };
        return redis.canAuth(username, password);
      };
      // No CURRENT yet: the first rotation creates the user.
      const client = await testClient();
      const created = await fx.run(async () => {
        const s = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue, gracePeriodMs: 0 });
        return (await s.handle.result()) as RotationResult;
      });
      expect(created.status).toBe('completed');
      const v1 = parseUserPassword((await fx.store.readSecret(fx.credentialId))!, 't');
      expect(await redis.canAuth('app', v1.password)).toBe(true);

      const rotated = await rotateThroughGrace(fx, async (versionId) => {
        const v2 = parseUserPassword((await fx.store.readSecret(fx.credentialId, versionId))!, 't');
        expect(await redis.canAuth('app', v2.password)).toBe(true);
        expect(await redis.canAuth('app', v1.password)).toBe(true);
      });
      expect(rotated.status).toBe('completed');
      const v2 = parseUserPassword((await fx.store.readSecret(fx.credentialId))!, 't');
      expect(await redis.canAuth('app', v2.password)).toBe(true);
      expect(await redis.canAuth('app', v1.password)).toBe(false);
    } finally {
      await fx.close();
    }
  });
});
