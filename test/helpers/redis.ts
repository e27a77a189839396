/**
 * A throwaway Redis server for tests: `redis-server` (Debian package) on a
 * free loopback port, no persistence, the `default` user protected by a
 * password (the admin the redis provider connects as).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { freePort } from '../../src/dev/dev-server';

export interface TestRedis {
  port: number;
  adminPassword: string;
  /** `redis://127.0.0.1:port` */
  url: string;
  /** True when `user` can AUTH with `password`. */
  canAuth(user: string, password: string): Promise<boolean>;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'ia-redis-'));
  const port = await freePort();
  const adminPassword = `admin-${Math.random().toString(36).slice(2)}`;
  const proc = spawn(
    process.env.REDIS_SERVER ?? 'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--requirepass', adminPassword],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  proc.once('error', (err) => (log += String(err)));
  const url = `redis://127.0.0.1:${port}`;
  const canAuth = async (user: string, password: string) => {
    const r = new Redis({ host: '127.0.0.1', port, username: user, password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      await r.ping();
      return true;
    } catch {
      return false;
    } finally {
      r.disconnect();
    }
  };
  const deadline = Date.now() + 15_000;
  while (!(await canAuth('default', adminPassword))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`redis-server did not start on port ${port} (apt-get install redis-server): ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    adminPassword,
    url,
    canAuth,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
