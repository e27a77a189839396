/**
 * `integration-agent worker [--registry FILE]`: a worker against TEMPORAL_ADDRESS.
 */
import type { Command } from 'commander';
import { createLogger } from '../../../worker/logger';
import { loadConfig } from '../../../worker/config';
import { assertSharedKeysFor } from '../../../codec/keys';
import { createAgentWorker } from '../../../worker/worker';
import { createMetricsRegistry, serveMetrics } from '../../../worker/metrics';
import { openRegistry, resolveRegistryPath } from '../registry-source';
import { syncRegistry } from '../../registry-sync';
import type { Registry } from '../../../domain/registry';

export function register(program: Command): void {
  program
    .command('worker')
    .description('run a worker: polls the task queue, runs workflows and activities, re-reads the registry when it changes')
    .option('--registry <file>', 'registry file (default: INTEGRATION_AGENT_REGISTRY, else examples/services.yaml)')
    .option('--json', 'log as JSON lines (the default; kept for symmetry)')
    .action(async (opts: { registry?: string }) => {
      const config = loadConfig();
      // Before anything is opened or sent: generated keys only where one host is certain.
      assertSharedKeysFor(config.address);
      const logger = createLogger(config.logLevel);
      const registry = openRegistry(resolveRegistryPath(opts.registry ?? config.registryPath), logger);
      const metrics = config.metricsAddress ? createMetricsRegistry() : undefined;
      const served = metrics && config.metricsAddress ? await serveMetrics(metrics, config.metricsAddress) : undefined;
      if (served) logger.info({ url: served.url }, 'metrics');
      const agent = await createAgentWorker({ config, registry, logger, metrics });
      const sync = (next: Registry, previous?: Registry) => void syncRegistry(agent.client, logger, next, previous, { taskQueue: config.taskQueue });
      registry.onReload(sync);
      sync(registry.current());
      try {
        await agent.run();
      } finally {
        registry.close();
        served?.server.close();
      }
    });
}
