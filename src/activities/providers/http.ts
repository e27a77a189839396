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
import { CoordinatorError } from '../coordinator';
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

const credPath = (ctx: ProviderContext) => `/credentials/${encodeURIComponent(ctx.credential.id)}`;

/**
 * One contract call to `ctx.service`: through the coordinator when the
 * context has one and the service has no separate `rotation.baseUrl`, else
 * directly with {@link httpExchange}. Returns every status; throws only for
 * transport failures (ProviderError, retryable as classified).
 */
async function exchange(
  ctx: ProviderContext,
  what: string,
  path: string,
  opts: { method: 'GET' | 'POST' | 'PUT' | 'DELETE'; json?: unknown; idempotencyKey?: string },
): Promise<HttpResponse & { where: string }> {
  if (ctx.coordinator && ctx.service.rotation?.baseUrl === undefined) {
    try {
      const res = await ctx.coordinator.request(
        ctx.service.id,
        { method: opts.method, path, json: opts.json, idempotencyKey: opts.idempotencyKey, timeoutMs: ctx.timeoutMs, auth: false, throwOnStatus: false, cache: false },
        ctx.signal,
      );
      return { status: res.status, body: res.json, where: `${opts.method} ${path} on ${ctx.service.id} (${res.endpoint}, via coordinator)` };
    } catch (err) {
      if (err instanceof CoordinatorError) throw new ProviderError(`${what}: ${err.message}`, err.retryable, err.status);
      throw err;
    }
  }
  const url = `${rotationBaseUrl(ctx.service)}${path}`;
  const res = await httpExchange(what, url, { ...opts, timeoutMs: ctx.timeoutMs, signal: ctx.signal });
  return { ...res, where: `${opts.method} ${url}` };
}

function statusError(what: string, where: string, status: number, body: unknown): ProviderError {
  const reason = body && typeof body === 'object' && typeof (body as { error?: unknown }).error === 'string' ? `: ${(body as { error: string }).error.slice(0, 200)}` : '';
  return new ProviderError(`${what}: ${where} answered ${status}${reason}`, retryableStatus(status), status);
}

/** The HTTP rotation contract provider. */
export const httpProvider: RotationProvider = {
  name: 'http',

  async mint(ctx, req) {
    const what = `mint ${ctx.credential.id} at ${ctx.service.id}`;
    const res = await exchange(ctx, what, `${credPath(ctx)}/versions`, { method: 'POST', json: {}, idempotencyKey: req.idempotencyKey });
    if (res.status !== 201 && res.status !== 200) throw statusError(what, res.where, res.status, res.body);
    const b = res.body as { versionId?: unknown; secret?: unknown } | undefined;
    if (typeof b?.versionId !== 'string' || b.versionId === '' || typeof b.secret !== 'string' || b.secret === '') {
      throw new ProviderError(`${what}: ${res.where} answered ${res.status} without string "versionId" and "secret" fields (see docs/rotation.md)`, false);
    }
    return { versionId: b.versionId, secret: b.secret };
  },

  async install(ctx, req) {
    const what = `install ${ctx.credential.id} ${req.versionId} in ${ctx.service.id}`;
    const res = await exchange(ctx, what, credPath(ctx), { method: 'PUT', json: { versionId: req.versionId, secret: req.secret }, idempotencyKey: req.idempotencyKey });
    if (res.status < 200 || res.status > 299) throw statusError(what, res.where, res.status, res.body);
  },

  async verify(ctx) {
    const what = `verify ${ctx.credential.id} in ${ctx.service.id}`;
    const res = await exchange(ctx, what, credPath(ctx), { method: 'GET' });
    if (res.status === 404) return { versionId: undefined };
    if (res.status !== 200) throw statusError(what, res.where, res.status, res.body);
    const v = (res.body as { versionId?: unknown } | undefined)?.versionId;
    return { versionId: typeof v === 'string' ? v : undefined };
  },

  async revoke(ctx, req) {
    const what = `revoke ${ctx.credential.id} ${req.versionId} at ${ctx.service.id}`;
    const res = await exchange(ctx, what, `${credPath(ctx)}/versions/${encodeURIComponent(req.versionId)}`, { method: 'DELETE' });
    if (res.status === 404 || (res.status >= 200 && res.status <= 299)) return;
    throw statusError(what, res.where, res.status, res.body);
  },
};
