/**
 * The alert for a rotation that did not complete, pure: the saga hands its
 * result and per-service progress here at its end and delivers what comes
 * back through `deliverAlert` (the ALERT_WEBHOOKS receivers). No I/O, no
 * clock: the time is an argument.
 *
 * One alert per run and status, id `rotation/<credentialId>#<runId>/<status>`
 * (the receivers' idempotency key). `needs_attention` is `critical`: a
 * service may hold a version nobody else trusts, or a version meant to be
 * revoked is still valid; everything else is a `warning`.
 */
import type { Alert, AlertServiceState } from './health';
import type { RotationResult, ServiceProgress } from './rotation';

export interface RotationAlertContext {
  /** The run's id (the alert id and the receivers' idempotency key carry it). */
  runId: string;
  /** Epoch ms of the end (workflow time). */
  at: number;
  /** The credential's issuer, when the run got as far as planning. */
  issuer?: string;
  /** The run's per-service progress (with roles), as the `progress` query shows it. */
  services: readonly ServiceProgress[];
}

const SUMMARY_MAX = 300;

/**
 * The alert for rotation result `r`, or undefined when there is nothing to
 * tell: dry runs, and completed runs that revoked PREVIOUS (or had none).
 * A completed run that left PREVIOUS valid (revocation impossible, or
 * cancelled during the grace period) alerts as a `warning`.
 */
export function rotationAlert(r: RotationResult, ctx: RotationAlertContext): Alert | undefined {
  if (r.dryRun) return undefined;
  const keptPrevious = r.status === 'completed' && r.previousRevoked === false && r.previousVersionId !== undefined;
  if (r.status === 'completed' && !keptPrevious) return undefined;
  const cause = r.cause ?? (keptPrevious ? `PREVIOUS ${r.previousVersionId} was not revoked` : 'no cause recorded');
  const what =
    r.status === 'needs_attention'
      ? 'needs attention'
      : r.status === 'rolled_back'
        ? 'rolled back'
        : r.status === 'failed'
          ? 'failed'
          : `completed, but PREVIOUS ${r.previousVersionId} was not revoked`;
  const summary = `rotation of ${r.credentialId} ${what}: ${cause}`;
  const services: AlertServiceState[] = ctx.services.map((s) => ({
    id: s.id,
    role: s.role,
    step: s.step,
    status: s.status,
    ...(s.holds ? { holds: s.holds } : {}),
    ...(s.error ? { error: s.error } : {}),
  }));
  return {
    id: `${r.workflowId}#${ctx.runId}/${r.status}`,
    kind: 'TRIGGERED',
    source: 'rotation',
    serviceId: ctx.issuer ?? r.credentialId,
    severity: r.status === 'needs_attention' ? 'critical' : 'warning',
    at: ctx.at,
    summary: summary.length > SUMMARY_MAX ? `${summary.slice(0, SUMMARY_MAX - 3)}...` : summary,
    credentialId: r.credentialId,
    workflowId: r.workflowId,
    status: r.status,
    cause,
    ...(r.versionId ? { versionId: r.versionId } : {}),
    ...(r.previousVersionId ? { previousVersionId: r.previousVersionId } : {}),
    services,
    action: rotationAction(r, ctx, cause),
  };
}

/** What a human does next, by status: which services to check and the command to run. */
function rotationAction(r: RotationResult, ctx: RotationAlertContext, cause: string): string {
  const cred = r.credentialId;
  const issuer = ctx.issuer ?? 'the issuer';
  const status = `\`integration-agent credentials status ${cred}\``;
  const prev = r.previousVersionId;
  switch (r.status) {
    case 'needs_attention': {
      if (r.previousRevoked === false) {
        return `every consumer uses ${r.versionId}; PREVIOUS ${prev} is still valid at ${issuer}: fix what the cause names at ${issuer}, then revoke ${prev} there by hand (${status} shows the labels).`;
      }
      const check = ctx.services.filter((s) => s.role === 'consumer' && (s.status === 'failed' || s.holds === 'unknown' || s.holds === 'pending')).map((s) => s.id);
      if (check.length === 0) {
        return `every consumer is back on CURRENT${prev ? ` ${prev}` : ''}, but PENDING ${r.versionId} is still valid at ${issuer}: once ${issuer} works again, run \`integration-agent rotate ${cred} --force\` (it revokes the leftover PENDING first, then rotates again).`;
      }
      return (
        `check ${check.join(', ')}: ${check.length > 1 ? 'they' : 'it'} may still hold PENDING ${r.versionId}, which was kept valid so nothing breaks; ${status} shows each service's state. ` +
        `Once each holds a working version${prev ? ` (put CURRENT ${prev} back by hand if needed)` : ''}, run \`integration-agent rotate ${cred} --force\`: it revokes the leftover PENDING and rotates again.`
      );
    }
    case 'rolled_back':
      return `nothing to repair: every consumer touched is back on CURRENT${prev ? ` ${prev}` : ''} and the new version is revoked. Fix the cause, then run \`integration-agent rotate ${cred}\`.`;
    case 'failed':
      return /^refused\b/.test(cause)
        ? `nothing changed, the rotation was refused: ${cause.replace(/^refused, nothing changed: /, '')}. Fix that, then run \`integration-agent rotate ${cred}\`.`
        : `nothing changed. Fix the cause, then run \`integration-agent rotate ${cred}\`.`;
    default:
      return `every consumer uses ${r.versionId}; PREVIOUS ${prev} may still be valid at ${issuer}: revoke it there by hand (${status} shows the labels).`;
  }
}
