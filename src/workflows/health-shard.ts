/**
 * `healthShard`: the durable health of the services of one shard
 * (id `health/<taskQueue>/<shard>`, see src/domain/health-shard.ts): status,
 * hysteresis counters and alert decisions per service. Sweeps send one
 * `healthShardObservations` signal per shard per pass (signal-with-start,
 * so the first sweep creates it); the rules are `applyShardObservations`,
 * this file only wires them.
 *
 * Exactly-once alerts as in `serviceHealth`: the decision is state, made in
 * the workflow task that applies the observation; the outbox of alerts not
 * yet delivered is carried across continue-as-new; delivery is the
 * `deliverAlert` activity (the alert id is the receivers' idempotency key).
 * Alerts of different services are delivered in parallel (a stalled
 * receiver holds up no other service's alert), those of one service in order.
 *
 * Staleness: every sweep sends every shard that has members a message, so a
 * shard that hears nothing for `staleAfterMs` marks every member `unknown`.
 * The shard owns per-service state and could own per-service timers (issue
 * 15's per-service cadence) without changing shape.
 */
import { allHandlersFinished, condition, continueAsNew, defineQuery, defineSignal, log, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { Alert, ServiceHealthState } from '../domain/health';
import { applyShardObservations, applyShardResults, initialShardState, markShardStale, type HealthShardState, type ShardObservations, type ShardResults } from '../domain/health-shard';

export const healthShardObservationsSignal = defineSignal<[ShardObservations]>('healthShardObservations');
/** Results of a monitor lane (continuous monitoring), as they come: see `applyShardResults`. */
export const healthShardResultsSignal = defineSignal<[ShardResults]>('healthShardResults');

/** What `healthShardQuery` answers: one page of the shard's services, sorted by id. */
export interface HealthShardPage {
  shard: number;
  services: ServiceHealthState[];
  /** Members in all (for paging). */
  total: number;
  /** Alerts decided but not yet delivered. */
  pendingAlerts: number;
}

/** Query args: `ids` (only these) or a page (`offset`, `limit` default 500). */
export interface HealthShardQueryArgs {
  ids?: string[];
  offset?: number;
  limit?: number;
}

export const healthShardQuery = defineQuery<HealthShardPage, [HealthShardQueryArgs?]>('healthShard');
/** Alerts decided but not yet delivered (tests, the CLI). */
export const healthShardPendingAlertsQuery = defineQuery<Alert[]>('pendingAlerts');

export interface HealthShardInput {
  shard: number;
  /** Carried state (continue-as-new). */
  state?: HealthShardState;
  /** Alerts decided but not delivered before continue-as-new. */
  outbox?: Alert[];
  /** Continue-as-new after this many messages in one run; default 400 (or 2,000 history events, or when Temporal suggests it). */
  maxMessagesPerRun?: number;
}

const { deliverAlert } = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  heartbeatTimeout: '20s',
  // A receiver may be down for a while; keep trying for a day, backing off to 5 minutes.
  scheduleToCloseTimeout: '24h',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5m' },
});

/** Deliveries in flight at once per shard. */
const MAX_DELIVERIES = 8;

export async function healthShard(input: HealthShardInput): Promise<void> {
  let state = input.state ?? initialShardState(input.shard);
  const outbox: Alert[] = [...(input.outbox ?? [])];
  const maxMessages = input.maxMessagesPerRun ?? 400;
  let messagesThisRun = 0;
  const sending = new Set<string>(); // alert ids in flight

  setHandler(healthShardObservationsSignal, (msg) => {
    const r = applyShardObservations(state, msg, Date.now());
    if (r.state === state) return; // a sweep already applied
    state = r.state;
    messagesThisRun++;
    outbox.push(...r.alerts);
  });
  setHandler(healthShardResultsSignal, (msg) => {
    const r = applyShardResults(state, msg, Date.now());
    if (r.state === state) return; // a repeated message
    state = r.state;
    messagesThisRun++;
    outbox.push(...r.alerts);
  });
  setHandler(healthShardQuery, (args = {}) => {
    const all = args.ids ? args.ids.map((id) => state.services[id]).filter((s): s is ServiceHealthState => s !== undefined) : Object.values(state.services);
    all.sort((a, b) => (a.serviceId < b.serviceId ? -1 : a.serviceId > b.serviceId ? 1 : 0));
    const offset = args.offset ?? 0;
    const limit = args.limit ?? 500;
    return { shard: state.shard, services: all.slice(offset, offset + limit), total: all.length, pendingAlerts: outbox.length };
  });
  setHandler(healthShardPendingAlertsQuery, () => outbox);

  /** The next alert that may go now: not in flight, and no earlier alert of its service still undelivered. */
  const nextToSend = (): Alert | undefined => {
    if (sending.size >= MAX_DELIVERIES) return undefined;
    const blocked = new Set<string>();
    for (const a of outbox) {
      if (!sending.has(a.id) && !blocked.has(a.serviceId)) return a;
      blocked.add(a.serviceId);
    }
    return undefined;
  };
  const deliver = async (alert: Alert) => {
    sending.add(alert.id);
    try {
      await deliverAlert(alert);
    } catch (err) {
      // Given up after a day of retries, or refused by the receiver: logged, not retried forever.
      log.error('alert not delivered', { alertId: alert.id, error: (err as Error).message });
    }
    sending.delete(alert.id);
    outbox.splice(outbox.indexOf(alert), 1);
  };

  const wantsNewRun = () => messagesThisRun >= maxMessages || workflowInfo().historyLength > 2000 || workflowInfo().continueAsNewSuggested;
  for (;;) {
    const seen = state.lastMessageAt;
    const woke = await condition(() => nextToSend() !== undefined || (wantsNewRun() && sending.size === 0) || state.lastMessageAt !== seen, state.staleAfterMs);
    if (!woke) {
      state = markShardStale(state, Date.now());
      continue;
    }
    let next: Alert | undefined;
    while ((next = nextToSend())) void deliver(next);
    if (wantsNewRun() && sending.size === 0) {
      await condition(allHandlersFinished);
      return continueAsNew<typeof healthShard>({ ...input, state, outbox });
    }
  }
}
