/**
 * Probe failures as values: a failure kind and one line for humans. Every
 * message that may have passed near a secret goes through {@link redact}.
 */
import type { ProbeFailureKind } from '../../domain/health';

/** A probe's own failure with its kind already decided. */
export class ProbeError extends Error {
  constructor(
    readonly kind: ProbeFailureKind,
    message: string,
  ) {
    super(message);
  }
}

/** One failure, as a probe observation carries it. */
export interface ProbeFailure {
  kind: ProbeFailureKind;
  message: string;
}

const TLS_CODES = /^(ERR_TLS|ERR_SSL|CERT_|DEPTH_ZERO|UNABLE_TO_|SELF_SIGNED|EPROTO|HOSTNAME_MISMATCH)/;

/** Maps a Node/undici/pg/ioredis error to a failure kind and a one-line message (no secrets: URLs carry none). */
export function classifyProbeError(err: unknown, timeoutMs: number): ProbeFailure {
  if (err instanceof ProbeError) return { kind: err.kind, message: err.message };
  const e = err as { code?: string; name?: string; message?: string; cause?: unknown };
  const code = e?.code ?? (e?.cause as { code?: string } | undefined)?.code ?? '';
  const msg = e?.message ?? String(err);
  if (code === 'ECONNREFUSED') return { kind: 'connection_refused', message: `connection refused (${msg})` };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME' || code === 'EAI_FAIL') return { kind: 'dns', message: `name did not resolve (${code})` };
  if (TLS_CODES.test(code) || /certificate|SSL|TLS/i.test(msg)) return { kind: 'tls', message: `TLS: ${code || msg}` };
  if (
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'ETIMEDOUT' ||
    e?.name === 'TimeoutError'
  ) {
    return { kind: 'timeout', message: `no answer within ${timeoutMs}ms` };
  }
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return { kind: 'other', message: `connection reset (${code})` };
  if (code === 'EADDRNOTAVAIL' || code === 'ENETUNREACH' || code === 'EHOSTUNREACH') return { kind: 'connection_refused', message: `no route (${code})` };
  return { kind: 'other', message: msg.split('\n')[0]! };
}

/**
 * `message` with every occurrence of each secret (and its base64 form, as
 * HTTP Basic sends it) replaced by `[redacted]`. Probe errors come from
 * libraries we do not control; this is the last guard before a result.
 */
export function redact(message: string, secrets: readonly string[]): string {
  let out = message;
  for (const s of secrets) {
    if (!s) continue;
    for (const form of [s, Buffer.from(s).toString('base64'), encodeURIComponent(s)]) if (form.length >= 4) out = out.split(form).join('[redacted]');
  }
  return out;
}

/** Runs `fn` with a deadline: rejects with a `timeout` ProbeError after `ms`, calling `onTimeout` to free resources. */
export async function withDeadline<T>(ms: number, what: string, fn: () => Promise<T>, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      fn(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          onTimeout?.();
          reject(new ProbeError('timeout', `${what} within ${ms}ms`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
