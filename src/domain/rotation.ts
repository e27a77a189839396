/**
 * Credential rotation, the pure part: the plan (dependency-ordered batches over
 * a credential's consumers), the per-service progress the workflow keeps, and
 * the result it returns. No I/O, no clock: the workflow and the activities
 * share it and tests drive it directly.
 *
 * Steps and staging labels follow AWS Secrets Manager's rotation
 * (createSecret, setSecret, testSecret, finishSecret; AWSCURRENT, AWSPENDING,
 * AWSPREVIOUS), extended over a dependency graph of consumers.
 */
import { tryParseDuration } from './duration';
import { planBatches } from './graph';
import { getCredential, getService, type CredentialSpec, type Registry, type ServiceSpec } from './registry';

/** AWS-style staging labels of a credential version. */
export const STAGING_LABELS = ['CURRENT', 'PENDING', 'PREVIOUS'] as const;
export type StagingLabel = (typeof STAGING_LABELS)[number];

/** What the workflow takes: references only, never a secret. */
export interface RotateCredentialInput {
  credentialId: string;
  /**
   * Rotate even when preflight finds an OPEN breaker, an unhealthy issuer or a
   * leftover version; a leftover is revoked only once no consumer may hold it
   * (docs/rotation.md, "Repairing an interrupted rotation").
   */
  force?: boolean;
  /** Plan and preflight only; change nothing. */
  dryRun?: boolean;
  /** Overrides the credential's `gracePeriod` from the registry, in ms. */
  gracePeriodMs?: number;
}

/** The saga's phases, in order; also the `Phase` search attribute. */
export type RotationPhase =
  | 'preflight'
  | 'create_pending'
  | 'set'
  | 'finish'
  | 'grace'
  | 'revoke'
  | 'compensate'
  | 'completed'
  | 'rolled_back'
  | 'needs_attention'
  | 'failed';

/**
 * How a run ended.
 * - `completed`: every consumer verified on the new version, labels moved, PREVIOUS revoked (or kept, see `previousRevoked`).
 * - `rolled_back`: a step failed before finish; every consumer touched is back on CURRENT and PENDING is revoked.
 * - `needs_attention`: a compensation (or the revocation of PREVIOUS) failed; `services` says what each holds.
 * - `failed`: refused or failed before anything changed (plan, preflight, minting).
 */
export type RotationStatus = 'completed' | 'rolled_back' | 'needs_attention' | 'failed';

/** Per-service step: `mint`/`revoke` for the issuer, `install`/`verify`/`restore` for consumers. */
export type ServiceStep = 'planned' | 'mint' | 'install' | 'verify' | 'restore' | 'revoke';
export type StepStatus = 'pending' | 'running' | 'ok' | 'failed' | 'skipped';

/** Which version a consumer holds, as far as the run knows. */
export type HeldVersion = 'current' | 'pending' | 'unknown';

export interface ServiceProgress {
  id: string;
  role: 'issuer' | 'consumer';
  /** 0-based batch index for consumers; -1 for the issuer. */
  batch: number;
  step: ServiceStep;
  status: StepStatus;
  /** Consumers: which version they hold now. */
  holds?: HeldVersion;
  /** Last error, one line, never a secret. */
  error?: string;
}

/** Per-consumer knobs from `services[].rotation` in the registry, parsed once here. */
export interface ConsumerPlan {
  id: string;
  provider: string;
  /** Timeout of one install or verify attempt, ms (registry `rotation.stepTimeout`, default 30s). */
  stepTimeoutMs: number;
  /** How many times verify is tried before the consumer fails (registry `rotation.verifyAttempts`, default 8). */
  verifyAttempts: number;
  /** First delay between verify attempts, ms, doubling up to 10x (registry `rotation.verifyInterval`, default 500ms). */
  verifyIntervalMs: number;
}

export interface RotationPlan {
  credentialId: string;
  issuer: string;
  provider: string;
  /** Consumers in topological batches: a consumer comes after every consumer it depends on (directly or through other services). */
  batches: string[][];
  consumers: ConsumerPlan[];
  gracePeriodMs: number;
  /** Upper bound of consumers worked on at once within a batch. */
  maxParallel: number;
  /** `workflow`: an activity per consumer step; `activity`: one heartbeating activity per batch. */
  fanOut: 'workflow' | 'activity';
  /** Timeout of mint and revoke at the issuer, ms. */
  issuerStepTimeoutMs: number;
  /** Registry version the plan was made from. */
  registryVersion: string;
}

export interface RotationResult {
  credentialId: string;
  workflowId: string;
  status: RotationStatus;
  /** The version this run minted (PENDING, then CURRENT when completed); undefined when none was minted. */
  versionId?: string;
  /** The version that was CURRENT when the run started (PREVIOUS after completion). */
  previousVersionId?: string;
  /** Completed runs: whether PREVIOUS was revoked at the issuer. */
  previousRevoked?: boolean;
  services: Array<{ id: string; step: ServiceStep; status: StepStatus; holds?: HeldVersion; error?: string }>;
  /** Why the run did not complete, one line, never a secret. */
  cause?: string;
  dryRun?: boolean;
  plan?: RotationPlan;
}

export const DEFAULT_STEP_TIMEOUT_MS = 30_000;
export const DEFAULT_VERIFY_ATTEMPTS = 8;
export const DEFAULT_VERIFY_INTERVAL_MS = 500;
export const DEFAULT_MAX_PARALLEL = 32;
/** Consumers up to which a credential without `fanOut` fans out as `workflow` (see {@link defaultFanOut}). */
export const WORKFLOW_FAN_OUT_UP_TO = 10;

/**
 * The fan-out of a credential that sets no `fanOut`: `workflow` (an activity per consumer step, each its
 * own row in the Web UI) for up to {@link WORKFLOW_FAN_OUT_UP_TO} consumers, `activity` (a few batches per
 * activity) above: each consumer step as an activity costs its completion and a share of the workflow
 * tasks that take them (a fleet of 100 in 5 levels: ~1.4x the time of `activity`, docs/temporal-overhead.md).
 * @param consumers how many consumers the credential has.
 */
export function defaultFanOut(consumers: number): RotationPlan['fanOut'] {
  return consumers > WORKFLOW_FAN_OUT_UP_TO ? 'activity' : 'workflow';
}

function durationOption(service: ServiceSpec, key: string, fallback: number): number {
  const raw = service.rotation?.[key];
  if (raw === undefined) return fallback;
  const ms = typeof raw === 'number' ? raw : typeof raw === 'string' ? tryParseDuration(raw) : undefined;
  if (ms === undefined || !Number.isFinite(ms) || ms <= 0) {
    throw new RangeError(`services.${service.id}.rotation.${key}: invalid duration ${JSON.stringify(raw)}; use e.g. "500ms", "30s"`);
  }
  return ms;
}

function intOption(service: ServiceSpec, key: string, fallback: number): number {
  const raw = service.rotation?.[key];
  if (raw === undefined) return fallback;
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 1 || raw > 1000) {
    throw new RangeError(`services.${service.id}.rotation.${key}: expected an integer 1..1000, got ${JSON.stringify(raw)}`);
  }
  return raw;
}

/**
 * Plans the rotation of `credentialId` from a registry snapshot.
 *
 * @param opts.gracePeriodMs overrides the registry's grace period (ms, >= 0).
 * @param opts.defaultFanOut the fan-out when the credential sets none (default {@link defaultFanOut}).
 * @returns batches over the consumers (dependencies first) and each consumer's step options.
 * @throws Error naming the credential, service or option when the registry cannot be rotated as written
 *   (unknown credential/service, dependency cycle among consumers, bad `rotation.*` option).
 */
export function planRotation(registry: Registry, credentialId: string, opts: { gracePeriodMs?: number; defaultFanOut?: RotationPlan['fanOut'] } = {}): RotationPlan {
  const cred = getCredential(registry, credentialId);
  const issuer = getService(registry, cred.issuer);
  // One pass over the fleet, not one per consumer: a credential may have thousands of consumers.
  const byId = new Map(registry.services.map((s) => [s.id, s]));
  const consumers = cred.consumers.map((id) => byId.get(id) ?? getService(registry, id));
  if (opts.gracePeriodMs !== undefined && (!Number.isFinite(opts.gracePeriodMs) || opts.gracePeriodMs < 0)) {
    throw new RangeError(`gracePeriodMs: expected a finite number of ms >= 0, got ${opts.gracePeriodMs}`);
  }
  const batches = planBatches(registry.services, cred.consumers);
  const maxParallel = cred.maxParallel ?? DEFAULT_MAX_PARALLEL;
  return {
    credentialId,
    issuer: issuer.id,
    provider: cred.provider,
    batches,
    consumers: consumers.map((s) => ({
      id: s.id,
      provider: s.rotation?.provider ?? 'http',
      stepTimeoutMs: durationOption(s, 'stepTimeout', DEFAULT_STEP_TIMEOUT_MS),
      verifyAttempts: intOption(s, 'verifyAttempts', DEFAULT_VERIFY_ATTEMPTS),
      verifyIntervalMs: durationOption(s, 'verifyInterval', DEFAULT_VERIFY_INTERVAL_MS),
    })),
    gracePeriodMs: opts.gracePeriodMs ?? cred.gracePeriod,
    maxParallel,
    fanOut: cred.fanOut ?? opts.defaultFanOut ?? defaultFanOut(cred.consumers.length),
    issuerStepTimeoutMs: durationOption(issuer, 'stepTimeout', DEFAULT_STEP_TIMEOUT_MS),
    registryVersion: registry.versionHash,
  };
}

/** A consumer's step options (a {@link ConsumerPlan} without its id). */
export type ConsumerKnobs = Omit<ConsumerPlan, 'id'>;

/**
 * The plan as it enters history when the run takes the registry by reference
 * (`rotationPlan`): a {@link RotationPlan} whose per-consumer options are
 * folded into the distinct sets the consumers use, plus the credential's own
 * fields the step activities need (provider options, not its consumer list).
 * History cost per consumer: its id in `batches` (id length + 3 bytes), and
 * an entry in `knobsOf` only when it does not use `knobs[0]`.
 */
export interface RotationPlanRef extends Omit<RotationPlan, 'consumers'> {
  /** The credential's registry entry with `consumers: []` (the batches list them). */
  credential: CredentialSpec;
  /** Distinct consumer step options; `knobs[0]` is the most used. */
  knobs: ConsumerKnobs[];
  /** Index into `knobs` of each consumer that does not use `knobs[0]`. */
  knobsOf?: Record<string, number>;
}

/**
 * Folds a plan into its by-reference form ({@link RotationPlanRef}).
 * @param credential the credential's registry entry (its consumer list is dropped).
 */
export function compactPlan(plan: RotationPlan, credential: CredentialSpec): RotationPlanRef {
  const { consumers, ...rest } = plan;
  const keyOf = (k: ConsumerKnobs) => `${k.provider}|${k.stepTimeoutMs}|${k.verifyAttempts}|${k.verifyIntervalMs}`;
  const uses = new Map<string, { knobs: ConsumerKnobs; ids: string[] }>();
  for (const { id, ...k } of consumers) {
    const key = keyOf(k);
    const u = uses.get(key) ?? { knobs: k, ids: [] };
    u.ids.push(id);
    uses.set(key, u);
  }
  const sets = [...uses.values()].sort((a, b) => b.ids.length - a.ids.length);
  const knobsOf: Record<string, number> = {};
  sets.forEach((u, i) => {
    if (i > 0) for (const id of u.ids) knobsOf[id] = i;
  });
  return {
    ...rest,
    credential: { ...credential, consumers: [] },
    knobs: sets.length ? sets.map((u) => u.knobs) : [{ provider: 'http', stepTimeoutMs: DEFAULT_STEP_TIMEOUT_MS, verifyAttempts: DEFAULT_VERIFY_ATTEMPTS, verifyIntervalMs: DEFAULT_VERIFY_INTERVAL_MS }],
    ...(sets.length > 1 ? { knobsOf } : {}),
  };
}

/** The full plan of a {@link RotationPlanRef} (consumers in batch order), in memory only. */
export function expandPlan(ref: RotationPlanRef): RotationPlan {
  const { credential: _credential, knobs, knobsOf, ...rest } = ref;
  const consumers = ref.batches.flat().map((id) => ({ id, ...knobs[knobsOf?.[id] ?? 0]! }));
  return { ...rest, consumers };
}

/** Initial progress: the issuer waiting to mint, every consumer planned in its batch. */
export function initialProgress(plan: RotationPlan): ServiceProgress[] {
  const out: ServiceProgress[] = [{ id: plan.issuer, role: 'issuer', batch: -1, step: 'planned', status: 'pending' }];
  plan.batches.forEach((batch, i) => {
    for (const id of batch) out.push({ id, role: 'consumer', batch: i, step: 'planned', status: 'pending', holds: 'current' });
  });
  return out;
}

/**
 * Consumers to restore during compensation, in reverse batch order: every
 * consumer whose install was attempted (a failed or timed-out install may
 * still have applied, and restoring is idempotent).
 */
export function compensationOrder(plan: RotationPlan, progress: readonly ServiceProgress[]): string[][] {
  const touched = new Set(progress.filter((p) => p.role === 'consumer' && p.step !== 'planned').map((p) => p.id));
  return [...plan.batches]
    .reverse()
    .map((b) => b.filter((id) => touched.has(id)))
    .filter((b) => b.length > 0);
}

/**
 * Consumers to restore during compensation, in reverse batch order: those
 * that hold or may hold a version about to be revoked — the new one
 * (`holds` is `pending` or `unknown`: installed, or an install that timed out
 * or failed in a way that may have applied) — plus `alsoMayHold` (consumers
 * that may hold a leftover version an earlier run installed, see `rotate --force`).
 * A consumer that definitively refused the install (`holds: current`) is not
 * touched: it never held the new version, and a redundant install could only fail.
 */
export function restoreOrder(plan: RotationPlan, progress: readonly ServiceProgress[], alsoMayHold: ReadonlySet<string> = new Set()): string[][] {
  const holders = new Set(progress.filter((p) => p.role === 'consumer' && (p.holds === 'pending' || p.holds === 'unknown' || alsoMayHold.has(p.id))).map((p) => p.id));
  return [...plan.batches]
    .reverse()
    .map((b) => b.filter((id) => holders.has(id)))
    .filter((b) => b.length > 0);
}

/**
 * Characters of error text a by-reference run's result carries in all (see
 * {@link resultServices}): with every other field, a result of 3,000
 * consumers that all failed stays near 300 KB, under Temporal's 512 KB warning.
 */
export const RESULT_ERROR_BUDGET = 64 * 1024;
/** What a consumer's `error` says once the result's error budget is spent (the audit trail holds every error). */
export const ERROR_IN_AUDIT_TRAIL = 'see the audit trail';

/**
 * The result's `services` list: one entry per service, issuer first, without internal fields.
 * @param errorBudget characters of `error` text kept in all; once spent, a service's error reads
 *   {@link ERROR_IN_AUDIT_TRAIL} (each failed step is also in the audit trail, with its detail).
 */
export function resultServices(progress: readonly ServiceProgress[], errorBudget = Infinity): RotationResult['services'] {
  let left = errorBudget;
  return progress.map(({ id, step, status, holds, error }) => {
    let e = error;
    if (e && left !== Infinity) {
      if (e.length > left) e = ERROR_IN_AUDIT_TRAIL;
      else left -= e.length;
    }
    return { id, step, status, ...(holds ? { holds } : {}), ...(e ? { error: e } : {}) };
  });
}

/** One-line message of an error-like value, without stack or payload details; Temporal's wrapper messages give way to their cause. */
export function oneLine(err: unknown): string {
  const e = err as { cause?: { message?: string; cause?: unknown }; message?: string };
  let msg: string;
  if (e?.cause?.message && /^(Activity task failed|Activity task timed out|Child Workflow execution failed|Workflow execution failed)$/.test(e.message ?? '')) {
    msg = oneLine(e.cause);
    if (e.message === 'Activity task timed out' || /^Activity task timed out/.test(e.message ?? '')) msg = `timed out: ${msg}`;
  } else if (e?.cause?.message && e.message && !e.message.includes(e.cause.message)) {
    msg = `${e.message}: ${e.cause.message}`;
  } else {
    msg = e?.message ?? String(err);
  }
  return msg.split('\n')[0]!.slice(0, 500);
}

/**
 * Signal name of {@link BatchStarted}: sent by the `installBatches` activity
 * (`fanOut: activity`) to its rotation before it starts a segment's next batch.
 */
export const BATCH_STARTED_SIGNAL = 'rotationBatchStarted';

/**
 * "Every consumer of the batches before `batch` in segment `segment` is
 * installed and verified; batch `batch` starts now." The activity sends it,
 * and waits for the signal to be in the run's history, before it sends any
 * install of that batch: the run then always knows which batches may have
 * been touched, even when the activity ends without reporting (a crash, a
 * timeout, a cancel), and a rollback restores exactly those.
 * Sent again (same values) by a retried attempt; the run ignores a batch it already knows started.
 */
export interface BatchStarted {
  /** Index of the segment (see {@link segmentBatches}) in the run. */
  segment: number;
  /** Index of the batch within the segment, >= 1 (batch 0 starts with the activity). */
  batch: number;
}

/**
 * Groups a plan's batches into segments, one `installBatches` activity each
 * (`fanOut: activity`): consecutive whole batches while their consumers number
 * at most `maxMembers` in all, and a batch of more than `maxMembers` as pages
 * of `maxMembers`, one segment each (pages of one batch run one after another,
 * as batches do). Keeps order: concatenated, the segments' batches are the
 * plan's batches with the big ones split into pages.
 * @param batches consumer ids in dependency batches (`RotationPlan.batches`).
 * @param maxMembers most consumers in one segment (an activity's input and result stay bounded), >= 1.
 * @returns segments, each a list of batches (or one page), none empty.
 */
export function segmentBatches(batches: readonly (readonly string[])[], maxMembers: number): string[][][] {
  const segments: string[][][] = [];
  let open: string[][] = [];
  let size = 0;
  const close = () => {
    if (open.length > 0) segments.push(open);
    open = [];
    size = 0;
  };
  for (const batch of batches) {
    if (batch.length === 0) continue;
    if (batch.length > maxMembers) {
      close();
      for (let i = 0; i < batch.length; i += maxMembers) segments.push([batch.slice(i, i + maxMembers)]);
      continue;
    }
    if (size + batch.length > maxMembers) close();
    open.push([...batch]);
    size += batch.length;
  }
  close();
  return segments;
}
