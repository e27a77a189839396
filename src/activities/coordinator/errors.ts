/**
 * The one error type the coordinator throws. It carries the classification
 * from `src/domain/retry.ts` so callers (and `toApplicationFailure`) never
 * classify twice. Messages and fields never hold secret material: body
 * excerpts are short and have the credential used for the call redacted.
 */
import type { FailureKind } from '../../domain/outcome';
import { classifyFailure } from '../../domain/retry';

/** Fields of a {@link CoordinatorError}. */
export interface CoordinatorErrorInit {
  serviceId: string;
  method: string;
  path: string;
  /** Origin of the endpoint that failed, when one was tried. */
  endpoint?: string;
  kind: FailureKind;
  retryable: boolean;
  /** True when the request certainly never reached the service. */
  notSent: boolean;
  /** HTTP status, when a response arrived. */
  status?: number;
  /** Response headers that matter for retrying (lower-case names). */
  retryAfterMs?: number;
  /** At most {@link BODY_EXCERPT_CHARS} characters of the response body, secret redacted. */
  bodyExcerpt?: string;
  /** Underlying error code (`ECONNRESET`, `UND_ERR_HEADERS_TIMEOUT`, ...). */
  code?: string;
  /** The underlying error's message (transport errors only). */
  detail?: string;
}

/** How much of a failed response's body an error keeps. */
export const BODY_EXCERPT_CHARS = 200;

export class CoordinatorError extends Error implements CoordinatorErrorInit {
  readonly serviceId: string;
  readonly method: string;
  readonly path: string;
  readonly endpoint?: string;
  readonly kind: FailureKind;
  readonly retryable: boolean;
  readonly notSent: boolean;
  readonly status?: number;
  readonly retryAfterMs?: number;
  readonly bodyExcerpt?: string;
  readonly code?: string;
  readonly detail?: string;

  constructor(init: CoordinatorErrorInit) {
    super(describe(init));
    this.name = 'CoordinatorError';
    this.serviceId = init.serviceId;
    this.method = init.method;
    this.path = init.path;
    this.endpoint = init.endpoint;
    this.kind = init.kind;
    this.retryable = init.retryable;
    this.notSent = init.notSent;
    this.status = init.status;
    this.retryAfterMs = init.retryAfterMs;
    this.bodyExcerpt = init.bodyExcerpt;
    this.code = init.code;
    this.detail = init.detail;
  }

  /** A JSON-safe summary (for ApplicationFailure details and logs); never holds secrets. */
  toJSON(): Record<string, unknown> {
    return {
      serviceId: this.serviceId,
      method: this.method,
      path: this.path,
      endpoint: this.endpoint,
      kind: this.kind,
      retryable: this.retryable,
      status: this.status,
      retryAfterMs: this.retryAfterMs,
      bodyExcerpt: this.bodyExcerpt,
      code: this.code,
    };
  }
}

function describe(e: CoordinatorErrorInit): string {
  const where = `${e.method} ${e.path} on service "${e.serviceId}"${e.endpoint ? ` (${e.endpoint})` : ''}`;
  if (e.status !== undefined) {
    return `${where}: HTTP ${e.status}${e.bodyExcerpt ? `: ${e.bodyExcerpt}` : ''}`;
  }
  if (e.kind === 'other' && e.detail) return `${where}: ${e.detail}`;
  return `${where}: ${e.kind}${e.code ? ` (${e.code})` : ''}${e.detail ? `: ${e.detail}` : ''}`;
}

/** Builds a CoordinatorError from a transport-level error, classified by its code/name. */
export function transportError(
  err: unknown,
  ctx: { serviceId: string; method: string; path: string; endpoint?: string; code?: string; name?: string },
): CoordinatorError {
  const e = err as { code?: unknown; name?: unknown; message?: unknown; cause?: { code?: unknown } } | undefined;
  const code = ctx.code ?? (typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : undefined);
  const name = ctx.name ?? (typeof e?.name === 'string' ? e.name : undefined);
  const c = classifyFailure({ code, name });
  return new CoordinatorError({
    serviceId: ctx.serviceId,
    method: ctx.method,
    path: ctx.path,
    endpoint: ctx.endpoint,
    kind: c.kind,
    retryable: c.retryable,
    notSent: c.notSent,
    code,
    detail: typeof e?.message === 'string' ? e.message.slice(0, 200) : undefined,
  });
}

/** Cuts a body to an excerpt, with every occurrence of `secret` replaced by `[REDACTED]`. */
export function bodyExcerpt(body: string, secret: string | undefined): string {
  let text = body.length > BODY_EXCERPT_CHARS * 4 ? body.slice(0, BODY_EXCERPT_CHARS * 4) : body;
  if (secret && secret.length >= 4) text = text.split(secret).join('[REDACTED]');
  text = text.replace(/\s+/g, ' ').trim();
  return text.length > BODY_EXCERPT_CHARS ? `${text.slice(0, BODY_EXCERPT_CHARS)}…` : text;
}
