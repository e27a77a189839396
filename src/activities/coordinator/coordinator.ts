/**
 * The API coordinator: every external HTTP call the agent makes goes through
 * `Coordinator.request`. Per service it keeps one undici dispatcher (a
 * keep-alive connection pool per endpoint origin, shared by every activity in
 * the worker process), a strict rate limit, a smooth weighted round-robin
 * over the endpoints with passive health, a bounded GET cache with
 * coalescing of identical in-flight GETs, and it reads the credential at call
 * time. Every real call's outcome goes to the OutcomeSink and to the breaker
 * permit.
 *
 * It never retries across attempts: the one retry layer is Temporal's
 * activity retry (see `failure.ts`). Within one attempt it only fails over to
 * another endpoint after a connection-level failure.
 *
 * Order of one `request`:
 *   read credential (the cache is keyed by it) -> cache hit? -> coalesce with
 *   an identical in-flight GET? -> breaker gate -> for each endpoint try:
 *   rate limit/concurrency admission -> send (connect, headers, body
 *   timeouts; overall deadline; caller's AbortSignal) -> outcome to sink ->
 *   on connection failure fail over.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Agent, interceptors, type Dispatcher } from 'undici';
import { LRUCache } from 'lru-cache';
import type { CallOutcome } from '../../domain/outcome';
import { getService, type Registry, type ServiceSpec } from '../../domain/registry';
import { windowsFromSpec } from '../../domain/rate-limit';
import { SmoothWeightedRoundRobin } from '../../domain/load-balance';
import { classifyFailure, isIdempotentMethod, parseRetryAfter } from '../../domain/retry';
import type { CallGate, CallPermit, OutcomeSink, SecretReader } from '../ports';
import type { RegistrySource } from '../registry';
import { Admission, AdmissionDeadlineError } from './admission';
import { CoordinatorError, bodyExcerpt, transportError } from './errors';
import { Exchange } from './send';

/** One call through the coordinator. JSON-serialisable, so it can be an activity input. */
export interface CoordinatorRequest {
  /** HTTP method, upper case; default `GET`. */
  method?: string;
  /** Path and query, starting with `/`; appended to the endpoint URL's own path. */
  path: string;
  /** Extra request headers. Authorization is set from the credential; do not pass secrets here. */
  headers?: Record<string, string>;
  /** Raw body. Mutually exclusive with `json`. */
  body?: string;
  /** A value sent as a JSON body with `content-type: application/json`. */
  json?: unknown;
  /**
   * Sent as the `Idempotency-Key` header (IETF draft-ietf-httpapi-idempotency-key-header).
   * Non-idempotent methods (POST, PATCH) are retried only when it is set.
   */
  idempotencyKey?: string;
  /** Overall deadline of this call in ms (admission wait, connect, headers and body); default the coordinator's `timeoutMs`. */
  timeoutMs?: number;
  /**
   * GET caching: `false` bypasses the cache and coalescing (health probes);
   * `{ ttlMs }` caches a 200 for up to ttlMs even without `Cache-Control`;
   * default (`true`/undefined) caches only what the response allows (`max-age`).
   * `no-store`/`no-cache` responses are never cached.
   */
  cache?: boolean | { ttlMs: number };
  /**
   * Which credential authenticates the call: default the service's credential,
   * CURRENT version. `{ versionId }` picks a version (rotation verifies PENDING);
   * `false` sends no credential.
   */
  auth?: false | { credentialId?: string; versionId?: string };
  /** When false, 4xx/5xx responses resolve instead of throwing; default true. */
  throwOnStatus?: boolean;
}

/** What a call returned. */
export interface CoordinatorResponse {
  status: number;
  /** Response headers, lower-case names; repeated headers joined with `, `. */
  headers: Record<string, string>;
  /** The body decoded as UTF-8 (decompressed). */
  body: string;
  /** The parsed body, when the content type is JSON and it parses. */
  json?: unknown;
  /** Origin of the endpoint that served the call (e.g. `http://10.0.0.5:8080`). */
  endpoint: string;
  /** Wall time of the call in ms, admission wait included; 0 for a cache hit. */
  latencyMs: number;
  /** True when served from the GET cache. */
  cached?: boolean;
}

/** The coordinator's public surface. */
export interface Coordinator {
  /**
   * Calls a service of the registry.
   * @param serviceId registry service id.
   * @param req the request (see {@link CoordinatorRequest}).
   * @param signal aborts the call (activity cancellation); the call then rejects with a CoordinatorError of kind `aborted`.
   * @returns the response; for 4xx/5xx only when `throwOnStatus: false`.
   * @throws CoordinatorError for every failure, classified (kind, retryable, status, retryAfterMs, bodyExcerpt).
   */
  request(serviceId: string, req: CoordinatorRequest, signal?: AbortSignal): Promise<CoordinatorResponse>;
  /**
   * Closes every pool: waits up to `graceMs` (default 5_000) for calls in
   * flight, then destroys what is left. Later requests are refused. Idempotent.
   */
  close(graceMs?: number): Promise<void>;
}

/** Dependencies and options of {@link createCoordinator}. */
export interface CoordinatorDeps {
  registry: RegistrySource;
  /** Reads credentials at call time; required for services with a `credential`. */
  secrets?: SecretReader;
  /** Circuit-breaker gate consulted before each call. */
  gate?: CallGate;
  /** Receives every real call's outcome (passive health, breakers). */
  outcomes?: OutcomeSink;
  /** Stable id of this worker process, put on every outcome. */
  reporterId: string;
  /** TCP (+TLS) connect timeout, ms. Default 5_000. */
  connectTimeoutMs?: number;
  /** Time from sending the request to receiving all response headers, ms. Default 10_000. */
  headersTimeoutMs?: number;
  /** Longest pause between two body chunks, ms. Default 30_000. */
  bodyTimeoutMs?: number;
  /** Default overall deadline of one call, ms. Default 30_000. */
  timeoutMs?: number;
  /** Idle keep-alive sockets are closed after this, ms. Default 4_000. */
  keepAliveTimeoutMs?: number;
  /** Connections per endpoint origin when the service sets no `maxConcurrent`. Default 128. */
  connectionsPerEndpoint?: number;
  /** HTTP/1.1 requests in flight per connection; 1 (the default) turns pipelining off. */
  pipelining?: number;
  /** Largest response body accepted (after decompression), bytes. Default 10 MiB. */
  maxResponseBytes?: number;
  /** Redirects followed per call (3xx with Location); 0 disables. Default 5. */
  maxRedirections?: number;
  /** Cool-down of an endpoint after a connection-level failure or 502/503/504, ms. Default 10_000. */
  endpointCoolDownMs?: number;
  /** GET cache size bound, bytes of body. 0 disables caching. Default 16 MiB. */
  cacheMaxBytes?: number;
  /** Longest time any response stays cached, ms. Default 300_000. */
  cacheMaxTtlMs?: number;
}

const DEFAULTS = {
  connectTimeoutMs: 5_000,
  headersTimeoutMs: 10_000,
  bodyTimeoutMs: 30_000,
  timeoutMs: 30_000,
  keepAliveTimeoutMs: 4_000,
  connectionsPerEndpoint: 128,
  pipelining: 1,
  maxResponseBytes: 10 * 1024 * 1024,
  maxRedirections: 5,
  endpointCoolDownMs: 10_000,
  cacheMaxBytes: 16 * 1024 * 1024,
  cacheMaxTtlMs: 300_000,
} as const;

type Options = { -readonly [K in keyof typeof DEFAULTS]: number };

const METHOD = /^[A-Z]+$/;
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** Something a call's abort is delivered to. */
interface AbortTarget {
  abort(reason: Error): void;
}

/**
 * What one call's deadline and the caller's cancellation act on, without an
 * AbortController or closures per call: the exchange (or admission wait) in
 * progress is told directly.
 */
class CallControl implements AbortTarget {
  /** DEADLINE or CANCELLED once aborted. */
  reason: Error | undefined;
  exchange: Exchange | undefined;
  waiting: AbortController | undefined;

  abort(reason: Error): void {
    if (this.reason) return;
    this.reason = reason;
    this.exchange?.abort(reason);
    this.waiting?.abort(reason);
  }

  /** The CoordinatorError for an aborted call: a retryable timeout after the deadline, else `aborted`. */
  error(serviceId: string, method: string, path: string, timeoutMs: number, endpoint?: string): CoordinatorError {
    return this.reason === DEADLINE
      ? new CoordinatorError({ serviceId, method, path, endpoint, kind: 'timeout', retryable: true, notSent: false, code: 'DEADLINE_EXCEEDED', detail: `no answer within ${timeoutMs} ms` })
      : new CoordinatorError({ serviceId, method, path, endpoint, kind: 'aborted', retryable: false, notSent: false, code: 'ABORT_ERR', detail: 'cancelled by the caller' });
  }
}

/** Endpoint indexes tried in one attempt: bits, no allocation (a Set past index 30). */
class TriedSet {
  private bits = 0;
  private big: Set<number> | undefined;
  size = 0;
  has(i: number): boolean {
    return i < 31 ? (this.bits & (1 << i)) !== 0 : (this.big?.has(i) ?? false);
  }
  add(i: number): void {
    if (this.has(i)) return;
    this.size++;
    if (i < 31) this.bits |= 1 << i;
    else (this.big ??= new Set()).add(i);
  }
}

function fireDeadline(ctl: CallControl): void {
  ctl.abort(DEADLINE);
}

/**
 * A one-shot abort notification delivered to at most one target: what
 * `execute` listens to. A caller's AbortSignal is linked to one with
 * {@link AbortLink.fromSignal}; a shared GET has its own.
 */
class AbortLink {
  private fired = false;
  private target: AbortTarget | undefined;

  subscribe(target: AbortTarget): void {
    if (this.fired) target.abort(CANCELLED);
    else this.target = target;
  }

  unsubscribe(target: AbortTarget): void {
    if (this.target === target) this.target = undefined;
  }

  fire(): void {
    if (this.fired) return;
    this.fired = true;
    const t = this.target;
    this.target = undefined;
    t?.abort(CANCELLED);
  }

  /** A link fired by `signal`; `dispose` detaches it from the signal. */
  static fromSignal(signal: AbortSignal): { link: AbortLink; dispose: () => void } {
    const link = new AbortLink();
    if (signal.aborted) {
      link.fire();
      return { link, dispose: () => {} };
    }
    const onAbort = () => link.fire();
    signal.addEventListener('abort', onAbort, { once: true });
    return { link, dispose: () => signal.removeEventListener('abort', onAbort) };
  }
}

/** Abort reasons handed to undici; never seen by callers (they get a CoordinatorError). Made once: no stack capture per call. */
const DEADLINE = new Error('coordinator: overall deadline reached');
const CANCELLED = new Error('coordinator: cancelled by the caller');

interface Endpoint {
  /** URL origin, `http://host:port`. */
  origin: string;
  /** Path prefix from the registry URL, without trailing slash ('' for none). */
  prefix: string;
}

interface Pool {
  agent: Agent;
  /** The agent composed with the interceptors: what requests go through. */
  dispatcher: Dispatcher;
}

interface ServiceState {
  spec: ServiceSpec;
  fingerprint: string;
  pool: Pool;
  /** Requests on `pool` now. */
  sending: number;
  /** Set after an aborted request: replace the pool as soon as nothing is in flight (see `settle`). */
  recycle: boolean;
  endpoints: Endpoint[];
  lb: SmoothWeightedRoundRobin;
  admission: Admission;
}

interface CachedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  json?: unknown;
  endpoint: string;
}

interface InFlight {
  promise: Promise<CoordinatorResponse>;
  /** Callers still waiting. */
  waiters: number;
  /** Callers that ever joined. */
  joined: number;
  /** Aborts the shared call (when every waiter has given up). */
  abort: AbortLink;
}

function validateOptions(deps: CoordinatorDeps): Options {
  const out = { ...DEFAULTS } as Options;
  for (const key of Object.keys(DEFAULTS) as (keyof Options)[]) {
    const v = deps[key];
    if (v === undefined) continue;
    const min = key === 'cacheMaxBytes' || key === 'maxRedirections' || key === 'endpointCoolDownMs' ? 0 : 1;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || ((key === 'connectionsPerEndpoint' || key === 'pipelining') && !Number.isInteger(v))) {
      const what = key === 'connectionsPerEndpoint' || key === 'pipelining' ? 'an integer' : 'a finite number';
      throw new RangeError(`coordinator option ${key} must be ${what} >= ${min}, got ${String(v)}`);
    }
    out[key] = v;
  }
  if (typeof deps.reporterId !== 'string' || deps.reporterId.length === 0) {
    throw new RangeError(`coordinator option reporterId must be a non-empty string, got ${JSON.stringify(deps.reporterId)}`);
  }
  return out;
}

const STATUS_CLASSES = ['1xx', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;

function statusClass(status: number): CallOutcome['statusClass'] {
  return STATUS_CLASSES[Math.min(5, Math.max(1, Math.floor(status / 100)))];
}

/** Seconds of freshness a response allows a private cache (RFC 9111 §5.2.2): undefined when it says nothing, 0 when it forbids storing. */
function responseMaxAgeMs(headers: Record<string, string>): number | undefined {
  const cc = headers['cache-control'];
  if (cc === undefined) return undefined;
  const lc = cc.toLowerCase();
  if (/(^|[\s,])(no-store|no-cache)([\s,=]|$)/.test(lc)) return 0;
  const m = /(^|[\s,])max-age\s*=\s*"?(\d+)"?/.exec(lc);
  return m ? Number(m[2]) * 1000 : undefined;
}

/** The parsed body when the content type is JSON (`application/json`, `application/health+json`, ...) and it parses; else undefined. */
function parseJsonBody(text: string, headers: Record<string, string>): unknown {
  const type = headers['content-type'];
  if (text.length === 0 || !type || !/[/+]json(\s*;|$)/i.test(type)) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Origins a credential may be sent to: strips auth headers from requests (redirects) to any other origin. */
function guardCredentialOrigins(allowed: ReadonlySet<string>, authHeaderNames: readonly string[]): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => {
    const origin = typeof opts.origin === 'string' ? opts.origin : opts.origin?.toString();
    if (!origin || allowed.has(origin) || allowed.has(new URL(origin).origin) || !opts.headers) return dispatch(opts, handler);
    const keep = (name: unknown) => !authHeaderNames.includes(String(name).toLowerCase());
    let headers: unknown;
    if (Array.isArray(opts.headers)) {
      // Flat [name, value, name, value, ...] (what the redirect handler passes on).
      const flat = opts.headers as unknown[];
      const out: unknown[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) if (keep(flat[i])) out.push(flat[i], flat[i + 1]);
      headers = out;
    } else if (typeof (opts.headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
      headers = [...(opts.headers as Iterable<[string, string]>)].filter(([k]) => keep(k));
    } else {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(opts.headers as Record<string, unknown>)) if (keep(k)) out[k] = v;
      headers = out;
    }
    return dispatch({ ...opts, headers: headers as Dispatcher.DispatchOptions['headers'] }, handler);
  };
}

/**
 * Builds a coordinator. Dispatchers are created lazily per service on first
 * use and rebuilt when the service's endpoints or limits change in the
 * registry.
 *
 * @throws RangeError naming the option and value when an option is out of range.
 */
export function createCoordinator(deps: CoordinatorDeps): Coordinator {
  const opts = validateOptions(deps);
  const services = new Map<string, ServiceState>();
  const cache =
    opts.cacheMaxBytes > 0
      ? new LRUCache<string, CachedResponse>({
          maxSize: opts.cacheMaxBytes,
          sizeCalculation: (v) => Math.max(1, v.body.length + 64),
          ttlAutopurge: false,
        })
      : undefined;
  const inFlight = new Map<string, InFlight>();
  let closed = false;

  function authHeaderName(spec: ServiceSpec): string {
    const scheme = spec.auth?.scheme ?? 'bearer';
    return scheme === 'header' ? (spec.auth?.header ?? 'x-api-key').toLowerCase() : 'authorization';
  }

  let lastRegistry: Registry | undefined;

  /** After a registry reload, closes the pools of services it no longer lists. */
  function forgetRemovedServices(registry: Registry): void {
    lastRegistry = registry;
    const ids = new Set(registry.services.map((x) => x.id));
    for (const [id, st] of services) {
      if (!ids.has(id)) {
        services.delete(id);
        void st.pool.agent.close().catch(() => {});
      }
    }
  }

  function stateFor(serviceId: string, method: string, path: string): ServiceState {
    let spec: ServiceSpec;
    try {
      const registry = deps.registry.current();
      if (registry !== lastRegistry) forgetRemovedServices(registry);
      spec = getService(registry, serviceId);
    } catch (err) {
      throw new CoordinatorError({ serviceId, method, path, kind: 'other', retryable: false, notSent: true, detail: (err as Error).message });
    }
    const existing = services.get(serviceId);
    if (existing && existing.spec === spec) return existing;
    const fingerprint = JSON.stringify([spec.endpoints, spec.rateLimit ?? null, spec.auth ?? null]);
    if (existing && existing.fingerprint === fingerprint) {
      existing.spec = spec;
      return existing;
    }
    if (existing) void existing.pool.agent.close().catch(() => {});
    const endpoints = spec.endpoints.map((e) => {
      const u = new URL(e.url);
      return { origin: u.origin, prefix: u.pathname.replace(/\/+$/, '') };
    });
    const maxConcurrent = spec.rateLimit?.maxConcurrent;
    const state: ServiceState = {
      spec,
      fingerprint,
      pool: buildPool(spec, endpoints),
      sending: 0,
      recycle: false,
      endpoints,
      lb: new SmoothWeightedRoundRobin(
        spec.endpoints.map((e) => e.weight),
        { coolDownMs: opts.endpointCoolDownMs },
      ),
      // Same limits: keep the admission, so a registry reload cannot forget recent starts and allow a burst.
      admission:
        existing && JSON.stringify(existing.spec.rateLimit ?? null) === JSON.stringify(spec.rateLimit ?? null)
          ? existing.admission
          : new Admission(windowsFromSpec(spec.rateLimit), maxConcurrent),
    };
    services.set(serviceId, state);
    return state;
  }

  /** One keep-alive pool per service (an undici Agent: a connection pool per endpoint origin) with its interceptors. */
  function buildPool(spec: ServiceSpec, endpoints: readonly Endpoint[]): Pool {
    const agent = new Agent({
      connections: spec.rateLimit?.maxConcurrent ?? opts.connectionsPerEndpoint,
      pipelining: opts.pipelining,
      keepAliveTimeout: opts.keepAliveTimeoutMs,
      connect: { timeout: opts.connectTimeoutMs },
      headersTimeout: opts.headersTimeoutMs,
      bodyTimeout: opts.bodyTimeoutMs,
      maxResponseSize: opts.maxResponseBytes,
    });
    // compose: the last interceptor is the outermost. Redirects pass through
    // decompress, the credential guard and DNS caching on every hop.
    const dispatcher = agent.compose(
      interceptors.dns({ maxTTL: 30_000 }),
      guardCredentialOrigins(new Set(endpoints.map((e) => e.origin)), [authHeaderName(spec)]),
      interceptors.decompress({ maxSize: opts.maxResponseBytes, skipErrorResponses: false }),
      ...(opts.maxRedirections > 0 ? [interceptors.redirect({ maxRedirections: opts.maxRedirections })] : []),
    );
    return { agent, dispatcher };
  }

  /**
   * Ends one request on the service's pool. After an abort the pool is
   * replaced as soon as nothing else is in flight on it: undici (7.x, see
   * nodejs/undici#5845 and #386) can leave a socket behind after an aborted
   * HTTP/1.1 request — it re-queues the aborted request and opens a fresh
   * connection for it, or still writes a request aborted while connecting —
   * and neither socket has a timer that would ever close it. Destroying the
   * idle pool closes them; the next call opens a new one.
   */
  function settle(state: ServiceState, pool: Pool, aborted: boolean): void {
    if (pool !== state.pool) return;
    state.sending--;
    if (aborted) state.recycle = true;
    if (state.recycle && state.sending === 0 && !closed) {
      state.recycle = false;
      state.pool = buildPool(state.spec, state.endpoints);
      void pool.agent.destroy().catch(() => {});
    }
  }

  async function authFor(spec: ServiceSpec, req: CoordinatorRequest, method: string): Promise<{ name: string; value: string; secret: string } | undefined> {
    if (req.auth === false) return undefined;
    const credentialId = req.auth?.credentialId ?? spec.credential;
    if (!credentialId) return undefined;
    const fail = (detail: string) =>
      new CoordinatorError({ serviceId: spec.id, method, path: req.path, kind: 'other', retryable: false, notSent: true, detail });
    if (!deps.secrets) throw fail(`service needs credential "${credentialId}" but the coordinator has no SecretReader: pass deps.secrets`);
    const secret = await deps.secrets.readSecret(credentialId, req.auth?.versionId);
    if (secret === undefined) {
      throw fail(`credential "${credentialId}" has no ${req.auth?.versionId ? `version "${req.auth.versionId}"` : 'CURRENT version'}: rotate or import it first`);
    }
    const auth = spec.auth ?? { scheme: 'bearer' as const };
    switch (auth.scheme) {
      case 'basic': {
        const pair = auth.username !== undefined ? `${auth.username}:${secret}` : secret;
        return { name: 'authorization', value: `Basic ${Buffer.from(pair).toString('base64')}`, secret };
      }
      case 'header':
        return { name: authHeaderName(spec), value: secret, secret };
      case 'make':
        return { name: 'authorization', value: `Token ${secret}`, secret };
      default:
        return { name: 'authorization', value: `Bearer ${secret}`, secret };
    }
  }

  function validateRequest(serviceId: string, req: CoordinatorRequest): string {
    const method = req.method === undefined ? 'GET' : KNOWN_METHODS.has(req.method) ? req.method : req.method.toUpperCase();
    const bad = (what: string) =>
      new CoordinatorError({ serviceId, method, path: String(req.path), kind: 'other', retryable: false, notSent: true, detail: what });
    if (!KNOWN_METHODS.has(method) && !METHOD.test(method)) throw bad(`invalid method ${JSON.stringify(req.method)}: use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS`);
    if (typeof req.path !== 'string' || !req.path.startsWith('/')) throw bad(`invalid path ${JSON.stringify(req.path)}: must start with "/"`);
    if (req.body !== undefined && req.json !== undefined) throw bad('pass either body or json, not both');
    if (req.timeoutMs !== undefined && !(Number.isFinite(req.timeoutMs) && req.timeoutMs > 0)) {
      throw bad(`invalid timeoutMs ${String(req.timeoutMs)}: must be a finite number of ms > 0`);
    }
    if (typeof req.cache === 'object' && !(Number.isFinite(req.cache.ttlMs) && req.cache.ttlMs >= 0)) {
      throw bad(`invalid cache.ttlMs ${String(req.cache.ttlMs)}: must be a finite number of ms >= 0`);
    }
    return method;
  }

  /** Sends the call through gate, admission and endpoints; the heart of request(). */
  async function execute(
    state: ServiceState,
    req: CoordinatorRequest,
    method: string,
    auth: { name: string; value: string; secret: string } | undefined,
    outer: AbortLink | undefined,
  ): Promise<CoordinatorResponse> {
    const serviceId = state.spec.id;
    const path = req.path;
    const t0 = performance.now();
    const timeoutMs = req.timeoutMs ?? opts.timeoutMs;
    const deadline = t0 + timeoutMs;

    const ctl = new CallControl();
    const timer = setTimeout(fireDeadline, timeoutMs, ctl);
    outer?.subscribe(ctl);

    let permit: CallPermit | undefined;
    let finalOutcome: CallOutcome | undefined;
    try {
      if (deps.gate) {
        try {
          permit = await deps.gate.admit(serviceId);
        } catch (err) {
          const e = err as { retryAfterMs?: unknown; message?: unknown };
          throw new CoordinatorError({
            serviceId,
            method,
            path,
            kind: 'breaker_open',
            retryable: true,
            notSent: true,
            code: 'BREAKER_OPEN',
            retryAfterMs: typeof e?.retryAfterMs === 'number' ? e.retryAfterMs : undefined,
            detail: typeof e?.message === 'string' ? e.message : 'circuit breaker did not admit the call',
          });
        }
      }

      const headers: Record<string, string> = {};
      if (req.headers) for (const k in req.headers) headers[k.toLowerCase()] = req.headers[k]!;
      let body: string | undefined = req.body;
      if (req.json !== undefined) {
        body = JSON.stringify(req.json);
        headers['content-type'] ??= 'application/json';
      }
      if (req.idempotencyKey) headers['idempotency-key'] = req.idempotencyKey;
      // The decompress interceptor undoes these (RFC 9110 §12.5.3).
      headers['accept-encoding'] ??= 'gzip, deflate, br';
      if (auth) headers[auth.name] = auth.value;
      const safeToResend = isIdempotentMethod(method) || !!req.idempotencyKey;

      const tried = new TriedSet();
      let lastError: CoordinatorError | undefined;
      for (;;) {
        if (ctl.reason) throw ctl.error(serviceId, method, path, timeoutMs);
        const idx = state.lb.pick(performance.now(), tried);
        if (idx === undefined) throw lastError!;
        tried.add(idx);
        const ep = state.endpoints[idx]!;

        let release = state.admission.tryAcquire(deadline);
        if (release instanceof AdmissionDeadlineError) {
          throw new CoordinatorError({ serviceId, method, path, kind: 'rate_limited', retryable: true, notSent: true, code: 'RATE_LIMITED', retryAfterMs: release.retryAfterMs, detail: release.message });
        }
        if (release === undefined) {
          const waiting = new AbortController();
          ctl.waiting = waiting;
          try {
            release = await state.admission.acquire(waiting.signal, deadline);
          } catch (err) {
            if (err instanceof AdmissionDeadlineError) {
              throw new CoordinatorError({ serviceId, method, path, kind: 'rate_limited', retryable: true, notSent: true, code: 'RATE_LIMITED', retryAfterMs: err.retryAfterMs, detail: err.message });
            }
            throw ctl.error(serviceId, method, path, timeoutMs);
          } finally {
            ctl.waiting = undefined;
          }
          if (ctl.reason) {
            release();
            throw ctl.error(serviceId, method, path, timeoutMs);
          }
        }

        const startedAt = Date.now();
        const ts = performance.now();
        const pool = state.pool;
        state.sending++;
        const ex = new Exchange();
        ctl.exchange = ex;
        let outcome: CallOutcome;
        try {
          const res = await ex.start(pool.dispatcher, {
            origin: ep.origin,
            path: ep.prefix + path,
            method: method as Dispatcher.HttpMethod,
            headers,
            body,
            headersTimeout: opts.headersTimeoutMs,
            bodyTimeout: opts.bodyTimeoutMs,
          });
          const latencyMs = performance.now() - ts;
          const status = res.status;
          const failure = status >= 400 ? classifyFailure({ status }) : undefined;
          outcome = {
            serviceId,
            endpoint: ep.origin,
            // The service answered as a healthy one would: 1xx-4xx except 408/429 (the caller's business errors are not its fault).
            ok: status < 500 && status !== 408 && status !== 429,
            status,
            statusClass: statusClass(status),
            failureKind: failure?.kind,
            latencyMs,
            startedAt,
            reporter: deps.reporterId,
            generation: permit?.generation,
          };
          deps.outcomes?.record(outcome);
          finalOutcome = outcome;
          if (status === 502 || status === 503 || status === 504) state.lb.reportFailure(idx, performance.now());
          else state.lb.reportSuccess(idx);
          if (failure && req.throwOnStatus !== false) {
            throw new CoordinatorError({
              serviceId,
              method,
              path,
              endpoint: ep.origin,
              kind: failure.kind,
              retryable: failure.retryable,
              notSent: false,
              status,
              retryAfterMs: parseRetryAfter(res.headers['retry-after'], Date.now()),
              bodyExcerpt: bodyExcerpt(res.body, auth?.secret),
            });
          }
          return { status, headers: res.headers, body: res.body, json: parseJsonBody(res.body, res.headers), endpoint: ep.origin, latencyMs: performance.now() - t0 };
        } catch (err) {
          if (err instanceof CoordinatorError) throw err;
          const e = ctl.reason ? ctl.error(serviceId, method, path, timeoutMs, ep.origin) : transportError(err, { serviceId, method, path, endpoint: ep.origin });
          outcome = {
            serviceId,
            endpoint: ep.origin,
            ok: false,
            failureKind: e.kind,
            latencyMs: performance.now() - ts,
            startedAt,
            reporter: deps.reporterId,
            generation: permit?.generation,
          };
          // A caller's cancellation says nothing about the service: not an outcome.
          if (e.kind !== 'aborted') deps.outcomes?.record(outcome);
          finalOutcome = outcome;
          const connectionLevel = e.kind === 'connection_refused' || e.kind === 'connection_reset' || e.kind === 'dns' || e.code === 'UND_ERR_CONNECT_TIMEOUT';
          if (connectionLevel) state.lb.reportFailure(idx, performance.now());
          if (connectionLevel && (e.notSent || safeToResend) && tried.size < state.endpoints.length && !ctl.reason) {
            lastError = e;
            continue;
          }
          throw e;
        } finally {
          ctl.exchange = undefined;
          settle(state, pool, ctl.reason !== undefined);
          release();
        }
      }
    } finally {
      clearTimeout(timer);
      outer?.unsubscribe(ctl);
      if (permit) {
        // No call was made (the local rate limit could not admit in time, or
        // the caller gave up first): the permit still gets exactly one report,
        // as `aborted`, which breakers ignore (src/domain/breaker.ts classifyOutcome).
        permit.report(
          finalOutcome ?? {
            serviceId,
            endpoint: state.endpoints[0]!.origin,
            ok: false,
            failureKind: 'aborted',
            latencyMs: performance.now() - t0,
            startedAt: Date.now(),
            reporter: deps.reporterId,
            generation: permit.generation,
          },
        );
      }
    }
  }

  /** sha256 of the secret (base64url, 22 chars), memoised for the last few secrets: one hash per rotation, not per call. */
  const digests = new Map<string, string>();
  function secretDigest(secret: string): string {
    let d = digests.get(secret);
    if (d === undefined) {
      if (digests.size >= 64) digests.clear();
      d = createHash('sha256').update(secret).digest('base64url').slice(0, 22);
      digests.set(secret, d);
    }
    return d;
  }

  function cacheKey(serviceId: string, req: CoordinatorRequest, auth: { secret: string } | undefined): string {
    let key = `${serviceId}\n${req.path}`;
    if (req.headers) {
      const names = Object.keys(req.headers).sort();
      for (const n of names) key += `\n${n.toLowerCase()}:${req.headers[n]}`;
    }
    // Responses are private to the identity that fetched them; key on a hash, never the secret itself.
    if (auth) key += `\n#${secretDigest(auth.secret)}`;
    return key;
  }

  function ttlFor(req: CoordinatorRequest, res: CoordinatorResponse): number {
    if (res.status !== 200 && res.status !== 203) return 0;
    const allowed = responseMaxAgeMs(res.headers);
    if (allowed === 0) return 0;
    const asked = typeof req.cache === 'object' ? req.cache.ttlMs : undefined;
    const ttl = asked !== undefined ? Math.min(asked, allowed ?? Infinity) : (allowed ?? 0);
    return Math.min(ttl, opts.cacheMaxTtlMs);
  }

  async function request(serviceId: string, req: CoordinatorRequest, signal?: AbortSignal): Promise<CoordinatorResponse> {
    if (closed) throw new Error('coordinator is closed: create a new one');
    const method = validateRequest(serviceId, req);
    const state = stateFor(serviceId, method, req.path);
    // Skip the await when nothing authenticates the call (no credential, or auth: false).
    const auth = req.auth === false || (!req.auth?.credentialId && !state.spec.credential) ? undefined : await authFor(state.spec, req, method);
    const cacheable = cache !== undefined && method === 'GET' && req.cache !== false && req.body === undefined && req.json === undefined;
    if (!cacheable) {
      if (!signal) return execute(state, req, method, auth, undefined);
      const { link, dispose } = AbortLink.fromSignal(signal);
      try {
        return await execute(state, req, method, auth, link);
      } finally {
        dispose();
      }
    }

    const key = cacheKey(serviceId, req, auth);
    const hit = cache.get(key);
    if (hit) return { ...hit, headers: { ...hit.headers }, json: parseJsonBody(hit.body, hit.headers), latencyMs: 0, cached: true };
    if (signal?.aborted) throw new CoordinatorError({ serviceId, method, path: req.path, kind: 'aborted', retryable: false, notSent: true, code: 'ABORT_ERR', detail: 'cancelled by the caller' });

    let entry = inFlight.get(key);
    if (!entry) {
      const link = new AbortLink();
      entry = { promise: undefined as unknown as Promise<CoordinatorResponse>, waiters: 0, joined: 0, abort: link };
      inFlight.set(key, entry);
      entry.promise = runShared(key, state, req, method, auth, link);
    }
    entry.waiters++;
    entry.joined++;
    if (!signal) return awaitShared(entry);
    return awaitSharedOrAbort(entry, signal, serviceId, method, req.path);
  }

  /** The one real call behind identical in-flight GETs: stores a cacheable answer, then leaves the in-flight map. */
  async function runShared(
    key: string,
    state: ServiceState,
    req: CoordinatorRequest,
    method: string,
    auth: { name: string; value: string; secret: string } | undefined,
    link: AbortLink,
  ): Promise<CoordinatorResponse> {
    try {
      const res = await execute(state, req, method, auth, link);
      const ttl = ttlFor(req, res);
      if (ttl > 0) cache!.set(key, { status: res.status, headers: res.headers, body: res.body, endpoint: res.endpoint }, { ttl });
      return res;
    } finally {
      inFlight.delete(key);
    }
  }

  /** Each caller of a shared call gets its own copies, so one caller's mutation cannot reach another. */
  function own(entry: InFlight, res: CoordinatorResponse): CoordinatorResponse {
    return entry.joined === 1 ? res : { ...res, headers: { ...res.headers }, json: parseJsonBody(res.body, res.headers) };
  }

  async function awaitShared(entry: InFlight): Promise<CoordinatorResponse> {
    try {
      return own(entry, await entry.promise);
    } finally {
      entry.waiters--;
    }
  }

  /** Waits for a shared in-flight GET or the caller's signal; the shared call is aborted only when every waiter has given up. */
  function awaitSharedOrAbort(entry: InFlight, signal: AbortSignal, serviceId: string, method: string, path: string): Promise<CoordinatorResponse> {
    return new Promise<CoordinatorResponse>((resolve, reject) => {
      let done = false;
      const onAbort = () => {
        if (done) return;
        done = true;
        if (--entry.waiters === 0) entry.abort.fire();
        reject(new CoordinatorError({ serviceId, method, path, kind: 'aborted', retryable: false, notSent: false, code: 'ABORT_ERR', detail: 'cancelled by the caller' }));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      entry.promise.then(
        (res) => {
          if (done) return;
          done = true;
          entry.waiters--;
          signal.removeEventListener('abort', onAbort);
          resolve(own(entry, res));
        },
        (err) => {
          if (done) return;
          done = true;
          entry.waiters--;
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  }

  return {
    request,
    async close(graceMs = 5_000) {
      if (closed) return;
      closed = true;
      const all = [...services.values()];
      services.clear();
      cache?.clear();
      await Promise.all(
        all.map(async (s) => {
          let timer: NodeJS.Timeout | undefined;
          const grace = new Promise<void>((r) => (timer = setTimeout(r, graceMs)));
          await Promise.race([s.pool.agent.close().catch(() => {}), grace]);
          clearTimeout(timer);
          await s.pool.agent.destroy().catch(() => {});
        }),
      );
    },
  };
}
