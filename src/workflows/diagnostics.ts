/**
 * Diagnostic workflows: `ping` (no activity: the workflow round trip),
 * `pingWorker` (one activity: proves a worker with activities is polling),
 * and `activityRoundTrips` (n empty activities in sequence, each one's
 * round trip as the workflow sees it, in ms) for the benchmark baseline.
 */
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { WorkerInfo } from '../activities/diagnostics';

const { describeWorker } = proxyActivities<{ describeWorker(): Promise<WorkerInfo> }>({
  startToCloseTimeout: '10s',
  retry: { maximumAttempts: 3 },
});

export async function ping(): Promise<{ workflowId: string }> {
  return { workflowId: workflowInfo().workflowId };
}

export async function pingWorker(): Promise<WorkerInfo> {
  return describeWorker();
}

/**
 * @param n number of sequential activities (1..1000).
 * @returns per-activity round trips in ms, measured with workflow time (the start of each workflow task).
 */
export async function activityRoundTrips(n: number): Promise<number[]> {
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new RangeError(`activityRoundTrips: n must be an integer in 1..1000, got ${n}`);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = Date.now();
    await describeWorker();
    out.push(Date.now() - t0);
  }
  return out;
}
