/**
 * The live status page: one {@link FleetGatherer} polling the fleet through
 * the client facade, served by one HTTP server to any number of browsers
 * (docs/dashboard.md).
 */
import type { Client } from '@temporalio/client';
import type { Registry } from '../domain/registry';
import { FleetGatherer } from './gatherer';
import { startDashboardServer, type DashboardServer } from './server';
import { temporalFleetSource, type FleetSource } from './source';

export { FleetGatherer, type FleetSnapshot, type FleetDelta, type ServiceRow, type CredentialRow, type ServiceDetail } from './gatherer';
export { startDashboardServer, checkExposure, parseListen, DashboardConfigError, type DashboardServer } from './server';
export { temporalFleetSource, type FleetSource } from './source';

export interface DashboardOptions {
  /** The fleet's reads; default {@link temporalFleetSource} on `client`. */
  source?: FleetSource;
  client?: Client;
  taskQueue: string;
  namespace: string;
  registry?: () => Registry;
  host?: string;
  port?: number;
  token?: string;
  /** Temporal Web UI base URL for deep links (e.g. http://127.0.0.1:8233). */
  uiUrl?: string;
  /** Time between gathers, ms; default 1000. */
  pollMs?: number;
  onError?: (err: unknown) => void;
}

export interface Dashboard extends DashboardServer {
  gatherer: FleetGatherer;
}

/**
 * Starts the gatherer and the server. The listen address is checked before
 * anything else (a non-loopback address without a token throws DashboardConfigError).
 */
export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
  const source = opts.source ?? (opts.client ? temporalFleetSource(opts.client, { taskQueue: opts.taskQueue, registry: opts.registry }) : undefined);
  if (!source) throw new TypeError('startDashboard: give a client or a source');
  const gatherer = new FleetGatherer(source, { namespace: opts.namespace, uiUrl: opts.uiUrl, pollMs: opts.pollMs, onError: opts.onError });
  const server = await startDashboardServer({ gatherer, host: opts.host, port: opts.port, token: opts.token });
  gatherer.start();
  return {
    ...server,
    gatherer,
    async close() {
      await server.close();
      await gatherer.stop();
    },
  };
}
