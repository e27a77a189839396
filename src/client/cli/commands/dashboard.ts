/**
 * `integration-agent dashboard [--listen 127.0.0.1:8300]`: the live status
 * page (docs/dashboard.md). Read-only; loopback unless
 * INTEGRATION_AGENT_DASHBOARD_TOKEN is set.
 */
import { Option, type Command } from 'commander';
import { loadConfig } from '../../../worker/config';
import { createLogger } from '../../../worker/logger';
import { checkExposure, DashboardConfigError, parseListen, startDashboard } from '../../../dashboard';
import { connectClient } from '../../connect';
import { CliError, emit } from '../context';
import { openRegistry, resolveRegistryPath } from '../registry-source';
import { durationOption } from './health';

/** The variable holding the dashboard's bearer token (never an argument: argv is visible to every local user). */
export const DASHBOARD_TOKEN_ENV = 'INTEGRATION_AGENT_DASHBOARD_TOKEN';

export function register(program: Command): void {
  program
    .command('dashboard')
    .description('serve the live status page: fleet, dependency graph, health, breakers, credentials and rotations (read-only)')
    .option('--listen <host:port>', `address to listen on; beyond loopback ${DASHBOARD_TOKEN_ENV} is required`, '127.0.0.1:8300')
    .option('--registry <file>', 'the registry the workers follow, for the graph, owners, tags and schedules (default INTEGRATION_AGENT_REGISTRY; without either, services and edges come from health alone)')
    .option('--temporal-ui-url <url>', 'Temporal Web UI base URL for deep links (default TEMPORAL_UI_URL)')
    .addOption(new Option('--poll <duration>', 'time between two reads of the fleet, with a unit').argParser(durationOption('--poll')).default(1000, '1s'))
    .option('--json', 'print the address as JSON')
    .action(async (opts: { listen: string; registry?: string; temporalUiUrl?: string; poll: number; json?: boolean }) => {
      const token = process.env[DASHBOARD_TOKEN_ENV] || undefined;
      let host: string;
      let port: number;
      try {
        ({ host, port } = parseListen(opts.listen));
        checkExposure(host, port, token);
      } catch (err) {
        if (err instanceof DashboardConfigError) throw new CliError(err.message);
        throw err;
      }
      const uiUrl = opts.temporalUiUrl ?? process.env.TEMPORAL_UI_URL;
      if (uiUrl !== undefined && !/^https?:\/\/[^/]+/.test(uiUrl)) throw new CliError(`--temporal-ui-url: "${uiUrl}" is not an http(s) URL (e.g. http://127.0.0.1:8233)`);
      const config = loadConfig();
      const logger = createLogger(config.logLevel, 'stderr');
      const registryPath = opts.registry ?? config.registryPath;
      const registry = registryPath ? openRegistry(resolveRegistryPath(registryPath), logger) : undefined;
      const client = await connectClient(config);
      let dashboard;
      try {
        dashboard = await startDashboard({
          client,
          taskQueue: config.taskQueue,
          namespace: config.namespace,
          registry: registry ? () => registry.current() : undefined,
          host,
          port,
          token,
          uiUrl: uiUrl?.replace(/\/+$/, ''),
          pollMs: opts.poll,
          onError: (err) => logger.warn({ error: (err as Error).message }, 'dashboard gather failed'),
        });
      } catch (err) {
        registry?.close();
        await client.connection.close();
        throw err instanceof DashboardConfigError ? new CliError(err.message) : err;
      }
      emit(opts, { url: dashboard.url, pid: process.pid, tokenRequired: token !== undefined }, () => `dashboard on ${dashboard.url}${token ? ' (bearer token required; open it once as /?token=<token>)' : ''}; Ctrl-C stops it`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await dashboard.close();
      registry?.close();
      await client.connection.close();
    });
}
