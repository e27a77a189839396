/**
 * `proberHealth`: the alert state of one prober process (id
 * `prober/<taskQueue>/<identity>`, identity `host:pid`). The process's
 * `ProberHealth` (src/activities/prober-health.ts) signals-with-start
 * `proberReport` when its mode changes (and, while offline, every minute as a
 * keepalive); the rules are `applyProberReport` (src/domain/prober-health.ts),
 * this file only wires them.
 *
 * Exactly-once as in the health shards: the decision (incident open or not)
 * is workflow state, made in the workflow task that applies the report; the
 * alerts not yet delivered are carried across continue-as-new; delivery is
 * the `deliverAlert` activity with the alert id as the idempotency key.
 *
 * A process that dies while offline stops reporting: after
 * {@link PROBER_SILENT_AFTER_MS} without a report the incident is resolved
 * ("stopped reporting"), so no alert stays open for a prober that is gone.
 * A workflow with no open incident and nothing to deliver ends after an hour
 * of silence; the next report starts it again.
 */
import { allHandlersFinished, condition, continueAsNew, defineQuery, defineSignal, log, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { Alert } from '../domain/health';
import { applyProberReport, initialProberAlertState, type ProberAlertState, type ProberReport } from '../domain/prober-health';

export const proberReportSignal = defineSignal<[ProberReport]>('proberReport');
/** The alert state and the alerts not yet delivered (tests, the CLI). */
export const proberStateQuery = defineQuery<{ state: ProberAlertState; outbox: Alert[] }>('proberState');

/** An open incident with no report for this long is resolved as "stopped reporting" (the process keeps-alive every minute). */
export const PROBER_SILENT_AFTER_MS = 5 * 60_000;
/** A closed, delivered workflow with no report for this long ends. */
const IDLE_END_MS = 60 * 60_000;

export interface ProberWorkflowInput {
  taskQueue: string;
  identity: string;
  /** Carried state (continue-as-new). */
  state?: ProberAlertState;
  outbox?: Alert[];
}

const { deliverAlert } = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  heartbeatTimeout: '20s',
  scheduleToCloseTimeout: '24h',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5m' },
});

export async function proberHealth(input: ProberWorkflowInput): Promise<void> {
  let state = input.state ?? initialProberAlertState(input.taskQueue, input.identity);
  const outbox: Alert[] = [...(input.outbox ?? [])];
  let reports = 0;
  const apply = (r: ProberReport) => {
    const out = applyProberReport(state, r);
    state = out.state;
    outbox.push(...out.alerts);
    reports++;
  };
  setHandler(proberReportSignal, apply);
  setHandler(proberStateQuery, () => ({ state, outbox }));

  for (;;) {
    while (outbox.length) {
      const alert = outbox[0]!;
      try {
        await deliverAlert(alert);
      } catch (err) {
        log.error('alert not delivered', { alertId: alert.id, error: (err as Error).message });
      }
      outbox.shift();
    }
    if (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > 1000) {
      await condition(allHandlersFinished);
      return continueAsNew<typeof proberHealth>({ ...input, state, outbox });
    }
    const seen = reports;
    const woke = await condition(() => reports !== seen || outbox.length > 0, state.open ? PROBER_SILENT_AFTER_MS : IDLE_END_MS);
    if (woke) continue;
    if (state.open) {
      apply({ mode: 'online', at: Date.now(), evidence: `no report from the prober for ${PROBER_SILENT_AFTER_MS / 60_000} minutes: the process stopped (or cannot reach Temporal)`, canaries: 'not tried' });
      continue;
    }
    await condition(allHandlersFinished);
    if (reports === seen && outbox.length === 0) return;
  }
}
