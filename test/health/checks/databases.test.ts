/**
 * The `postgres` (SELECT 1) and `redis` (PING) probes against real servers
 * on loopback (test/helpers), logging in with the service's CURRENT
 * credential from the store: a password changed outside the agent is
 * `credential_rejected`, naming the credential; the secret appears in no result.
 */
import { createProbeActivities } from '../../../src/activities/probes';
import type { ProbeResult } from '../../../src/domain/health';
import { startPostgres, type TestPostgres } from '../../helpers/postgres';
import { startRedis, type TestRedis } from '../../helpers/redis';
import { targetsOf } from './registry';

let pg: TestPostgres;
let redis: TestRedis;
beforeAll(async () => {
  [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
  await pg.sql(`CREATE ROLE monitor LOGIN PASSWORD 'mon-pw-31f8'`);
}, 60_000);
afterAll(async () => {
  await Promise.all([pg?.stop(), redis?.stop()]);
});

/** The store: credential id -> CURRENT secret. */
const store: Record<string, string> = {};
async function probe(services: Array<Record<string, unknown>>): Promise<Map<string, ProbeResult>> {
  const results = await createProbeActivities({ secrets: { readSecret: async (id) => store[id] } }).probeServices({ targets: targetsOf(services) });
  return new Map(results.map((r) => [r.serviceId, r]));
}
const db = (id: string, url: string, healthCheck: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({ id, type: 'database', endpoints: [{ url }], healthCheck: { timeout: '3s', ...healthCheck }, ...extra });

test('postgres: SELECT 1 as the credential\'s user; a password changed outside the agent is credential_rejected', async () => {
  store['pg-monitor'] = JSON.stringify({ username: 'monitor', password: 'mon-pw-31f8' });
  store['pg-plain'] = 'mon-pw-31f8';
  const url = `tcp://127.0.0.1:${pg.port}`;
  const services = [
    db('orders-db', url, { type: 'postgres', auth: true }, { credential: 'pg-monitor' }),
    db('plain-secret', url, { type: 'postgres', auth: true }, { credential: 'pg-plain', auth: { scheme: 'basic', username: 'monitor' } }),
    db('no-login', url, { type: 'postgres', url: `postgres://monitor@127.0.0.1:${pg.port}/postgres` }),
  ];
  const ok = await probe(services);
  expect(ok.get('orders-db')).toMatchObject({ verdict: 'pass' });
  expect(ok.get('plain-secret')).toMatchObject({ verdict: 'pass' });
  // scram-sha-256 for every TCP login in the helper: no password is a refused login, said so.
  expect(ok.get('no-login')).toMatchObject({ verdict: 'fail', failureKind: 'status' });
  expect(ok.get('no-login')!.detail).toContain('healthCheck.auth: true');

  await pg.sql(`ALTER ROLE monitor PASSWORD 'changed-by-a-dba'`);
  const bad = await probe(services.slice(0, 1));
  expect(bad.get('orders-db')).toMatchObject({ verdict: 'fail', failureKind: 'credential_rejected', credentialId: 'pg-monitor' });
  expect(bad.get('orders-db')!.detail).toContain('integration-agent rotate pg-monitor');
  expect(JSON.stringify([...ok.values(), ...bad.values()])).not.toMatch(/mon-pw-31f8|changed-by-a-dba/);
});

test('redis: PING answers PONG with the credential; a wrong one is credential_rejected, none is status', async () => {
  store['redis-default'] = redis.adminPassword;
  store['redis-old'] = 'stale-redis-pw-0042';
  const url = `tcp://127.0.0.1:${redis.port}`;
  const r = await probe([
    db('cache', url, { type: 'redis', auth: true }, { credential: 'redis-default' }),
    db('cache-stale', url, { type: 'redis', auth: true }, { credential: 'redis-old' }),
    db('cache-anon', url, { type: 'redis', url: `redis://127.0.0.1:${redis.port}/0` }),
  ]);
  expect(r.get('cache')).toMatchObject({ verdict: 'pass' });
  expect(r.get('cache-stale')).toMatchObject({ verdict: 'fail', failureKind: 'credential_rejected', credentialId: 'redis-old' });
  expect(r.get('cache-stale')!.detail).toContain('integration-agent rotate redis-old');
  expect(r.get('cache-anon')).toMatchObject({ verdict: 'fail', failureKind: 'status' });
  expect(JSON.stringify([...r.values()])).not.toContain('stale-redis-pw-0042');
  expect(JSON.stringify([...r.values()])).not.toContain(redis.adminPassword);
});

test('nothing listening is connection_refused for both', async () => {
  const r = await probe([db('pg-gone', 'tcp://127.0.0.1:9', { type: 'postgres' }), db('redis-gone', 'tcp://127.0.0.1:9', { type: 'redis' })]);
  expect(r.get('pg-gone')).toMatchObject({ verdict: 'fail', failureKind: 'connection_refused' });
  expect(r.get('redis-gone')).toMatchObject({ verdict: 'fail', failureKind: 'connection_refused' });
});
