/**
 * Real `integration-agent` processes for the cluster tests: workers started
 * from the built `lib/` (`node bin/integration-agent.js worker`), SIGKILLed
 * and restarted at will, and one-shot CLI commands, each with an environment
 * of its own (nothing inherited from the test's INTEGRATION_AGENT_* or
 * TEMPORAL_* variables).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Connection, type Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { testAddress } from '../helpers/temporal';

export const ROOT = join(__dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'integration-agent.js');

/** Fails with what to do when `lib/` is missing or predates the state-read workflows. */
export function requireBuiltLib(): void {
  for (const f of ['lib/client/cli/main.js', 'lib/workflows/state-read.js', 'lib/activities/state-read.js']) {
    if (!existsSync(join(ROOT, f))) throw new Error(`${f} is missing: lib/ is not built or stale; run \`npm run build --silent\` (npm test does it first)`);
  }
}

/** The test process's environment without any setting of ours, so each child gets only what a test gives it. */
function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(INTEGRATION_AGENT_|TEMPORAL_|LOG_LEVEL$|METRICS_ADDRESS$|SDK_METRICS_ADDRESS$)/.test(k)) env[k] = v;
  return env;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until `check` returns a truthy value, polling every `everyMs`.
 * @throws Error naming `what` (and `detail()`, when given) after `timeoutMs`.
 */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, opts: { timeoutMs: number; everyMs?: number; detail?: () => string }): Promise<NonNullable<T>> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${what}${opts.detail ? `\n${opts.detail()}` : ''}`);
    await sleep(opts.everyMs ?? 100);
  }
}

/** One `integration-agent worker` process (restartable). */
export class WorkerProcess {
  private child: ChildProcess | undefined;
  private output = '';
  /** Starts so far (1 after the first start). */
  starts = 0;

  constructor(
    readonly name: string,
    private readonly env: Record<string, string>,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The last 6000 characters the worker wrote (stdout and stderr). */
  logs(): string {
    return this.output.slice(-6000);
  }

  /**
   * Starts the process and resolves once it runs: it logged `worker started`
   * and its SDK worker is RUNNING (seen with LOG_LEVEL info or lower), or its
   * `host:pid` identity is among the task queue's workflow pollers. (The
   * server lists only the root partition's pollers, where a live worker may
   * not show for a minute when others poll too: prefer LOG_LEVEL info.)
   * @throws Error with its output when it exits first or is not running within `timeoutMs`.
   */
  async start(client: Client, timeoutMs = 60_000): Promise<void> {
    if (this.running()) throw new Error(`${this.name} is already running (pid ${this.child!.pid})`);
    const child = spawn(process.execPath, [BIN, 'worker'], { cwd: ROOT, env: { ...baseEnv(), ...this.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.starts++;
    let since = '';
    const keep = (d: Buffer) => {
      this.output = (this.output + d.toString()).slice(-20_000);
      since = (since + d.toString()).slice(-20_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const prefix = `${hostname()}:${child.pid}`;
    let polled = 0;
    await waitFor(
      `${this.name} (pid ${child.pid}) to start on task queue ${this.env.TEMPORAL_TASK_QUEUE}`,
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${this.name} exited (${child.exitCode ?? child.signalCode}) before it ran:\n${this.logs()}`);
        if (since.includes('"msg":"worker started"') && since.includes('"state":"RUNNING"')) return true;
        if (Date.now() - polled < 500) return false;
        polled = Date.now();
        const r = await client.workflowService.describeTaskQueue({
          namespace: client.options.namespace,
          taskQueue: { name: this.env.TEMPORAL_TASK_QUEUE, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
          taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        });
        return (r.pollers ?? []).some((p) => p.identity === prefix || p.identity?.startsWith(`${prefix} `));
      },
      { timeoutMs, everyMs: 50, detail: () => this.logs() },
    );
  }

  /** SIGKILL; resolves once the process is gone (at once when it is not running). */
  kill(): Promise<void> {
    const child = this.child;
    return new Promise<void>((resolve) => {
      if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  /** Whether the process runs. */
  running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs one CLI command to its end with exactly `env` (plus PATH, HOME...).
 * @param opts.input written to stdin. A command still running after `timeoutMs` is killed (code null).
 */
export function runCli(args: string[], env: Record<string, string>, opts: { input?: string; timeoutMs?: number } = {}): Promise<CliRun> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...baseEnv(), ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(opts.input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

/** Parses a CLI's JSON stdout, or fails naming the command and what it printed. */
export function cliJson<T>(what: string, r: CliRun): T {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`${what} printed no JSON: ${r.stdout.slice(0, 500)} ${r.stderr.slice(0, 500)}`);
  }
}

/** What a cluster test file shares: see {@link useClusterFile}. */
export interface ClusterFile {
  /** Worker processes the file started: all killed after the file, whatever failed. */
  workers: WorkerProcess[];
  /** A connection to the test dev server, open from the file's first test to its end. */
  connection: Connection;
  /** A new temp dir, removed after the file. */
  tempDir(): string;
}

/**
 * Registers, at the top level of a cluster test file, the set-up its tests
 * share: `lib/` built, one connection to the test dev server, worker
 * processes killed and temp dirs (`<prefix>XXXXXX`) removed after the file.
 */
export function useClusterFile(prefix: string): ClusterFile {
  const dirs: string[] = [];
  const file = {
    workers: [] as WorkerProcess[],
    connection: undefined as unknown as Connection,
    tempDir(): string {
      const d = mkdtempSync(join(tmpdir(), prefix));
      dirs.push(d);
      return d;
    },
  };
  beforeAll(async () => {
    requireBuiltLib();
    file.connection = await Connection.connect({ address: testAddress() });
  });
  afterAll(async () => {
    await Promise.all(file.workers.map((w) => w.kill()));
    await file.connection?.close().catch(() => undefined);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  return file;
}
