/**
 * The two shared stores the admission tests run on, started for real on
 * loopback (test/helpers/postgres.ts, test/helpers/redis.ts), and the child
 * processes that stand for worker processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { startPostgres, type TestPostgres } from '../helpers/postgres';
import { startRedis, type TestRedis } from '../helpers/redis';

export interface TestStore {
  name: 'PostgreSQL' | 'Redis';
  /** The URL with credentials. */
  url: string;
  /** The process environment that selects this store (as the worker reads it). */
  env: Record<string, string>;
  /** Options for `openSharedAdmission` / `openClusterLimiter`. */
  config: { databaseUrl?: string; redisUrl?: string };
  stop(): Promise<void>;
}

export const STORES: TestStore['name'][] = ['PostgreSQL', 'Redis'];

/** Starts a throwaway server of the named kind. */
export async function startStore(name: TestStore['name']): Promise<TestStore> {
  if (name === 'PostgreSQL') {
    const pg: TestPostgres = await startPostgres();
    const url = pg.url(pg.adminUser, pg.adminPassword);
    return { name, url, env: { INTEGRATION_AGENT_DATABASE_URL: url }, config: { databaseUrl: url }, stop: () => pg.stop() };
  }
  const r: TestRedis = await startRedis();
  const url = `redis://default:${encodeURIComponent(r.adminPassword)}@127.0.0.1:${r.port}`;
  return { name, url, env: { INTEGRATION_AGENT_REDIS_URL: url }, config: { redisUrl: url }, stop: () => r.stop() };
}

export interface Child {
  proc: ChildProcess;
  /** Resolves with the stdout lines once the process exits 0; rejects with its stderr otherwise. */
  done: Promise<string[]>;
  /** Resolves when the process printed `line`. */
  printed(line: string): Promise<void>;
}

/** Runs a TypeScript file of this folder as a child process (tsx), with extra env. */
export function runChild(file: string, env: Record<string, string>, args: string[] = []): Child {
  const proc = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), join(__dirname, file), ...args], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters: { line: string; resolve: () => void }[] = [];
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => {
    out += d;
    const lines = out.split('\n');
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (lines.includes(waiters[i]!.line)) waiters.splice(i, 1)[0]!.resolve();
    }
  });
  proc.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const done = new Promise<string[]>((resolve, reject) => {
    proc.once('error', reject);
    proc.once('exit', (code, signal) => {
      if (code === 0) resolve(out.split('\n').filter((l) => l.length > 0));
      else reject(new Error(`${file} exited with ${code ?? signal}: ${err}`));
    });
  });
  done.catch(() => {});
  return {
    proc,
    done,
    printed: (line) =>
      new Promise<void>((resolve, reject) => {
        if (out.split('\n').includes(line)) return resolve();
        waiters.push({ line, resolve });
        done.then(() => reject(new Error(`${file} exited without printing ${line}`)), reject);
      }),
  };
}
