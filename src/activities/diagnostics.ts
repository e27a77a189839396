/**
 * Diagnostics: tells who is polling the task queue and which registry it holds.
 * Used by `integration-agent doctor` and by the Temporal round-trip benchmark.
 */
import type { RegistrySource } from './registry';

export interface WorkerInfo {
  /** Stable id of the worker process (`host:pid`). */
  reporterId: string;
  registryVersion: string;
  services: number;
  /** Worker process uptime, seconds. */
  uptimeSeconds: number;
}

export function createDiagnosticsActivities(deps: { registry: RegistrySource; reporterId: string }) {
  return {
    async describeWorker(): Promise<WorkerInfo> {
      const r = deps.registry.current();
      return { reporterId: deps.reporterId, registryVersion: r.versionHash, services: r.services.length, uptimeSeconds: Math.round(process.uptime()) };
    },
  };
}
