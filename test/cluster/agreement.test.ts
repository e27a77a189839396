/**
 * What a joining worker compares with the live pollers, with real processes:
 * its encrypting codec key must be held by every poller (a key rotation done
 * in the wrong order is refused, the right order starts), and it must count
 * limits in the same store (a worker with INTEGRATION_AGENT_REDIS_URL beside
 * one without is refused). `doctor` reports both.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Client } from '@temporalio/client';
import type { DoctorReport } from '../../src/client/cli/commands/doctor';
import { startRedis, type TestRedis } from '../helpers/redis';
import { testAddress, uniqueTaskQueue } from '../helpers/temporal';
import { runCli, useClusterFile, WorkerProcess } from './harness';

const cluster = useClusterFile('ia-agree-');
const { workers, tempDir } = cluster;
let redis: TestRedis;

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
});

test('a worker encrypting with a key the running workers lack refuses, naming them and the rotation order; the right order starts; another limits store refuses; doctor says so', async () => {
  const dataDir = join(tempDir(), 'data');
  const k1 = `k1:${randomBytes(32).toString('base64')}`;
  const k2 = `k2:${randomBytes(32).toString('base64')}`;
  const base = { TEMPORAL_ADDRESS: testAddress(), TEMPORAL_TASK_QUEUE: uniqueTaskQueue('agree'), INTEGRATION_AGENT_DATA_DIR: dataDir, LOG_LEVEL: 'info' };
  const first = new WorkerProcess('worker k1', { ...base, INTEGRATION_AGENT_CODEC_KEYS: k1 });
  workers.push(first);
  await first.start(new Client({ connection: cluster.connection }));
  const firstId = `${hostname()}:${first.pid} codec=`;

  // The new key first while the running worker holds only k1: refused, before it could encrypt anything with k2.
  const wrong = await runCli(['worker'], { ...base, INTEGRATION_AGENT_CODEC_KEYS: `${k2},${k1}` }, { timeoutMs: 30_000 });
  expect(wrong.code).toBe(1);
  expect(wrong.stderr).toContain(`without the key this process encrypts with: "${firstId}`);
  expect(wrong.stderr).toMatch(/first add the new key to INTEGRATION_AGENT_CODEC_KEYS on every worker and client as a decryption key, listed after the current one.*then make it first everywhere/);
  const fromWrong = JSON.parse((await runCli(['doctor', '--json'], { ...base, INTEGRATION_AGENT_CODEC_KEYS: `${k2},${k1}` })).stdout) as DoctorReport;
  expect(fromWrong.ok).toBe(false);
  expect(fromWrong.checks.find((c) => c.name === 'codec keys')).toEqual(
    expect.objectContaining({ status: 'fail', detail: expect.stringContaining(`does not hold this process's encrypting key ${fromWrong.self.codec}`), fix: expect.stringContaining('listed after the current one') }),
  );

  // Step one of a rotation (the new key listed after the current one) starts, and says it holds both.
  const second = new WorkerProcess('worker k1+k2', { ...base, INTEGRATION_AGENT_CODEC_KEYS: `${k1},${k2}` });
  workers.push(second);
  await second.start(new Client({ connection: cluster.connection }));
  await second.kill();

  // Limits counted in Redis beside a worker counting per process: refused, naming the variables.
  const redisUrl = `redis://:${redis.adminPassword}@127.0.0.1:${redis.port}/0`;
  const other = await runCli(['worker'], { ...base, INTEGRATION_AGENT_CODEC_KEYS: k1, INTEGRATION_AGENT_REDIS_URL: redisUrl }, { timeoutMs: 30_000 });
  expect(other.code).toBe(1);
  expect(other.stderr).toMatch(new RegExp(`"${firstId}[^"]* limits=local" .*counts limits in limits=local, this process in limits=redis:[0-9a-f]{8}`));
  expect(other.stderr).toContain('INTEGRATION_AGENT_REDIS_URL and INTEGRATION_AGENT_DATABASE_URL the same on every worker');
  expect(other.stderr + other.stdout).not.toContain(redis.adminPassword);
  const doctor = await runCli(['doctor', '--json'], { ...base, INTEGRATION_AGENT_CODEC_KEYS: k1, INTEGRATION_AGENT_REDIS_URL: redisUrl });
  expect(doctor.stdout + doctor.stderr).not.toContain(redis.adminPassword);
  const report = JSON.parse(doctor.stdout) as DoctorReport;
  expect(report.self.limits).toMatch(/^redis:[0-9a-f]{8}$/);
  expect(report.checks.find((c) => c.name === 'limits')).toEqual(
    expect.objectContaining({ status: 'fail', detail: expect.stringContaining(`the pollers count limits in local, this configuration in ${report.self.limits}`) }),
  );
  expect(first.running()).toBe(true);
  await first.kill();
}, 180_000);
