/**
 * Starting a health sweep by hand (the Schedule starts the periodic ones).
 * Kept apart from the health engineer's facade so the CLI's `sweep` and the
 * `dev` command share one way of starting it.
 */
import type { Client } from '@temporalio/client';
import { DEFAULT_TASK_QUEUE, workflowIds } from '../domain/constants';

export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy' | 'impacted' | 'unknown' | 'maintenance';

/** One service's line in a sweep result. */
export interface SweepServiceResult {
  id: string;
  status: HealthStatus;
  latencyMs: number | null;
  rootCause?: string;
  failureKind?: string;
  detail?: string;
}

export interface SweepResult {
  workflowId: string;
  registryVersion: string;
  services: SweepServiceResult[];
}

/**
 * Starts `healthSweep` with id `sweep/<now ISO>` and waits for its result.
 * @param opts.concurrency probes at once (default: the workflow's, 50).
 */
export async function startSweepAndWait(client: Client, opts: { taskQueue?: string; concurrency?: number } = {}): Promise<SweepResult> {
  const workflowId = workflowIds.sweep(new Date());
  const handle = await client.workflow.start('healthSweep', {
    taskQueue: opts.taskQueue ?? DEFAULT_TASK_QUEUE,
    workflowId,
    args: [{ concurrency: opts.concurrency }],
  });
  return (await handle.result()) as SweepResult;
}
