/**
 * Issue 12: three worker processes (separate OS processes, each a real
 * coordinator with the cluster-wide admission opened from the environment as
 * the worker opens it) fire a burst of calls at one service limited to 5 per
 * second: no 1-second window at the server ever holds more than 5 requests.
 * On PostgreSQL and on Redis.
 */
import { maxInAnyWindow, startServer, type TestServer } from '../coordinator/servers';
import { runChild, startStore, STORES, type TestStore } from './stores';

const CALLS_PER_PROCESS = 8;

describe.each(STORES)('three worker processes sharing one limit on %s', (name) => {
  let store: TestStore;
  let server: TestServer;

  beforeAll(async () => {
    store = await startStore(name);
    server = await startServer((_req, res) => res.end('ok'));
  });
  afterAll(async () => {
    await server.close();
    await store.stop();
  });

  it('no 1 s window at the server holds more than 5 requests, and every call gets through', async () => {
    const burst = JSON.stringify({ origin: server.origin, perSecond: 5, calls: CALLS_PER_PROCESS, timeoutMs: 60_000 });
    const children = [0, 1, 2].map(() => runChild('limited-process.ts', { ...store.env, IA_TEST_BURST: burst }));
    try {
      await Promise.all(children.map((c) => c.printed('ready')));
      for (const c of children) c.proc.stdin!.write('go\n');
      const outputs = await Promise.all(children.map((c) => c.done));
      for (const out of outputs) expect(JSON.parse(out[out.length - 1]!)).toEqual({ ok: CALLS_PER_PROCESS, failed: [] });
    } finally {
      for (const c of children) c.proc.kill('SIGKILL');
    }
    const arrivals = server.seen.filter((s) => s.url.startsWith('/burst'));
    expect(arrivals).toHaveLength(3 * CALLS_PER_PROCESS);
    // All three processes sent: the limit was shared, not taken by one.
    expect(new Set(arrivals.map((s) => new URL(s.url, 'http://x').searchParams.get('pid'))).size).toBe(3);
    expect(maxInAnyWindow(arrivals.map((s) => s.at), 1_000)).toBeLessThanOrEqual(5);
  });
});
