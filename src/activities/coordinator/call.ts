/**
 * One call through the coordinator, from the breaker gate to the last byte:
 * admission, endpoint choice and failover, the HTTP exchange on the service's
 * undici dispatcher, redirects, decompression, the outcome and the answer.
 *
 * A `Call` is its own undici dispatch handler (handler API v2,
 * `Dispatcher.DispatchHandler`) and settles one promise. Nothing else is
 * allocated per call on the hot path: no async functions, no AbortController,
 * no per-request interceptor handlers. That is where the coordinator's
 * throughput is won (docs/coordinator.md, Figures): undici's redirect and
 * decompress interceptors each wrap every request in a handler object of
 * their own, which cost more per call than the rest of the coordinator.
 *
 * Redirects follow RFC 9110 §15.4 as undici's redirect handler does: 301/302
 * turn a POST into a GET, 303 turns anything but HEAD into a GET without a
 * body or `content-*` headers, 307/308 keep method and body; the `Host`
 * header is dropped; `Cookie` and `Proxy-Authorization` are dropped when the
 * origin changes, and the credential header on the way to any origin that
 * is not one of the service's endpoints. After a redirect a failure is the
 * target's: the endpoint is not cooled down and the call does not fail over
 * (the endpoint has already acted on the request). Bodies are decompressed (gzip, deflate, br; RFC 9110 §8.4) once
 * they are complete, bounded by `maxResponseBytes`.
 *
 * Aborts (the caller's signal, the overall deadline) settle the call at once,
 * even while undici still waits for a socket; undici is told to drop the
 * request and its later callbacks are ignored.
 */
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { brotliDecompress, gunzip, inflate, inflateRaw, type InputType, type ZlibOptions, type BrotliOptions } from 'node:zlib';
import type { Dispatcher } from 'undici';
import type { CallOutcome } from '../../domain/outcome';
import { classifyFailure, parseRetryAfter } from '../../domain/retry';
import type { CallGate, CallPermit, OutcomeSink } from '../ports';
import { AdmissionStoreError } from '../../state/admission';
import { AdmissionDeadlineError, type Admission, type Release } from './admission';
import { failureOutcome, methodIndex, statusOutcome, type ServiceCallStats } from '../outbound-metrics';
import { CoordinatorError, bodyExcerpt, transportError } from './errors';

/** The part of a service's state a call works on (owned by the coordinator). */
export interface CallService {
  readonly spec: { readonly id: string };
  readonly endpoints: readonly CallEndpoint[];
  readonly lb: {
    pick(nowMs: number, exclude: { has(i: number): boolean }): number | undefined;
    reportFailure(i: number, nowMs: number): void;
    reportSuccess(i: number): void;
  };
  readonly admission: Admission;
  /** Origins the credential may be sent to: the service's endpoints. */
  readonly credentialOrigins: ReadonlySet<string>;
  /** Lower-case names of the headers that carry the credential. */
  readonly credentialHeaders: readonly string[];
  /** The service's call figures (outbound metrics), when the coordinator has metrics. */
  readonly stats: ServiceCallStats | undefined;
}

/** One endpoint of a service. */
export interface CallEndpoint {
  /** URL origin, `http://host:port`. */
  readonly origin: string;
  /** Path prefix from the registry URL, without trailing slash ('' for none). */
  readonly prefix: string;
  /** The host is an IP literal: nothing to resolve, so no DNS interceptor. */
  readonly literal: boolean;
}

/** The dispatchers of one service: undici's agent, and the agent behind the DNS-caching interceptor. */
export interface CallPool {
  /** Sends to IP literals (nothing to resolve). */
  readonly direct: Dispatcher;
  /** Sends to host names, through undici's dns interceptor. */
  readonly resolving: Dispatcher;
}

/** What a call needs from its coordinator; one object per coordinator. */
export interface CallHost {
  readonly gate: CallGate | undefined;
  readonly outcomes: OutcomeSink | undefined;
  readonly reporterId: string;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  readonly maxResponseBytes: number;
  readonly maxRedirections: number;
  /** The pool a new request on `service` goes to. */
  poolFor(service: CallService): CallPool;
  /** Ends one request on `pool` (counts it out; replaces the pool after an abort). */
  settle(service: CallService, pool: CallPool, aborted: boolean): void;
  /** Told once per call when it settles (the coordinator counts live calls per service). */
  callEnded(service: CallService): void;
  /** True once the coordinator is closing: nothing new is sent. */
  readonly closed: boolean;
}

/** A complete answer. */
export interface CallResponse {
  status: number;
  /** Response headers, lower-case names; repeated headers joined with `, `. */
  headers: Record<string, string>;
  /** The body decoded as UTF-8 (decompressed). */
  body: string;
  /** The parsed body, when the content type is JSON and it parses. */
  json?: unknown;
  /** Origin of the endpoint that served the call (e.g. `http://10.0.0.5:8080`). */
  endpoint: string;
  /** Wall time of the call in ms, admission wait included. */
  latencyMs: number;
}

/** What a call sends; prepared once by the coordinator. */
export interface CallRequest {
  method: string;
  /** Path and query, starting with `/`. */
  path: string;
  /** Lower-case names. Treated as read-only (it may be shared between calls). */
  headers: Record<string, string>;
  body: string | undefined;
  /** True for idempotent methods and for requests with an idempotency key: safe to send again to another endpoint. */
  safeToResend: boolean;
  /** When false, 4xx/5xx answers resolve instead of rejecting. */
  throwOnStatus: boolean;
  /** The credential, only to redact it from body excerpts. */
  secret: string | undefined;
}

/** Told when a call settles (see {@link Call.listener}). */
export interface CallListener {
  /** @param res the answer, or undefined when the call failed. */
  callFinished(res: CallResponse | undefined): void;
}

/** Abort reasons handed to undici; never seen by callers (they get a CoordinatorError). Made once: no stack capture per call. */
export const DEADLINE = new Error('coordinator: overall deadline reached');
export const CANCELLED = new Error('coordinator: cancelled by the caller');

const REDIRECT_STATUSES = new Set([300, 301, 302, 303, 307, 308]);
const STATUS_CLASSES = ['1xx', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;

function statusClass(status: number): CallOutcome['statusClass'] {
  return STATUS_CLASSES[Math.min(5, Math.max(1, Math.floor(status / 100)))];
}

/** Joins repeated headers with `, `; returns undici's own object (no copy) when nothing repeats. */
function flattenHeaders(h: Record<string, string | string[] | undefined>): Record<string, string> {
  for (const k in h) {
    if (typeof h[k] !== 'string') {
      const out: Record<string, string> = {};
      for (const n in h) {
        const v = h[n];
        if (v !== undefined) out[n] = Array.isArray(v) ? v.join(', ') : v;
      }
      return out;
    }
  }
  return h as Record<string, string>;
}

/** The parsed body when the content type is JSON (`application/json`, `application/health+json`, ...) and it parses; else undefined. */
export function parseJsonBody(text: string, headers: Record<string, string>): unknown {
  const type = headers['content-type'];
  if (text.length === 0 || !type || !isJsonType(type)) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

let lastType = '';
let lastTypeIsJson = false;
/** Whether a content type is JSON; remembers the last answer (a service answers with one type). */
function isJsonType(type: string): boolean {
  if (type !== lastType) {
    lastType = type;
    lastTypeIsJson = /[/+]json(\s*;|$)/i.test(type);
  }
  return lastTypeIsJson;
}

type Decoder = (buf: InputType, options: ZlibOptions & BrotliOptions, cb: (err: Error | null, out: Buffer) => void) => void;

/** `deflate` is zlib-wrapped (RFC 9110 §8.4.1.2) but some servers send raw DEFLATE: try both. */
const inflateEither: Decoder = (buf, options, cb) =>
  inflate(buf, options, (err, out) => (err && (err as NodeJS.ErrnoException).code === 'Z_DATA_ERROR' ? inflateRaw(buf, options, cb) : cb(err, out)));

const DECODERS: Record<string, Decoder> = { gzip: gunzip, 'x-gzip': gunzip, deflate: inflateEither, br: brotliDecompress };

/**
 * Undoes the content codings of a complete body (RFC 9110 §8.4: listed in the
 * order applied, so undone last first), each step bounded by `maxBytes`.
 * Every coding must be one of {@link DECODERS}. Errors carry zlib's or
 * brotli's code (`Z_DATA_ERROR`, ...) or `UND_ERR_RES_EXCEEDED_MAX_SIZE`.
 */
function decode(codings: string[], body: Buffer, maxBytes: number, cb: (err: Error | null, out: Buffer) => void): void {
  const coding = codings.pop();
  if (coding === undefined) return cb(null, body);
  const decoder = DECODERS[coding]!;
  decoder(body, { maxOutputLength: maxBytes }, (err, out) => {
    if (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        return cb(Object.assign(new Error(`decompressed body exceeds ${maxBytes} bytes`), { code: 'UND_ERR_RES_EXCEEDED_MAX_SIZE' }), body);
      }
      return cb(err, body);
    }
    decode(codings, out, maxBytes, cb);
  });
}

/** Phases of a call. */
const enum Phase {
  Gate,
  Admission,
  Sending,
  Decoding,
  Done,
}

/** A call; see the module comment. Create, then `start()`; `abort(reason)` may come at any time. */
export class Call implements Dispatcher.DispatchHandler {
  readonly promise: Promise<CallResponse>;
  private resolve!: (r: CallResponse) => void;
  private reject!: (err: unknown) => void;

  /** DEADLINE or CANCELLED once aborted. */
  reason: Error | undefined;
  /** Told once when the call settles, before its promise does (the coalescing entry, the caller's abort listener). */
  listener: CallListener | undefined;
  private phase = Phase.Gate;
  private readonly t0 = performance.now();
  private readonly deadline: number;
  private timer: NodeJS.Timeout | undefined;
  private permit: CallPermit | undefined;
  private finalOutcome: CallOutcome | undefined;
  private lastError: CoordinatorError | undefined;
  private waiting: AbortController | undefined;

  // Endpoints tried in this call: bits, and a Set past index 30.
  private triedBits = 0;
  private triedBig: Set<number> | undefined;
  private triedCount = 0;

  // The attempt in progress.
  private idx = -1;
  private endpoint: CallEndpoint | undefined;
  private pool: CallPool | undefined;
  private release: Release | undefined;
  private startedAt = 0;
  private ts = 0;
  private controller: Dispatcher.DispatchController | undefined;

  // The hop in progress (a redirect starts a new hop within the attempt).
  private hopOrigin = '';
  private hopPath = '';
  private hopMethod = '';
  private hopBody: string | undefined;
  private hopHeaders: Record<string, string> = {};
  private redirectsLeft = 0;
  private location: string | undefined;
  private status = 0;
  private resHeaders: Record<string, string> = {};
  /** The body so far: the first chunk alone, an array once there are more (most bodies are one chunk). */
  private chunk: Buffer | undefined;
  private chunks: Buffer[] | undefined;

  constructor(
    private readonly host: CallHost,
    private readonly service: CallService,
    private readonly req: CallRequest,
    private readonly timeoutMs: number,
  ) {
    this.deadline = this.t0 + timeoutMs;
    capturing = this;
    this.promise = new Promise<CallResponse>(captureResolvers);
    capturing = undefined;
  }

  /** Starts the call; returns its promise (rejects only with CoordinatorError). Never throws. */
  start(): Promise<CallResponse> {
    this.timer = setTimeout(fireDeadline, this.timeoutMs, this);
    const gate = this.host.gate;
    if (!gate) {
      this.attempt();
      return this.promise;
    }
    let pending: Promise<CallPermit>;
    try {
      const now = gate.admitNow?.(this.service.spec.id);
      if (now !== undefined) {
        this.permit = now;
        this.attempt();
        return this.promise;
      }
      pending = gate.admit(this.service.spec.id);
    } catch (err) {
      // A gate that throws instead of rejecting broke its contract; the call still fails as a gate refusal would.
      this.gateRefused(err);
      return this.promise;
    }
    pending.then(
      (permit) => {
        this.permit = permit;
        // Settled (aborted) while the gate decided: the permit still gets its one report.
        if (this.phase === Phase.Done) return void permit.report(this.abortedOutcome());
        this.attempt();
      },
      (err: unknown) => this.gateRefused(err),
    );
    return this.promise;
  }

  private gateRefused(err: unknown): void {
    const e = err as { retryAfterMs?: unknown; message?: unknown };
    this.finish(
      this.error({
        kind: 'breaker_open',
        retryable: true,
        notSent: true,
        code: 'BREAKER_OPEN',
        retryAfterMs: typeof e?.retryAfterMs === 'number' ? e.retryAfterMs : undefined,
        detail: typeof e?.message === 'string' ? e.message : 'circuit breaker did not admit the call',
      }),
    );
  }

  /** Ends the call now with an `aborted` (CANCELLED) or `timeout` (DEADLINE) error; undici drops the request. */
  abort(reason: Error): void {
    if (this.phase === Phase.Done || this.reason) return;
    this.reason = reason;
    this.waiting?.abort(reason);
    this.controller?.abort(reason);
    // The deadline passed with the request handed to undici (connecting, sending, or waiting for
    // the answer): that is the service's timeout, whether or not a socket ever opened.
    if (reason === DEADLINE && (this.phase === Phase.Sending || this.phase === Phase.Decoding)) this.attemptOutcome(false, 'timeout', undefined, true);
    this.finish(this.abortError());
  }

  /** For the load balancer: endpoints already tried in this call. */
  has(i: number): boolean {
    return i < 31 ? (this.triedBits & (1 << i)) !== 0 : (this.triedBig?.has(i) ?? false);
  }

  private markTried(i: number): void {
    if (this.has(i)) return;
    this.triedCount++;
    if (i < 31) this.triedBits |= 1 << i;
    else (this.triedBig ??= new Set()).add(i);
  }

  /** Picks an endpoint, takes an admission, sends. */
  private attempt(): void {
    if (this.phase === Phase.Done) return;
    const service = this.service;
    const idx = service.lb.pick(performance.now(), this);
    if (idx === undefined) return this.finish(this.lastError!);
    this.markTried(idx);
    this.idx = idx;
    this.endpoint = service.endpoints[idx]!;
    const r = service.admission.tryAcquire(this.deadline);
    if (r instanceof AdmissionDeadlineError) return this.finish(this.rateLimited(r));
    if (r !== undefined) {
      this.release = r;
      return this.send();
    }
    this.phase = Phase.Admission;
    const waiting = new AbortController();
    this.waiting = waiting;
    const waitedFrom = performance.now();
    service.admission.acquire(waiting.signal, this.deadline).then(
      (release) => {
        this.waiting = undefined;
        service.stats?.observeRateLimitWait((performance.now() - waitedFrom) / 1000);
        if (this.phase === Phase.Done) return release();
        this.release = release;
        this.send();
      },
      (err: unknown) => {
        this.waiting = undefined;
        service.stats?.observeRateLimitWait((performance.now() - waitedFrom) / 1000);
        if (err instanceof AdmissionStoreError && !this.reason) return this.finish(this.storeFailed(err));
        this.finish(err instanceof AdmissionDeadlineError ? this.rateLimited(err) : this.abortError());
      },
    );
  }

  private send(): void {
    if (this.host.closed) return this.finish(this.closedError(true));
    this.phase = Phase.Sending;
    const ep = this.endpoint!;
    this.startedAt = Date.now();
    this.ts = performance.now();
    this.pool = this.host.poolFor(this.service);
    this.hopOrigin = ep.origin;
    this.hopPath = ep.prefix + this.req.path;
    this.hopMethod = this.req.method;
    this.hopBody = this.req.body;
    this.hopHeaders = this.req.headers;
    this.redirectsLeft = this.host.maxRedirections;
    this.dispatch(ep.literal ? this.pool.direct : this.pool.resolving);
  }

  private dispatch(dispatcher: Dispatcher): void {
    this.controller = undefined;
    this.location = undefined;
    this.status = 0;
    this.chunk = undefined;
    this.chunks = undefined;
    try {
      dispatcher.dispatch(
        {
          origin: this.hopOrigin,
          path: this.hopPath,
          method: this.hopMethod as Dispatcher.HttpMethod,
          headers: this.hopHeaders,
          body: this.hopBody,
          headersTimeout: this.host.headersTimeoutMs,
          bodyTimeout: this.host.bodyTimeoutMs,
        },
        this,
      );
    } catch (err) {
      this.transportFailure(err);
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.phase !== Phase.Sending) return void controller.abort(this.reason ?? CANCELLED);
    this.controller = controller;
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (this.phase !== Phase.Sending) return;
    const location = headers.location;
    if (this.redirectsLeft > 0 && typeof location === 'string' && REDIRECT_STATUSES.has(statusCode)) {
      this.status = statusCode;
      this.resHeaders = flattenHeaders(headers);
      this.location = location;
      return;
    }
    // Called again after a 1xx: only the final response counts.
    this.location = undefined;
    this.status = statusCode;
    this.resHeaders = flattenHeaders(headers);
    this.chunk = undefined;
    this.chunks = undefined;
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    // A redirect's own body is dropped (RFC 9110 §15.4: it only describes the new location).
    if (this.phase !== Phase.Sending || this.location !== undefined) return;
    if (this.chunk === undefined) this.chunk = chunk;
    else if (this.chunks === undefined) this.chunks = [this.chunk, chunk];
    else this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    if (this.phase !== Phase.Sending) return;
    if (this.location !== undefined) return this.redirect(this.location);
    const raw = this.chunks !== undefined ? Buffer.concat(this.chunks) : (this.chunk ?? EMPTY);
    this.chunk = undefined;
    this.chunks = undefined;
    const encoding = this.resHeaders['content-encoding'];
    if (encoding === undefined || raw.length === 0 || this.status === 204 || this.status === 304) return this.respond(raw.toString('utf8'));
    const codings = encoding
      .toLowerCase()
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0 && s !== 'identity');
    // Nothing to undo, or a coding we cannot undo: the caller gets the body and its headers as sent (as undici's decompress interceptor does).
    if (codings.length === 0 || codings.some((c) => DECODERS[c] === undefined)) return this.respond(raw.toString('utf8'));
    this.phase = Phase.Decoding;
    decode(codings, raw, this.host.maxResponseBytes, (err, out) => {
      if (this.phase !== Phase.Decoding) return;
      this.phase = Phase.Sending;
      if (err) return this.transportFailure(err);
      // What the caller reads is the decoded body: the coding and length headers no longer describe it.
      const { 'content-encoding': _e, 'content-length': _l, ...rest } = this.resHeaders;
      this.resHeaders = rest;
      this.respond(out.toString('utf8'));
    });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.phase !== Phase.Sending) return;
    this.transportFailure(err);
  }

  /** Follows a redirect within the same attempt (same deadline, same admission). */
  private redirect(location: string): void {
    let next: URL;
    try {
      next = new URL(location, this.hopOrigin + this.hopPath);
    } catch {
      next = undefined as unknown as URL;
    }
    if (!next || (next.protocol !== 'http:' && next.protocol !== 'https:')) {
      // The endpoint answered (a healthy answer); the call cannot go on. The Location is not quoted: it may carry a signed token.
      const what = next ? `a ${next.protocol.replace(/:$/, '')}: location` : 'a malformed location';
      return this.respond('', `HTTP ${this.status} redirects to ${what}, which the coordinator does not follow (only http and https)`);
    }
    const status = this.status;
    let method = this.hopMethod;
    let body = this.hopBody;
    const dropContent = status === 303 && method !== 'HEAD';
    if (dropContent || ((status === 301 || status === 302) && method === 'POST')) {
      method = 'GET';
      body = undefined;
    }
    const originChanged = next.origin !== this.hopOrigin;
    const foreign = !this.service.credentialOrigins.has(next.origin);
    const headers: Record<string, string> = {};
    for (const name in this.hopHeaders) {
      if (name === 'host') continue;
      if (dropContent && name.startsWith('content-')) continue;
      if (originChanged && (name === 'cookie' || name === 'proxy-authorization')) continue;
      if (foreign && (name === 'authorization' || this.service.credentialHeaders.includes(name))) continue;
      headers[name] = this.hopHeaders[name]!;
    }
    this.redirectsLeft--;
    this.hopOrigin = next.origin;
    this.hopPath = next.pathname + next.search;
    this.hopMethod = method;
    this.hopBody = body;
    this.hopHeaders = headers;
    this.dispatch(isIpHost(next.hostname) ? this.pool!.direct : this.pool!.resolving);
  }

  /**
   * A complete answer: outcome, balancing, classification, then resolve (or
   * reject on an error status). `unusable` fails the call (non-retryable)
   * after the outcome: a redirect that cannot be followed.
   */
  private respond(body: string, unusable?: string): void {
    const service = this.service;
    const ep = this.endpoint!;
    const status = this.status;
    const failure = status >= 400 ? classifyFailure({ status }) : undefined;
    // The service answered as a healthy one would: 1xx-4xx except 408/429 (the caller's business errors are not its fault).
    this.attemptOutcome(status < 500 && status !== 408 && status !== 429, failure?.kind, status, true);
    if (status === 502 || status === 503 || status === 504) service.lb.reportFailure(this.idx, performance.now());
    else service.lb.reportSuccess(this.idx);
    this.endAttempt(false);
    const headers = this.resHeaders;
    if (unusable !== undefined) {
      return this.finish(this.error({ endpoint: ep.origin, kind: 'other', retryable: false, notSent: false, detail: unusable }));
    }
    if (failure && this.req.throwOnStatus) {
      return this.finish(
        this.error({
          endpoint: ep.origin,
          kind: failure.kind,
          retryable: failure.retryable,
          notSent: false,
          status,
          retryAfterMs: parseRetryAfter(headers['retry-after'], Date.now()),
          bodyExcerpt: bodyExcerpt(body, this.req.secret),
        }),
      );
    }
    this.finish(undefined, { status, headers, body, json: parseJsonBody(body, headers), endpoint: ep.origin, latencyMs: performance.now() - this.t0 });
  }

  /**
   * A transport-level failure of the attempt: outcome, cool-down, then fail
   * over or fail. After a redirect the endpoint itself has answered (and may
   * have acted on the request): the failure is the redirect target's, so the
   * endpoint is not cooled down and the call is not sent again elsewhere.
   */
  private transportFailure(err: unknown): void {
    if (this.host.closed && !this.reason) {
      // Cut by the coordinator's close (the worker shutting down): not the service's failure, no outcome.
      this.endAttempt(true);
      return this.finish(this.closedError(false));
    }
    const ep = this.endpoint!;
    const redirected = this.redirectsLeft < this.host.maxRedirections;
    let e = this.reason
      ? this.abortError(ep.origin)
      : transportError(err, { serviceId: this.service.spec.id, method: this.req.method, path: this.req.path, endpoint: ep.origin });
    if (redirected && e.notSent) e = new CoordinatorError({ ...e.toJSON(), detail: e.detail, notSent: false } as ConstructorParameters<typeof CoordinatorError>[0]);
    // A caller's cancellation says nothing about the service: not an outcome (the permit still hears it).
    this.attemptOutcome(false, e.kind, undefined, e.kind !== 'aborted');
    const connectionLevel = !redirected && (e.kind === 'connection_refused' || e.kind === 'connection_reset' || e.kind === 'dns' || e.code === 'UND_ERR_CONNECT_TIMEOUT');
    if (connectionLevel) this.service.lb.reportFailure(this.idx, performance.now());
    this.endAttempt(this.reason !== undefined);
    if (connectionLevel && (e.notSent || this.req.safeToResend) && this.triedCount < this.service.endpoints.length && !this.reason) {
      this.lastError = e;
      this.phase = Phase.Gate;
      return this.attempt();
    }
    this.finish(e);
  }

  /** Counts the attempt's request out of its pool and frees its admission slot; once per attempt. */
  private endAttempt(aborted: boolean): void {
    const pool = this.pool;
    if (pool === undefined) return;
    this.pool = undefined;
    this.controller = undefined;
    this.host.settle(this.service, pool, aborted);
    const release = this.release;
    this.release = undefined;
    release?.();
  }

  private finish(err: CoordinatorError | undefined, res?: CallResponse): void {
    if (this.phase === Phase.Done) return;
    // Only a request still on the wire when aborted can leave a socket behind (see the coordinator's settle).
    const onWire = this.phase === Phase.Sending && this.reason !== undefined;
    this.phase = Phase.Done;
    clearTimeout(this.timer);
    this.chunk = undefined;
    this.chunks = undefined;
    if (this.pool !== undefined) this.endAttempt(onWire);
    else if (this.release !== undefined) {
      this.release();
      this.release = undefined;
    }
    // No call was made (the local rate limit could not admit in time, or the
    // caller gave up first): the permit still gets exactly one report, as
    // `aborted`, which breakers ignore (src/domain/breaker.ts classifyOutcome).
    this.permit?.report(this.finalOutcome ?? this.abortedOutcome());
    const stats = this.service.stats;
    if (stats !== undefined) {
      const status = err !== undefined ? err.status : res!.status;
      stats.observeCall(methodIndex(this.req.method), status !== undefined ? statusOutcome(status) : failureOutcome(err!.kind), (performance.now() - this.t0) / 1000);
    }
    this.host.callEnded(this.service);
    this.listener?.callFinished(res);
    if (err) this.reject(err);
    else this.resolve(res!);
  }

  /**
   * The outcome of the attempt in progress (endpoint, latency since it was
   * sent, start time, breaker generation): what the permit hears when the
   * call finishes, and, when `record`, what the OutcomeSink gets now.
   */
  private attemptOutcome(ok: boolean, failureKind: CallOutcome['failureKind'], status: number | undefined, record: boolean): void {
    const outcome: CallOutcome = {
      serviceId: this.service.spec.id,
      endpoint: this.endpoint!.origin,
      ok,
      status,
      statusClass: status === undefined ? undefined : statusClass(status),
      failureKind,
      latencyMs: performance.now() - this.ts,
      startedAt: this.startedAt,
      reporter: this.host.reporterId,
      generation: this.permit?.generation,
    };
    if (record) this.host.outcomes?.record(outcome);
    this.finalOutcome = outcome;
  }

  private abortedOutcome(): CallOutcome {
    return {
      serviceId: this.service.spec.id,
      endpoint: this.service.endpoints[0]!.origin,
      ok: false,
      failureKind: 'aborted',
      latencyMs: performance.now() - this.t0,
      startedAt: Date.now(),
      reporter: this.host.reporterId,
      generation: this.permit?.generation,
    };
  }

  private error(fields: Omit<ConstructorParameters<typeof CoordinatorError>[0], 'serviceId' | 'method' | 'path'>): CoordinatorError {
    return new CoordinatorError({ serviceId: this.service.spec.id, method: this.req.method, path: this.req.path, ...fields });
  }

  /** The error of an aborted call: a retryable timeout after the deadline, else `aborted`. */
  private abortError(endpoint?: string): CoordinatorError {
    return this.reason === DEADLINE
      ? this.error({ endpoint, kind: 'timeout', retryable: true, notSent: false, code: 'DEADLINE_EXCEEDED', detail: `no answer within ${this.timeoutMs} ms` })
      : this.error({ endpoint, kind: 'aborted', retryable: false, notSent: false, code: 'ABORT_ERR', detail: 'cancelled by the caller' });
  }

  /** The coordinator closed before (`notSent`) or while the call was on the wire; retryable on another worker. */
  private closedError(notSent: boolean): CoordinatorError {
    return this.error({
      kind: 'other',
      retryable: true,
      notSent,
      code: 'COORDINATOR_CLOSED',
      detail: notSent ? 'the coordinator is closed (the worker is shutting down); nothing was sent' : 'the coordinator closed (the worker is shutting down) while the call was in flight',
    });
  }

  /** The cluster-wide admission's store failed: nothing was sent, and the limit is not lifted; retryable. */
  private storeFailed(err: AdmissionStoreError): CoordinatorError {
    return this.error({ kind: 'other', retryable: true, notSent: true, code: err.code, detail: err.message });
  }

  private rateLimited(err: AdmissionDeadlineError): CoordinatorError {
    return this.error({ kind: 'rate_limited', retryable: true, notSent: true, code: 'RATE_LIMITED', retryAfterMs: err.retryAfterMs, detail: err.message });
  }
}

const EMPTY = Buffer.alloc(0);

function fireDeadline(call: Call): void {
  call.abort(DEADLINE);
}

/** Whether a URL's hostname (`10.0.0.5`, `[::1]`) is an IP literal: nothing to resolve. */
export function isIpHost(hostname: string): boolean {
  return isIP(hostname.replace(/^\[|\]$/g, '')) !== 0;
}

/** The call whose promise is being created (the Promise executor runs synchronously). */
let capturing: Call | undefined;

function captureResolvers(resolve: (r: CallResponse) => void, reject: (err: unknown) => void): void {
  (capturing as unknown as { resolve: typeof resolve; reject: typeof reject }).resolve = resolve;
  (capturing as unknown as { resolve: typeof resolve; reject: typeof reject }).reject = reject;
}
