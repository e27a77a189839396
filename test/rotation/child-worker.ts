/** Starting and SIGKILLing the rotation worker of worker-process.ts in a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ContractEvent, ContractServer } from '../fixtures/rotation-contract';

export interface ChildWorker extends ChildProcess {
  /** Everything the worker logged so far. */
  logs(): string;
}

/** Starts the worker with `env` (see worker-process.ts) and resolves once it polls. */
export function startWorker(env: Record<string, string>): Promise<ChildWorker> {
  const child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), join(__dirname, 'worker-process.ts')], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  }) as ChildWorker;
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.logs = () => err;
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`worker exited ${code} before ready: ${err.slice(0, 2000)}`)));
  });
}

/** SIGKILL, resolved once the process is gone. */
export function kill(child: ChildProcess): Promise<void> {
  return new Promise<void>((r) => {
    if (child.exitCode !== null || child.signalCode !== null) return r();
    child.once('exit', () => r());
    child.kill('SIGKILL');
  });
}

/**
 * worker-process.ts's environment for a rotation fixture: its task queue, data dir and master key, and
 * `registry` written as JSON to `<dataDir>/<file>` (a second file gives a worker another registry version).
 */
export function workerEnv(fx: { taskQueue: string; dataDir: string }, masterKey: Buffer, registry: unknown, file = 'registry.json'): Record<string, string> {
  const path = join(fx.dataDir, file);
  writeFileSync(path, JSON.stringify(registry));
  return { ROT_TASK_QUEUE: fx.taskQueue, ROT_DATA_DIR: fx.dataDir, ROT_MASTER_KEY: masterKey.toString('base64'), ROT_REGISTRY: path };
}

/**
 * SIGKILLs the worker `current()` returns at the first contract request matching `when` (called before
 * the request is answered, so an install can apply while its activity never completes).
 * @returns `killed()`: resolves once that worker is gone; rejects when no request matched within 15 s.
 */
export function killOnEvent(server: ContractServer, current: () => ChildProcess, when: (e: ContractEvent) => boolean): { killed(): Promise<void> } {
  let killed: Promise<void> | undefined;
  server.onEvent = (e) => {
    if (!killed && when(e)) killed = kill(current());
  };
  return {
    async killed() {
      for (let i = 0; i < 300 && !killed; i++) await new Promise((r) => setTimeout(r, 50));
      if (!killed) throw new Error('no contract request matched within 15 s: the worker was not killed');
      await killed;
    },
  };
}
