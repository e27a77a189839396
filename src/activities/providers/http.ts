/**
 * The `http` provider: the HTTP rotation contract (docs/rotation.md).
 *
 * - issuer   `POST {base}/credentials/{credentialId}/versions` with `Idempotency-Key` -> 201 `{ "versionId", "secret" }`
 *            `DELETE {base}/credentials/{credentialId}/versions/{versionId}` -> 204 (404 counts as done)
 * - consumer `PUT {base}/credentials/{credentialId}` `{ "versionId", "secret" }` with `Idempotency-Key` -> 2xx
 *            `GET {base}/credentials/{credentialId}` -> 200 `{ "versionId" }` of the version in use (404: none)
 *
 * `{base}` is `services[].rotation.baseUrl`, else the service's first endpoint.
 */
import { request } from 'undici';
import { ProviderError, rotationBaseUrl, type ProviderContext, type RotationProvider } from './types';

/** Statuses worth retrying (DESIGN.md): 408, 429, 502, 503, 504 and any other 5xx except 501. */
export function retryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501);
}

export interface HttpResponse {
  status: number;
  /** Parsed JSON body, or undefined when empty or not JSON. */
  body: unknown;
}

/**
 * One HTTP exchange for the rotation contract, with a deadline.
 * Kept in one function so the transport can be swapped for the coordinator.
 *
 * @throws ProviderError (retryable) on timeout, connection failure or reset.
 */
export async function httpExchange(
  what: string,
  url: string,
  opts: { method: 'GET' | 'POST' | 'PUT' | 'DELETE'; json?: unknown; idempotencyKey?: string; timeoutMs: number; signal?: AbortSignal },
): Promise<HttpResponse> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.json !== undefined) headers['content-type'] = 'application/json';
  if (opts.idempotencyKey) headers['idempotency-key'] = opts.idempotencyKey;
  const signals = [AbortSignal.timeout(opts.timeoutMs), ...(opts.signal ? [opts.signal] : [])];
  try {
    const res = await request(url, {
      method: opts.method,
      headers,
      body: opts.json === undefined ? undefined : JSON.stringify(opts.json),
      signal: AbortSignal.any(signals),
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
    });
    const text = await res.body.text();
    let body: unknown;
    if (text.length > 0) {
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
    }
    return { status: res.statusCode, body };
  } catch (err) {
    const e = err as { name?: string; code?: string; message?: string };
    const kind = e.name === 'TimeoutError' || e.name === 'AbortError' || /timeout/i.test(e.code ?? '') ? `timed out after ${opts.timeoutMs} ms` : `failed (${e.code ?? e.name ?? 'error'})`;
    throw new ProviderError(`${what}: ${opts.method} ${url} ${kind}`, true);
  }
}

function statusError(what: string, method: string, url: string, status: number, body: unknown): ProviderError {
  const reason = body && typeof body === 'object' && typeof (body as { error?: unknown }).error === 'string' ? `: ${(body as { error: string }).error.slice(0, 200)}` : '';
  return new ProviderError(`${what}: ${method} ${url} answered ${status}${reason}`, retryableStatus(status), status);
}

const credPath = (ctx: ProviderContext) => `${rotationBaseUrl(ctx.service)}/credentials/${encodeURIComponent(ctx.credential.id)}`;

/** The HTTP rotation contract provider. */
export const httpProvider: RotationProvider = {
  name: 'http',

  async mint(ctx, req) {
    const url = `${credPath(ctx)}/versions`;
    const what = `mint ${ctx.credential.id} at ${ctx.service.id}`;
    const res = await httpExchange(what, url, { method: 'POST', json: {}, idempotencyKey: req.idempotencyKey, timeoutMs: ctx.timeoutMs, signal: ctx.signal });
    if (res.status !== 201 && res.status !== 200) throw statusError(what, 'POST', url, res.status, res.body);
    const b = res.body as { versionId?: unknown; secret?: unknown } | undefined;
    if (typeof b?.versionId !== 'string' || b.versionId === '' || typeof b.secret !== 'string' || b.secret === '') {
      throw new ProviderError(`${what}: POST ${url} answered ${res.status} without string "versionId" and "secret" fields (see docs/rotation.md)`, false);
    }
    return { versionId: b.versionId, secret: b.secret };
  },

  async install(ctx, req) {
    const url = credPath(ctx);
    const what = `install ${ctx.credential.id} ${req.versionId} in ${ctx.service.id}`;
    const res = await httpExchange(what, url, {
      method: 'PUT',
      json: { versionId: req.versionId, secret: req.secret },
      idempotencyKey: req.idempotencyKey,
      timeoutMs: ctx.timeoutMs,
      signal: ctx.signal,
    });
    if (res.status < 200 || res.status > 299) throw statusError(what, 'PUT', url, res.status, res.body);
  },

  async verify(ctx) {
    const url = credPath(ctx);
    const what = `verify ${ctx.credential.id} in ${ctx.service.id}`;
    const res = await httpExchange(what, url, { method: 'GET', timeoutMs: ctx.timeoutMs, signal: ctx.signal });
    if (res.status === 404) return { versionId: undefined };
    if (res.status !== 200) throw statusError(what, 'GET', url, res.status, res.body);
    const v = (res.body as { versionId?: unknown } | undefined)?.versionId;
    return { versionId: typeof v === 'string' ? v : undefined };
  },

  async revoke(ctx, req) {
    const url = `${credPath(ctx)}/versions/${encodeURIComponent(req.versionId)}`;
    const what = `revoke ${ctx.credential.id} ${req.versionId} at ${ctx.service.id}`;
    const res = await httpExchange(what, url, { method: 'DELETE', timeoutMs: ctx.timeoutMs, signal: ctx.signal });
    if (res.status === 404 || (res.status >= 200 && res.status <= 299)) return;
    throw statusError(what, 'DELETE', url, res.status, res.body);
  },
};
