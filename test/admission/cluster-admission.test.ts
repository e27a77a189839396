/**
 * Cluster-wide admission, the same contract on both stores (real PostgreSQL,
 * real Redis, real HTTP servers on loopback): several limiters, each on its
 * own connections as separate worker processes would be, never let more
 * starts through than the limit in any window, counted where the requests
 * arrive; maxConcurrent holds across them; a dead holder's slot comes back
 * within its lease; a store that is down fails calls retryably and never
 * lifts the limit; unlimited services never reach the store.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createCoordinator, CoordinatorError, type Coordinator } from '../../src/activities/coordinator';
import { MakeOrganizationLimits, MakeRateLimitWaitError } from '../../src/activities/make';
import { openClusterLimiter, openSharedAdmission, AdmissionStoreError, SharedAdmission, type ClusterLimiter } from '../../src/state/admission';
import { failure, maxInAnyWindow, registryOf, sleep, startServer, staticRegistry, type TestServer } from '../coordinator/servers';
import { runChild, startStore, STORES, type TestStore } from './stores';

const services = (origin: string) => [
  { id: 'five-per-second', endpoints: [{ url: origin }], rateLimit: { perSecond: 5 } },
  { id: 'two-at-once', endpoints: [{ url: origin }], rateLimit: { maxConcurrent: 2 } },
  { id: 'one-per-second', endpoints: [{ url: origin }], rateLimit: { perSecond: 1 } },
  { id: 'free', endpoints: [{ url: origin }] },
];

describe.each(STORES)('cluster-wide admission on %s', (name) => {
  let store: TestStore;
  const open: { close(): Promise<unknown> }[] = [];
  const servers: TestServer[] = [];

  beforeAll(async () => {
    store = await startStore(name);
  });
  afterAll(async () => {
    await store.stop();
  });
  afterEach(async () => {
    // Coordinators first (their calls end), then the admissions, then the servers.
    for (const o of open.splice(0)) await o.close();
    await Promise.all(servers.splice(0).map((s) => s.close().catch(() => {})));
  });

  async function sharedAdmission(): Promise<SharedAdmission> {
    const a = await openSharedAdmission(store.config);
    open.push(a!);
    return a!;
  }

  async function limiter(opts: { leaseMs?: number; renewEveryMs?: number } = {}): Promise<ClusterLimiter> {
    const l = await openClusterLimiter({ ...store.config, ...opts });
    open.push(l!);
    return l!;
  }

  /**
   * A coordinator of its own, with a shared admission on connections of its
   * own: one "worker process". Warmed up by one unlimited call, as a worker is
   * long before a burst: a process's very first request pays for loading
   * undici's parser, which the guard is not meant to cover.
   */
  async function workerCoordinator(s: TestServer): Promise<{ coordinator: Coordinator; shared: SharedAdmission }> {
    const shared = await openSharedAdmission(store.config);
    const coordinator = createCoordinator({ registry: staticRegistry(registryOf(services(s.origin))), reporterId: 'test', sharedAdmission: shared });
    // Closed in this order after the test: the coordinator, then its admission.
    open.push(coordinator, shared!);
    await coordinator.request('free', { path: '/warm-up', cache: false });
    const i = s.seen.findIndex((x) => x.url === '/warm-up');
    if (i >= 0) s.seen.splice(i, 1);
    return { coordinator, shared: shared! };
  }

  async function server(handler: (req: IncomingMessage, res: ServerResponse) => void = (_q, res) => res.end('ok')): Promise<TestServer> {
    const s = await startServer(handler);
    servers.push(s);
    return s;
  }

  it('three limiters under one burst: no 1 s window at the server holds more than the limit, and every call gets through', async () => {
    const s = await server();
    const workers = await Promise.all([0, 1, 2].map(() => workerCoordinator(s)));
    const calls = workers.flatMap(({ coordinator }, w) =>
      Array.from({ length: 6 }, (_, i) => coordinator.request('five-per-second', { path: `/w${w}/${i}`, cache: false, timeoutMs: 30_000 })),
    );
    const results = await Promise.allSettled(calls);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(s.seen).toHaveLength(18);
    expect(maxInAnyWindow(s.seen.map((x) => x.at), 1_000)).toBeLessThanOrEqual(5);
  });

  it('holds several windows at once, counted on the store across limiters', async () => {
    const limiters = await Promise.all([0, 1, 2].map(() => sharedAdmission()));
    // Widened by the 25 ms guard, as the coordinator widens them.
    const windows = [
      { limit: 2, windowMs: 325 },
      { limit: 4, windowMs: 1_025 },
    ];
    const starts: number[] = [];
    await Promise.all(
      limiters.flatMap((l) =>
        Array.from({ length: 4 }, () =>
          l.acquire('several-windows', { windows, maxConcurrent: undefined, deadline: performance.now() + 30_000 }).then(() => void starts.push(performance.now())),
        ),
      ),
    );
    expect(starts).toHaveLength(12);
    // Measured on this process's clock when each grant came back.
    expect(maxInAnyWindow(starts, 300)).toBeLessThanOrEqual(2);
    expect(maxInAnyWindow(starts, 1_000)).toBeLessThanOrEqual(4);
  });

  it('maxConcurrent holds across three coordinators, and released slots are reused', async () => {
    let inFlight = 0;
    let most = 0;
    const s = await server((req, res) => {
      if (req.url !== '/warm-up') most = Math.max(most, ++inFlight);
      else inFlight++;
      setTimeout(() => {
        inFlight--;
        res.end('ok');
      }, 30);
    });
    const workers = await Promise.all([0, 1, 2].map(() => workerCoordinator(s)));
    const results = await Promise.allSettled(
      workers.flatMap(({ coordinator }, w) => Array.from({ length: 5 }, (_, i) => coordinator.request('two-at-once', { path: `/w${w}/${i}`, cache: false, timeoutMs: 30_000 }))),
    );
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(s.seen).toHaveLength(15);
    expect(most).toBeLessThanOrEqual(2);
    expect(most).toBe(2);
  });

  it("frees a dead holder's slot within its lease, and not while the holder lives", async () => {
    const key = 'lease-test';
    const holder = runChild('lease-holder.ts', { ...store.env, IA_TEST_KEY: key, IA_TEST_LEASE_MS: '2000', IA_TEST_RENEW_MS: '300' });
    try {
      await holder.printed('held');
      const mine = await limiter({ leaseMs: 2_000, renewEveryMs: 300 });
      // Alive and renewing: the slot stays taken past its first lease.
      const until = performance.now() + 3_000;
      while (performance.now() < until) {
        const g = await mine.tryAcquire(key, [], 1, 1);
        expect(g).toMatchObject({ granted: 0, blockedBy: 'concurrency' });
        await sleep(250);
      }
      holder.proc.kill('SIGKILL');
      await holder.done.catch(() => undefined);
      // Dead: the lease runs out (2 s after its last renewal) and the slot is ours.
      const deadline = performance.now() + 2_000 + 5_000;
      let granted = 0;
      while (granted === 0 && performance.now() < deadline) {
        granted = (await mine.tryAcquire(key, [], 1, 1)).granted;
        if (granted === 0) await sleep(100);
      }
      expect(granted).toBe(1);
    } finally {
      holder.proc.kill('SIGKILL');
    }
  });

  it('a call the cluster-wide limit cannot admit before its deadline fails at once as rate_limited, with the wait', async () => {
    const s = await server();
    const [a, b] = await Promise.all([workerCoordinator(s), workerCoordinator(s)]);
    await a!.coordinator.request('one-per-second', { path: '/first', cache: false });
    const err = await failure(b!.coordinator.request('one-per-second', { path: '/second', cache: false, timeoutMs: 300 }));
    expect(err).toMatchObject({ kind: 'rate_limited', retryable: true, notSent: true, code: 'RATE_LIMITED' });
    expect(err.retryAfterMs).toBeGreaterThan(300);
    expect(s.seen.map((x) => x.url)).toEqual(['/first']);
  });

  it("Make's organisation limit holds across processes (same key, store's clock)", async () => {
    const [x, y] = await Promise.all([sharedAdmission(), sharedAdmission()]);
    // A one-second "minute" with a 25 ms margin, so the test runs in seconds.
    const limits = [x, y].map((shared) => new MakeOrganizationLimits({ windowMs: 1_000, marginMs: 25, shared }));
    for (const l of limits) l.set(42, 3);
    const starts: number[] = [];
    await Promise.all(limits.flatMap((l, n) => Array.from({ length: 4 + n }, () => l.acquire(42, undefined, 30_000).then(() => void starts.push(performance.now())))));
    expect(starts).toHaveLength(9);
    expect(maxInAnyWindow(starts, 1_000)).toBeLessThanOrEqual(3);
    // And once the window is full, a deadline it cannot meet is Make's own rate-limit error.
    let refused: unknown;
    for (let i = 0; i < 4 && refused === undefined; i++) refused = await limits[0]!.acquire(42, undefined, 50).then(() => undefined, (err: unknown) => err);
    expect(refused).toBeInstanceOf(MakeRateLimitWaitError);
  });

  it('unlimited services never reach the store', async () => {
    const s = await server();
    const { coordinator, shared } = await workerCoordinator(s);
    for (let i = 0; i < 5; i++) await coordinator.request('free', { path: `/${i}`, cache: false });
    expect(shared.stats.roundTrips).toBe(0);
    expect(s.seen).toHaveLength(5);
    await coordinator.request('five-per-second', { path: '/limited', cache: false });
    expect(shared.stats.roundTrips).toBeGreaterThan(0);
  });

  it('a store far away (every round trip 40 ms, past the 12.5 ms grant age) still admits, within the limit', async () => {
    const proxy = await delayingProxy(new URL(store.url).port, 20);
    try {
      const far = new URL(store.url);
      far.port = String(proxy.port);
      const shared = await openSharedAdmission(name === 'Redis' ? { redisUrl: far.toString() } : { databaseUrl: far.toString() });
      const s = await server();
      const coordinator = createCoordinator({ registry: staticRegistry(registryOf(services(s.origin))), reporterId: 'test', sharedAdmission: shared });
      open.push(coordinator, shared!);
      await coordinator.request('free', { path: '/warm-up', cache: false });
      await Promise.all(Array.from({ length: 4 }, (_, i) => coordinator.request('five-per-second', { path: `/far/${i}`, cache: false, timeoutMs: 10_000 })));
      const arrivals = s.seen.filter((x) => x.url.startsWith('/far/'));
      expect(arrivals).toHaveLength(4);
      expect(maxInAnyWindow(arrivals.map((x) => x.at), 1_000)).toBeLessThanOrEqual(5);
    } finally {
      await proxy.close();
    }
  });

  // Last: it stops the store.
  it('a store that is down fails limited calls retryably, naming the store, and sends nothing; unlimited calls go on', async () => {
    const s = await server();
    const { coordinator } = await workerCoordinator(s);
    await coordinator.request('five-per-second', { path: '/before', cache: false });
    await store.stop();
    const err = await failure(coordinator.request('five-per-second', { path: '/after', cache: false, timeoutMs: 10_000 }));
    expect(err).toBeInstanceOf(CoordinatorError);
    expect(err).toMatchObject({ kind: 'other', retryable: true, notSent: true, code: 'ADMISSION_STORE_UNAVAILABLE' });
    expect(err.message).toContain(`${name} at 127.0.0.1:`);
    expect(err.message).toContain('the limit is not lifted');
    expect(err.message).not.toContain(store.url);
    await coordinator.request('free', { path: '/free', cache: false });
    expect(s.seen.map((x) => x.url)).toEqual(['/before', '/free']);
    // A worker starting now refuses to, with the same message.
    await expect(openSharedAdmission(store.config)).rejects.toBeInstanceOf(AdmissionStoreError);
  });
});

/** A TCP proxy on loopback to 127.0.0.1:`port` that holds every chunk `delayMs` in each direction (a store far away). */
async function delayingProxy(port: string, delayMs: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const relay = (from: Socket, to: Socket) => {
    from.on('data', (d: Buffer) => void setTimeout(() => to.writable && to.write(d), delayMs));
    from.on('close', () => setTimeout(() => to.destroy(), delayMs));
    from.on('error', () => {});
  };
  const proxy = createServer((client) => {
    const upstream = connect(Number(port), '127.0.0.1');
    sockets.add(client).add(upstream);
    relay(client, upstream);
    relay(upstream, client);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  return {
    port: (proxy.address() as { port: number }).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        proxy.close(() => r());
      }),
  };
}
