/**
 * The embedded Temporal dev server: `temporal server start-dev` on loopback,
 * with SQLite persistence and this project's search attributes registered.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createServer } from 'node:net';
import { connect as connectSocket } from 'node:net';
import { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTES } from '../domain/constants';
import { PROJECT_ROOT, resolveTemporalCli } from './temporal-cli';

export interface DevServerOptions {
  /** gRPC port; 0 or undefined picks a free one. */
  port?: number;
  /** Web UI port; 0 picks a free one; `false` disables the UI (headless). */
  uiPort?: number | false;
  /** SQLite file for persistence across restarts; in-memory when omitted. */
  dbFilename?: string;
  /** Namespaces to create besides `default`. */
  namespaces?: string[];
  /** Server log level (default `error`). */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Where server output goes (default: discarded). */
  onOutput?: (chunk: string) => void;
  /** Milliseconds to wait for the frontend to accept connections (default 60 000). */
  startTimeoutMs?: number;
  /**
   * Codec server URL the Web UI decodes payloads with (`--ui-codec-endpoint`);
   * the UI's browser calls `<url>/decode` with no Authorization header.
   */
  uiCodecEndpoint?: string;
  /**
   * Server dynamic config, one `--dynamic-config-value KEY=JSON` each; default
   * {@link DEV_SERVER_DYNAMIC_CONFIG}. Pass `{}` for the server's own defaults
   * (what a stock `temporal server start-dev` does; the benchmarks' "before").
   */
  dynamicConfig?: Readonly<Record<string, string | number | boolean>>;
}

/**
 * The dev server's dynamic config: cuts the per-task latency floor of a
 * stock `temporal server start-dev` (docs/temporal-overhead.md).
 *
 * - `history.transferProcessorMaxPollRPS` (server default 20): reads of a
 *   history shard's transfer queue per second. Every workflow task and
 *   activity task passes through that queue on its way to matching, and the
 *   dev server has one shard, so at 20 reads/s (a token bucket of 20: a burst
 *   passes after a quiet second) a task created within 50 ms of the previous
 *   read waits for the next one: ~35 ms of a workflow task's schedule-to-start,
 *   100 ms flat per activity round trip. At 1000 the wait is under 2 ms. Reads
 *   are triggered by new tasks, so an idle server does not read more often.
 * - `history.timerProcessorMaxTimeShift` (default 1s): a new timer task is
 *   never due before the timer queue's read level, which runs this far ahead
 *   of the clock (a margin for clock differences between history hosts), so
 *   every timer shorter than 1 s (`sleep('50ms')`, a 200 ms activity retry
 *   backoff) fires after ~1 s. One process has one clock: 10 ms.
 * - `history.timerProcessorMaxPollRPS` (default 20): the per-shard read limit
 *   of the timer queue; with short timers back to back it adds up to 50 ms each.
 * - `system.enableActivityEagerExecution` (default false): an activity
 *   scheduled by a workflow task comes back to the worker in the completion
 *   response when it has a free slot, skipping the transfer queue and matching.
 * - `system.enableEagerWorkflowStart`: lets a client sharing the worker's
 *   NativeConnection get the first workflow task in the start response
 *   (`requestEagerStart`).
 */
export const DEV_SERVER_DYNAMIC_CONFIG: Readonly<Record<string, string | number | boolean>> = Object.freeze({
  'history.transferProcessorMaxPollRPS': 1000,
  'history.timerProcessorMaxPollRPS': 1000,
  'history.timerProcessorMaxTimeShift': '10ms',
  'system.enableActivityEagerExecution': true,
  'system.enableEagerWorkflowStart': true,
});

export interface DevServer {
  /** `host:port` of the gRPC frontend. */
  address: string;
  /** Web UI address, or undefined when headless. */
  uiUrl?: string;
  process: ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s). */
  stop(): Promise<void>;
}

/** Finds a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolvePort(addr.port) : reject(new Error('no port'))));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connectSocket({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

/**
 * Starts a dev server and waits until its frontend is reachable. When it
 * exits because a port it chose itself (the HTTP API's, or one picked by
 * {@link freePort} here) was taken between choosing and binding, it is
 * started again with fresh ports, at most 3 times in all (seen with several
 * dev servers starting on one machine, e.g. the rotation benchmark's rigs).
 *
 * @throws Error with the server's last output when it exits or does not come up in time,
 *   or at once when a port the caller fixed (`port`, `uiPort`) is in use.
 */
export async function startDevServer(opts: DevServerOptions = {}): Promise<DevServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startDevServerOnce(opts);
    } catch (err) {
      const taken = portTaken((err as Error).message);
      const fixed = [opts.port, typeof opts.uiPort === 'number' ? opts.uiPort : undefined];
      if (taken === undefined || fixed.includes(taken) || attempt >= 3) throw err;
    }
  }
}

/**
 * The port of a `bind: address already in use` in a dev server's output
 * (`listen tcp 127.0.0.1:<port>: bind: address already in use`), or undefined.
 */
export function portTaken(output: string): number | undefined {
  const m = /listen tcp [^\s:]*:(\d+): bind: address already in use/.exec(output);
  return m ? Number(m[1]) : undefined;
}

async function startDevServerOnce(opts: DevServerOptions): Promise<DevServer> {
  const cli = resolveTemporalCli();
  const port = opts.port || (await freePort());
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--log-level', opts.logLevel ?? 'error'];
  let uiUrl: string | undefined;
  if (opts.uiPort === false) args.push('--headless');
  else {
    const uiPort = opts.uiPort || (await freePort());
    args.push('--ui-port', String(uiPort));
    uiUrl = `http://127.0.0.1:${uiPort}`;
    if (opts.uiCodecEndpoint) args.push('--ui-codec-endpoint', opts.uiCodecEndpoint);
  }
  if (opts.dbFilename) {
    // temporal refuses a database file in a folder that does not exist (a fresh machine's data dir).
    mkdirSync(dirname(opts.dbFilename), { recursive: true, mode: 0o700 });
    args.push('--db-filename', opts.dbFilename);
  }
  for (const ns of opts.namespaces ?? []) args.push('--namespace', ns);
  for (const [key, value] of Object.entries(opts.dynamicConfig ?? DEV_SERVER_DYNAMIC_CONFIG)) args.push('--dynamic-config-value', `${key}=${JSON.stringify(value)}`);
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES)) args.push('--search-attribute', `${name}=${type}`);
  // Keep history-size budgets small enough that continue-as-new paths are exercised realistically.
  const child = spawn(cli, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const onData = (b: Buffer) => {
    const s = b.toString();
    tail = (tail + s).slice(-4000);
    opts.onOutput?.(s);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let exited: number | null | undefined;
  // 'close', not 'exit': it comes after the output pipes are drained, so `tail` holds the server's last words.
  child.once('close', (code) => (exited = code));
  const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
  while (!(await canConnect(port))) {
    if (exited !== undefined) throw new Error(`temporal dev server exited with code ${exited} before it was ready:\n${tail}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`temporal dev server did not accept connections on 127.0.0.1:${port} in time:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const address = `127.0.0.1:${port}`;
  // The port opens before the namespace and search attributes are ready; wait for both.
  const conn = await Connection.connect({ address, connectTimeout: 5_000 });
  try {
    for (;;) {
      try {
        const sa = await conn.operatorService.listSearchAttributes({ namespace: 'default' });
        if (Object.keys(SEARCH_ATTRIBUTES).every((k) => k in (sa.customAttributes ?? {}))) break;
      } catch {
        /* not ready yet */
      }
      if (exited !== undefined) throw new Error(`temporal dev server exited with code ${exited}:\n${tail}`);
      if (Date.now() > deadline) throw new Error(`temporal dev server at ${address} did not become ready in time:\n${tail}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await conn.close();
  }
  return {
    address,
    uiUrl,
    process: child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const done = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await done;
      clearTimeout(t);
    },
  };
}

export interface DevCodecServer {
  /** Base URL, e.g. `http://127.0.0.1:40123` (the UI posts to `<url>/decode`). */
  url: string;
  /** Process id of the codec server (a child process of this one). */
  pid: number;
  /** The UI origins it decodes for without a token. */
  origins: string[];
  process: ChildProcess;
  /** Stops it (SIGTERM, then SIGKILL after 5 s); resolves at once when it has already exited. */
  stop(): Promise<void>;
}

/**
 * Starts the codec server for the dev server's Web UI on loopback port
 * `uiPort`, as a child process (`integration-agent codec-server --listen
 * 127.0.0.1:0 --trust-local-ui <uiPort>`): it decodes without a token only
 * for `http://127.0.0.1:<uiPort>` and `http://localhost:<uiPort>`, refuses
 * /encode without `CODEC_SERVER_TOKEN`, and exits when this process does
 * (its IPC channel closes). A process of its own so that it can stop or fail
 * without taking `dev` down, and be stopped on its own.
 *
 * The child reads the same codec keys as this process (same environment and
 * data dir); create them first (`loadCodecKeys`) to avoid two processes
 * generating the key file at once.
 *
 * @param opts.onExit called when it exits before `stop()` (with code or signal).
 * @throws Error with its stderr when it exits before reporting its address, or takes over `startTimeoutMs` (default 30 000).
 */
export async function startDevCodecServer(opts: {
  uiPort: number;
  env?: NodeJS.ProcessEnv;
  startTimeoutMs?: number;
  onExit?: (how: string) => void;
}): Promise<DevCodecServer> {
  const bin = join(PROJECT_ROOT, 'bin', 'integration-agent.js');
  const child = fork(bin, ['codec-server', '--listen', '127.0.0.1:0', '--trust-local-ui', String(opts.uiPort)], {
    env: opts.env ?? process.env,
    // Not this process's flags (an --inspect port would clash).
    execArgv: [],
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)));
  let stopping = false;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      if (!stopping) opts.onExit?.(signal ?? `code ${code}`);
      resolve();
    }),
  );
  const report = await new Promise<{ url: string; pid: number; corsOrigins: string[] }>((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the dev codec server did not report its address in ${opts.startTimeoutMs ?? 30_000} ms:\n${stderr}`));
    }, opts.startTimeoutMs ?? 30_000);
    child.once('message', (m) => {
      clearTimeout(t);
      resolve(m as { url: string; pid: number; corsOrigins: string[] });
    });
    child.once('exit', (code, signal) => {
      clearTimeout(t);
      reject(new Error(`the dev codec server exited (${signal ?? `code ${code}`}) before it was ready:\n${stderr.trim()}`));
    });
  });
  // It must not keep this process alive on its own; stop() ends it.
  child.unref();
  child.channel?.unref();
  (child.stderr as unknown as { unref?: () => void }).unref?.();
  return {
    url: report.url,
    pid: child.pid!,
    origins: report.corsOrigins,
    process: child,
    async stop() {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}
