/**
 * The workflow bundle's entry: re-exports every workflow and its message definitions.
 * Workflow code imports only `@temporalio/workflow`, `src/domain` and types.
 */
export * from './sweep';
export * from './monitor';
export * from './service-health';
export * from './health-shard';
export * from './rotation';
export * from './rotation-alert';
export * from './diagnostics';
export * from './breaker';
export * from './make';
export * from './state-read';
export * from './registry-lookup';
export * from './prober';
