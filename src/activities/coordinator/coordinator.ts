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
import type { Socket } from 'node:net';
import { Agent, buildConnector, interceptors } from 'undici';
import { LRUCache } from 'lru-cache';
import { getService, type Registry, type ServiceSpec } from '../../domain/registry';
import { windowsFromSpec } from '../../domain/rate-limit';
import { SmoothWeightedRoundRobin } from '../../domain/load-balance';
import { isIdempotentMethod } from '../../domain/retry';
import type { CallGate, OutcomeSink, SecretReader } from '../ports';
import type { RegistrySource } from '../registry';
import type { SharedAdmission } from '../../state/admission';
import { Admission } from './admission';
import { Call, CANCELLED, isIpHost, parseJsonBody, type CallEndpoint, type CallHost, type CallListener, type CallPool, type CallRequest, type CallResponse, type CallService } from './call';
import { CoordinatorError } from './errors';
import { SlotIndex } from './slot-index';
import type { OutboundMetrics } from '../outbound-metrics';

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

/** What a call returned (see {@link CallResponse}); `latencyMs` is 0 for a cache hit. */
export interface CoordinatorResponse extends CallResponse {
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
   * A health probe found these endpoints of a service down (their origins,
   * e.g. `https://api.example.com:8443`): the load balancer skips them for
   * its cool-down, as after a failed call. Services not called yet (no
   * balancer) and origins the service does not have are ignored.
   */
  reportEndpointsDown?(serviceId: string, origins: readonly string[]): void;
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
  /**
   * Cluster-wide admission (`openSharedAdmission` from src/state/admission):
   * services with a `rateLimit` then hold it across every worker process
   * sharing the store, under the key `service:<id>`. Services without limits
   * never reach it. Not closed by the coordinator (the worker closes it after).
   */
  sharedAdmission?: SharedAdmission;
  /**
   * Outbound-call metrics (`registerOutboundMetrics` from src/activities/outbound-metrics):
   * calls by service, method and outcome, latency, rate-limit waits, cache hits.
   * Each service's figures are resolved once, so a call only bumps numbers.
   */
  metrics?: OutboundMetrics;
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
  /**
   * Connections per endpoint origin when the service sets no `maxConcurrent`;
   * calls beyond it wait in undici's queue (inside their deadline). Default
   * 32: polite to services, and faster than one socket per caller when
   * callers outnumber it (docs/coordinator.md, Connections).
   */
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

/** Defaults of the {@link CoordinatorDeps} options. */
export const COORDINATOR_DEFAULTS = {
  connectTimeoutMs: 5_000,
  headersTimeoutMs: 10_000,
  bodyTimeoutMs: 30_000,
  timeoutMs: 30_000,
  keepAliveTimeoutMs: 4_000,
  connectionsPerEndpoint: 32,
  pipelining: 1,
  maxResponseBytes: 10 * 1024 * 1024,
  maxRedirections: 5,
  endpointCoolDownMs: 10_000,
  cacheMaxBytes: 16 * 1024 * 1024,
  cacheMaxTtlMs: 300_000,
} as const;

type Options = { -readonly [K in keyof typeof COORDINATOR_DEFAULTS]: number };

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** Whitespace or a control character: never valid in a request target (RFC 9112 §3.2). */
const BAD_PATH_CHAR = /[\s\x00-\x1f\x7f]/;
/** A header name is a token (RFC 9110 §5.1); a value holds no CR, LF or NUL (§5.5). */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_HEADER_VALUE = /[\r\n\0]/;
/** The longest deadline a Node timer can wait, ms. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

interface Pool extends CallPool {
  agent: Agent;
  /** Sockets still connecting (see {@link dropPool}). */
  connecting: Set<Socket>;
}

/**
 * Closes (`graceful`: lets queued requests finish) or destroys a pool, and
 * destroys its sockets that are still connecting: undici does not cancel a
 * TCP connect in progress when its client goes, so a host that drops SYNs
 * would keep the socket and its timer until the connect timeout.
 */
function dropPool(pool: Pool, graceful: boolean): Promise<void> {
  for (const socket of pool.connecting) socket.destroy(POOL_CLOSED);
  pool.connecting.clear();
  return (graceful ? pool.agent.close() : pool.agent.destroy()).catch(() => {});
}

const POOL_CLOSED = Object.assign(new Error('coordinator: connection pool closed while connecting'), { code: 'UND_ERR_DESTROYED' });

interface ServiceState extends CallService {
  spec: ServiceSpec;
  fingerprint: string;
  pool: Pool;
  /** Requests on `pool` now. */
  sending: number;
  /** Set after an aborted request: replace the pool as soon as nothing is in flight (see `settle`). */
  recycle: boolean;
  /** Calls alive on this state (created, not yet settled). */
  calls: number;
  /** Replaced by a registry reload (or its service removed): its pool closes when its last call settles. */
  retired: boolean;
  endpoints: CallEndpoint[];
  lb: SmoothWeightedRoundRobin;
  admission: Admission;
  credentialOrigins: Set<string>;
  credentialHeaders: string[];
  /** The request headers of the last plain call (no extra headers, no body), shared by the calls with the same credential. */
  plainHeaders: { auth: string | undefined; headers: Record<string, string> } | undefined;
  /** The last credential this service's calls carried, as the auth header (one per rotation, not per call). */
  lastAuth: Auth | undefined;
  /** GETs in flight, by credential tag (a hash, or '' for none) then path key. */
  inFlight: Map<string, SlotIndex<InFlight>>;
}

interface CachedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  json?: unknown;
  endpoint: string;
}

/**
 * A GET in flight that identical GETs join (coalescing). It is its call's
 * listener: when the call settles it stores a cacheable answer, then leaves
 * the in-flight index, in that order, so an identical GET finds one or the
 * other.
 */
class InFlight implements CallListener {
  promise!: Promise<CoordinatorResponse>;
  /** Callers still waiting. */
  waiters = 0;
  /** When several callers share the answer: an untouched copy, taken before any caller sees it. */
  pristine: CoordinatorResponse | undefined;
  constructor(
    readonly call: Call,
    /** The index this entry is in (per service and credential), and its key there. */
    private readonly index: SlotIndex<InFlight>,
    private readonly joinKey: string,
    /** The path, plus the extra request headers when there are any: what the cache is keyed by. */
    readonly pathKey: string,
    private readonly onAnswer: (entry: InFlight, res: CoordinatorResponse) => void,
    readonly serviceId: string,
    readonly authTag: string,
    readonly req: CoordinatorRequest,
  ) {}

  callFinished(res: CallResponse | undefined): void {
    if (res !== undefined) {
      if (this.waiters > 1) this.pristine = { ...res, headers: { ...res.headers } };
      this.onAnswer(this, res);
    }
    if (this.index.get(this.joinKey) === this) this.index.delete(this.joinKey);
  }

  /** A joiner's own copy of the shared answer. */
  copyFor(res: CoordinatorResponse): CoordinatorResponse {
    return copyResponse(this.pristine ?? res);
  }
}

/** Links a caller's AbortSignal to a call (as the signal's event listener), and unlinks it when the call settles. */
class AbortBinding implements CallListener {
  constructor(
    private readonly call: Call,
    private readonly signal: AbortSignal,
  ) {
    signal.addEventListener('abort', this, { once: true });
  }

  handleEvent(): void {
    this.call.abort(CANCELLED);
  }

  callFinished(): void {
    this.signal.removeEventListener('abort', this);
  }
}

interface Auth {
  name: string;
  value: string;
  secret: string;
  /** sha256 of the secret (base64url, 22 chars): what cache and coalescing keys carry. */
  tag: string;
}

function validateOptions(deps: CoordinatorDeps): Options {
  const out = { ...COORDINATOR_DEFAULTS } as Options;
  for (const key of Object.keys(COORDINATOR_DEFAULTS) as (keyof Options)[]) {
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


/**
 * Milliseconds of freshness a response has left for a private cache:
 * `max-age` (RFC 9111 §5.2.2.1) minus the `Age` it already has (§4.2.3, §5.1);
 * undefined when it says nothing, 0 when it forbids storing or is already stale.
 */
function responseMaxAgeMs(headers: Record<string, string>): number | undefined {
  const cc = headers['cache-control'];
  if (cc === undefined) return undefined;
  const lc = cc.toLowerCase();
  if (/(^|[\s,])(no-store|no-cache)([\s,=]|$)/.test(lc)) return 0;
  const m = /(^|[\s,])max-age\s*=\s*"?(\d+)"?/.exec(lc);
  if (!m) return undefined;
  const age = /^\s*(\d+)\s*$/.exec(headers['age'] ?? '');
  return Math.max(0, (Number(m[2]) - (age ? Number(age[1]) : 0)) * 1000);
}


function badRequest(serviceId: string, method: string, req: CoordinatorRequest, detail: string): CoordinatorError {
  return new CoordinatorError({ serviceId, method, path: String(req.path), kind: 'other', retryable: false, notSent: true, detail });
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
  let closed = false;

  function authHeaderName(spec: ServiceSpec): string {
    const scheme = spec.auth?.scheme ?? 'bearer';
    return scheme === 'header' ? (spec.auth?.header ?? 'x-api-key').toLowerCase() : 'authorization';
  }

  /** Calls alive in this coordinator, and who waits for them all to settle (close). */
  let live = 0;
  let drained: (() => void) | undefined;
  /** Retired states whose pool is still open (calls in flight on it). */
  const retiring = new Set<ServiceState>();

  /**
   * Takes a state out of service after a registry reload. Its calls in flight
   * keep going on its pool (redirect hops and failover included); the pool
   * closes when the last of them settles.
   */
  function retire(state: ServiceState): void {
    state.retired = true;
    if (state.calls === 0) void dropPool(state.pool, true);
    else retiring.add(state);
  }

  let lastRegistry: Registry | undefined;
  /** The services of `lastRegistry` by id (built once per registry, not searched per call). */
  let specById = new Map<string, ServiceSpec>();

  /** After a registry (re)load: indexes its services and closes the pools of services it no longer lists. */
  function adoptRegistry(registry: Registry): void {
    lastRegistry = registry;
    specById = new Map(registry.services.map((x) => [x.id, x]));
    for (const [id, st] of services) {
      if (!specById.has(id)) {
        services.delete(id);
        retire(st);
      }
    }
  }

  function stateFor(serviceId: string, method: string, path: string): ServiceState {
    let spec: ServiceSpec | undefined;
    try {
      const registry = deps.registry.current();
      if (registry !== lastRegistry) adoptRegistry(registry);
      spec = specById.get(serviceId) ?? getService(registry, serviceId);
    } catch (err) {
      throw new CoordinatorError({ serviceId, method, path, kind: 'other', retryable: false, notSent: true, detail: (err as Error).message });
    }
    const existing = services.get(serviceId);
    if (existing && existing.spec === spec) return existing;
    const fingerprint = JSON.stringify([spec.endpoints, spec.rateLimit ?? null, spec.auth ?? null]);
    if (existing && existing.fingerprint === fingerprint) {
      existing.spec = spec;
      existing.plainHeaders = undefined;
      existing.lastAuth = undefined;
      return existing;
    }
    if (existing) retire(existing);
    const endpoints = spec.endpoints.map((e) => {
      const u = new URL(e.url);
      return { origin: u.origin, prefix: u.pathname.replace(/\/+$/, ''), literal: isIpHost(u.hostname) };
    });
    const maxConcurrent = spec.rateLimit?.maxConcurrent;
    const state: ServiceState = {
      spec,
      fingerprint,
      pool: buildPool(spec),
      sending: 0,
      recycle: false,
      calls: 0,
      retired: false,
      endpoints,
      lb: new SmoothWeightedRoundRobin(
        spec.endpoints.map((e) => e.weight),
        { coolDownMs: opts.endpointCoolDownMs },
      ),
      // Same limits: keep the admission, so a registry reload cannot forget recent starts and allow a burst.
      admission:
        existing && JSON.stringify(existing.spec.rateLimit ?? null) === JSON.stringify(spec.rateLimit ?? null)
          ? existing.admission
          : new Admission(windowsFromSpec(spec.rateLimit), maxConcurrent, undefined, deps.sharedAdmission && { admission: deps.sharedAdmission, key: `service:${spec.id}` }),
      credentialOrigins: new Set(endpoints.map((e) => e.origin)),
      credentialHeaders: [authHeaderName(spec)],
      plainHeaders: undefined,
      lastAuth: undefined,
      // In-flight GETs outlive a pool rebuild: they still settle and leave.
      inFlight: existing?.inFlight ?? new Map(),
      stats: existing?.stats ?? deps.metrics?.forService(spec.id),
    };
    services.set(serviceId, state);
    return state;
  }

  /**
   * One keep-alive pool per service: an undici Agent (a connection pool per
   * endpoint origin). Requests to host names go through undici's DNS-caching
   * interceptor; IP literals, which have nothing to resolve, go to the agent
   * directly. Redirects and decompression are the call's own (call.ts).
   */
  function buildPool(spec: ServiceSpec): Pool {
    const connecting = new Set<Socket>();
    const connectTcp = buildConnector({ timeout: opts.connectTimeoutMs });
    const connect: buildConnector.connector = (options, callback) => {
      const socket = connectTcp(options, (err, connected) => {
        connecting.delete(socket);
        if (err) callback(err, null);
        else callback(null, connected!);
      }) as unknown as Socket;
      connecting.add(socket);
      return socket;
    };
    const agent = new Agent({
      connections: spec.rateLimit?.maxConcurrent ?? opts.connectionsPerEndpoint,
      pipelining: opts.pipelining,
      keepAliveTimeout: opts.keepAliveTimeoutMs,
      connect,
      headersTimeout: opts.headersTimeoutMs,
      bodyTimeout: opts.bodyTimeoutMs,
      maxResponseSize: opts.maxResponseBytes,
    });
    return { agent, connecting, direct: agent, resolving: agent.compose(interceptors.dns({ maxTTL: 30_000 })) };
  }

  const host: CallHost = {
    get closed() {
      return closed;
    },
    callEnded(service) {
      const state = service as ServiceState;
      if (--state.calls === 0 && state.retired && retiring.delete(state)) void dropPool(state.pool, true);
      if (--live === 0) drained?.();
    },
    gate: deps.gate,
    outcomes: deps.outcomes,
    reporterId: deps.reporterId,
    headersTimeoutMs: opts.headersTimeoutMs,
    bodyTimeoutMs: opts.bodyTimeoutMs,
    maxResponseBytes: opts.maxResponseBytes,
    maxRedirections: opts.maxRedirections,
    poolFor(service) {
      const state = service as ServiceState;
      state.sending++;
      return state.pool;
    },
    /**
     * Ends one request on the service's pool. After an abort the pool is
     * replaced as soon as nothing else is in flight on it: undici (7.x, see
     * nodejs/undici#5845 and #386) can leave a socket behind after an aborted
     * HTTP/1.1 request — it re-queues the aborted request and opens a fresh
     * connection for it, or still writes a request aborted while connecting —
     * and neither socket has a timer that would ever close it. Destroying the
     * idle pool closes them; the next call opens a new one.
     */
    settle(service, pool, aborted) {
      const state = service as ServiceState;
      if (pool !== state.pool) return;
      state.sending--;
      if (aborted) state.recycle = true;
      if (state.recycle && state.sending === 0 && !closed) {
        state.recycle = false;
        state.pool = buildPool(state.spec);
        void dropPool(pool as Pool, false);
      }
    },
  };

  function authFor(state: ServiceState, req: CoordinatorRequest, method: string): Auth | undefined | Promise<Auth | undefined> {
    const spec = state.spec;
    if (req.auth === false) return undefined;
    const credentialId = req.auth?.credentialId ?? spec.credential;
    if (!credentialId) return undefined;
    const reader = deps.secrets;
    if (!reader) throw missingSecret(spec, req, method, `service needs credential "${credentialId}" but the coordinator has no SecretReader: pass deps.secrets`);
    const versionId = req.auth?.versionId;
    if (reader.readSecretSync) return authFromSecret(state, req, method, credentialId, versionId, reader.readSecretSync(credentialId, versionId));
    return reader.readSecret(credentialId, versionId).then((secret) => authFromSecret(state, req, method, credentialId, versionId, secret));
  }

  function missingSecret(spec: ServiceSpec, req: CoordinatorRequest, method: string, detail: string): CoordinatorError {
    return new CoordinatorError({ serviceId: spec.id, method, path: req.path, kind: 'other', retryable: false, notSent: true, detail });
  }

  function authFromSecret(state: ServiceState, req: CoordinatorRequest, method: string, credentialId: string, versionId: string | undefined, secret: string | undefined): Auth {
    const spec = state.spec;
    if (secret === undefined) {
      throw missingSecret(spec, req, method, `credential "${credentialId}" has no ${versionId ? `version "${versionId}"` : 'CURRENT version'}: rotate or import it first`);
    }
    const last = state.lastAuth;
    if (last !== undefined && last.secret === secret) return last;
    const auth = spec.auth ?? { scheme: 'bearer' as const };
    let made: Auth;
    switch (auth.scheme) {
      case 'basic': {
        const pair = auth.username !== undefined ? `${auth.username}:${secret}` : secret;
        made = { name: 'authorization', value: `Basic ${Buffer.from(pair).toString('base64')}`, secret, tag: '' };
        break;
      }
      case 'header':
        made = { name: authHeaderName(spec), value: secret, secret, tag: '' };
        break;
      case 'make':
        made = { name: 'authorization', value: `Token ${secret}`, secret, tag: '' };
        break;
      default:
        made = { name: 'authorization', value: `Bearer ${secret}`, secret, tag: '' };
    }
    // Responses are private to the identity that fetched them: cache and coalescing keys carry a hash, never the secret itself.
    made.tag = createHash('sha256').update(secret).digest('base64url').slice(0, 22);
    state.lastAuth = made;
    return made;
  }

  /**
   * Checks a request before anything is sent; returns its method (upper case).
   * @throws CoordinatorError (kind `other`, not retryable, notSent) naming what is wrong.
   */
  function validateRequest(serviceId: string, req: CoordinatorRequest): string {
    const raw = req.method;
    if (raw !== undefined && typeof raw !== 'string') throw badRequest(serviceId, String(raw), req, `invalid method ${JSON.stringify(raw)}: use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS`);
    const method = raw === undefined ? 'GET' : KNOWN_METHODS.has(raw) ? raw : raw.toUpperCase();
    if (!KNOWN_METHODS.has(method)) throw badRequest(serviceId, method, req, `invalid method ${JSON.stringify(raw)}: use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS`);
    if (typeof req.path !== 'string' || !req.path.startsWith('/')) throw badRequest(serviceId, method, req, `invalid path ${JSON.stringify(req.path)}: must start with "/"`);
    if (BAD_PATH_CHAR.test(req.path)) throw badRequest(serviceId, method, req, `invalid path ${JSON.stringify(req.path)}: spaces and control characters must be percent-encoded`);
    if (req.headers) {
      for (const name in req.headers) {
        const value = req.headers[name];
        if (!HEADER_NAME.test(name)) throw badRequest(serviceId, method, req, `invalid header name ${JSON.stringify(name)}: a header name is a token (letters, digits, !#$%&'*+-.^_\`|~)`);
        if (typeof value !== 'string' || BAD_HEADER_VALUE.test(value)) throw badRequest(serviceId, method, req, `invalid value of header ${name}: must be a string without CR, LF or NUL`);
      }
    }
    if (req.body !== undefined && req.json !== undefined) throw badRequest(serviceId, method, req, 'pass either body or json, not both');
    if (req.timeoutMs !== undefined && !(Number.isFinite(req.timeoutMs) && req.timeoutMs > 0 && req.timeoutMs <= MAX_TIMEOUT_MS)) {
      throw badRequest(serviceId, method, req, `invalid timeoutMs ${String(req.timeoutMs)}: must be a number of ms > 0 and <= ${MAX_TIMEOUT_MS} (about 24.8 days)`);
    }
    if (typeof req.cache === 'object' && !(Number.isFinite(req.cache.ttlMs) && req.cache.ttlMs >= 0)) {
      throw badRequest(serviceId, method, req, `invalid cache.ttlMs ${String(req.cache.ttlMs)}: must be a finite number of ms >= 0`);
    }
    return method;
  }

  /** What the call sends: headers (lower-case), body, and whether it may be resent to another endpoint. */
  function callRequest(state: ServiceState, req: CoordinatorRequest, method: string, auth: Auth | undefined): CallRequest {
    const plain = req.headers === undefined && req.json === undefined && !req.idempotencyKey;
    let headers: Record<string, string>;
    const authValue = auth?.value;
    if (plain && state.plainHeaders !== undefined && state.plainHeaders.auth === authValue) {
      headers = state.plainHeaders.headers;
    } else {
      headers = {};
      if (req.headers) for (const k in req.headers) headers[k.toLowerCase()] = req.headers[k]!;
      if (req.json !== undefined) headers['content-type'] ??= 'application/json';
      if (req.idempotencyKey) headers['idempotency-key'] = req.idempotencyKey;
      // Undone by the call (RFC 9110 §12.5.3).
      headers['accept-encoding'] ??= 'gzip, deflate, br';
      if (auth) headers[auth.name] = auth.value;
      if (plain) state.plainHeaders = { auth: authValue, headers };
    }
    return {
      method,
      path: req.path,
      headers,
      body: req.json !== undefined ? JSON.stringify(req.json) : req.body,
      safeToResend: isIdempotentMethod(method) || !!req.idempotencyKey,
      throwOnStatus: req.throwOnStatus !== false,
      secret: auth?.secret,
    };
  }

  /** Key of a GET inside its service's in-flight index: the path, plus the extra request headers (sorted, lower-case names) when there are any. */
  function pathKey(req: CoordinatorRequest): string {
    if (!req.headers) return req.path;
    let key = req.path;
    const names = Object.keys(req.headers).sort();
    for (const n of names) key += `\n${n.toLowerCase()}:${req.headers[n]}`;
    return key;
  }

  /** Key of a cached answer: service, path key and credential tag. */
  function cacheKey(serviceId: string, pathKey: string, authTag: string): string {
    return `${serviceId}\n${pathKey}\n#${authTag}`;
  }

  function ttlFor(req: CoordinatorRequest, res: CoordinatorResponse): number {
    if (res.status !== 200 && res.status !== 203) return 0;
    const allowed = responseMaxAgeMs(res.headers);
    if (allowed === 0) return 0;
    const asked = typeof req.cache === 'object' ? req.cache.ttlMs : undefined;
    const ttl = asked !== undefined ? Math.min(asked, allowed ?? Infinity) : (allowed ?? 0);
    return Math.min(ttl, opts.cacheMaxTtlMs);
  }

  function abortedBeforeStart(serviceId: string, method: string, path: string): CoordinatorError {
    return new CoordinatorError({ serviceId, method, path, kind: 'aborted', retryable: false, notSent: true, code: 'ABORT_ERR', detail: 'cancelled by the caller' });
  }

  function request(serviceId: string, req: CoordinatorRequest, signal?: AbortSignal): Promise<CoordinatorResponse> {
    try {
      if (closed) throw new Error('coordinator is closed: create a new one');
      const method = validateRequest(serviceId, req);
      const state = stateFor(serviceId, method, req.path);
      const auth = authFor(state, req, method);
      if (!(auth instanceof Promise)) return afterAuth(state, req, method, auth, signal);
      if (!signal) return auth.then((a) => afterAuth(state, req, method, a, undefined));
      // An asynchronous reader: the caller's abort must not wait for it.
      return unlessAborted(auth, signal, () => abortedBeforeStart(serviceId, method, req.path)).then((a) => afterAuth(state, req, method, a, signal));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  function newCall(state: ServiceState, req: CoordinatorRequest, method: string, auth: Auth | undefined): Call {
    state.calls++;
    live++;
    return new Call(host, state, callRequest(state, req, method, auth), req.timeoutMs ?? opts.timeoutMs);
  }

  /** Stores a shared GET's answer when it may be cached (a copy: callers may mutate theirs). */
  function storeAnswer(entry: InFlight, res: CoordinatorResponse): void {
    const ttl = ttlFor(entry.req, res);
    if (ttl > 0 && !closed) {
      cache!.set(cacheKey(entry.serviceId, entry.pathKey, entry.authTag), { status: res.status, headers: { ...res.headers }, body: res.body, endpoint: res.endpoint }, { ttl });
    }
  }

  function afterAuth(state: ServiceState, req: CoordinatorRequest, method: string, auth: Auth | undefined, signal: AbortSignal | undefined): Promise<CoordinatorResponse> {
    const serviceId = state.spec.id;
    if (signal?.aborted) return Promise.reject(abortedBeforeStart(serviceId, method, req.path));
    const cacheable = cache !== undefined && method === 'GET' && req.cache !== false && req.body === undefined && req.json === undefined;
    if (!cacheable) {
      const call = newCall(state, req, method, auth);
      if (signal) call.listener = new AbortBinding(call, signal);
      return call.start();
    }

    const authTag = auth?.tag ?? '';
    const key = pathKey(req);
    const stats = state.stats;
    if (cache.size > 0) {
      const hit = cache.get(cacheKey(serviceId, key, authTag));
      if (hit) {
        if (stats !== undefined) stats.cacheHits++;
        return Promise.resolve({ ...hit, headers: { ...hit.headers }, json: parseJsonBody(hit.body, hit.headers), latencyMs: 0, cached: true });
      }
    }
    if (stats !== undefined) stats.cacheMisses++;

    // Calls join only one that would answer them the same way: same deadline, same throwOnStatus.
    const joinKey = req.timeoutMs === undefined && req.throwOnStatus !== false ? key : `${key}\n#${req.timeoutMs ?? ''}|${req.throwOnStatus === false ? 'resolve' : 'throw'}`;
    let index = state.inFlight.get(authTag);
    if (index === undefined) {
      index = new SlotIndex();
      state.inFlight.set(authTag, index);
    }
    let entry = index.get(joinKey);
    if (entry === undefined) {
      const call = newCall(state, req, method, auth);
      entry = new InFlight(call, index, joinKey, key, storeAnswer, serviceId, authTag, req);
      call.listener = entry;
      index.set(joinKey, entry);
      entry.promise = call.start();
      if (!signal) {
        // The first caller without a signal takes the call's own answer; joiners get copies.
        entry.waiters++;
        return entry.promise;
      }
    } else if (stats !== undefined) {
      stats.coalesced++;
    }
    entry.waiters++;
    const shared = entry;
    if (!signal) return shared.promise.then((res) => shared.copyFor(res));
    return awaitSharedOrAbort(entry, signal, serviceId, method, req.path);
  }

  /** Waits for a shared in-flight GET or the caller's signal; the shared call is aborted only when every waiter has given up. */
  function awaitSharedOrAbort(entry: InFlight, signal: AbortSignal, serviceId: string, method: string, path: string): Promise<CoordinatorResponse> {
    return unlessAborted(
      entry.promise.then((res) => entry.copyFor(res)),
      signal,
      () => {
        if (--entry.waiters === 0) entry.call.abort(CANCELLED);
        return new CoordinatorError({ serviceId, method, path, kind: 'aborted', retryable: false, notSent: false, code: 'ABORT_ERR', detail: 'cancelled by the caller' });
      },
    );
  }

  return {
    request,
    reportEndpointsDown(serviceId, origins) {
      const state = services.get(serviceId);
      if (!state || closed) return;
      const at = performance.now();
      state.endpoints.forEach((e, i) => origins.includes(e.origin) && state.lb.reportFailure(i, at));
    },
    async close(graceMs = 5_000) {
      if (closed) return;
      closed = true;
      const states = [...services.values(), ...retiring];
      services.clear();
      retiring.clear();
      cache?.clear();
      // Calls in flight get graceMs to finish; what is left is cut (its callers get a retryable
      // COORDINATOR_CLOSED, and no outcome is recorded against the service).
      if (live > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise<void>((r) => (drained = r)), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
        clearTimeout(timer);
        drained = undefined;
      }
      await Promise.all(states.map((s) => dropPool(s.pool, false)));
    },
  };
}

/**
 * `promise`, unless `signal` aborts first: then a rejection with `onAbort()`'s
 * error at once (`onAbort` runs only then). The listener leaves when either
 * happens; a later settlement of `promise` is absorbed.
 */
function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal, onAbort: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const abort = () => {
      if (done) return;
      done = true;
      reject(onAbort());
    };
    signal.addEventListener('abort', abort, { once: true });
    const settle = (then: () => void) => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', abort);
      then();
    };
    promise.then(
      (value) => settle(() => resolve(value)),
      (err: unknown) => settle(() => reject(err)),
    );
  });
}

/** A caller's own copy of a shared answer, so one caller's mutation cannot reach another. */
function copyResponse(res: CoordinatorResponse): CoordinatorResponse {
  return { ...res, headers: { ...res.headers }, json: parseJsonBody(res.body, res.headers) };
}
