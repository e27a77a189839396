/**
 * Diagnostic workflows: `ping` (no activity: the workflow round trip),
 * `pingWorker` (one activity: proves a worker with activities is polling),
 * and `activityRoundTrips` (n empty activities, or local activities, in
 * sequence, each one's round trip as the workflow sees it, in ms) for the
 * benchmark baseline.
 */
import { proxyActivities, proxyLocalActivities, workflowInfo } from '@temporalio/workflow';
import type { WorkerInfo } from '../activities/diagnostics';

type DiagnosticsActivities = { describeWorker(): Promise<WorkerInfo> };
const options = { startToCloseTimeout: '10s', retry: { maximumAttempts: 3 } } as const;
const { describeWorker } = proxyActivities<DiagnosticsActivities>(options);
const local = proxyLocalActivities<DiagnosticsActivities>(options);

export async function ping(): Promise<{ workflowId: string }> {
  return { workflowId: workflowInfo().workflowId };
}

export async function pingWorker(): Promise<WorkerInfo> {
  return describeWorker();
}

/**
 * @param n number of sequential activities (1..1000).
 * @param opts.local run them as local activities (in this worker, no trip through the server) instead.
 * @returns per-activity round trips in ms, measured with workflow time (the start of each workflow task).
 *   Local activities resolve inside one workflow task, whose time does not move: time them from outside
 *   (the workflow's wall time / n).
 */
export async function activityRoundTrips(n: number, opts: { local?: boolean } = {}): Promise<number[]> {
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new RangeError(`activityRoundTrips: n must be an integer in 1..1000, got ${n}`);
  const call = opts.local ? local.describeWorker : describeWorker;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = Date.now();
    await call();
    out.push(Date.now() - t0);
  }
  return out;
}
