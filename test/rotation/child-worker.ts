/** Starting and SIGKILLing the rotation worker of worker-process.ts in a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

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
