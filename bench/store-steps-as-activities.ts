/**
 * Workflow interceptor for the benchmarks' "before" side: every local activity
 * is scheduled as a normal activity with the same timeout and retry policy, so
 * the rotation saga runs its store steps (registry snapshot, audit, finish) as
 * it did before they became local activities (docs/rotation.md, "Which steps
 * are local activities"), with the very same workflow code beside the "after"
 * side. Bench-only: never loaded by a worker of the product.
 */
import { proxyActivities, type WorkflowInterceptorsFactory } from '@temporalio/workflow';

export const interceptors: WorkflowInterceptorsFactory = () => ({
  outbound: [
    {
      scheduleLocalActivity(input) {
        const { startToCloseTimeout, scheduleToCloseTimeout, retry } = input.options;
        const acts = proxyActivities({ startToCloseTimeout, scheduleToCloseTimeout, retry }) as Record<string, (...args: unknown[]) => Promise<unknown>>;
        return acts[input.activityType]!(...input.args);
      },
    },
  ],
});
