/**
 * The `http` provider: the HTTP rotation contract (docs/rotation.md).
 *
 * - issuer   `POST {base}/credentials/{credentialId}/versions` with `Idempotency-Key` -> 201 `{ "versionId", "secret" }`
 *            `DELETE {base}/credentials/{credentialId}/versions/{versionId}` -> 204 (404: `not_found`, done for a version the issuer minted)
 * - consumer `PUT {base}/credentials/{credentialId}` `{ "versionId", "secret" }` with `Idempotency-Key` -> 2xx
 *            `GET {base}/credentials/{credentialId}` -> 200 `{ "versionId" }` of the version in use (404: none)
 *
 * `{base}` is `services[].rotation.baseUrl`, else the service's first endpoint.
 */
import { request } from 'undici';
import { CoordinatorError } from '../coordinator';
import { httpProviderError, httpStatusError, httpTransportError } from './http-failure';
import { ProviderError, rotationBaseUrl, type ProviderContext, type RotationProvider } from './types';

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface HttpResponse {
  status: number;
  /** Response headers, lower-case names. */
  headers: Record<string, string | string[] | undefined>;
  /** The body as received (for error excerpts). */
  text: string;
  /** Parsed JSON body, or undefined when empty or not JSON. */
  body: unknown;
}

/**
 * One HTTP exchange for the rotation contract, with a deadline.
 * Kept in one function so the transport can be swapped for the coordinator.
 *
 * @throws ProviderError on timeout, connection failure or reset, classified
 *   as every failed call is (`httpTransportError`).
 */
export async function httpExchange(
  what: string,
  url: string,
  opts: { method: Method; json?: unknown; idempotencyKey?: string; timeoutMs: number; signal?: AbortSignal; serviceId?: string },
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
    return { status: res.statusCode, headers: res.headers, text, body };
  } catch (err) {
    const e = err as { name?: string; code?: string };
    // Our own deadline fired (not the activity's cancellation): a timeout, retried as one.
    const timedOut = !opts.signal?.aborted && (e.name === 'TimeoutError' || e.name === 'AbortError' || /timeout/i.test(e.code ?? ''));
    const target = new URL(url);
    const cause = httpTransportError(err, {
      serviceId: opts.serviceId ?? target.host,
      method: opts.method,
      path: target.pathname,
      endpoint: target.origin,
      ...(timedOut ? { code: 'ETIMEDOUT' } : {}),
    });
    const kind = timedOut ? `timed out after ${opts.timeoutMs} ms` : `failed (${e.code ?? e.name ?? 'error'})`;
    throw httpProviderError(`${what}: ${opts.method} ${url} ${kind}`, cause, opts.idempotencyKey);
  }
}

const credPath = (ctx: ProviderContext) => `/credentials/${encodeURIComponent(ctx.credential.id)}`;

interface Exchanged extends HttpResponse {
  where: string;
  method: Method;
  path: string;
  endpoint?: string;
  idempotencyKey?: string;
}

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
  opts: { method: Method; json?: unknown; idempotencyKey?: string },
): Promise<Exchanged> {
  if (ctx.coordinator && ctx.service.rotation?.baseUrl === undefined) {
    try {
      const res = await ctx.coordinator.request(
        ctx.service.id,
        { method: opts.method, path, json: opts.json, idempotencyKey: opts.idempotencyKey, timeoutMs: ctx.timeoutMs, auth: false, throwOnStatus: false, cache: false },
        ctx.signal,
      );
      return {
        status: res.status,
        headers: res.headers,
        text: res.body,
        body: res.json,
        where: `${opts.method} ${path} on ${ctx.service.id} (${res.endpoint}, via coordinator)`,
        method: opts.method,
        path,
        endpoint: res.endpoint,
        idempotencyKey: opts.idempotencyKey,
      };
    } catch (err) {
      if (err instanceof CoordinatorError) throw httpProviderError(`${what}: ${err.message}`, err, opts.idempotencyKey);
      throw err;
    }
  }
  const url = `${rotationBaseUrl(ctx.service)}${path}`;
  const res = await httpExchange(what, url, { ...opts, timeoutMs: ctx.timeoutMs, signal: ctx.signal, serviceId: ctx.service.id });
  return { ...res, where: `${opts.method} ${url}`, method: opts.method, path: new URL(url).pathname, endpoint: new URL(url).origin, idempotencyKey: opts.idempotencyKey };
}

/** The failure of an answer with an unexpected status: classified, with its Retry-After, as every failed call is. */
function statusError(ctx: ProviderContext, what: string, res: Exchanged, secret?: string): ProviderError {
  let reason = res.body && typeof res.body === 'object' && typeof (res.body as { error?: unknown }).error === 'string' ? `: ${(res.body as { error: string }).error.slice(0, 200)}` : '';
  if (secret) reason = reason.split(secret).join('[REDACTED]');
  const cause = httpStatusError({ serviceId: ctx.service.id, method: res.method, path: res.path, endpoint: res.endpoint, status: res.status, headers: res.headers, body: res.text, secret });
  return httpProviderError(`${what}: ${res.where} answered ${res.status}${reason}`, cause, res.idempotencyKey);
}

/** The HTTP rotation contract provider. */
export const httpProvider: RotationProvider = {
  name: 'http',

  async mint(ctx, req) {
    const what = `mint ${ctx.credential.id} at ${ctx.service.id}`;
    const res = await exchange(ctx, what, `${credPath(ctx)}/versions`, { method: 'POST', json: {}, idempotencyKey: req.idempotencyKey });
    if (res.status !== 201 && res.status !== 200) throw statusError(ctx, what, res);
    const b = res.body as { versionId?: unknown; secret?: unknown } | undefined;
    if (typeof b?.versionId !== 'string' || b.versionId === '' || typeof b.secret !== 'string' || b.secret === '') {
      throw new ProviderError(`${what}: ${res.where} answered ${res.status} without string "versionId" and "secret" fields (see docs/rotation.md)`, false);
    }
    return { versionId: b.versionId, secret: b.secret };
  },

  async install(ctx, req) {
    const what = `install ${ctx.credential.id} ${req.versionId} in ${ctx.service.id}`;
    const res = await exchange(ctx, what, credPath(ctx), { method: 'PUT', json: { versionId: req.versionId, secret: req.secret }, idempotencyKey: req.idempotencyKey });
    if (res.status < 200 || res.status > 299) throw statusError(ctx, what, res, req.secret);
  },

  async verify(ctx) {
    const what = `verify ${ctx.credential.id} in ${ctx.service.id}`;
    const res = await exchange(ctx, what, credPath(ctx), { method: 'GET' });
    if (res.status === 404) return { versionId: undefined };
    if (res.status !== 200) throw statusError(ctx, what, res);
    const v = (res.body as { versionId?: unknown } | undefined)?.versionId;
    return { versionId: typeof v === 'string' ? v : undefined };
  },

  async revoke(ctx, req) {
    const what = `revoke ${ctx.credential.id} ${req.versionId} at ${ctx.service.id}`;
    const res = await exchange(ctx, what, `${credPath(ctx)}/versions/${encodeURIComponent(req.versionId)}`, { method: 'DELETE' });
    if (res.status === 404) return 'not_found';
    if (res.status >= 200 && res.status <= 299) return 'revoked';
    throw statusError(ctx, what, res);
  },
};
