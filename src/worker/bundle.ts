/**
 * How workers bundle the workflow code: shared by the prebuilt bundle
 * (scripts/bundle-workflows.js, for `worker` and `dev` from lib/), by a worker
 * bundling from source (`workflowSourceOptions`), and by the benchmarks, so
 * all of them run the same bundle.
 */

/**
 * Domain modules evaluated once per worker and shared by every workflow (the
 * reused V8 context), instead of once per workflow run: with the SDK's
 * per-workflow module isolation every new run re-evaluated them, zod first
 * (the rotation's first workflow task took ~20 ms more, docs/temporal-overhead.md).
 * They hold no per-workflow state: no module-level mutable values (checked in review;
 * keep it so when adding one).
 */
export const PRELOADED_DOMAIN_MODULES = ['health', 'health-shard', 'registry', 'graph', 'breaker', 'make'] as const;

/**
 * The `preloadModules` option of `bundleWorkflowCode` / `bundlerOptions`: zod and
 * {@link PRELOADED_DOMAIN_MODULES}, resolved next to this file (src/ or lib/).
 * @returns module specifiers and absolute paths.
 */
export function workflowPreloadModules(): string[] {
  return ['zod', ...PRELOADED_DOMAIN_MODULES.map((m) => require.resolve(`../domain/${m}`))];
}
