/**
 * `serviceHealth`: the per-service entity workflow (id `service/<serviceId>`)
 * holding the service's current status, hysteresis counters and alert state.
 * Sweeps deliver observations by signal (signal-with-start, so the first
 * sweep creates it); the rules are the pure `applyObservation` reducer in
 * src/domain/health.ts, this file only wires them.
 *
 * Exactly-once alerts: the decision (alert open/closed, its sequence number)
 * is part of the state, made in the same workflow task that applies the
 * observation, and carried across continue-as-new together with any alert
 * not yet delivered. Delivery is the `deliverAlert` activity (retried; the
 * alert id is the receivers' idempotency key), run from this workflow so a
 * slow receiver never holds up a sweep.
 */
import {
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  allHandlersFinished,
  log,
  patched,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { Activities } from '../activities';
import {
  applyObservation,
  applySkippedPass,
  initialServiceHealth,
  isWarningAlert,
  markStale,
  type Alert,
  type HealthFigures,
  type HealthObservation,
  type ServiceHealthState,
} from '../domain/health';

/** One sweep's observation of the service, with the figures the store computed (optional). */
export interface ServiceObservationSignal extends HealthObservation {
  figures?: HealthFigures;
  /** Status turns `unknown` when no observation arrives for this long, ms; default 5 min. */
  staleAfterMs?: number;
  /** The latest pass the sender skipped (it believed the service steady), epoch ms. */
  skippedPassAt?: number;
}


export const healthObservationSignal = defineSignal<[ServiceObservationSignal]>('healthObservation');
export const serviceHealthQuery = defineQuery<ServiceHealthState>('serviceHealth');
/** Alerts decided but not yet delivered (for tests and the CLI). */
export const pendingAlertsQuery = defineQuery<Alert[]>('pendingAlerts');

export interface ServiceHealthInput {
  serviceId: string;
  /** Carried state (continue-as-new). */
  state?: ServiceHealthState;
  /** Alerts decided but not delivered before continue-as-new. */
  outbox?: Alert[];
  /** Continue-as-new after this many observations in one run; default 200 (or 2,000 history events), so a replay after a worker restart stays cheap. */
  maxObservationsPerRun?: number;
}

const HealthStatusKey = defineSearchAttributeKey('HealthStatus', SearchAttributeType.KEYWORD);
const ServiceIdKey = defineSearchAttributeKey('ServiceId', SearchAttributeType.KEYWORD);

const { deliverAlert } = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  heartbeatTimeout: '20s',
  // A receiver may be down for a while; keep trying for a day, backing off to 5 minutes.
  scheduleToCloseTimeout: '24h',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5m' },
});

export async function serviceHealth(input: ServiceHealthInput): Promise<void> {
  let state = input.state ?? initialServiceHealth(input.serviceId, Date.now());
  const outbox: Alert[] = [...(input.outbox ?? [])];
  const maxObs = input.maxObservationsPerRun ?? 200;
  let observedThisRun = 0;
  let staleAfterMs = 300_000;
  let shownStatus: string | undefined;

  const showStatus = () => {
    if (shownStatus === state.status) return;
    shownStatus = state.status;
    upsertSearchAttributes([
      { key: ServiceIdKey, value: state.serviceId },
      { key: HealthStatusKey, value: state.status },
    ]);
  };

  const observe = (obs: ServiceObservationSignal) => {
    const { figures, staleAfterMs: stale, skippedPassAt, ...o } = obs;
    let before = state;
    if (skippedPassAt !== undefined) before = applySkippedPass(before, skippedPassAt, o);
    // A service not judged yet is now judged unhealthy by its first failure (it stayed
    // `unknown` until failureThreshold failures while the sweep said `unhealthy`). The
    // status change adds a search-attribute upsert where runs before made none: `patched`,
    // asked only where the rules differ.
    const rulesDiffer = before.own === 'unknown' && o.verdict === 'fail' && before.failStreak + 1 < o.failureThreshold;
    const firstFailureDecides = rulesDiffer ? patched('first-failure-decides') : true;
    let r = applyObservation(before, o, { firstFailureDecides });
    // Warning alerts (a degraded service) are new: an observation that decides one schedules a delivery
    // runs made before never scheduled, so `patched` is asked only then; without it, no warnings.
    if (r.alerts.some(isWarningAlert) && !patched('health-warning-alerts')) r = applyObservation(before, o, { firstFailureDecides, warnings: false });
    if (r.state === before) return; // duplicate delivery of a sweep
    state = figures ? { ...r.state, figures } : r.state;
    if (stale && stale > 0) staleAfterMs = stale;
    observedThisRun++;
    outbox.push(...r.alerts);
    showStatus();
  };
  setHandler(healthObservationSignal, observe);
  setHandler(serviceHealthQuery, () => state);
  setHandler(pendingAlertsQuery, () => outbox);
  showStatus();

  const wantsNewRun = () => observedThisRun >= maxObs || workflowInfo().historyLength > 2000 || workflowInfo().continueAsNewSuggested;
  for (;;) {
    const woke = await condition(() => outbox.length > 0 || wantsNewRun(), staleAfterMs);
    if (!woke) {
      state = markStale(state, Date.now(), staleAfterMs);
      showStatus();
      continue;
    }
    if (outbox.length > 0) {
      const alert = outbox[0]!;
      try {
        await deliverAlert(alert);
      } catch (err) {
        // Given up after a day of retries, or refused by the receiver: logged, not retried forever.
        log.error('alert not delivered', { alertId: alert.id, error: (err as Error).message });
      }
      outbox.shift();
      continue;
    }
    await condition(allHandlersFinished);
    return continueAsNew<typeof serviceHealth>({ ...input, state, outbox });
  }
}
