/**
 * `integration-agent dev [--registry FILE] [--once] [--json]` (also `npm start`):
 * the whole agent on one machine — an embedded Temporal dev server with its
 * Web UI, a worker, the demo fleet (without --registry), one health sweep and
 * one rotation of every credential, printed. Unless --once, it then applies
 * the sweep Schedule (every 10 s, or --sweep-every) and keeps running until Ctrl-C.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { Client } from '@temporalio/client';
import { startDevServer, startDevCodecServer, freePort, type DevServer, type DevCodecServer } from '../../../dev/dev-server';
import { loadCodecKeys } from '../../../codec/keys';
import { AesGcmCodec } from '../../../codec/aes-gcm-codec';
import { startDemoFleet, type DemoFleet } from '../../../dev/example-fleet';
import { loadConfig } from '../../../worker/config';
import { createLogger } from '../../../worker/logger';
import { createAgentWorker, type AgentWorker } from '../../../worker/worker';
import { connectClient } from '../../connect';
import { applySweepSchedule, runSweep, type HealthSweepResult } from '../../health';
import { durationOption } from './health';
import { rotate } from '../../rotation';
import { CliError, emit } from '../context';
import { formatTable } from '../table';
import { formatSweep } from './sweep';
import { openRegistry, resolveRegistryPath } from '../registry-source';
import { syncRegistry } from '../../registry-sync';
import type { Registry } from '../../../domain/registry';
import { startDashboard, type Dashboard } from '../../../dashboard';

export type RotationStatus = 'completed' | 'rolled_back' | 'needs_attention' | 'failed';

export interface DevRotation {
  credentialId: string;
  workflowId: string;
  status: RotationStatus;
  versionId?: string;
  error?: string;
}

/** The `--json` document of `dev`. */
export interface DevReport {
  /**
   * `codecUrl`: the codec server the Web UI decodes payloads with (no token
   * needed from the UI's own loopback origin); `codecServerPid`: its process
   * (a child of `dev`; stopping it leaves the UI showing `binary/encrypted`).
   */
  temporal: { address: string; uiUrl?: string; namespace: string; uiDecodesPayloads: boolean; codecUrl: string; codecServerPid: number };
  /** The live status page (`integration-agent dashboard`), served by this process on loopback. */
  dashboard: { url: string };
  registry: { source: string; version: string };
  sweep: HealthSweepResult;
  rotations: DevRotation[];
  /** The sweep Schedule `dev` applied so monitoring goes on (absent with --once). */
  schedule?: { scheduleId: string; intervalMs: number };
}

/** Sweep period of `dev` (shorter than a deployment's 30 s, so the status page moves while one watches). */
export const DEV_SWEEP_INTERVAL_MS = 10_000;

async function portOr(preferred: number): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => freePort().then(resolve));
    s.listen(preferred, '127.0.0.1', () => s.close(() => resolve(preferred)));
  });
}

/** `client` is on the in-process worker's NativeConnection, so the rotation starts eagerly on it. */
async function rotateOne(client: Client, taskQueue: string, credentialId: string): Promise<DevRotation> {
  let r;
  try {
    r = await rotate(client, { credentialId, taskQueue, requestEagerStart: true });
  } catch (err) {
    // e.g. a rotation of this credential is already running (its message names the workflow and run).
    return { credentialId, workflowId: `rotation/${credentialId}`, status: 'failed', error: (err as Error).message.split('\n')[0] };
  }
  return { credentialId, workflowId: r.workflowId, status: r.status, versionId: r.versionId, ...(r.cause ? { error: r.cause } : {}) };
}

export function register(program: Command): void {
  program
    .command('dev')
    .description('run everything locally: Temporal dev server + Web UI (payloads decoded), a worker, the demo services, a sweep and a rotation')
    .option('--registry <file>', 'registry to use (default: examples/services.yaml, and start its demo services)')
    .option('--once', 'exit after the first sweep and rotations')
    .option('--sweep-every <duration>', 'without --once: keep sweeping on a Temporal Schedule this often, at least 1s (default 10s)', durationOption('--sweep-every'))
    .option('--json', 'print one JSON document')
    .option('--port <n>', 'Temporal gRPC port (default 7233, or a free one)', (v) => Number.parseInt(v, 10))
    .option('--ui-port <n>', 'Web UI port (default 8233, or a free one)', (v) => Number.parseInt(v, 10))
    .option('--dashboard-port <n>', 'status page port on 127.0.0.1 (default 8300, or a free one)', (v) => Number.parseInt(v, 10))
    .option('--demo-port-base <n>', 'demo services on ports n, n+1, ... (default: free ports)', (v) => Number(v))
    .action(async (opts: { registry?: string; once?: boolean; sweepEvery?: number; json?: boolean; port?: number; uiPort?: number; dashboardPort?: number; demoPortBase?: number }) => {
      if (opts.sweepEvery !== undefined && (opts.once || opts.sweepEvery < 1000)) {
        throw new CliError(opts.once ? 'dev: --sweep-every applies without --once only (with --once dev sweeps once and exits)' : `dev: --sweep-every must be at least 1s, got ${opts.sweepEvery}ms`);
      }
      const base = loadConfig({ LOG_LEVEL: 'warn', ...process.env });
      const logger = createLogger(base.logLevel, 'stderr');
      const say = (msg: string) => {
        if (!opts.json) process.stdout.write(`${msg}\n`);
      };
      // Without --registry: the example registry's demo services, on free ports (or from --demo-port-base),
      // and the registry they follow, written for this run.
      let demo: DemoFleet | undefined;
      if (!opts.registry) {
        try {
          demo = await startDemoFleet(resolveRegistryPath(), { ports: opts.demoPortBase === undefined ? 'free' : { base: opts.demoPortBase } });
        } catch (err) {
          throw new CliError(`dev: cannot start the demo services: ${(err as Error).message}${opts.demoPortBase === undefined ? '' : ' (choose another --demo-port-base, or leave it out for free ports)'}`);
        }
      }
      const registryPath = demo?.registryPath ?? resolveRegistryPath(opts.registry);
      const registry = openRegistry(registryPath, logger);
      let server: DevServer | undefined;
      let codecServer: DevCodecServer | undefined;
      let agent: AgentWorker | undefined;
      let running: Promise<void> | undefined;
      let client: Client | undefined;
      let dashboard: Dashboard | undefined;
      let stopping: Promise<void> | undefined;
      const stop = () =>
        (stopping ??= (async () => {
          // The Runtime may already be draining the worker on SIGINT/SIGTERM.
          await dashboard?.close().catch(() => undefined);
          if (agent?.worker.getState() === 'RUNNING') agent.worker.shutdown();
          await running?.catch(() => undefined);
          await client?.connection.close().catch(() => undefined);
          await server?.stop();
          await codecServer?.stop();
          registry.close();
          await demo?.close();
        })());
      try {
        if (demo) say(`demo services: ${[...demo.fleet.services.values()].map((s) => `${s.id} ${s.url}`).join(', ')}`);
        const port = opts.port ?? (await portOr(7233));
        const uiPort = opts.uiPort ?? (await portOr(port === 7233 ? 8233 : port + 1000));
        // Create the codec keys before two processes (codec server, worker) would both generate them.
        loadCodecKeys(base.dataDir);
        codecServer = await startDevCodecServer({
          uiPort,
          onExit: (how) => logger.warn(`the codec server exited (${how}); until dev restarts, the Web UI shows payloads encrypted (binary/encrypted)`),
        });
        server = await startDevServer({ port, uiPort, dbFilename: join(base.dataDir, 'temporal-dev.db'), uiCodecEndpoint: codecServer.url });
        const config = { ...base, address: server.address, tls: undefined, apiKey: undefined };
        agent = await createAgentWorker({ config, registry, logger });
        running = agent.run();
        const sync = (next: Registry, previous?: Registry) => void syncRegistry(agent!.client, logger, next, previous, { taskQueue: config.taskQueue });
        registry.onReload(sync);
        sync(registry.current());
        client = await connectClient(config);
        // The status page reads through the same client facade as any other program (docs/dashboard.md).
        dashboard = await startDashboard({
          client,
          taskQueue: config.taskQueue,
          namespace: config.namespace,
          registry: () => registry.current(),
          port: opts.dashboardPort ?? (await portOr(8300)),
          uiUrl: server.uiUrl,
          onError: (err) => logger.warn({ error: (err as Error).message }, 'dashboard gather failed'),
        });
        say(`Temporal dev server on ${server.address}; Web UI: ${server.uiUrl} (decodes payloads through the codec server on ${codecServer.url}); status page: ${dashboard.url}`);
        // The sweep and the rotations start here, next to the worker: a client on the worker's own
        // NativeConnection starts them eagerly (the first workflow task comes back in the start
        // response, not through the task queue). Closed with the worker.
        const local = new Client({
          connection: agent.worker.connection!,
          namespace: config.namespace,
          dataConverter: { payloadCodecs: [new AesGcmCodec(loadCodecKeys(config.dataDir))] },
        });

        const sweep = await runSweep(local, { taskQueue: config.taskQueue, requestEagerStart: true });
        say(formatSweep(sweep));
        const rotations: DevRotation[] = [];
        for (const c of registry.current().credentials) rotations.push(await rotateOne(local, config.taskQueue, c.id));
        say(
          formatTable(
            ['CREDENTIAL', 'STATUS', 'VERSION', 'WORKFLOW'],
            rotations.map((r) => [r.credentialId, r.status, r.versionId ?? '-', r.workflowId + (r.error ? ` (${r.error})` : '')]),
          ),
        );
        // Monitoring goes on after the first sweep, as in a deployment: the sweep Schedule (`schedule
        // apply`), so the status page and `status` follow the fleet while dev runs.
        let schedule: DevReport['schedule'];
        if (!opts.once) {
          const intervalMs = opts.sweepEvery ?? DEV_SWEEP_INTERVAL_MS;
          // Sweep mode: the demo fleet's services keep the default 30 s interval, and a sweep every 10 s shows a change sooner.
          const applied = await applySweepSchedule(local, { taskQueue: config.taskQueue, mode: 'sweep', intervalMs, note: 'health sweeps of integration-agent dev' });
          schedule = { scheduleId: applied.scheduleId, intervalMs };
          say(`Sweeping every ${intervalMs / 1000}s on the Temporal Schedule ${applied.scheduleId} (pause it with: TEMPORAL_ADDRESS=${server.address} integration-agent schedule pause)`);
        }
        const report: DevReport = {
          temporal: {
            address: server.address,
            uiUrl: server.uiUrl,
            namespace: config.namespace,
            uiDecodesPayloads: true,
            codecUrl: codecServer.url,
            codecServerPid: codecServer.pid,
          },
          dashboard: { url: dashboard.url },
          registry: { source: registryPath, version: registry.current().versionHash },
          sweep,
          rotations,
          ...(schedule ? { schedule } : {}),
        };
        if (opts.json) emit(opts, report, () => '');
        const ok = rotations.every((r) => r.status === 'completed');
        if (!opts.once) {
          say(`\nRunning. Watch the fleet on the status page: ${dashboard.url}; inspect the runs in the Web UI: ${server.uiUrl}/namespaces/${config.namespace}/workflows  (inputs and results shown decoded; Ctrl-C to stop)`);
          await new Promise<void>((resolve) => {
            process.once('SIGINT', resolve);
            process.once('SIGTERM', resolve);
            running!.then(resolve, resolve);
          });
        }
        await stop();
        process.exitCode = ok ? 0 : 1;
      } finally {
        await stop();
      }
    });
}
