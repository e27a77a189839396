/**
 * Cluster-wide admission in Redis: one Lua script per batch of starts (one
 * round trip, atomic: Redis runs a script alone). The clock is the server's
 * (`TIME` inside the script), so hosts with skewed clocks still agree.
 *
 * Per key and window the log is a sorted set of start times (score: ms on
 * the server's clock): entries that have left the window are trimmed, and a
 * start is admitted while fewer than `limit` remain, the sliding log of
 * `src/domain/rate-limit.ts`. Concurrency holds are a sorted set of hold ids
 * scored by their lease's expiry, renewed by the instance that took them.
 * Keys carry the limit's key in a hash tag (`ia:admission:{service:x}:...`),
 * so every key one script touches lives on one Redis Cluster slot.
 */
import Redis from 'ioredis';
import type { WindowLimit } from '../../domain/rate-limit';
import { LeaseBook } from './leases';
import { checkLease } from './postgres';
import { AdmissionStoreError, checkRequest, storeAddress, type ClusterGrant, type ClusterLimiter } from './types';

/** Options of {@link RedisClusterLimiter.open}. */
export interface RedisLimiterOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (INTEGRATION_AGENT_REDIS_URL). */
  url: string;
  /** Lease of a concurrency hold, ms; default 10_000. */
  leaseMs?: number;
  /** Renewal interval of live holds, ms; default 3_000 (must be < leaseMs). */
  renewEveryMs?: number;
  /** Longest a round trip may take before it fails as the store's failure, ms; default 2_000. */
  commandTimeoutMs?: number;
  /** Told when a lease renewal fails (the holds then expire by themselves). */
  onRenewError?: (err: unknown) => void;
}

/**
 * KEYS: [holds, window 1, ..., window n].
 * ARGV: count, maxConcurrent (0: none), leaseMs, member prefix, then limit and windowMs per window, then count hold ids.
 * Returns { granted, retryAfterMs (string: Redis would truncate a float), blockedBy ('' when all admitted) }.
 */
const TAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local count = tonumber(ARGV[1])
local maxc = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local prefix = ARGV[4]
local nw = #KEYS - 1
local k = count
local cards = {}
for i = 1, nw do
  local lim = tonumber(ARGV[3 + 2 * i])
  local win = tonumber(ARGV[4 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', now - win)
  local c = redis.call('ZCARD', KEYS[i + 1])
  cards[i] = c
  if lim - c < k then k = math.max(0, lim - c) end
end
local conc = false
if maxc > 0 and k > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local live = redis.call('ZCARD', KEYS[1])
  if maxc - live < k then
    k = math.max(0, maxc - live)
    conc = true
  end
end
local retry = 0
for i = 1, nw do
  local lim = tonumber(ARGV[3 + 2 * i])
  local win = tonumber(ARGV[4 + 2 * i])
  local key = KEYS[i + 1]
  if k < count and cards[i] + k >= lim then
    local idx = cards[i] + k - lim
    local s = now
    if idx < cards[i] then
      local e = redis.call('ZRANGE', key, idx, idx, 'WITHSCORES')
      s = tonumber(e[2])
    end
    retry = math.max(retry, s + win - now)
  end
  if k > 0 then
    local args = {}
    for j = 1, k do
      args[2 * j - 1] = now
      args[2 * j] = prefix .. j
    end
    redis.call('ZADD', key, unpack(args))
    redis.call('PEXPIRE', key, math.ceil(win) + 1000)
  end
end
if maxc > 0 and k > 0 then
  local args = {}
  local base = 4 + 2 * nw
  for j = 1, k do
    args[2 * j - 1] = now + lease
    args[2 * j] = ARGV[base + j]
  end
  redis.call('ZADD', KEYS[1], unpack(args))
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease) + 1000)
end
local blocked = ''
if k < count then
  if conc then blocked = 'concurrency' else blocked = 'rate' end
end
return { k, tostring(retry), blocked }
`;

/** KEYS: [holds]. ARGV: leaseMs, hold ids. Extends the leases still alive (an expired one is not revived: its slot may be taken). */
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) > now then redis.call('ZADD', KEYS[1], now + lease, ARGV[i]) end
end
redis.call('PEXPIRE', KEYS[1], math.ceil(lease) + 1000)
return 1
`;

type Scripted = Redis & {
  iaAdmissionTake(numKeys: number, ...args: (string | number)[]): Promise<[number, string, string]>;
  iaAdmissionRenew(numKeys: number, ...args: (string | number)[]): Promise<number>;
};

const holdsKey = (key: string) => `ia:admission:{${key}}:holds`;
const windowKey = (key: string, windowMs: number) => `ia:admission:{${key}}:w:${windowMs}`;

/** The Redis {@link ClusterLimiter}. Open with {@link RedisClusterLimiter.open}. */
export class RedisClusterLimiter implements ClusterLimiter {
  readonly store: string;
  readonly leaseMs: number;
  readonly renewEveryMs: number;
  private readonly leases: LeaseBook;
  private closed = false;
  private seq = 0;

  private constructor(
    private readonly redis: Scripted,
    address: string,
    opts: RedisLimiterOptions,
  ) {
    this.store = `Redis at ${address}`;
    this.leaseMs = opts.leaseMs ?? 10_000;
    this.renewEveryMs = opts.renewEveryMs ?? 3_000;
    this.leases = new LeaseBook(this.renewEveryMs, (holds) => this.renew(holds), opts.onRenewError);
  }

  /**
   * Connects and checks the round trip once.
   * @throws RangeError when leaseMs/renewEveryMs are out of range; AdmissionStoreError when the server cannot be reached.
   */
  static async open(opts: RedisLimiterOptions): Promise<RedisClusterLimiter> {
    checkLease(opts.leaseMs ?? 10_000, opts.renewEveryMs ?? 3_000);
    const timeout = opts.commandTimeoutMs ?? 2_000;
    const redis = new Redis(opts.url, {
      lazyConnect: true,
      // A command never waits for a connection that is not there: it fails at once, as the store's failure.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: timeout,
      connectTimeout: timeout,
      connectionName: 'integration-agent-admission',
      retryStrategy: (times) => Math.min(times * 100, 1_000),
    }) as Scripted;
    // Errors reach the commands that fail; without a listener ioredis would print each one.
    redis.on('error', () => {});
    redis.defineCommand('iaAdmissionTake', { lua: TAKE });
    redis.defineCommand('iaAdmissionRenew', { lua: RENEW });
    const limiter = new RedisClusterLimiter(redis, storeAddress(opts.url, 6379), opts);
    try {
      await redis.connect();
      // Loads the script now (EVALSHA's first NOSCRIPT), not on the first call's clock.
      await redis.iaAdmissionTake(1, holdsKey('ia-admission:warm-up'), 1, 0, 0, 'warm-up:');
    } catch (err) {
      redis.disconnect();
      throw new AdmissionStoreError(limiter.store, err);
    }
    return limiter;
  }

  async tryAcquire(key: string, windows: readonly WindowLimit[], maxConcurrent: number | undefined, count: number): Promise<ClusterGrant> {
    if (this.closed) throw new AdmissionStoreError(this.store, new Error('the limiter is closed'));
    checkRequest(key, windows, maxConcurrent, count);
    const holdIds = maxConcurrent === undefined ? [] : this.leases.newIds(count);
    const keys = [holdsKey(key)];
    for (const w of windows) keys.push(windowKey(key, w.windowMs));
    const args: (string | number)[] = [count, maxConcurrent ?? 0, this.leaseMs, `${this.leases.newIds(1)[0]}.${(this.seq++).toString(36)}:`];
    for (const w of windows) args.push(w.limit, w.windowMs);
    for (const id of holdIds) args.push(id);
    let reply: [number, string, string];
    try {
      reply = await this.redis.iaAdmissionTake(keys.length, ...keys, ...args);
    } catch (err) {
      throw new AdmissionStoreError(this.store, err);
    }
    const granted = Number(reply[0]);
    const held = holdIds.slice(0, granted);
    for (const id of held) this.leases.add(id, key);
    const blockedBy = reply[2] === 'rate' || reply[2] === 'concurrency' ? reply[2] : undefined;
    return { granted, holdIds: held, retryAfterMs: Math.max(0, Number(reply[1])), blockedBy };
  }

  async release(holdId: string): Promise<void> {
    const key = this.leases.remove(holdId);
    if (key === undefined) return;
    await this.redis.zrem(holdsKey(key), holdId).catch(() => {});
  }

  /** One script call per key (pipelined: one round trip), so each touches one hash slot. */
  private async renew(holds: ReadonlyMap<string, string>): Promise<void> {
    const byKey = new Map<string, string[]>();
    for (const [id, key] of holds) {
      const ids = byKey.get(key);
      if (ids) ids.push(id);
      else byKey.set(key, [id]);
    }
    const pipeline = this.redis.pipeline() as unknown as { iaAdmissionRenew(...a: (string | number)[]): void; exec(): Promise<[Error | null, unknown][] | null> };
    for (const [key, ids] of byKey) pipeline.iaAdmissionRenew(1, holdsKey(key), this.leaseMs, ...ids);
    let results: [Error | null, unknown][] | null;
    try {
      results = await pipeline.exec();
    } catch (err) {
      throw new AdmissionStoreError(this.store, err);
    }
    const failed = results?.find(([e]) => e !== null);
    if (failed) throw new AdmissionStoreError(this.store, failed[0]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.leases.stop();
    const holds = [...this.leases.holds];
    this.leases.holds.clear();
    if (holds.length > 0) {
      const pipeline = this.redis.pipeline();
      for (const [id, key] of holds) pipeline.zrem(holdsKey(key), id);
      await pipeline.exec().catch(() => {});
    }
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
