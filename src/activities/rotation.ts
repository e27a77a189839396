/**
 * Rotation activities: every side effect of the `rotateCredential` saga.
 * Inputs and results carry references (credential id, version id, service
 * specs from the run's registry snapshot), never secret values: each activity
 * reads the value it needs from the credential store and hands it only to the
 * provider. Every step is idempotent (keys derived from workflow id + run id +
 * step) and appends to the audit trail.
 */
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { temporal } from '@temporalio/proto';
import pLimit from 'p-limit';
import type { CredentialSpec, Registry, ServiceSpec } from '../domain/registry';
import { BATCH_STARTED_SIGNAL, compactPlan, planRotation, type BatchStarted, type RotationPlanRef } from '../domain/rotation';
import type { CredentialStore, CredentialVersion, NewAuditEntry } from '../state/types';
import type { Coordinator } from './coordinator';
import { builtInProviders, ProviderError, type ProviderContext, type RotationProvider } from './providers';
import { providerFailure, providerRetryDelayMs } from './providers/http-failure';
import type { RotationMetrics } from './rotation-metrics';
import { versionedRegistry, type RegistrySource } from './registry';

/** Optional views of other areas used by preflight; absent ones are skipped. */
export interface RotationPreflightChecks {
  /** Breaker state of a service (`CLOSED`, `OPEN`, `HALF_OPEN`), or undefined when unknown. */
  breakerState?(serviceId: string): Promise<string | undefined>;
  /** Whether a service is healthy now; undefined when unknown. Default: probe its `healthCheck` over HTTP. */
  serviceHealthy?(service: ServiceSpec): Promise<boolean | undefined>;
}

export interface RotationActivityDeps {
  store: CredentialStore;
  /** Providers by name; default {@link builtInProviders}. */
  providers?: Record<string, RotationProvider>;
  preflight?: RotationPreflightChecks;
  /** The process's API coordinator; HTTP providers call services through it when given (see ProviderContext). */
  coordinator?: Coordinator;
  /** Counts ended rotations (`registerRotationMetrics`); optional. */
  metrics?: RotationMetrics;
  /**
   * How many alert webhooks this worker delivers to (ALERT_WEBHOOKS); default 0.
   * `auditRotation` reports it, so the saga schedules an alert delivery only
   * where someone listens (as the worker does for breaker transitions).
   */
  alertWebhooks?: number;
  /**
   * The worker's registry (remembering its last few versions, see `versionedRegistry`): runs that take
   * the registry by reference get their plan from it (`rotationPlan`) and their steps read the specs of
   * the services they act on from it, by id and version. Without it only runs that carry specs work.
   */
  registry: RegistrySource;
}

/**
 * A service of the run's registry version, by reference: the step activity
 * reads its spec from the worker's registry. Runs begun before the registry
 * went by reference pass `service` (the spec) instead.
 */
export interface ServiceRef {
  /** The spec itself (runs begun before by-reference). */
  service?: ServiceSpec;
  serviceId?: string;
  /** Version hash of the registry the run planned with (`RotationPlanRef.registryVersion`). */
  registryVersion?: string;
}

/** Consumers checked at once by preflight (breaker state, provider plan checks). */
const PREFLIGHT_CONCURRENCY = 16;
/** Most preflight problems listed (the rest are counted): bounds the result whatever the number of consumers. */
export const MAX_PREFLIGHT_PROBLEMS = 50;

/**
 * Either the specs (runs begun before by-reference) or the registry version:
 * then the issuer and the credential's consumers are read from the worker's
 * registry of that version.
 */
export interface PreflightInput {
  credential: CredentialSpec;
  issuer?: ServiceSpec;
  consumers?: ServiceSpec[];
  issuerId?: string;
  registryVersion?: string;
}

/** A version an earlier run left valid at the issuer: its PENDING, or a PENDING a forced run superseded but has not revoked yet. */
export interface LeftoverVersion {
  versionId: string;
  /** The run that minted it (`rotation/<id>#<runId>`). */
  createdBy: string;
  /** True for the version labelled PENDING now; false for a superseded one. */
  pending: boolean;
  /**
   * Consumers that may hold it: from the audit trail, every consumer an
   * install of it was sent to (failed or timed-out installs may have
   * applied), unless that run restored CURRENT there afterwards; and every
   * other consumer whose verify reports it in use, or cannot be asked
   * (unreachable: it may hold it). Registry order.
   */
  mayHold: string[];
}

export interface PreflightResult {
  currentVersionId: string | null;
  /** A PENDING version left by an earlier run, if any. */
  leftoverPending: { versionId: string; createdBy: string } | null;
  /** Every leftover version (the PENDING one first); absent in results recorded before forced repairs kept leftovers. */
  leftovers?: LeftoverVersion[];
  /** Reasons to refuse (OPEN breakers, unhealthy issuer, leftover PENDING); empty when clear. */
  problems: string[];
  /**
   * Older versions the issuer minted that are still valid there but no consumer should hold: a
   * PREVIOUS an earlier run did not revoke (cancelled or terminated in its grace period, or pushed
   * down by `credentials import`), or one that lost its label that way. Neither CURRENT, PENDING
   * nor superseded; ids invented by `credentials import` are left out (the issuer never saw them;
   * their run said so). The saga revokes them with PREVIOUS; absent in results recorded before.
   */
  stale?: string[];
}

export interface MintInput {
  credential: CredentialSpec;
  /** The issuer's spec, or (by reference) `issuerId` + `registryVersion`. */
  issuer?: ServiceSpec;
  issuerId?: string;
  registryVersion?: string;
  /** `rotation/<id>#<runId>`: who the PENDING version belongs to. */
  rotationKey: string;
  idempotencyKey: string;
  timeoutMs: number;
  /** `--force`: the leftover PENDING this version replaces; it keeps a `supersededBy` marker until revoked. */
  supersede?: string;
}

export interface ServiceStepInput extends ServiceRef {
  credential: CredentialSpec;
  versionId: string;
  timeoutMs: number;
}

/**
 * One consumer of a batch worked on by `installBatch`: its spec (runs begun
 * before by-reference) or its id (the spec is read from the input's
 * `registryVersion`); its idempotency key, or the input's `rotationKey`
 * derives it (`<rotationKey>/install/<id>/<versionId>`).
 */
export interface BatchMember {
  service?: ServiceSpec;
  id?: string;
  idempotencyKey?: string;
  timeoutMs: number;
  verifyAttempts: number;
  verifyIntervalMs: number;
}

/** What `installBatch` and `installBatches` take besides their consumers. */
export interface BatchInput {
  credential: CredentialSpec;
  versionId: string;
  maxParallel: number;
  registryVersion?: string;
  rotationKey?: string;
  /**
   * `restore` (compensation, by reference): puts `versionId` (CURRENT) back in every member, without
   * verify; a failure does not stop the others (every holder must be tried), each outcome says how
   * its member ended (an error cut to 300 characters), and a member whose registry version is gone
   * is restored with its entry in the worker's current registry (see specOf). Default `install`.
   */
  step?: 'install' | 'restore';
}

/** What `revokeVersion` did: revoked at the issuer, or not (and why, what to do). */
export interface RevokeResult {
  revoked: boolean;
  /** When not revoked: which version, why, and what to do; one line, never a secret. */
  cause?: string;
}

/** How one consumer of a batch ended. */
export interface BatchOutcome {
  id: string;
  /** An install request was sent (it may have applied even if it failed): compensation must restore it. */
  touched: boolean;
  ok: boolean;
  /** Not started because another consumer of the batch failed first. */
  skipped?: boolean;
  /**
   * Skipped in this attempt, but an earlier attempt of the activity may have installed it (a retry
   * after a worker crash): it may hold the new version, and a rollback must restore it.
   */
  mayHold?: boolean;
  /** The step that failed. */
  failedStep?: 'install' | 'verify';
  /**
   * The install failed with a definitive refusal (a non-retryable 4xx on the
   * only request sent): the consumer did not take the version and still holds
   * what it held before. False when any request may have applied (timeout, 5xx, transport error).
   */
  refused?: boolean;
  error?: string;
}

/** `details[0]` of an install failure that was a definitive refusal (see {@link BatchOutcome.refused}). */
export interface InstallRefusal {
  refused: true;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

/** Who is acting, for the audit trail: `rotation/<id>#<runId>`, or `activity` outside a workflow. */
function actor(): string {
  try {
    const info = Context.current().info;
    return info.workflowExecution ? `${info.workflowExecution.workflowId}#${info.workflowExecution.runId}` : `activity ${info.activityType}`;
  } catch {
    return 'activity';
  }
}

/**
 * Idempotency key of an audit entry written by the running activity:
 * workflow id, run id and activity id (the same on every retry of one
 * scheduled activity), step, service and outcome, so a retry after a worker
 * died past the insert does not write the step twice. Failures also carry
 * the attempt: each failed attempt is its own event. Undefined outside an activity.
 */
function auditEventKey(e: { step: string; serviceId?: string | null; outcome: string }): string | undefined {
  try {
    const info = Context.current().info;
    if (!info.workflowExecution) return undefined;
    const { workflowId, runId } = info.workflowExecution;
    const attempt = e.outcome === 'failed' ? `#${info.attempt}` : '';
    return `${workflowId}#${runId}/${info.activityId}/${e.step}/${e.serviceId ?? '-'}/${e.outcome}${attempt}`;
  } catch {
    return undefined;
  }
}

function cancelSignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

/** Temporal's attempt of the running activity (1 for the first; 1 outside an activity). */
function currentAttempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return 1;
  }
}

/**
 * Turns a provider error into the Temporal failure the retry policy reads, as
 * `callService` does (Retry-After honoured and capped, else full jitter).
 * Non-provider errors pass through (retryable).
 */
function toFailure(err: unknown): unknown {
  return providerFailure(err, currentAttempt());
}

/**
 * Whether a provider error is a definitive refusal: the consumer answered a
 * non-retryable 4xx (e.g. 422 "credential rejected"), so the request did not
 * apply. Timeouts, 5xx and transport errors are not: the request may have applied.
 */
export function isDefinitiveRefusal(err: unknown): boolean {
  return err instanceof ProviderError && !err.retryable && err.status !== undefined && err.status >= 400 && err.status <= 499;
}

/** Throws the activity failure for `err`; a definitive refusal carries {@link InstallRefusal} as its details, so the workflow knows what the consumer holds. */
function refusalOr(err: unknown, refused: boolean): never {
  const failure = toFailure(err);
  if (refused && failure instanceof ApplicationFailure) {
    const details: InstallRefusal[] = [{ refused: true }];
    throw ApplicationFailure.create({ message: failure.message, type: failure.type ?? undefined, nonRetryable: true, details, cause: failure.cause });
  }
  throw failure;
}

/** A consumer's provider: its `rotation.provider`, else `make` for Make services, else `http`. */
export function consumerProviderName(service: ServiceSpec): string {
  return service.rotation?.provider ?? (service.type === 'make' ? 'make' : 'http');
}

/** Default issuer health check: the service's `healthCheck` over HTTP (2xx or listed status = healthy). */
async function probeHealth(service: ServiceSpec): Promise<boolean | undefined> {
  const hc = service.healthCheck;
  if (!hc || hc.type !== 'http') return undefined;
  const url = hc.url ?? `${service.endpoints[0]!.url.replace(/\/+$/, '')}${hc.path ?? '/'}`;
  try {
    const res = await fetch(url, { method: hc.method, signal: AbortSignal.timeout(hc.timeout) });
    await res.arrayBuffer();
    return res.status >= 200 && res.status <= 299;
  } catch {
    return false;
  }
}

/**
 * Builds the rotation activities.
 * @param deps.store the credential store (secret values and audit trail).
 */
export function createRotationActivities(deps: RotationActivityDeps) {
  const { store } = deps;
  if (!store) throw new RangeError('createRotationActivities: deps.store (a CredentialStore) is required');
  if (!deps.registry) throw new RangeError('createRotationActivities: deps.registry (the worker\'s RegistrySource) is required');
  const providers = deps.providers ?? builtInProviders();

  const provider = (name: string, where: string): RotationProvider => {
    const p = providers[name];
    if (!p) throw ApplicationFailure.nonRetryable(`${where}: no rotation provider "${name}" (known: ${Object.keys(providers).join(', ')})`, 'UnknownProvider');
    return p;
  };
  const ctx = (credential: CredentialSpec, service: ServiceSpec, timeoutMs: number): ProviderContext => ({
    credential,
    service,
    secrets: store,
    timeoutMs,
    signal: cancelSignal(),
    coordinator: deps.coordinator,
  });
  const audit = (e: Omit<NewAuditEntry, 'actor'> & { actor?: string }) => store.audit({ ...e, actor: e.actor ?? actor(), eventKey: e.eventKey ?? auditEventKey(e) });
  const secretOf = async (credentialId: string, versionId: string): Promise<string> => {
    const s = await store.readSecret(credentialId, versionId);
    if (s === undefined) throw ApplicationFailure.nonRetryable(`credential ${credentialId} has no version ${versionId} in the store`, 'UnknownVersion');
    return s;
  };

  const registry = versionedRegistry(deps.registry);
  const indexes = new WeakMap<Registry, Map<string, ServiceSpec>>();
  const serviceIn = (r: Registry, id: string): ServiceSpec | undefined => {
    let byId = indexes.get(r);
    if (!byId) indexes.set(r, (byId = new Map(r.services.map((x) => [x.id, x]))));
    return byId.get(id);
  };
  /** The registry of `version` on this worker, or undefined when it is gone (see {@link specOf}). */
  const registryAt = (version: string): Registry | undefined => registry.byVersion(version);
  // Kept short: a cause line holds 500 characters, and the run id and both versions come first.
  const goneMessage = (version: string) =>
    `rotation ${actor()}: registry version ${version} is not known to this worker (its registry is ${registry.current().versionHash}): it changed mid-rotation, or workers read different registries. ` +
    `Make every worker's registry the same, then rotate again; this run rolls back (restores and revocations use the current registry's entries)`;
  /** The failure of a forward step without its registry version: nothing was sent, so it counts as a refusal ({@link InstallRefusal}). */
  const versionGone = (version: string) => {
    // Nothing is sent, but only the first attempt proves the consumer holds what it held: an earlier
    // attempt, on a worker that had the version, may have applied the install.
    const details: InstallRefusal[] = currentAttempt() === 1 ? [{ refused: true }] : [];
    return ApplicationFailure.create({ message: goneMessage(version), type: 'RegistryVersionGone', nonRetryable: true, details });
  };
  /**
   * The spec of the service a step acts on. `forward` steps (preflight, mint, install, verify) need the
   * registry version the run planned with: without it they fail non-retryably (`RegistryVersionGone`),
   * and the saga rolls back. `undo` steps (restore, revoke) must work even then: they fall back to the
   * service's entry in the worker's current registry (the same service, where it is configured now).
   * @throws non-retryable `RegistryVersionGone` (forward), `ServiceGone` (undo, the service in neither registry).
   */
  const specOf = (ref: ServiceRef, use: 'forward' | 'undo', credentialId = '<credential>'): ServiceSpec => {
    if (ref.service) return ref.service;
    const id = ref.serviceId;
    if (!id || !ref.registryVersion) throw ApplicationFailure.nonRetryable('a rotation step needs `service` or `serviceId` and `registryVersion`', 'InvalidStepInput');
    const planned = registryAt(ref.registryVersion);
    if (planned) {
      const s = serviceIn(planned, id);
      if (s) return s;
      throw ApplicationFailure.nonRetryable(`rotation ${actor()}: service "${id}" is not in registry version ${ref.registryVersion}`, 'UnknownService');
    }
    if (use === 'forward') throw versionGone(ref.registryVersion);
    const now = registry.current();
    const s = serviceIn(now, id);
    if (s) return s;
    throw ApplicationFailure.nonRetryable(
      `rotation ${actor()}: service "${id}" is in neither registry version ${ref.registryVersion} (not known to this worker) nor the worker's current registry ${now.versionHash}: ` +
        `put the credential's CURRENT version back there by hand, or restore its registry entry and run \`integration-agent rotate ${credentialId} --force\``,
      'ServiceGone',
    );
  };

  /** The PENDING version and superseded, unrevoked ones, each with the consumers that may hold it (see {@link LeftoverVersion}). */
  const leftoverVersions = async (credential: CredentialSpec, pending: CredentialVersion | null, consumers: ServiceSpec[]): Promise<LeftoverVersion[]> => {
    const credentialId = credential.id;
    const superseded = (await store.listVersions(credentialId)).filter((v) => v.supersededBy !== null && v.revokedAt === null && v.versionId !== pending?.versionId);
    const versions = [...(pending ? [{ v: pending, pending: true }] : []), ...superseded.map((v) => ({ v, pending: false }))];
    if (versions.length === 0) return [];
    const trail = await store.auditTrail({ credentialId });
    const holdersOf = versions.map(({ v }) => {
      const holders = new Set<string>();
      for (const e of trail) {
        if (!e.serviceId) continue;
        if (e.step === 'install' && e.versionId === v.versionId) holders.add(e.serviceId);
        // A restore of CURRENT by the run that minted it, after its install: that consumer is back on CURRENT.
        else if (e.step === 'restore' && e.outcome === 'ok' && e.actor === v.createdBy) holders.delete(e.serviceId);
      }
      return holders;
    });
    // The trail misses an install still in flight when its run was terminated: ask the other consumers which version they use.
    const probe = versions[0]!.v;
    const probeSecret = await store.readSecret(credentialId, probe.versionId);
    const limit = pLimit(8);
    await Promise.all(
      consumers
        .filter((c) => !holdersOf.some((h) => h.has(c.id)))
        .map((c) =>
          limit(async () => {
            const p = providers[consumerProviderName(c)];
            if (!p || probeSecret === undefined) return;
            try {
              const inUse = (await p.verify(ctx(credential, c, 5_000), { versionId: probe.versionId, secret: probeSecret })).versionId;
              versions.forEach(({ v }, i) => {
                if (inUse === v.versionId) holdersOf[i]!.add(c.id);
              });
            } catch {
              // Cannot be asked: it may hold any of them.
              for (const h of holdersOf) h.add(c.id);
            }
          }),
        ),
    );
    return versions.map(({ v, pending: isPending }, i) => ({
      versionId: v.versionId,
      createdBy: v.createdBy,
      pending: isPending,
      mayHold: consumers.map((c) => c.id).filter((id) => holdersOf[i]!.has(id)),
    }));
  };

  /**
   * The work of `installBatch` and `installBatches`: `batches` one after another (see there), announcing
   * each batch after the first with `announce` (installBatches only).
   */
  async function runBatches(input: BatchInput & { batches: BatchMember[][]; announce?: (batch: number) => Promise<boolean> }): Promise<BatchOutcome[]> {
    const { credential, versionId } = input;
    const restoring = input.step === 'restore';
    const step = restoring ? 'restore' : 'install';
    // Every member's spec before any install. Without the run's registry version nobody is touched: the
    // first member reports why (refused: nothing was sent), the others are skipped (one message, not one per member).
    let context: Context | undefined;
    try {
      context = Context.current();
    } catch {
      context = undefined;
    }
    // A retried attempt: an earlier one may have sent installs (and reported some done in its heartbeats).
    const retried = (context?.info.attempt ?? 1) > 1;
    const previous = new Map(((context?.info.heartbeatDetails as BatchOutcome[] | undefined) ?? []).filter((o) => o.ok).map((o) => [o.id, o]));
    // Checked again before each later batch: a batch of `installBatches` refuses as a batch of its own would.
    const registryGone = () => !restoring && input.registryVersion !== undefined && !registryAt(input.registryVersion);
    /**
     * Without the run's registry version nobody is touched. In a first attempt nothing was sent: the first
     * member refuses (it holds what it held), the others are skipped. In a retried attempt an earlier one
     * may have installed any member it did not report done: each is a failure that may have applied.
     */
    const goneOutcomes = (batch: BatchMember[]) => {
      const error = goneMessage(input.registryVersion!);
      if (retried) {
        let first = true;
        return batch.map((m): BatchOutcome => {
          const id = m.id ?? m.service!.id;
          const done = previous.get(id);
          if (done) return done;
          const message = first ? error : `not retried (the run's registry version is not known to this worker); an earlier attempt may have installed it`;
          first = false;
          return { id, touched: true, ok: false, failedStep: 'install', refused: false, error: message };
        });
      }
      return batch.map((m, i): BatchOutcome => {
        const id = m.id ?? m.service!.id;
        return i === 0 ? { id, touched: false, ok: false, failedStep: 'install', refused: true, error } : { id, touched: false, ok: false, skipped: true };
      });
    };
    if (registryGone()) return goneOutcomes(input.batches[0]!);
    const unresolved: BatchOutcome[] = [];
    /** A batch's members with their specs (read at the batch's start) and idempotency keys. */
    const resolve = (batch: BatchMember[]) => batch.flatMap((m) => {
      let service: ServiceSpec;
      try {
        service = specOf({ service: m.service, serviceId: m.id, registryVersion: input.registryVersion }, restoring ? 'undo' : 'forward', credential.id);
      } catch (err) {
        if (!restoring) throw err;
        // Nothing was sent to it: it holds what it held.
        unresolved.push({ id: m.id!, touched: false, ok: false, failedStep: 'install', refused: true, error: (err as Error).message.slice(0, 300) });
        return [];
      }
      const idempotencyKey = m.idempotencyKey ?? `${input.rotationKey}/${step}/${service.id}/${versionId}`;
      return [{ ...m, service, idempotencyKey }];
    });
    const secret = await secretOf(credential.id, versionId);
    const done: BatchOutcome[] = [...previous.values()];
    const beat = setInterval(() => context?.heartbeat(done), 1_000);
    const signal = cancelSignal();
    let failed = false;
    const limit = pLimit(Math.max(1, input.maxParallel));
    const outcomes: BatchOutcome[] = [];
    try {
      for (let j = 0; j < input.batches.length; j++) {
        if (j > 0) {
          // The next batch starts only after every consumer before it is verified, with the run's registry
          // version still known, and only once the run knows (the signal is in its history) that it may be touched.
          if (failed || signal?.aborted) break;
          if (registryGone()) {
            outcomes.push(...goneOutcomes(input.batches[j]!));
            break;
          }
        }
        const members = resolve(input.batches[j]!);
        if (j > 0 && !(await input.announce!(j))) {
          // Cancelled (the server says so before the heartbeat does): the run restores what was started.
          throw new CancelledFailure('installBatches cancelled at a batch boundary');
        }
        outcomes.push(...(await runBatch(members)));
      }
      if (signal?.aborted) throw ApplicationFailure.retryable(`${restoring ? 'installBatch' : 'installBatches'} cancelled`, 'Cancelled');
      return [...outcomes, ...unresolved];
    } finally {
      clearInterval(beat);
    }

    /** One batch: its consumers, at most `maxParallel` at once. */
    async function runBatch(members: (BatchMember & { service: ServiceSpec; idempotencyKey: string })[]): Promise<BatchOutcome[]> {
      return Promise.all(
        members.map((m) =>
          limit(async (): Promise<BatchOutcome> => {
            const id = m.service.id;
            const prior = previous.get(id);
            if (prior) return prior;
            if ((failed && !restoring) || signal?.aborted) return { id, touched: false, ok: false, skipped: true, ...(retried ? { mayHold: true } : {}) };
            const p = provider(consumerProviderName(m.service), `services.${id}.rotation.provider`);
            const c = ctx(credential, m.service, m.timeoutMs);
            let lastError: unknown;
            // Whether a request of this member may have applied: any failure but a definitive refusal,
            // and any earlier attempt of this activity (it may have sent one before the worker died).
            let mayHaveApplied = retried;
            for (let attempt = 0; attempt < 3; attempt++) {
              try {
                // An install already sent runs to its answer (or its own timeout) even when the activity is
                // cancelled: aborting the request would not stop the consumer applying it, and the workflow
                // restores CURRENT only once this activity has ended (WAIT_CANCELLATION_COMPLETED).
                await p.install({ ...c, signal: undefined }, { versionId, secret, idempotencyKey: m.idempotencyKey });
                lastError = undefined;
                break;
              } catch (err) {
                lastError = err;
                if (!isDefinitiveRefusal(err)) mayHaveApplied = true;
                if (!(err instanceof ProviderError && err.retryable) || signal?.aborted) break;
                await sleep(providerRetryDelayMs(err, attempt + 1) ?? 500 * 2 ** attempt, signal);
              }
            }
            if (lastError !== undefined) {
              failed = true;
              const message = (lastError as Error).message;
              await audit({ credentialId: credential.id, step, serviceId: id, versionId, outcome: 'failed', detail: message });
              return { id, touched: true, ok: false, failedStep: 'install', refused: !mayHaveApplied, error: restoring ? message.slice(0, 300) : message };
            }
            await audit({ credentialId: credential.id, step, serviceId: id, versionId, outcome: 'ok', detail: null });
            if (restoring) {
              const outcome = { id, touched: true, ok: true };
              done.push(outcome);
              return outcome;
            }
            let seen: string | undefined;
            let delay = m.verifyIntervalMs;
            for (let attempt = 0; attempt < m.verifyAttempts && !signal?.aborted; attempt++) {
              try {
                seen = (await p.verify(c, { versionId, secret })).versionId;
                lastError = undefined;
              } catch (err) {
                lastError = err;
                if (err instanceof ProviderError && !err.retryable) break;
              }
              if (seen === versionId) break;
              if (attempt + 1 < m.verifyAttempts) {
                await sleep(delay, signal);
                delay = Math.min(delay * 2, m.verifyIntervalMs * 10);
              }
            }
            if (seen !== versionId) {
              failed = true;
              const error = lastError ? (lastError as Error).message : `${id} reports ${credential.id} version ${seen ?? '(none)'} in use, expected ${versionId}`;
              await audit({ credentialId: credential.id, step: 'verify', serviceId: id, versionId, outcome: 'failed', detail: error });
              return { id, touched: true, ok: false, failedStep: 'verify', error };
            }
            await audit({ credentialId: credential.id, step: 'verify', serviceId: id, versionId, outcome: 'ok', detail: null });
            const outcome = { id, touched: true, ok: true };
            done.push(outcome);
            return outcome;
          }),
        ),
      );
    }
  }

  return {
    /**
     * Preflight (read-only): CURRENT and leftover PENDING versions, OPEN
     * breakers among the consumers, the issuer's health.
     */
    async rotationPreflight(input: PreflightInput): Promise<PreflightResult> {
      const { credential } = input;
      let issuer: ServiceSpec;
      let consumers: ServiceSpec[];
      if (input.registryVersion !== undefined) {
        const r = registryAt(input.registryVersion);
        if (!r) throw versionGone(input.registryVersion);
        const entry = r.credentials.find((c) => c.id === credential.id);
        if (!entry) throw ApplicationFailure.nonRetryable(`credential ${credential.id} is not in registry version ${input.registryVersion}`, 'UnknownCredential');
        issuer = specOf({ serviceId: input.issuerId ?? entry.issuer, registryVersion: input.registryVersion }, 'forward');
        consumers = entry.consumers.map((id) => specOf({ serviceId: id, registryVersion: input.registryVersion }, 'forward'));
      } else {
        if (!input.issuer || !input.consumers) throw ApplicationFailure.nonRetryable('rotationPreflight needs `issuer` and `consumers`, or `registryVersion`', 'InvalidStepInput');
        issuer = input.issuer;
        consumers = input.consumers;
      }
      const labels = await store.labels(credential.id);
      const problems: string[] = [];
      const leftover = labels.PENDING ? { versionId: labels.PENDING.versionId, createdBy: labels.PENDING.createdBy } : null;
      const leftovers = await leftoverVersions(credential, labels.PENDING, consumers);
      for (const l of leftovers) {
        const held = l.mayHold.length > 0 ? `it may be held by ${l.mayHold.join(', ')}` : 'no consumer took it';
        problems.push(
          l.pending
            ? `credential ${credential.id} has PENDING version ${l.versionId} left by ${l.createdBy}; ${held}`
            : `credential ${credential.id} has version ${l.versionId} (left by ${l.createdBy}, superseded by a forced rotation) still valid at the issuer; ${held}`,
        );
      }
      // Per-consumer checks run a few at once (a credential may have thousands of consumers: one at a time,
      // breaker lookups alone outlast the step's timeout); problems keep the consumers' order.
      const breakerState = deps.preflight?.breakerState;
      const checks = pLimit(PREFLIGHT_CONCURRENCY);
      const perConsumer = await Promise.all(
        consumers.map((c) =>
          checks(async (): Promise<string[]> => {
            const found: string[] = [];
            if (breakerState && (await breakerState(c.id)) === 'OPEN') found.push(`circuit breaker of consumer ${c.id} is OPEN`);
            return found;
          }),
        ),
      );
      problems.push(...perConsumer.flat());
      // Provider plan checks (e.g. Make connections whose data the API cannot edit), before anything changes.
      const planChecks = await Promise.all(
        consumers.map((c) =>
          checks(async (): Promise<string[]> => {
            const p = providers[consumerProviderName(c)];
            if (!p?.preflight) return [];
            try {
              return await p.preflight(ctx(credential, c, 15_000));
            } catch (err) {
              return [`consumer ${c.id}: plan check failed: ${(err as Error).message.split('\n')[0]}`];
            }
          }),
        ),
      );
      problems.push(...planChecks.flat());
      const healthy = await (deps.preflight?.serviceHealthy ?? probeHealth)(issuer);
      if (healthy === false) problems.push(`issuer ${issuer.id} is unhealthy`);
      const stale = (await store.listVersions(credential.id))
        .filter((v) => v.revokedAt === null && (v.label === null || v.label === 'PREVIOUS') && !v.supersededBy && v.versionIdSource === 'issuer')
        .map((v) => v.versionId);
      // A credential with thousands of consumers could list thousands of problems: the result stays bounded.
      if (problems.length > MAX_PREFLIGHT_PROBLEMS) problems.splice(MAX_PREFLIGHT_PROBLEMS - 1, Infinity, `and ${problems.length - MAX_PREFLIGHT_PROBLEMS + 1} more problems`);
      return { currentVersionId: labels.CURRENT?.versionId ?? null, leftoverPending: leftover, leftovers, problems, stale };
    },

    /**
     * The plan of a rotation of `credentialId` from the worker's registry in force now, by reference
     * (`RotationPlanRef`): the registry version, issuer, consumer ids in dependency-ordered batches,
     * the distinct step options, the credential's provider fields. Nothing of the other services of
     * the fleet: this is all that enters the run's history of the registry (bytes per consumer: see
     * docs/rotation.md, "What enters history").
     * @throws non-retryable `InvalidRotationPlan` naming the credential, service or option the registry gets wrong.
     */
    async rotationPlan(input: { credentialId: string; gracePeriodMs?: number }): Promise<RotationPlanRef> {
      const r = registry.current();
      try {
        const plan = planRotation(r, input.credentialId, { gracePeriodMs: input.gracePeriodMs });
        return compactPlan(plan, r.credentials.find((c) => c.id === input.credentialId)!);
      } catch (err) {
        throw ApplicationFailure.nonRetryable((err as Error).message, 'InvalidRotationPlan');
      }
    },

    /**
     * createSecret: mints a new version at the issuer and records it PENDING
     * before any consumer is touched. Idempotent: a PENDING already made by
     * this rotation is reused, and the issuer gets the same Idempotency-Key on retries.
     */
    async createPending(input: MintInput): Promise<{ versionId: string; reused: boolean }> {
      const { credential } = input;
      const issuer = specOf({ service: input.issuer, serviceId: input.issuerId, registryVersion: input.registryVersion }, 'forward');
      const labels = await store.labels(credential.id);
      if (labels.PENDING?.createdBy === input.rotationKey) return { versionId: labels.PENDING.versionId, reused: true };
      if (labels.PENDING && labels.PENDING.versionId !== input.supersede) {
        throw ApplicationFailure.nonRetryable(
          `credential ${credential.id} already has PENDING version ${labels.PENDING.versionId} from ${labels.PENDING.createdBy}; rotate with --force to replace it (it is revoked once no consumer may hold it)`,
          'LeftoverPending',
        );
      }
      const p = provider(credential.provider, `credentials.${credential.id}.provider`);
      const current = labels.CURRENT;
      try {
        const minted = await p.mint(ctx(credential, issuer, input.timeoutMs), {
          idempotencyKey: input.idempotencyKey,
          currentVersionId: current?.versionId,
          currentSecret: current ? await store.readSecret(credential.id, current.versionId) : undefined,
        });
        await store.putPending(credential.id, minted.versionId, minted.secret, input.rotationKey, { supersede: input.supersede });
        await audit({ credentialId: credential.id, step: 'mint', serviceId: issuer.id, versionId: minted.versionId, outcome: 'ok', detail: input.supersede ? `supersedes leftover PENDING ${input.supersede}` : null });
        return { versionId: minted.versionId, reused: false };
      } catch (err) {
        await audit({ credentialId: credential.id, step: 'mint', serviceId: issuer.id, versionId: null, outcome: 'failed', detail: (err as Error).message });
        throw toFailure(err);
      }
    },

    /**
     * setSecret (and, with `step: 'restore'`, its compensation): installs
     * `versionId` in one consumer. Idempotent per `idempotencyKey`. With
     * `verifyAfter`, also tries testSecret once and reports `verified`.
     */
    async installVersion(input: ServiceStepInput & { idempotencyKey: string; step: 'install' | 'restore'; verifyAfter?: boolean }): Promise<{ verified: boolean }> {
      const { credential, versionId } = input;
      // A restore undoes the rotation: it works even when the run's registry version is gone (see specOf).
      const service = specOf(input, input.step === 'restore' ? 'undo' : 'forward', credential.id);
      const p = provider(consumerProviderName(service), `services.${service.id}.rotation.provider`);
      let secret: string;
      try {
        secret = await secretOf(credential.id, versionId);
        await p.install(ctx(credential, service, input.timeoutMs), { versionId, secret, idempotencyKey: input.idempotencyKey });
        await audit({ credentialId: credential.id, step: input.step, serviceId: service.id, versionId, outcome: 'ok', detail: null });
      } catch (err) {
        await audit({ credentialId: credential.id, step: input.step, serviceId: service.id, versionId, outcome: 'failed', detail: (err as Error).message });
        // The first attempt refused outright: no request of this step can have applied (a later
        // attempt's refusal proves nothing about an earlier attempt that timed out).
        return refusalOr(err, currentAttempt() === 1 && isDefinitiveRefusal(err));
      }
      if (!input.verifyAfter) return { verified: false };
      // One immediate testSecret attempt saves a round trip when the consumer switches at once;
      // otherwise the workflow runs verifyVersion with its propagation backoff.
      try {
        const inUse = (await p.verify(ctx(credential, service, input.timeoutMs), { versionId, secret })).versionId;
        if (inUse !== versionId) return { verified: false };
      } catch {
        return { verified: false };
      }
      await audit({ credentialId: credential.id, step: 'verify', serviceId: service.id, versionId, outcome: 'ok', detail: null });
      return { verified: true };
    },

    /**
     * testSecret: the consumer must report `versionId` as the version in use
     * (not merely accept it). A different or missing version fails retryably
     * (`VersionNotInUse`) so the retry policy's backoff covers propagation delay.
     */
    async verifyVersion(input: ServiceStepInput): Promise<void> {
      const { credential, versionId } = input;
      const service = specOf(input, 'forward');
      const p = provider(consumerProviderName(service), `services.${service.id}.rotation.provider`);
      let inUse: string | undefined;
      try {
        const secret = await secretOf(credential.id, versionId);
        inUse = (await p.verify(ctx(credential, service, input.timeoutMs), { versionId, secret })).versionId;
      } catch (err) {
        throw toFailure(err);
      }
      if (inUse !== versionId) {
        throw ApplicationFailure.retryable(`${service.id} reports ${credential.id} version ${inUse ?? '(none)'} in use, expected ${versionId}`, 'VersionNotInUse');
      }
      await audit({ credentialId: credential.id, step: 'verify', serviceId: service.id, versionId, outcome: 'ok', detail: null });
    },

    /**
     * setSecret + testSecret for a whole batch in one activity (registry
     * `fanOut: activity`): up to `maxParallel` consumers at once, each
     * installed (up to 3 tries on retryable errors, waiting as Temporal's retry
     * would: Retry-After, else full jitter; 500 ms doubling for non-HTTP errors)
     * then verified (up to `verifyAttempts`, `verifyIntervalMs` doubling to
     * 10x). After the first failure no new consumer starts. Heartbeats every
     * second with the consumers already done, so a retry after a worker crash
     * skips them; the others are redone under the same idempotency keys.
     * Runs begun before `installBatches` (and restores) use it; see there for several batches in one activity.
     * @returns one outcome per member; consumer failures are outcomes, not errors.
     */
    async installBatch(input: BatchInput & { members: BatchMember[] }): Promise<BatchOutcome[]> {
      return runBatches({ ...input, batches: [input.members] });
    },

    /**
     * Several dependency batches of one rotation in one activity (`fanOut:
     * activity`, a segment of {@link segmentBatches}), one after another, each as
     * `installBatch` works on one. Before it starts batch j >= 1 it signals the
     * run {@link BatchStarted} `{ segment, batch: j }` and waits until the
     * signal is in the run's history (the RPC's answer): the run knows which
     * batches may have been touched whatever happens to this activity later.
     * A batch starts only when every consumer before it is installed and
     * verified and the activity is not cancelled. A retried attempt skips the
     * consumers its heartbeats report done and signals again (the run ignores a
     * batch it already knows). Saves, per batch after the first, the activity's
     * completion, a workflow task and the next activity's dispatch (docs/temporal-overhead.md).
     * @returns one outcome per consumer of the batches started; none for the batches after a failure.
     * @throws ApplicationFailure `Cancelled` (retryable) when cancelled, after the installs already sent have ended.
     */
    async installBatches(input: BatchInput & { batches: BatchMember[][]; segment: number }): Promise<BatchOutcome[]> {
      const context = Context.current();
      const execution = context.info.workflowExecution;
      if (!execution) throw ApplicationFailure.nonRetryable('installBatches runs only as a workflow\'s activity (it signals its rotation)', 'NotInWorkflow');
      const run = context.client.workflow.getHandle(execution.workflowId, execution.runId);
      const { activityId, activityNamespace } = context.info;
      return runBatches({
        ...input,
        announce: async (batch) => {
          // A cancel reaches this activity only with a heartbeat's answer (the SDK sends one per 8 s here):
          // ask the server first whether one is requested, so a cancel stops the run at the next batch
          // boundary, as it did with an activity per batch, instead of touching another batch.
          const described = await context.client.workflowService.describeWorkflowExecution({ namespace: activityNamespace, execution: { workflowId: execution.workflowId, runId: execution.runId } });
          const me = described.pendingActivities?.find((a) => a.activityId === activityId);
          if (me?.state === temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED) return false;
          const started: BatchStarted = { segment: input.segment, batch };
          await run.signal(BATCH_STARTED_SIGNAL, started);
          return true;
        },
      });
    },

    /** finishSecret: PENDING -> CURRENT, CURRENT -> PREVIOUS in one transaction. Idempotent. */
    async finishRotation(input: { credentialId: string; versionId: string }): Promise<{ previousVersionId: string | null }> {
      try {
        const previousVersionId = await store.promotePending(input.credentialId, input.versionId);
        await audit({ credentialId: input.credentialId, step: 'finish', serviceId: null, versionId: input.versionId, outcome: 'ok', detail: previousVersionId ? `previous ${previousVersionId}` : null });
        return { previousVersionId };
      } catch (err) {
        throw ApplicationFailure.nonRetryable((err as Error).message, 'FinishFailed');
      }
    },

    /**
     * Revokes `versionId` at the issuer and marks it revoked; with `discard`,
     * also removes its PENDING label (rollback).
     *
     * A version whose id the issuer minted (or that was imported with the
     * issuer's id) counts as revoked when the issuer answers 404: it is already
     * gone there. A version imported under a local id (`versionIdSource:
     * 'local'`) cannot be reached by id: with a provider that revokes by id
     * (`http`) the issuer is not asked, nothing is marked, the audit entry says
     * `not_revoked`, and the result is `{ revoked: false, cause }` naming the
     * version and what to do. Providers that revoke by the secret itself
     * (postgres, redis) revoke it whatever its id.
     * @returns `{ revoked: true }`, or `{ revoked: false, cause }` (one line, no secret).
     * @throws ApplicationFailure when the issuer refuses or cannot be reached (retried as every HTTP step).
     */
    async revokeVersion(input: { credential: CredentialSpec; issuer?: ServiceSpec; issuerId?: string; registryVersion?: string; versionId: string; discard: boolean; timeoutMs: number }): Promise<RevokeResult> {
      const { credential, versionId } = input;
      // Revocation undoes (PENDING) or finishes (PREVIOUS, maybe days later): it works even when the run's registry version is gone.
      const issuer = specOf({ service: input.issuer, serviceId: input.issuerId, registryVersion: input.registryVersion }, 'undo', credential.id);
      const p = provider(credential.provider, `credentials.${credential.id}.provider`);
      const step = input.discard ? 'discard_pending' : 'revoke';
      const stored = await store.getVersion(credential.id, versionId);
      if (stored?.versionIdSource === 'local' && (p.revokesBy ?? 'versionId') === 'versionId') {
        const cause =
          `version ${versionId} of ${credential.id} was imported without the issuer's version id, so ${issuer.id} cannot be asked to revoke it and it may still be valid there: ` +
          `revoke it at ${issuer.id} by hand; next time import with \`integration-agent credentials import ${credential.id} --version-id <the issuer's id>\``;
        if (input.discard) await store.discardPending(credential.id, versionId);
        await audit({ credentialId: credential.id, step, serviceId: issuer.id, versionId, outcome: 'not_revoked', detail: cause });
        return { revoked: false, cause };
      }
      try {
        const secret = await store.readSecret(credential.id, versionId);
        const outcome = (await p.revoke(ctx(credential, issuer, input.timeoutMs), { versionId, secret })) ?? 'revoked';
        await store.markRevoked(credential.id, versionId);
        if (input.discard) await store.discardPending(credential.id, versionId);
        await audit({ credentialId: credential.id, step, serviceId: issuer.id, versionId, outcome: 'ok', detail: outcome === 'not_found' ? `${issuer.id} answered 404: already revoked` : null });
        return { revoked: true };
      } catch (err) {
        await audit({ credentialId: credential.id, step, serviceId: issuer.id, versionId, outcome: 'failed', detail: (err as Error).message });
        throw toFailure(err);
      }
    },

    /**
     * Appends a workflow-level event (started, ended with status) to the audit trail.
     * @returns how many alert webhooks this worker has (`alertWebhooks`): the saga alerts only when > 0.
     */
    async auditRotation(entry: { credentialId: string; step: string; outcome: string; versionId?: string | null; serviceId?: string | null; detail?: string | null }): Promise<{ alertWebhooks: number }> {
      await audit({ credentialId: entry.credentialId, step: entry.step, serviceId: entry.serviceId ?? null, versionId: entry.versionId ?? null, outcome: entry.outcome, detail: entry.detail ?? null });
      // The rotation's final entry: where its outcome is known outside workflow code.
      if (entry.step === 'rotation' && entry.outcome !== 'started') deps.metrics?.observeRotation(entry.credentialId, entry.outcome);
      return { alertWebhooks: deps.alertWebhooks ?? 0 };
    },
  };
}

export type RotationActivities = ReturnType<typeof createRotationActivities>;
