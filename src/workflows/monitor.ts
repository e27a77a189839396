/**
 * `healthMonitor`: continuous monitoring, one window at a time (see
 * src/domain/monitor.ts). The sweep Schedule (`schedule apply`, mode
 * `continuous`) starts one every `windowMs`; each runs `lanes` long-running
 * `monitorLane` activities that probe every service at its own interval for
 * the window and publish results as they come. Pausing the Schedule stops
 * monitoring at the end of the running window; a triggered run (any start
 * not on a window boundary) probes every service once, now.
 *
 * Overlap policy ALLOW_ALL: a window ends when its last probe returns (up to
 * one probe timeout after its end), while the next has begun; they never
 * start the same probe (each starts only grid times inside its own window).
 */
import { ApplicationFailure, log, proxyActivities, proxyLocalActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { MonitorLaneResult } from '../activities/monitor-lane';
import { windowStartOf } from '../domain/monitor';
import type { ProbeResult } from '../domain/health';

export interface HealthMonitorInput {
  /** The window's length, ms (the Schedule's interval); default 60000. */
  windowMs?: number;
  /** Probes in flight at once over all lanes, 1..1000; default 50. */
  concurrency?: number;
  /** Lane activities, 1..128 (each owns the services of shards `k mod lanes`); default 1. */
  lanes?: number;
  /** The window's start, epoch ms; default: the Schedule's time for this run plus a lead of min(15 s, windowMs / 2). */
  windowStart?: number;
  /** One pass: every service probed once, now. Default: a run started off a window boundary (a trigger). */
  once?: boolean;
}

export interface HealthMonitorResult {
  workflowId: string;
  windowStart: string;
  windowEnd: string;
  once: boolean;
  lanes: MonitorLaneResult[];
  /** Lanes that could not run to the end (their services' results stop until the next window). */
  laneFailures?: string[];
}

// A read of the worker's registry, short and idempotent: a local activity, so a window's lanes start one
// task-queue round trip sooner (every worker holds the same registry; a version it lacks is RegistryVersionGone).
const { registryRef } = proxyLocalActivities<Activities>({ startToCloseTimeout: '30s', retry: { maximumAttempts: 5 } });
const { publishResults } = proxyActivities<Activities>({ startToCloseTimeout: '2m', retry: { maximumAttempts: 3 } });

function intOption(name: string, value: unknown, dflt: number, min: number, max: number): number {
  if (value === undefined) return dflt;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw ApplicationFailure.nonRetryable(`healthMonitor: option ${name} must be an integer in ${min}..${max}, got ${JSON.stringify(value)}`, 'InvalidOption');
  }
  return value;
}

/** The Schedule's nominal time for this run (search attribute `TemporalScheduledStartTime`), epoch ms. */
function scheduledTime(): number | undefined {
  const v = (workflowInfo().searchAttributes as Record<string, unknown[] | undefined> | undefined)?.TemporalScheduledStartTime?.[0];
  const t = v instanceof Date ? v.getTime() : typeof v === 'string' ? Date.parse(v) : undefined;
  return t !== undefined && Number.isFinite(t) ? t : undefined;
}

export async function healthMonitor(input: HealthMonitorInput = {}): Promise<HealthMonitorResult> {
  const windowMs = intOption('windowMs', input.windowMs, 60_000, 1_000, 86_400_000);
  const concurrency = intOption('concurrency', input.concurrency, 50, 1, 1000);
  const lanes = intOption('lanes', input.lanes, 1, 1, 128);
  const nominal = input.windowStart ?? scheduledTime() ?? Date.now();
  const aligned = windowStartOf(nominal + 999, windowMs);
  // A Schedule fires on window boundaries; any other start time is a trigger: one pass now.
  const once = input.once ?? (input.windowStart === undefined && Math.abs(nominal - aligned) > 999);
  // A window's probes begin a while after the Schedule fires: its lane must be running by then (a
  // workflow task and an activity task: under a second on a quiet host, measured up to 18 s on a
  // 2-core host at load 8), so a 1 s service's probe never waits at the boundary; the previous window
  // covers up to the same point, and the new lane sleeps until it.
  const leadMs = Math.min(15_000, Math.floor(windowMs / 2));
  const windowStart = input.windowStart ?? (once ? Date.now() : aligned + leadMs);
  const windowEnd = once ? windowStart : windowStart + windowMs;
  // Shards hear from their lane at least every minute; three missed keepalives and their services read unknown.
  const staleAfterMs = 3 * Math.max(windowMs, 60_000) + 60_000;

  let ref = await registryRef();
  const perLane = Math.max(1, Math.floor(concurrency / lanes));
  const failures: string[] = [];
  const runLane = async (lane: number): Promise<MonitorLaneResult | undefined> => {
    for (let tries = 0; ; tries++) {
      const { monitorLane } = proxyActivities<Activities>({
        startToCloseTimeout: Math.max(0, windowEnd - Date.now()) + 2 * ref.maxTimeoutMs + 60_000,
        heartbeatTimeout: '20s',
        retry: { initialInterval: '1s', maximumAttempts: 5, nonRetryableErrorTypes: ['RegistryVersionGone', 'InvalidOption'] },
      });
      try {
        return await monitorLane({ monitorId: workflowInfo().workflowId, registryVersion: ref.versionHash, lane, lanes, windowStart, windowEnd, concurrency: perLane, once, staleAfterMs });
      } catch (err) {
        const cause = (err as { cause?: { type?: string; message?: string } }).cause;
        if (cause?.type === 'RegistryVersionGone' && tries < 3 && (once || Date.now() < windowEnd)) {
          // The registry changed: the rest of the window on the new one.
          ref = await registryRef();
          continue;
        }
        const why = `lane ${lane}: ${cause?.message ?? (err as Error).message}`.slice(0, 300);
        log.warn('monitor lane failed', { lane, error: why });
        failures.push(why);
        return undefined;
      }
    }
  };
  const lanePromises = Array.from({ length: lanes }, (_, i) => runLane(i));

  if (ref.make.length > 0) {
    // Make services are checked through Make's API (per-minute limits): once per window.
    const { probeMakeServices } = proxyActivities<Activities>({ startToCloseTimeout: '5m', heartbeatTimeout: '60s', retry: { maximumAttempts: 3, initialInterval: '1s' } });
    let made: ProbeResult[] = [];
    try {
      made = await probeMakeServices({ serviceIds: ref.make, unhealthyServices: [] });
    } catch (err) {
      failures.push(`make checks: ${((err as { cause?: Error }).cause ?? (err as Error)).message}`.slice(0, 300));
    }
    if (made.length) await publishResults({ sender: `${workflowInfo().workflowId}/make`, results: made, staleAfterMs });
  }

  const results = (await Promise.all(lanePromises)).filter((r): r is MonitorLaneResult => r !== undefined);
  const out: HealthMonitorResult = {
    workflowId: workflowInfo().workflowId,
    windowStart: new Date(windowStart).toISOString(),
    windowEnd: new Date(windowEnd).toISOString(),
    once,
    lanes: results,
  };
  if (failures.length) out.laneFailures = failures;
  return out;
}
