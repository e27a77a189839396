/**
 * A throwaway PostgreSQL server for tests: initdb in a temp dir, listening on
 * a free loopback port, password (scram-sha-256) auth over TCP. Uses the
 * Debian binaries (PG_BIN, default /usr/lib/postgresql/15/bin); as root it
 * runs the server as the `postgres` user, as initdb requires.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { freePort } from '../../src/dev/dev-server';

export interface TestPostgres {
  host: string;
  port: number;
  adminUser: string;
  adminPassword: string;
  /** `postgres://user:password@127.0.0.1:port/postgres` */
  url(user: string, password: string): string;
  /** Runs SQL as the admin. */
  sql(text: string): Promise<void>;
  stop(): Promise<void>;
}

function pgBin(): string {
  const env = process.env.PG_BIN;
  if (env) return env;
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) if (existsSync(join(base, v, 'bin', 'postgres'))) return join(base, v, 'bin');
  }
  throw new Error('PostgreSQL binaries not found: apt-get install postgresql (or set PG_BIN to the folder with initdb and postgres)');
}

function runAs(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

/** Starts a server and resolves once it accepts the admin's connections. */
export async function startPostgres(): Promise<TestPostgres> {
  const bin = pgBin();
  const dir = mkdtempSync(join(tmpdir(), 'ia-pg-'));
  const user = runAs();
  if (user.uid !== undefined) chownSync(dir, user.uid, user.gid!);
  const adminUser = 'postgres';
  const adminPassword = `admin-${Math.random().toString(36).slice(2)}`;
  const pwfile = join(dir, 'pw');
  writeFileSync(pwfile, adminPassword + '\n', { mode: 0o600 });
  if (user.uid !== undefined) chownSync(pwfile, user.uid, user.gid!);
  const data = join(dir, 'data');
  execFileSync(join(bin, 'initdb'), ['-D', data, '-U', adminUser, '--pwfile', pwfile, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--no-sync'], {
    ...user,
    stdio: 'ignore',
  });
  const port = await freePort();
  let log = '';
  const proc: ChildProcess = spawn(
    join(bin, 'postgres'),
    ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
    { ...user, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  proc.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  const url = (u: string, p: string) => `postgres://${encodeURIComponent(u)}:${encodeURIComponent(p)}@127.0.0.1:${port}/postgres`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const c = new Client({ connectionString: url(adminUser, adminPassword) });
    try {
      await c.connect();
      await c.end();
      break;
    } catch (err) {
      await c.end().catch(() => undefined);
      if (proc.exitCode !== null || Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`PostgreSQL did not start on port ${port}: ${(err as Error).message}\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return {
    host: '127.0.0.1',
    port,
    adminUser,
    adminPassword,
    url,
    async sql(text) {
      const c = new Client({ connectionString: url(adminUser, adminPassword) });
      await c.connect();
      try {
        await c.query(text);
      } finally {
        await c.end();
      }
    },
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGINT'); // fast shutdown
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
