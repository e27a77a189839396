/**
 * `rotateCredential` (id `rotation/<credentialId>`): the rotation saga.
 *
 * preflight -> create PENDING (minted at the issuer, recorded before any
 * consumer is touched) -> set + test batch by batch (parallel, bounded, each
 * consumer proving it uses the new version) -> finish (labels move in one
 * transaction) -> grace period (durable timer; the `endGracePeriod` signal
 * ends it early) -> revoke PREVIOUS at the issuer.
 *
 * Any failure (or cancellation) before finish compensates in reverse batch
 * order (consumers that hold or may hold the new version go back to CURRENT;
 * one that definitively refused it is left alone) and then revokes PENDING:
 * `rolled_back`. A compensation that fails leaves PENDING in place and ends
 * `needs_attention`, with each service's exact state in the result.
 *
 * `--force` over a leftover of an interrupted run supersedes it (it stays
 * valid and tracked), rolls the new version out, and revokes the leftover with
 * PREVIOUS; a rollback first restores every consumer that may hold it.
 *
 * History carries references only: credential id, version ids, and the plan
 * of this credential (`rotationPlan`: registry version hash, consumer ids in
 * batches, step options), never the registry; step activities read the specs
 * of the services they act on from the worker's registry of that version, and
 * secret values from the store. Runs begun before that change snapshotted the
 * whole registry and passed specs (see `rotation-registry-by-reference`).
 */
import { defineSearchAttributeKey, SearchAttributeType, WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import {
  ActivityCancellationType,
  CancelledFailure,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineSignal,
  isCancellation,
  log,
  ParentClosePolicy,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
  type ActivityOptions,
  type LocalActivityOptions,
} from '@temporalio/workflow';
import type { createRegistryActivities } from '../activities/registry';
import type { BatchOutcome, InstallRefusal, PreflightResult, RotationActivities } from '../activities/rotation';
import { getCredential, getService, type CredentialSpec, type Registry, type ServiceSpec } from '../domain/registry';
import { rotationAlert } from '../domain/rotation-alert';
import { deliverRotationAlert } from './rotation-alert';
import {
  BATCH_STARTED_SIGNAL,
  compensationOrder,
  expandPlan,
  initialProgress,
  RESULT_ERROR_BUDGET,
  oneLine,
  planRotation,
  restoreOrder,
  resultServices,
  segmentBatches,
  type BatchStarted,
  type ConsumerPlan,
  type RotateCredentialInput,
  type RotationPhase,
  type RotationPlan,
  type RotationResult,
  type RotationStatus,
  type ServiceProgress,
} from '../domain/rotation';

/** What `progress` answers: the phase, the versions, every service's step and status. */
export interface RotationProgress {
  credentialId: string;
  phase: RotationPhase;
  versionId?: string;
  previousVersionId?: string;
  batches: string[][];
  services: ServiceProgress[];
  /** Epoch ms the grace period ends, while in `grace`. */
  graceEndsAt?: number;
  cause?: string;
}

export const progressQuery = defineQuery<RotationProgress>('progress');
/** Ends the grace period now: PREVIOUS is revoked at once. */
export const endGracePeriodSignal = defineSignal('endGracePeriod');
/** Sent by `installBatches` before each batch of a segment after the first (see `BatchStarted`). */
export const batchStartedSignal = defineSignal<[BatchStarted]>(BATCH_STARTED_SIGNAL);

const CredentialIdKey = defineSearchAttributeKey('CredentialId', SearchAttributeType.KEYWORD);
const PhaseKey = defineSearchAttributeKey('Phase', SearchAttributeType.KEYWORD);

type Acts = RotationActivities & ReturnType<typeof createRegistryActivities>;

/** Retries for the preflight, the state-store steps and the registry snapshot. */
const SHORT_STEP: ActivityOptions & LocalActivityOptions = {
  startToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 10 },
};

/** Most consumers in one `installBatch` activity (`fanOut: activity`): a bigger batch runs as pages, one after another. */
export const MAX_BATCH_PAGE = 1000;
/** A result or alert of a rotation with more consumers than this lists only the services that need a look (see `alertServices`). */
const LIST_ALL_UP_TO = 1000;

const stepOptions = (timeoutMs: number, maximumAttempts: number, initialIntervalMs = 500): ActivityOptions => ({
  startToCloseTimeout: timeoutMs,
  retry: { initialInterval: initialIntervalMs, backoffCoefficient: 2, maximumInterval: Math.max(initialIntervalMs * 10, 1000), maximumAttempts },
});

/** The rotation saga. Input and result hold references only. */
export async function rotateCredential(input: RotateCredentialInput): Promise<RotationResult> {
  const { credentialId } = input;
  const { workflowId, runId } = workflowInfo();
  const rotationKey = `${workflowId}#${runId}`;
  const shortActs = proxyActivities<Acts>(SHORT_STEP);
  /**
   * The registry snapshot, the audit entries and finish (PENDING -> CURRENT) are short, idempotent
   * and touch only the worker's registry and the state store, which every worker shares (SQLite on
   * one host, PostgreSQL on many): they run as local activities, in the worker process that holds
   * the workflow task, with no trip through the server's queues (docs/rotation.md, "Which steps are
   * local activities"). Steps that call the issuer or a consumer (preflight, mint, install, verify,
   * revoke) stay normal activities: long, rate-limited, retried with their own timeouts, heartbeats
   * and backoff, and run by whichever worker polls the task queue. Runs begun before this change
   * scheduled the store steps as normal activities; patched so their histories replay.
   */
  const storeStepsLocal = patched('rotation-store-steps-local');
  const store = storeStepsLocal ? proxyLocalActivities<Acts>(SHORT_STEP) : shortActs;
  /**
   * The registry by reference: the worker computes this credential's plan from its registry
   * (`rotationPlan`) and only the plan enters history: the registry version hash, the consumer ids
   * in batches, the step options. Step activities read the specs of the services they act on by id
   * from that version. Runs begun before snapshotted the whole registry into history (~312 B per
   * service: over Temporal's 2 MiB payload limit near 6,700 services) and passed specs to every
   * step; patched so their histories replay.
   */
  const byRef = patched('rotation-registry-by-reference');

  const state: RotationProgress = { credentialId, phase: 'preflight', batches: [], services: [] };
  let graceEnded = false;
  setHandler(progressQuery, () => state);
  setHandler(endGracePeriodSignal, () => {
    graceEnded = true;
  });
  /** Set while a segment's `installBatches` runs (see rotateSegment). */
  let onBatchStarted: ((s: BatchStarted) => void) | undefined;
  setHandler(batchStartedSignal, (s) => onBatchStarted?.(s));

  const setPhase = (phase: RotationPhase) => {
    state.phase = phase;
    upsertSearchAttributes([{ key: PhaseKey, value: phase }]);
  };
  upsertSearchAttributes([
    { key: CredentialIdKey, value: credentialId },
    { key: PhaseKey, value: 'preflight' },
  ]);

  const result = (status: RotationStatus, extra: Partial<RotationResult> = {}): RotationResult => {
    state.cause = extra.cause;
    return {
      credentialId,
      workflowId,
      status,
      ...(state.versionId ? { versionId: state.versionId } : {}),
      ...(state.previousVersionId ? { previousVersionId: state.previousVersionId } : {}),
      // By reference, the result's error text is bounded (a run of thousands of consumers stays under 512 KB).
      services: resultServices(state.services, byRef ? RESULT_ERROR_BUDGET : Infinity),
      ...extra,
    };
  };
  const end = async (status: RotationStatus, extra: Partial<RotationResult> = {}): Promise<RotationResult> => {
    const r = result(status, extra);
    setPhase(status);
    if (!input.dryRun) {
      const audited = await CancellationScope.nonCancellable(() =>
        store.auditRotation({ credentialId, step: 'rotation', outcome: status, versionId: state.versionId ?? null, detail: r.cause ?? null }),
      );
      // A run that did not complete (or left PREVIOUS valid) alerts the ALERT_WEBHOOKS receivers, once:
      // only where the worker has some (the audit says how many; older runs' audits said nothing), and
      // behind `patched` because runs before this started no child here, so their histories replay.
      const alert = (audited?.alertWebhooks ?? 0) > 0
        ? rotationAlert(r, { runId, at: Date.now(), issuer: state.services.find((s) => s.role === 'issuer')?.id, services: alertServices() })
        : undefined;
      if (alert && patched('rotation-alerts')) {
        await CancellationScope.nonCancellable(async () => {
          try {
            await startChild(deliverRotationAlert, { workflowId: alert.id, args: [alert], parentClosePolicy: ParentClosePolicy.ABANDON });
          } catch (err) {
            // Alerting never changes the rotation's result; the audit trail and the result hold the outcome.
            log.warn('rotation alert not started', { alertId: alert.id, error: oneLine(err) });
          }
        });
      }
    }
    return r;
  };

  /**
   * The services an alert lists: all of them, or by reference with more than {@link LIST_ALL_UP_TO}
   * consumers, the issuer and the first {@link LIST_ALL_UP_TO} consumers that need a look (failed, or
   * holding or maybe holding the new version): the alert is a child's input and a webhook's body.
   */
  function alertServices(): readonly ServiceProgress[] {
    if (!byRef || state.services.length <= LIST_ALL_UP_TO + 1) return state.services;
    const look = state.services.filter((p) => p.role === 'issuer' || p.status === 'failed' || p.holds === 'unknown' || p.holds === 'pending');
    return look.slice(0, LIST_ALL_UP_TO + 1);
  }

  // 1. Preflight: plan, checks. Nothing changes here.
  let plan: RotationPlan;
  let credentialRef: CredentialSpec;
  // Runs begun before by-reference only: the specs from the snapshot.
  let issuer: ServiceSpec | undefined;
  let consumerSpecs: Map<string, ServiceSpec> | undefined;
  try {
    if (byRef) {
      const ref = await store.rotationPlan({ credentialId, ...(input.gracePeriodMs !== undefined ? { gracePeriodMs: input.gracePeriodMs } : {}) });
      plan = expandPlan(ref);
      credentialRef = ref.credential;
    } else {
      const registry: Registry = await store.snapshotRegistry();
      // These runs began when a credential without `fanOut` fanned out as `workflow`, whatever its size.
      plan = planRotation(registry, credentialId, { gracePeriodMs: input.gracePeriodMs, defaultFanOut: 'workflow' });
      const credential = getCredential(registry, credentialId);
      // Step activities need the credential's id and provider, not its consumer list: keep their inputs small.
      credentialRef = { ...credential, consumers: [] as string[] };
      issuer = getService(registry, plan.issuer);
      consumerSpecs = new Map(credential.consumers.map((id) => [id, getService(registry, id)]));
    }
  } catch (err) {
    return end('failed', { cause: oneLine(err) });
  }
  const { registryVersion } = plan;
  /** The issuer as step inputs name it: by id and registry version, or (older runs) its spec. */
  const issuerArg = () => (byRef ? { issuerId: plan.issuer, registryVersion } : { issuer: issuer! });
  /** A consumer as step inputs name it: by id and registry version, or (older runs) its spec. */
  const consumerArg = (id: string) => (byRef ? { serviceId: id, registryVersion } : { service: consumerSpecs!.get(id)! });
  const consumerIds = new Set(plan.consumers.map((c) => c.id));
  const consumerPlan = new Map(plan.consumers.map((c) => [c.id, c]));
  state.batches = plan.batches;
  state.services = initialProgress(plan);
  const progressOf = new Map(state.services.map((p) => [`${p.role}:${p.id}`, p]));
  const svc = (id: string, role: ServiceProgress['role']) => progressOf.get(`${role}:${id}`)!;
  const issuerProgress = svc(plan.issuer, 'issuer');

  // By reference, preflight's deadline grows with the consumers it checks (16 at a time): 30 s plus
  // 50 ms each (3,000 consumers: 3 min). Runs begun before had 30 s, whatever their size.
  const preflightActs = byRef ? proxyActivities<Acts>({ ...SHORT_STEP, startToCloseTimeout: 30_000 + 50 * plan.consumers.length }) : shortActs;
  let preflight: PreflightResult;
  try {
    preflight = await preflightActs.rotationPreflight(
      byRef ? { credential: credentialRef, issuerId: plan.issuer, registryVersion } : { credential: credentialRef, issuer, consumers: [...consumerSpecs!.values()] },
    );
  } catch (err) {
    return end('failed', { cause: `preflight: ${oneLine(err)}` });
  }
  const current = preflight.currentVersionId ?? undefined;
  if (current) state.previousVersionId = current;
  if (input.dryRun) {
    const cause = preflight.problems.length > 0 ? `preflight: ${preflight.problems.join('; ')}` : undefined;
    const status = cause && !input.force ? 'failed' : 'completed';
    // A plan of thousands of consumers lists its batches; the per-consumer options stay in history's plan.
    const shown = byRef && plan.consumers.length > LIST_ALL_UP_TO ? { ...plan, consumers: [] } : plan;
    return end(status, { dryRun: true, plan: shown, ...(cause ? { cause } : {}) });
  }
  if (preflight.problems.length > 0 && !input.force) {
    return end('failed', { cause: `refused, nothing changed: ${preflight.problems.join('; ')} (use --force to rotate anyway)` });
  }
  const started = () => store.auditRotation({ credentialId, step: 'rotation', outcome: 'started', versionId: current ?? null, detail: input.force ? 'forced' : null });
  if (storeStepsLocal) {
    // A cancel that reaches the run in the workflow task that holds preflight's result (likelier since the
    // store steps stopped taking a round trip each) must end with a result, not escape as a cancelled
    // execution: the run is audited as started, then ends rolled_back (nothing was minted, nothing to undo).
    // Runs begun before let it escape; behind the same patch, so their histories replay.
    await CancellationScope.nonCancellable(started);
    if (CancellationScope.current().consideredCancelled) return end('rolled_back', { cause: 'cancelled' });
  } else {
    await started();
  }

  const issuerActs = proxyActivities<Acts>(stepOptions(plan.issuerStepTimeoutMs, 5));
  // --force over leftovers of an interrupted run. Runs begun before this change revoked the leftover
  // PENDING first, cutting off every consumer that held it; patched so their histories replay.
  // Now the leftover is superseded (it keeps a marker in the store), stays valid until the new
  // version is on every consumer, and is revoked with PREVIOUS after the grace period, or after
  // every consumer that may hold it is back on CURRENT when this run rolls back.
  const keepLeftovers = (!!preflight.leftoverPending || (preflight.leftovers?.length ?? 0) > 0) && patched('rotation-force-revokes-leftover-last');
  const leftovers = keepLeftovers ? (preflight.leftovers ?? []) : [];
  const leftoverIds = leftovers.map((l) => l.versionId);
  // Older versions still valid at the issuer that no consumer should hold (a PREVIOUS an earlier run left valid):
  // revoked with PREVIOUS instead of losing their label still valid. Runs begun before left them; patched so
  // their histories replay.
  const staleIds = (preflight.stale?.length ?? 0) > 0 && patched('rotation-revokes-stale-versions') ? preflight.stale! : [];
  const leftoverHolders = new Set(leftovers.flatMap((l) => l.mayHold));
  for (const id of leftoverHolders) if (consumerIds.has(id)) svc(id, 'consumer').holds = 'unknown';
  if (preflight.leftoverPending && !keepLeftovers) {
    // --force: the leftover PENDING of an earlier run is revoked before minting anew.
    try {
      const leftover = preflight.leftoverPending.versionId;
      await CancellationScope.nonCancellable(() => issuerActs.revokeVersion({ credential: credentialRef, ...issuerArg(), versionId: leftover, discard: true, timeoutMs: plan.issuerStepTimeoutMs }));
    } catch (err) {
      return end('failed', { cause: `could not revoke leftover PENDING ${preflight.leftoverPending.versionId}: ${oneLine(err)}` });
    }
  }

  // 2. Create PENDING.
  setPhase('create_pending');
  issuerProgress.step = 'mint';
  issuerProgress.status = 'running';
  try {
    // Not cancellable: a mint cut short could leave a PENDING this run never learns about.
    const minted = await CancellationScope.nonCancellable(() =>
      issuerActs.createPending({
        credential: credentialRef,
        ...issuerArg(),
        rotationKey,
        idempotencyKey: `${rotationKey}/mint`,
        timeoutMs: plan.issuerStepTimeoutMs,
        ...(keepLeftovers && preflight.leftoverPending ? { supersede: preflight.leftoverPending.versionId } : {}),
      }),
    );
    state.versionId = minted.versionId;
    issuerProgress.status = 'ok';
  } catch (err) {
    issuerProgress.status = 'failed';
    issuerProgress.error = oneLine(err);
    return end('failed', { cause: `mint at ${plan.issuer} failed, nothing changed: ${oneLine(err)}` });
  }
  const versionId = state.versionId!;
  if (CancellationScope.current().consideredCancelled) return CancellationScope.nonCancellable(() => compensate('cancelled'));

  // 3 + 4. Set and test, batch by batch.
  setPhase('set');
  /**
   * On cancel, an install already sent is waited for (its activity ends: done, failed or timed out)
   * before compensation restores CURRENT: otherwise an install answered late could land after the
   * restore and leave the consumer on the PENDING the rollback then revokes. Runs begun before this
   * change moved on at once (TRY_CANCEL); patched so their histories replay.
   */
  const installCancellation = (): Pick<ActivityOptions, 'cancellationType'> =>
    patched('rotation-cancel-waits-for-installs') ? { cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED } : {};
  let failed = false;
  const rotateConsumer = async (c: ConsumerPlan): Promise<void> => {
    const p = svc(c.id, 'consumer');
    if (failed) {
      p.status = 'skipped';
      return;
    }
    p.step = 'install';
    p.status = 'running';
    try {
      const installed = await proxyActivities<Acts>({ ...stepOptions(c.stepTimeoutMs, 3), ...installCancellation() }).installVersion({
        credential: credentialRef,
        ...consumerArg(c.id),
        versionId,
        timeoutMs: c.stepTimeoutMs,
        idempotencyKey: `${rotationKey}/install/${c.id}/${versionId}`,
        step: 'install',
        verifyAfter: true,
      });
      p.holds = 'pending';
      p.step = 'verify';
      if (!installed.verified) {
        await proxyActivities<Acts>(stepOptions(c.stepTimeoutMs, c.verifyAttempts, c.verifyIntervalMs)).verifyVersion({
          credential: credentialRef,
          ...consumerArg(c.id),
          versionId,
          timeoutMs: c.stepTimeoutMs,
        });
      }
      p.status = 'ok';
    } catch (err) {
      p.status = 'failed';
      // A definitive refusal leaves the consumer on what it held; anything else may have applied.
      if (p.step === 'install' && !isRefusal(err)) p.holds = 'unknown';
      p.error = oneLine(err);
      failed = true;
      throw err;
    }
  };

  /**
   * `fanOut: activity`: the whole batch in one heartbeating activity; its outcomes update the progress.
   * By reference, a batch of more than {@link MAX_BATCH_PAGE} consumers runs as pages one after another
   * (each page's input and result stay bounded); after a failure no further page starts.
   */
  const rotateBatch = async (members: ConsumerPlan[]): Promise<void> => {
    if (!byRef) return rotatePage(members);
    for (let i = 0; i < members.length; i += MAX_BATCH_PAGE) {
      try {
        await rotatePage(members.slice(i, i + MAX_BATCH_PAGE));
      } catch (err) {
        for (const c of members.slice(i + MAX_BATCH_PAGE)) Object.assign(svc(c.id, 'consumer'), { status: 'skipped' });
        throw err;
      }
      if (i + MAX_BATCH_PAGE < members.length && CancellationScope.current().consideredCancelled) throw new CancelledFailure('cancelled');
    }
  };
  /** Longest one batch member may take in `installBatch(es)`: 3 install tries, its verify attempts and backoff, ms. */
  const memberMs = (c: ConsumerPlan) => (3 + c.verifyAttempts) * c.stepTimeoutMs + 10 * c.verifyAttempts * c.verifyIntervalMs + 3_500;
  /**
   * Records one batch outcome in the progress: ok holds the new version; skipped holds what it held
   * (`before`), or maybe the new one when a retried attempt skipped it (`mayHold`, only newer activities
   * say so); a failed verify holds the new version, a refused install what it held, any other failure may
   * hold either. @returns the failure as `<id>: <error>`, or undefined.
   */
  const applyOutcome = (o: BatchOutcome, before: ReadonlyMap<string, ServiceProgress['holds']>): string | undefined => {
    const p = svc(o.id, 'consumer');
    if (o.ok) Object.assign(p, { step: 'verify', status: 'ok', holds: 'pending' });
    else if (o.skipped) Object.assign(p, { step: 'planned', status: 'skipped', holds: o.mayHold ? 'unknown' : before.get(o.id) });
    else {
      const holds = o.failedStep === 'verify' ? 'pending' : o.refused ? before.get(o.id) : 'unknown';
      Object.assign(p, { step: o.failedStep ?? 'install', status: 'failed', holds, error: o.error });
      return `${o.id}: ${o.error}`;
    }
    return undefined;
  };
  /**
   * One segment (`fanOut: activity`, by reference): its batches in one `installBatches` activity. Batch 0's
   * consumers may be touched from the start; each later batch's from its `BatchStarted` signal on, which
   * the activity sends (and waits to be recorded) before touching them; so when the activity ends without
   * reporting, exactly the consumers of the batches started are `unknown` and get restored.
   */
  const rotateSegment = async (segment: string[][], index: number): Promise<void> => {
    const batches = segment.map((b) => b.map((id) => consumerPlan.get(id)!));
    const members = batches.flat();
    const before = new Map(members.map((c) => [c.id, svc(c.id, 'consumer').holds]));
    const touching = (batch: ConsumerPlan[]) => {
      for (const c of batch) Object.assign(svc(c.id, 'consumer'), { step: 'install', status: 'running', holds: 'unknown' });
    };
    touching(batches[0]!);
    let started = 0;
    onBatchStarted = (s) => {
      if (s.segment !== index || s.batch <= started || s.batch >= batches.length) return;
      // Every consumer of the batches before it is installed and verified: the activity starts a batch only then.
      for (let j = started; j < s.batch; j++) for (const c of batches[j]!) Object.assign(svc(c.id, 'consumer'), { step: 'verify', status: 'ok', holds: 'pending' });
      for (let j = started + 1; j <= s.batch; j++) touching(batches[j]!);
      started = s.batch;
    };
    const startToCloseTimeout = batches.reduce((ms, b) => ms + Math.ceil(b.length / plan.maxParallel) * Math.max(...b.map(memberMs)), 10_000);
    let outcomes: BatchOutcome[];
    try {
      outcomes = await proxyActivities<Acts>({
        startToCloseTimeout,
        heartbeatTimeout: 10_000,
        retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 3 },
        ...installCancellation(),
      }).installBatches({
        credential: credentialRef,
        versionId,
        maxParallel: plan.maxParallel,
        registryVersion,
        rotationKey,
        segment: index,
        batches: batches.map((b) => b.map((c) => ({ id: c.id, timeoutMs: c.stepTimeoutMs, verifyAttempts: c.verifyAttempts, verifyIntervalMs: c.verifyIntervalMs }))),
      });
    } finally {
      onBatchStarted = undefined;
    }
    const batchOf = new Map(batches.flatMap((b, j) => b.map((c) => [c.id, j] as const)));
    let firstError: string | undefined;
    for (const o of outcomes) {
      // A batch before the last one signalled was verified in full: no later report of a retried attempt
      // (which may not know it) makes its consumers hold less than the new version; its error is the cause.
      if (batchOf.get(o.id)! < started && !o.ok) {
        if (o.error) firstError ??= `${o.id}: ${o.error}`;
        continue;
      }
      // Every outcome is recorded, also after the first failure (`??=` alone would skip the call).
      const error = applyOutcome(o, before);
      firstError ??= error;
    }
    // Every consumer of the segment must be reported verified: an activity that stopped early without a
    // failure to report (a retried attempt without the run's registry version) fails the segment too.
    const unreported = members.find((c) => svc(c.id, 'consumer').status !== 'ok');
    if (!firstError && unreported) firstError = `${unreported.id}: installBatches ended without reporting it`;
    if (firstError) throw new Error(firstError);
  };
  const rotatePage = async (members: ConsumerPlan[]): Promise<void> => {
    // Until the batch reports, each member may have taken the new version (a cancelled or failed batch reports nothing).
    const before = new Map(members.map((c) => [c.id, svc(c.id, 'consumer').holds]));
    for (const c of members) Object.assign(svc(c.id, 'consumer'), { step: 'install', status: 'running', holds: 'unknown' });
    const worstMemberMs = Math.max(...members.map(memberMs));
    const outcomes = await proxyActivities<Acts>({
      startToCloseTimeout: Math.ceil(members.length / plan.maxParallel) * worstMemberMs + 10_000,
      heartbeatTimeout: 10_000,
      retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 3 },
      ...installCancellation(),
    }).installBatch(
      byRef
        ? {
            // Ids and options only: the activity reads the specs of registry version `registryVersion`
            // and derives each idempotency key from `rotationKey` (the same keys as below).
            credential: credentialRef,
            versionId,
            maxParallel: plan.maxParallel,
            registryVersion,
            rotationKey,
            members: members.map((c) => ({ id: c.id, timeoutMs: c.stepTimeoutMs, verifyAttempts: c.verifyAttempts, verifyIntervalMs: c.verifyIntervalMs })),
          }
        : {
            credential: credentialRef,
            versionId,
            maxParallel: plan.maxParallel,
            members: members.map((c) => ({
              service: consumerSpecs!.get(c.id)!,
              idempotencyKey: `${rotationKey}/install/${c.id}/${versionId}`,
              timeoutMs: c.stepTimeoutMs,
              verifyAttempts: c.verifyAttempts,
              verifyIntervalMs: c.verifyIntervalMs,
            })),
          },
    );
    let firstError: string | undefined;
    for (const o of outcomes) {
      const error = applyOutcome(o, before);
      firstError ??= error;
    }
    if (firstError) throw new Error(firstError);
  };

  /**
   * `fanOut: activity`, by reference: consecutive batches run in one `installBatches` activity (a segment of
   * at most MAX_BATCH_PAGE consumers, see `segmentBatches`), which signals `BatchStarted` before each next
   * batch: a batch boundary costs one signal instead of an activity completion, a workflow task and the
   * next activity's dispatch (docs/temporal-overhead.md). Runs begun before ran an activity per batch
   * (or page); patched so their histories replay.
   */
  const segmented = plan.fanOut === 'activity' && byRef && patched('rotation-batches-in-one-activity');
  try {
    if (segmented) {
      const segments = segmentBatches(plan.batches, MAX_BATCH_PAGE);
      for (let k = 0; k < segments.length; k++) {
        await rotateSegment(segments[k]!, k);
        if (installCancellation().cancellationType && CancellationScope.current().consideredCancelled) throw new CancelledFailure('cancelled');
      }
    }
    for (const batch of segmented ? [] : plan.batches) {
      const members = batch.map((id) => consumerPlan.get(id)!);
      if (plan.fanOut === 'activity') await rotateBatch(members);
      else await boundedAll(members, plan.maxParallel, rotateConsumer);
      // A cancel that came while the batch's installs were waited for (and then succeeded) still cancels.
      if (installCancellation().cancellationType && CancellationScope.current().consideredCancelled) throw new CancelledFailure('cancelled');
    }
  } catch (err) {
    // A cancel can reach the workflow in the same activation as a step's own failure (e.g. a verify
    // out of attempts): the failure settles first, but the run was cancelled all the same.
    const cancelled = isCancellation(err) || CancellationScope.current().consideredCancelled;
    return CancellationScope.nonCancellable(() => compensate(cancelled ? 'cancelled' : `set/test failed: ${firstCause(err, state.services)}`));
  }

  // 5. Finish.
  setPhase('finish');
  try {
    const finished = await CancellationScope.nonCancellable(() => store.finishRotation({ credentialId, versionId }));
    state.previousVersionId = finished.previousVersionId ?? undefined;
    // The version the consumers took is CURRENT now: they hold `current`, not `pending`
    // (progress, query and result only; no command changes, so older histories replay).
    for (const p of state.services) if (p.role === 'consumer' && p.holds === 'pending') p.holds = 'current';
  } catch (err) {
    return CancellationScope.nonCancellable(() => compensate(`finish failed: ${oneLine(err)}`));
  }

  // 6. Grace period, then revoke PREVIOUS.
  const previous = state.previousVersionId;
  if (!previous && leftoverIds.length === 0 && staleIds.length === 0) return end('completed', { previousRevoked: false });
  setPhase('grace');
  try {
    if (plan.gracePeriodMs > 0) {
      state.graceEndsAt = Date.now() + plan.gracePeriodMs;
      await condition(() => graceEnded, plan.gracePeriodMs);
    }
  } catch (err) {
    if (!isCancellation(err)) throw err;
    const keptIds = [...(previous ? [`PREVIOUS ${previous}`] : []), ...leftoverIds.map((v) => `leftover ${v}`), ...staleIds.map((v) => `older version ${v}`)];
    return end('completed', { previousRevoked: false, cause: `cancelled during the grace period: ${keptIds.join(' and ')} ${keptIds.length > 1 ? 'were' : 'was'} not revoked` });
  }
  state.graceEndsAt = undefined;
  // Every consumer verified the new version: no one holds the leftovers any more.
  const leftoverProblem =
    [leftoverIds.length > 0 ? await revokeOlder(leftoverIds, 'leftover') : undefined, staleIds.length > 0 ? await revokeOlder(staleIds, 'older version') : undefined].filter(Boolean).join('; ') || undefined;
  if (!previous) return end(leftoverProblem ? 'needs_attention' : 'completed', { previousRevoked: false, ...(leftoverProblem ? { cause: `rotated to ${versionId}, but ${leftoverProblem}` } : {}) });
  setPhase('revoke');
  issuerProgress.step = 'revoke';
  issuerProgress.status = 'running';
  let revoked: Awaited<ReturnType<Acts['revokeVersion']>> | undefined;
  try {
    revoked = await issuerActs.revokeVersion({ credential: credentialRef, ...issuerArg(), versionId: previous, discard: false, timeoutMs: plan.issuerStepTimeoutMs });
    issuerProgress.status = 'ok';
  } catch (err) {
    issuerProgress.status = 'failed';
    issuerProgress.error = oneLine(err);
    return end('needs_attention', {
      previousRevoked: false,
      cause: `rotated to ${versionId}, but revoking PREVIOUS ${previous} at ${plan.issuer} failed and it is still valid there: ${oneLine(err)}`,
    });
  }
  // A version imported under a local id cannot be revoked at the issuer: say so (older activities returned nothing).
  if (revoked?.revoked === false) {
    issuerProgress.status = 'skipped';
    issuerProgress.error = revoked.cause;
    const also = leftoverProblem ? `; and ${leftoverProblem}` : '';
    return end(leftoverProblem ? 'needs_attention' : 'completed', { previousRevoked: false, cause: `rotated to ${versionId}, but PREVIOUS was not revoked: ${revoked.cause}${also}` });
  }
  if (leftoverProblem) return end('needs_attention', { previousRevoked: true, cause: `rotated to ${versionId} and PREVIOUS revoked, but ${leftoverProblem}` });
  return end('completed', { previousRevoked: true });

  /**
   * Revokes older versions at the issuer, one after another, when no consumer holds or may hold them:
   * `leftover` ones (superseded PENDING of interrupted runs, which keep their marker until then, and
   * lose their PENDING label) or `older` ones (a PREVIOUS an earlier run left valid).
   * @returns what failed or could not be revoked, one line, or undefined when all were revoked.
   */
  async function revokeOlder(ids: readonly string[], kind: 'leftover' | 'older version'): Promise<string | undefined> {
    setPhase('revoke');
    issuerProgress.step = 'revoke';
    issuerProgress.status = 'running';
    const failures: string[] = [];
    for (const id of ids) {
      try {
        const r = await CancellationScope.nonCancellable(() =>
          issuerActs.revokeVersion({ credential: credentialRef, ...issuerArg(), versionId: id, discard: kind === 'leftover', timeoutMs: plan.issuerStepTimeoutMs }),
        );
        if (r?.revoked === false) failures.push(`${kind} ${id} was not revoked: ${r.cause}`);
      } catch (err) {
        failures.push(`revoking ${kind} ${id} at ${plan.issuer} failed and it is still valid there: ${oneLine(err)}`);
      }
    }
    issuerProgress.status = failures.length > 0 ? 'failed' : 'ok';
    if (failures.length > 0) issuerProgress.error = failures.join('; ');
    return failures.length > 0 ? failures.join('; ') : undefined;
  }

  /**
   * `fanOut: activity`, by reference: restores CURRENT (`restoreTo`) in `ids` (one dependency batch)
   * with `installBatch` in restore mode, pages of {@link MAX_BATCH_PAGE}, one after another; every
   * member is tried even when others fail. Runs begun before restored each consumer in its own activity.
   * @returns whether any restore failed (its progress says how).
   */
  async function restoreBatch(ids: string[], restoreTo: string): Promise<boolean> {
    let failedAny = false;
    for (let i = 0; i < ids.length; i += MAX_BATCH_PAGE) {
      const page = ids.slice(i, i + MAX_BATCH_PAGE).map((id) => consumerPlan.get(id)!);
      for (const c of page) Object.assign(svc(c.id, 'consumer'), { step: 'restore', status: 'running' });
      const worstMemberMs = Math.max(...page.map((c) => 3 * c.stepTimeoutMs + 3_500));
      let outcomes: BatchOutcome[];
      try {
        outcomes = await proxyActivities<Acts>({
          startToCloseTimeout: Math.ceil(page.length / plan.maxParallel) * worstMemberMs + 10_000,
          heartbeatTimeout: 10_000,
          retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 5 },
        }).installBatch({
          credential: credentialRef,
          versionId: restoreTo,
          maxParallel: plan.maxParallel,
          registryVersion,
          rotationKey,
          step: 'restore',
          members: page.map((c) => ({ id: c.id, timeoutMs: c.stepTimeoutMs, verifyAttempts: 0, verifyIntervalMs: 0 })),
        });
      } catch (err) {
        // The page did not report: each of its members may or may not be back on CURRENT.
        const error = oneLine(err);
        for (const c of page) Object.assign(svc(c.id, 'consumer'), { status: 'failed', holds: 'unknown', error });
        failedAny = true;
        continue;
      }
      for (const o of outcomes) {
        const p = svc(o.id, 'consumer');
        if (o.ok) Object.assign(p, { status: 'ok', holds: 'current', error: undefined });
        else {
          // Refused (or never sent): it holds what it held; otherwise the restore may or may not have applied.
          Object.assign(p, { status: 'failed', holds: o.refused ? p.holds : 'unknown', error: o.error });
          failedAny = true;
        }
      }
    }
    return failedAny;
  }

  /** Compensation: restore the consumers that hold or may hold PENDING (or a leftover) in reverse batch order, then revoke PENDING (and the leftovers). */
  async function compensate(cause: string): Promise<RotationResult> {
    setPhase('compensate');
    // Runs begun before this change restored every consumer an install was sent to, even one that
    // definitively refused it (and so never held the new version); patched so their histories replay.
    const onlyHolders = patched('rotation-restore-only-possible-holders');
    const order = onlyHolders ? restoreOrder(plan, state.services, leftoverHolders) : compensationOrder(plan, state.services);
    let restoreFailed = false;
    // By reference, restores run at most `maxParallel` at once, as installs do (a batch may hold thousands);
    // runs begun before started a whole batch's restores at once.
    const eachOf = (ids: string[], fn: (id: string) => Promise<void>) => (byRef ? boundedAll(ids, plan.maxParallel, fn) : Promise.all(ids.map(fn)).then(() => undefined));
    for (const batch of order) {
      if (byRef && plan.fanOut === 'activity' && current) {
        if (await restoreBatch(batch, current)) restoreFailed = true;
        continue;
      }
      await eachOf(
        batch, async (id) => {
          const p = svc(id, 'consumer');
          const c = consumerPlan.get(id)!;
          p.step = 'restore';
          if (!current && leftoverHolders.has(id)) {
            // It may hold a leftover, and there is no CURRENT to put in its place: the leftover must stay valid.
            p.status = 'failed';
            p.error = 'no CURRENT version to restore';
            restoreFailed = true;
            return;
          }
          if (!current) {
            // Nothing to roll back to: the credential had no CURRENT version.
            p.status = 'skipped';
            p.error = 'no CURRENT version to restore';
            return;
          }
          p.status = 'running';
          try {
            await proxyActivities<Acts>(stepOptions(c.stepTimeoutMs, 5)).installVersion({
              credential: credentialRef,
              ...consumerArg(id),
              versionId: current,
              timeoutMs: c.stepTimeoutMs,
              idempotencyKey: `${rotationKey}/restore/${id}/${current}`,
              step: 'restore',
            });
            p.status = 'ok';
            p.holds = 'current';
            p.error = undefined;
          } catch (err) {
            p.status = 'failed';
            // Refused: it still holds what it held; otherwise the restore may or may not have applied.
            if (!isRefusal(err)) p.holds = 'unknown';
            p.error = oneLine(err);
            restoreFailed = true;
          }
        },
      );
    }
    if (restoreFailed) {
      const failedIds = state.services.filter((s) => s.step === 'restore' && s.status === 'failed').map((s) => s.id);
      // By reference the cause names at most 20 (the result and the progress query name each one).
      const stuck = byRef && failedIds.length > 20 ? [...failedIds.slice(0, 20), `and ${failedIds.length - 20} more`] : failedIds;
      const kept = leftoverIds.length > 0 ? `PENDING ${versionId} and leftover ${leftoverIds.join(', ')} were kept valid (not revoked)` : `PENDING ${versionId} was kept valid`;
      const mayHold = leftoverIds.length > 0 ? ` (they may hold ${[versionId, ...leftoverIds].join(' or ')})` : '';
      return end('needs_attention', {
        cause: `${cause}; restoring CURRENT failed in ${stuck.join(', ')}${mayHold}, so ${kept}`,
      });
    }
    issuerProgress.step = 'revoke';
    issuerProgress.status = 'running';
    try {
      await issuerActs.revokeVersion({ credential: credentialRef, ...issuerArg(), versionId, discard: true, timeoutMs: plan.issuerStepTimeoutMs });
      issuerProgress.status = 'ok';
    } catch (err) {
      issuerProgress.status = 'failed';
      issuerProgress.error = oneLine(err);
      return end('needs_attention', { cause: `${cause}; consumers restored, but revoking PENDING ${versionId} at ${plan.issuer} failed: ${oneLine(err)}` });
    }
    if (leftoverIds.length > 0) {
      // Every consumer that may hold a leftover is back on CURRENT: it can go too.
      const problem = await revokeOlder(leftoverIds, 'leftover');
      if (problem) return end('needs_attention', { cause: `${cause}; consumers restored and PENDING ${versionId} revoked, but ${problem}` });
    }
    return end('rolled_back', { cause });
  }
}

/**
 * Started by a credential's Temporal Schedule (see `applyRotationSchedules`):
 * runs `rotateCredential` as child `rotation/<credentialId>`, so a scheduled
 * rotation never runs beside a manual one; when one is running it returns
 * `failed` with that cause instead of starting a second.
 */
export async function scheduledRotation(input: { credentialId: string }): Promise<RotationResult> {
  const workflowId = `rotation/${input.credentialId}`;
  try {
    const child = await startChild(rotateCredential, { workflowId, args: [{ credentialId: input.credentialId }] });
    return await child.result();
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      return { credentialId: input.credentialId, workflowId, status: 'failed', services: [], cause: `rotation of ${input.credentialId} is already running (workflow id ${workflowId}); scheduled run skipped` };
    }
    throw err;
  }
}

/** Whether an install/restore failed with a definitive refusal (see `InstallRefusal`): the consumer did not take the version. */
function isRefusal(err: unknown): boolean {
  if (!(err instanceof ActivityFailure) || !(err.cause instanceof ApplicationFailure)) return false;
  return (err.cause.details?.[0] as InstallRefusal | undefined)?.refused === true;
}

/** The first consumer error recorded, else the error's own message. */
function firstCause(err: unknown, services: ServiceProgress[]): string {
  const s = services.find((x) => x.status === 'failed' && x.error);
  return s ? `${s.id}: ${s.error}` : oneLine(err);
}

/**
 * Runs `fn` over `items` with at most `limit` at once (deterministic order of
 * starts). Waits for every started call to settle, then rejects with the first
 * error, if any.
 */
async function boundedAll<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let firstError: unknown;
  let hasError = false;
  const lane = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        if (!hasError) {
          hasError = true;
          firstError = err;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (hasError) throw firstError;
}
