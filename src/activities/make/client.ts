/**
 * The Make API client (Make API v2, developers.make.com/api-documentation).
 *
 * Every call goes through a {@link MakeTransport}; in the worker that is the
 * API coordinator (pooled undici, the service's own limits, `Authorization:
 * Token <token>` read from the credential store, call outcomes to the
 * breakers). On top of it this client adds what is Make's own:
 *
 * - the organization's API limit per minute, shared by every registry service
 *   that points at the same organization ({@link MakeOrganizationLimits});
 * - pagination with `pg[offset]` / `pg[limit]` behind async iterators, which
 *   end on a short page and never loop: a page that repeats the previous one
 *   (a server ignoring `pg[offset]`) or a listing past its bound stops with a
 *   {@link MakeAnswerError};
 * - Make's error body `{ detail, message, code, suberrors }` turned into a
 *   {@link MakeApiError} whose message says what failed and what to do.
 *
 * The token never passes through this file: the transport adds it.
 */
import { performance } from 'node:perf_hooks';
import { SlidingLogLimiter } from '../../domain/rate-limit';
import { parseRetryAfter } from '../../domain/retry';
import { AdmissionWaitError, type SharedAdmission } from '../../state/admission';
import {
  formatMakeError,
  isRetryableMakeStatus,
  makeNextOffset,
  makePageQuery,
  makePageRepeats,
  MAKE_DEFAULT_MAX_LIST_ITEMS,
  MAKE_DEFAULT_MAX_LIST_PAGES,
  MAKE_DEFAULT_PAGE_LIMIT,
  parseMakeError,
  type MakeAuthorization,
  type MakeConnection,
  type MakeErrorInfo,
  type MakeExecution,
  type MakeHook,
  type MakeOrganization,
  type MakeScenario,
  type MakeScenarioLog,
} from '../../domain/make';

/** One call to the Make API, relative to the zone's API base (`https://eu1.make.com/api/v2`). */
export interface MakeCall {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** Path with its query string, e.g. `/connections?teamId=42&pg%5Boffset%5D=0`. */
  path: string;
  json?: unknown;
  /** Sent as `Idempotency-Key`; lets the transport retry a POST. */
  idempotencyKey?: string;
  timeoutMs?: number;
}

/** The answer to a {@link MakeCall}: any status (errors are the client's to read), body parsed as JSON when it is JSON. */
export interface MakeReply {
  status: number;
  body: unknown;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * Sends calls to one Make service's API. Must add `Authorization: Token <token>`
 * and must resolve (not throw) on HTTP error statuses; throws only on
 * transport failures (connection refused, timeout, abort).
 */
export interface MakeTransport {
  send(call: MakeCall, signal?: AbortSignal): Promise<MakeReply>;
}

/** A failed Make API call. `message` is one readable line (never holds the token or connection data). */
export class MakeApiError extends Error {
  readonly retryable: boolean;
  constructor(
    readonly info: MakeErrorInfo,
    readonly serviceId: string,
    /** From `Retry-After`, when Make sent one. */
    readonly retryAfterMs?: number,
  ) {
    super(formatMakeError(info, `service ${serviceId}`));
    this.name = 'MakeApiError';
    this.retryable = isRetryableMakeStatus(info.status);
  }
}

/**
 * A 2xx answer this client cannot use: a listing whose page repeats the
 * previous one or that passes its bound, or an answer without the documented
 * member. Never retryable: the same call would get the same answer.
 */
export class MakeAnswerError extends Error {
  readonly retryable = false;
  constructor(
    readonly method: string,
    /** Path relative to the API base, without the query string. */
    readonly path: string,
    readonly serviceId: string,
    problem: string,
    hint: string,
  ) {
    super(`Make API ${method} ${path} (service ${serviceId}): ${problem} — ${hint}`);
    this.name = 'MakeAnswerError';
  }
}

/** Thrown when the organization limit cannot admit a call before its deadline. */
export class MakeRateLimitWaitError extends Error {
  constructor(
    readonly organizationId: number,
    readonly retryAfterMs: number,
  ) {
    super(`Make organization ${organizationId}: its API limit would delay the call past its deadline (next start in ${Math.ceil(retryAfterMs)} ms)`);
    this.name = 'MakeRateLimitWaitError';
  }
}

interface OrgLimit {
  perMinute: number;
  limiter: SlidingLogLimiter;
  /** Recent start times (performance.now()), so a changed limit keeps counting them. */
  starts: number[];
}

/**
 * The per-organization API limit, shared across every client of this worker
 * process: Make counts requests per organization, whatever token or registry
 * service sends them. A strict sliding log (src/domain/rate-limit.ts): at most
 * `perMinute` starts in any window. When the limit changes (the license's
 * `apiLimit` was read) the starts already made keep counting.
 *
 * With a shared store (`opts.shared`, src/state/admission) the limit holds
 * across every worker process together: after this process's own log admits
 * a call, the store must admit it too, under the key `make-org:<id>`, on the
 * store's clock. Without one it holds per process only.
 */
export class MakeOrganizationLimits {
  private readonly byOrg = new Map<number, OrgLimit>();
  private readonly windowMs: number;
  private readonly marginMs: number;
  private readonly shared: SharedAdmission | undefined;

  /**
   * @param opts.windowMs Make's window, ms; 60000 (one minute) by default, shorter in tests.
   * @param opts.marginMs added to the window on our side, ms (default 1000): a
   *   request admitted here reaches Make a little later (connection set-up,
   *   queues), so counting over a slightly longer window keeps the requests
   *   Make sees within its window too.
   * @param opts.shared cluster-wide admission (`openSharedAdmission`); undefined: per process.
   * @throws RangeError naming the option when a value is not finite or negative.
   */
  constructor(opts: { windowMs?: number; marginMs?: number; shared?: SharedAdmission } = {}) {
    const windowMs = opts.windowMs ?? 60_000;
    const marginMs = opts.marginMs ?? 1_000;
    if (!Number.isFinite(windowMs) || windowMs <= 0) throw new RangeError(`invalid windowMs ${windowMs}: must be > 0`);
    if (!Number.isFinite(marginMs) || marginMs < 0) throw new RangeError(`invalid marginMs ${marginMs}: must be >= 0`);
    this.windowMs = windowMs + marginMs;
    this.marginMs = marginMs;
    this.shared = opts.shared;
  }

  /**
   * Sets (or changes) an organization's limit.
   * @throws RangeError naming the value when perMinute is not an integer >= 1.
   */
  set(organizationId: number, perMinute: number): void {
    if (!Number.isInteger(perMinute) || perMinute < 1) throw new RangeError(`invalid Make API limit ${perMinute} for organization ${organizationId}: must be an integer >= 1`);
    const cur = this.byOrg.get(organizationId);
    if (cur?.perMinute === perMinute) return;
    const limiter = new SlidingLogLimiter([{ limit: perMinute, windowMs: this.windowMs }]);
    const now = performance.now();
    const starts = (cur?.starts ?? []).filter((t) => t > now - this.windowMs);
    for (const t of starts) limiter.tryStart(t);
    this.byOrg.set(organizationId, { perMinute, limiter, starts });
  }

  /** The limit in force, or undefined when none was set. */
  get(organizationId: number): number | undefined {
    return this.byOrg.get(organizationId)?.perMinute;
  }

  /**
   * Waits for the organization's next free start (at once when no limit was set).
   * @throws MakeRateLimitWaitError when the start lies beyond `deadlineMs` from now; the signal's reason when aborted;
   *   with a shared store, its `AdmissionStoreError` (retryable) when the store fails.
   */
  async acquire(organizationId: number, signal: AbortSignal | undefined, deadlineMs: number): Promise<void> {
    const end = performance.now() + deadlineMs;
    for (;;) {
      signal?.throwIfAborted();
      const o = this.byOrg.get(organizationId);
      if (!o) return;
      const now = performance.now();
      const at = o.limiter.nextStartAt(now);
      if (at <= now && o.limiter.tryStart(now)) {
        o.starts.push(now);
        if (o.starts.length > o.perMinute) o.starts.splice(0, o.starts.length - o.perMinute);
        if (this.shared) await this.acquireShared(organizationId, o.perMinute, signal, end);
        return;
      }
      if (at > end) throw new MakeRateLimitWaitError(organizationId, at - now);
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(done, Math.max(1, Math.ceil(at - now)));
        function done() {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }
        function onAbort() {
          clearTimeout(t);
          reject(signal!.reason);
        }
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  }

  /** The cluster-wide stage: the same window, counted by every process on the store's clock. */
  private async acquireShared(organizationId: number, perMinute: number, signal: AbortSignal | undefined, deadline: number): Promise<void> {
    try {
      // Rate only: nothing to release when the call ends.
      await this.shared!.acquire(`make-org:${organizationId}`, {
        windows: [{ limit: perMinute, windowMs: this.windowMs }],
        maxConcurrent: undefined,
        deadline,
        signal,
        // The margin is the guard here: a grant may be used while half of it is left.
        maxGrantAgeMs: Math.max(12.5, this.marginMs / 2),
      });
    } catch (err) {
      if (err instanceof AdmissionWaitError) throw new MakeRateLimitWaitError(organizationId, err.retryAfterMs);
      throw err;
    }
  }
}

export interface MakeClientOptions {
  /** Registry service id, for messages. */
  serviceId: string;
  organizationId: number;
  transport: MakeTransport;
  /** Shared per-organization limits; without it only the transport's limits apply. */
  limits?: MakeOrganizationLimits;
  /** Page size for listings, [1, 10000]. Default 100. */
  pageLimit?: number;
  /** Per-call deadline, ms. Default 30000. */
  timeoutMs?: number;
  /** Most items one listing may hold before it stops with an error, >= 1. Default 10000. */
  maxListItems?: number;
  /** Most pages one listing may take before it stops with an error, >= 1. Default 1000. */
  maxListPages?: number;
}

/** What identifies a listed item when comparing pages: its `id`, else its JSON text. */
const idOf = (it: unknown): string => (it && typeof it === 'object' && 'id' in it ? String((it as { id: unknown }).id) : JSON.stringify(it));

const qs = (q: Record<string, string | number | boolean | undefined>): string => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
};

/**
 * Typed access to the Make endpoints this project uses. Every method throws
 * {@link MakeApiError} on an HTTP error status and passes transport errors through.
 */
export class MakeClient {
  readonly serviceId: string;
  readonly organizationId: number;
  private readonly transport: MakeTransport;
  private readonly limits?: MakeOrganizationLimits;
  private readonly pageLimit: number;
  private readonly timeoutMs: number;
  private readonly maxListItems: number;
  private readonly maxListPages: number;

  /** @throws RangeError naming the option when pageLimit, timeoutMs, maxListItems or maxListPages is out of range. */
  constructor(opts: MakeClientOptions) {
    this.serviceId = opts.serviceId;
    this.organizationId = opts.organizationId;
    this.transport = opts.transport;
    this.limits = opts.limits;
    this.pageLimit = opts.pageLimit ?? MAKE_DEFAULT_PAGE_LIMIT;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    makePageQuery(0, this.pageLimit); // validates pageLimit
    if (!Number.isFinite(this.timeoutMs) || this.timeoutMs <= 0) throw new RangeError(`invalid timeoutMs ${this.timeoutMs}: must be > 0`);
    this.maxListItems = opts.maxListItems ?? MAKE_DEFAULT_MAX_LIST_ITEMS;
    this.maxListPages = opts.maxListPages ?? MAKE_DEFAULT_MAX_LIST_PAGES;
    for (const [name, v] of [['maxListItems', this.maxListItems], ['maxListPages', this.maxListPages]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`invalid ${name} ${v}: must be an integer >= 1`);
    }
  }

  /**
   * One call; resolves with the parsed body of a 2xx answer.
   * @param exempt true for calls Make does not count against the organization limit (`POST /scenarios/{id}/run`).
   * @throws MakeApiError on any other status.
   */
  async call<T>(call: MakeCall, signal?: AbortSignal, exempt = false): Promise<T> {
    const timeoutMs = call.timeoutMs ?? this.timeoutMs;
    if (!exempt && this.limits) await this.limits.acquire(this.organizationId, signal, timeoutMs);
    const reply = await this.transport.send({ ...call, timeoutMs }, signal);
    if (reply.status >= 200 && reply.status < 300) return reply.body as T;
    // Retry-After in either RFC 9110 form (delay-seconds or HTTP-date).
    const retryAfterMs = parseRetryAfter(reply.headers['retry-after'], Date.now());
    throw new MakeApiError(parseMakeError(reply.status, call.method, call.path, reply.body), this.serviceId, retryAfterMs);
  }

  /**
   * Every item of a paginated listing, page by page (`pg[offset]`, `pg[limit]`),
   * until a page comes back shorter than the page size (Make sends no total).
   * Never loops: a page holding the same ids as the previous one means the
   * server ignored `pg[offset]`, and a listing past `maxListItems` items or
   * `maxListPages` pages is cut off; both throw {@link MakeAnswerError} naming
   * the endpoint (items of the pages before were already yielded).
   * @param key the body member holding the items, e.g. `connections`.
   */
  async *paginate<T>(path: string, key: string, query: Record<string, string | number | undefined>, signal?: AbortSignal): AsyncGenerator<T> {
    const stop = (problem: string, hint: string) => new MakeAnswerError('GET', path, this.serviceId, problem, hint);
    let offset: number | undefined = 0;
    let pages = 0;
    let count = 0;
    let previous: string[] | undefined;
    while (offset !== undefined) {
      if (pages >= this.maxListPages) {
        throw stop(`more than ${this.maxListPages} pages (maxListPages) of ${this.pageLimit} items; listing stopped`, 'narrow the listing or raise maxListPages');
      }
      const body: Record<string, unknown> = await this.call<Record<string, unknown>>(
        { method: 'GET', path: `${path}${qs({ ...query, ...makePageQuery(offset, this.pageLimit) })}` },
        signal,
      );
      pages++;
      const items = body?.[key];
      if (!Array.isArray(items)) {
        throw new MakeApiError(
          { status: 200, method: 'GET', path, detail: `answer has no "${key}" array`, suberrors: [] },
          this.serviceId,
        );
      }
      const ids = items.map(idOf);
      if (makePageRepeats(previous, ids)) {
        throw stop(
          `the page at pg[offset]=${offset} repeats the previous page (the same ${ids.length} ids), so the server ignores pg[offset]; listing stopped after ${pages} pages`,
          "check that the API base URL is Make's (no proxy rewriting the query string)",
        );
      }
      if (count + items.length > this.maxListItems) {
        throw stop(`more than ${this.maxListItems} items (maxListItems); listing stopped after ${pages} pages`, 'narrow the listing or raise maxListItems');
      }
      for (const it of items) yield it as T;
      count += items.length;
      previous = ids;
      offset = makeNextOffset(offset, this.pageLimit, items.length);
    }
  }

  /** Collects an async iterator into an array. */
  static async all<T>(it: AsyncIterable<T>): Promise<T[]> {
    const out: T[] = [];
    for await (const x of it) out.push(x);
    return out;
  }

  /** `GET /users/me`: the token's user (checks the token). */
  async me(signal?: AbortSignal): Promise<{ id: number; name?: string }> {
    return (await this.call<{ authUser: { id: number; name?: string } }>({ method: 'GET', path: '/users/me' }, signal)).authUser;
  }

  /**
   * `GET /organizations/{id}`: the organization, with `license.apiLimit`
   * (requests per minute), `isPaused`, and `operations` used against
   * `license.operations` (read with `evaluateOrganization`).
   * @throws MakeAnswerError when the answer has no `organization` object.
   */
  async organization(signal?: AbortSignal): Promise<MakeOrganization> {
    const path = `/organizations/${this.organizationId}`;
    const r = await this.call<{ organization?: unknown }>({ method: 'GET', path }, signal);
    const org = r && typeof r === 'object' ? r.organization : undefined;
    if (!org || typeof org !== 'object' || Array.isArray(org)) {
      throw new MakeAnswerError('GET', path, this.serviceId, 'the answer has no "organization" object', "check that the API base URL is Make's and organizationId is right");
    }
    return org as MakeOrganization;
  }

  /**
   * `GET /users/me/current-authorization` → `{ authorization: { authUsed, scope } }`:
   * how this call was authorized and the token's API scopes (the official
   * SDK's `users.currentAuthorization` reads the same members).
   * @throws MakeAnswerError when the answer holds no `authorization.scope` list of names (never read as "no scopes" or "all scopes").
   */
  async currentAuthorization(signal?: AbortSignal): Promise<MakeAuthorization> {
    const path = '/users/me/current-authorization';
    const r = await this.call<unknown>({ method: 'GET', path }, signal);
    const auth = r && typeof r === 'object' ? (r as { authorization?: unknown }).authorization : undefined;
    const scope = auth && typeof auth === 'object' ? (auth as { scope?: unknown }).scope : undefined;
    if (!Array.isArray(scope) || !scope.every((x): x is string => typeof x === 'string')) {
      throw new MakeAnswerError('GET', path, this.serviceId, 'the answer has no "authorization.scope" list of scope names', "check that the API base URL is Make's; the token's scopes cannot be known");
    }
    const authUsed = (auth as { authUsed?: unknown }).authUsed;
    return { scope, ...(typeof authUsed === 'string' ? { authUsed } : {}) };
  }

  /** `GET /connections?teamId=`: every connection of a team. */
  connections(teamId: number, signal?: AbortSignal): AsyncGenerator<MakeConnection> {
    return this.paginate<MakeConnection>('/connections', 'connections', { teamId }, signal);
  }

  /** `GET /connections/{id}`. */
  async connection(id: number, signal?: AbortSignal): Promise<MakeConnection> {
    return (await this.call<{ connection: MakeConnection }>({ method: 'GET', path: `/connections/${id}` }, signal)).connection;
  }

  /** `POST /connections/{id}/test`: Make re-checks the stored data against the app. */
  async testConnection(id: number, signal?: AbortSignal): Promise<boolean> {
    const r = await this.call<{ verified?: boolean }>({ method: 'POST', path: `/connections/${id}/test` }, signal);
    return r.verified === true;
  }

  /**
   * `GET /connections/{id}/editable-data-schema` → `{ editableParameters: string[] }`:
   * the names of the fields `set-data` takes (Make API v2; the official SDK's
   * `listEditableParameters` reads the same member). May be empty.
   * @throws MakeAnswerError when the answer holds no such list of names (never read as "no fields").
   */
  async editableParameters(id: number, signal?: AbortSignal): Promise<string[]> {
    const path = `/connections/${id}/editable-data-schema`;
    const r = await this.call<unknown>({ method: 'GET', path }, signal);
    const list = r && typeof r === 'object' ? (r as { editableParameters?: unknown }).editableParameters : undefined;
    if (!Array.isArray(list) || !list.every((x): x is string => typeof x === 'string')) {
      throw new MakeAnswerError('GET', path, this.serviceId, 'the answer has no "editableParameters" list of field names', 'check the connection in Make; the fields set-data would keep cannot be known');
    }
    return list;
  }

  /**
   * `POST /connections/{id}/set-data`: replaces the connection's data (missing
   * fields become empty). Errors never echo `data`.
   */
  async setConnectionData(id: number, data: Record<string, unknown>, idempotencyKey?: string, signal?: AbortSignal): Promise<boolean> {
    const r = await this.call<{ changed?: boolean }>({ method: 'POST', path: `/connections/${id}/set-data`, json: data, idempotencyKey }, signal);
    return r.changed !== false;
  }

  /** `GET /scenarios?teamId=`. */
  scenarios(teamId: number, signal?: AbortSignal): AsyncGenerator<MakeScenario> {
    return this.paginate<MakeScenario>('/scenarios', 'scenarios', { teamId }, signal);
  }

  /** `GET /scenarios/{id}`. */
  async scenario(id: number, signal?: AbortSignal): Promise<MakeScenario> {
    return (await this.call<{ scenario: MakeScenario }>({ method: 'GET', path: `/scenarios/${id}` }, signal)).scenario;
  }

  /** `GET /scenarios/{id}/logs`: the newest `count` execution logs, newest first. */
  async scenarioLogs(id: number, count: number, signal?: AbortSignal): Promise<MakeScenarioLog[]> {
    const r = await this.call<{ scenarioLogs?: MakeScenarioLog[] }>(
      { method: 'GET', path: `/scenarios/${id}/logs${qs({ 'pg[sortDir]': 'desc', ...makePageQuery(0, count) })}` },
      signal,
    );
    return r.scenarioLogs ?? [];
  }

  /**
   * `POST /scenarios/{id}/run` with `responsive: false`: starts a run and
   * returns its execution id at once (follow it with {@link execution}).
   * Make does not count runs against the organization limit.
   */
  async runScenario(id: number, data: Record<string, unknown> | undefined, signal?: AbortSignal): Promise<{ executionId: string }> {
    return this.call<{ executionId: string }>({ method: 'POST', path: `/scenarios/${id}/run`, json: { ...(data ? { data } : {}), responsive: false } }, signal, true);
  }

  /** `GET /scenarios/{scenarioId}/executions/{executionId}`: `RUNNING`, then `SUCCESS`, `WARNING` or `ERROR`. */
  async execution(scenarioId: number, executionId: string, signal?: AbortSignal): Promise<MakeExecution> {
    return this.call<MakeExecution>({ method: 'GET', path: `/scenarios/${scenarioId}/executions/${encodeURIComponent(executionId)}` }, signal);
  }

  /** `GET /hooks?teamId=`. */
  hooks(teamId: number, signal?: AbortSignal): AsyncGenerator<MakeHook> {
    return this.paginate<MakeHook>('/hooks', 'hooks', { teamId }, signal);
  }

  /** `GET /hooks/{id}`. */
  async hook(id: number, signal?: AbortSignal): Promise<MakeHook> {
    return (await this.call<{ hook: MakeHook }>({ method: 'GET', path: `/hooks/${id}` }, signal)).hook;
  }
}
