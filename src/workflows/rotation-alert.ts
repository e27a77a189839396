/**
 * `deliverRotationAlert` (workflow id = the alert id,
 * `rotation/<credentialId>#<runId>/<status>`): delivers one rotation alert
 * through the `deliverAlert` activity, which posts it to every ALERT_WEBHOOKS
 * receiver with `Idempotency-Key: <alert id>` and is retried by Temporal (a
 * receiver answering 503 then 200 gets one logical alert).
 *
 * `rotateCredential` starts it at its end as an abandoned child
 * (ParentClosePolicy ABANDON) rather than running the activity itself: the
 * rotation's result never waits on a receiver, and a receiver down for hours
 * never keeps `rotation/<credentialId>` open and so never blocks the next
 * rotation. Its id makes the start itself idempotent.
 */
import { log, proxyActivities } from '@temporalio/workflow';
import type { createAlertActivities } from '../activities/alerts';
import type { Alert } from '../domain/health';

const { deliverAlert } = proxyActivities<Pick<ReturnType<typeof createAlertActivities>, 'deliverAlert'>>({
  startToCloseTimeout: '30s',
  heartbeatTimeout: '20s',
  // As health alerts: keep trying for a day, backing off to 5 minutes.
  scheduleToCloseTimeout: '24h',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5m' },
});

/**
 * Delivers `alert` (references only, never a secret).
 * @returns how many webhooks accepted it.
 * @throws the activity's failure once retries are exhausted or every receiver refused it for good:
 *   the run then shows as failed, findable with
 *   `temporal workflow list --query 'WorkflowType = "deliverRotationAlert" AND ExecutionStatus = "Failed"'`.
 */
export async function deliverRotationAlert(alert: Alert): Promise<{ delivered: number; webhooks: number }> {
  try {
    return await deliverAlert(alert);
  } catch (err) {
    log.error('rotation alert not delivered', { alertId: alert.id, credentialId: alert.credentialId, error: (err as Error).message });
    throw err;
  }
}
