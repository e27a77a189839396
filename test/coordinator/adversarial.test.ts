/**
 * Adversarial tests of the coordinator's hot path (call.ts, coordinator.ts):
 * aborts at every phase, coalescing, the GET cache, failover with redirects,
 * the default pool size, redirect edge cases and bad input. Real loopback
 * servers only (127.0.0.1 / 127.0.0.2), no mocks of undici.
 *
 * The comment above a test names the code that makes it hold where that is
 * not obvious.
 */
import { spawn } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { getEventListeners } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { createCoordinator, CoordinatorError } from '../../src/activities/coordinator';
import type { CallGate, CallPermit, SecretReader } from '../../src/activities/ports';
import type { CallOutcome } from '../../src/domain/outcome';
import {
  activeResources as count,
  collectOutcomes,
  coordinatorHarness,
  failure,
  mutableRegistry,
  registryOf,
  sleep,
  trackTimers,
  waitFor as waitUntil,
  type TestServer,
} from './servers';

const SECRET = 'tok-adv-9c1e5b';
const secrets: SecretReader = {
  async readSecret(_credentialId, versionId) {
    return versionId ? `${SECRET}-${versionId}` : SECRET;
  },
};

const { server, blackHole, coordinatorFor, closeAfterTest } = coordinatorHarness({ secrets, reporterId: 'adv-worker', closeGraceMs: 200 });

type Settled<T> = { state: 'resolved'; value: T } | { state: 'rejected'; error: unknown } | { state: 'pending' };

/** How `p` stands after `graceMs`: used only to tell "settled" from "still waiting on something the test holds back". */
async function settledWithin<T>(p: Promise<T>, graceMs = 500): Promise<Settled<T>> {
  let result: Settled<T> = { state: 'pending' };
  const tracked = p.then(
    (value) => void (result = { state: 'resolved', value }),
    (error: unknown) => void (result = { state: 'rejected', error }),
  );
  await Promise.race([tracked, sleep(graceMs)]);
  return result;
}

/** This file's waits allow a little longer than the shared default. */
const waitFor = (cond: () => boolean, what: string, timeoutMs = 1_500) => waitUntil(cond, what, timeoutMs);

/** A gate whose `admit` answers only when the test says; records every report per permit. */
function manualGate() {
  const waiting: ((p: CallPermit) => void)[] = [];
  const permits: { generation: number; reports: CallOutcome[] }[] = [];
  const gate: CallGate = { admit: () => new Promise<CallPermit>((resolve) => waiting.push(resolve)) };
  return {
    gate,
    permits,
    get pending() {
      return waiting.length;
    },
    grant() {
      const generation = permits.length + 1;
      const rec = { generation, reports: [] as CallOutcome[] };
      permits.push(rec);
      waiting.shift()!({ generation, report: (o) => void rec.reports.push(o) });
    },
  };
}

/** A gate that admits at once and records every report per permit. */
function recordingGate() {
  const permits: CallOutcome[][] = [];
  const gate: CallGate = {
    admit: async () => {
      const reports: CallOutcome[] = [];
      permits.push(reports);
      return { generation: 1, report: (o) => void reports.push(o) };
    },
  };
  return { gate, permits };
}

/** Warm-up for the leak checks: undici's lazy internals (parser, timer wheel) are created once, not per call. */
async function warmUp(): Promise<void> {
  const ok = await server((_req, res) => res.writeHead(200, { connection: 'close' }).end('ok'));
  const c = coordinatorFor([{ id: 'warm', endpoints: [{ url: ok.origin }] }]);
  await c.request('warm', { path: '/' });
  await waitFor(() => ok.sockets.size === 0, 'the warm-up connection to close');
}

const cleanups: (() => void)[] = [];

/**
 * A loopback address where TCP connects hang (SYN never answered), as on a host
 * that drops packets: a listener with backlog 1 in a child process that is
 * stopped (SIGSTOP), its accept queue filled by two connections of our own.
 */
async function unacceptingListener(): Promise<{ origin: string; port: number }> {
  const child = spawn(process.execPath, [
    '-e',
    `const s = require('net').createServer(() => {}); s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => process.stdout.write(s.address().port + '\\n'));`,
  ]);
  const fill: Socket[] = [];
  cleanups.push(() => {
    for (const f of fill) f.destroy();
    child.kill('SIGKILL');
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
  });
  process.kill(child.pid!, 'SIGSTOP');
  for (let i = 0; i < 3; i++) {
    const f = netConnect(port, '127.0.0.1');
    f.on('error', () => {});
    fill.push(f);
  }
  await sleep(100);
  // A probe must now hang in connect.
  const probe = netConnect(port, '127.0.0.1');
  probe.on('error', () => {});
  await sleep(100);
  const hangs = probe.connecting;
  probe.destroy();
  if (!hangs) throw new Error('test setup: connects to the stopped listener do not hang');
  return { origin: `http://127.0.0.1:${port}`, port };
}

afterEach(() => {
  for (const f of cleanups.splice(0)) f();
});

describe('aborts at every phase', () => {
  it('abort while an async gate decides: rejects at once as aborted, nothing sent, the late permit gets exactly one aborted report', async () => {
    const s = await server((_req, res) => res.end('ok'));
    const g = manualGate();
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { gate: g.gate, outcomes });
    const ac = new AbortController();
    const call = c.request('svc', { path: '/', cache: false }, ac.signal);
    await waitFor(() => g.pending === 1, 'the gate to be asked');
    ac.abort();
    // The gate is still undecided: the call must not wait for it.
    const early = await settledWithin(call);
    expect(early.state).toBe('rejected');
    expect((early as { error: CoordinatorError }).error).toMatchObject({ kind: 'aborted', retryable: false });
    g.grant();
    await sleep(20);
    expect(g.permits[0]!.reports).toEqual([expect.objectContaining({ failureKind: 'aborted', ok: false, generation: 1 })]);
    expect(s.seen).toHaveLength(0);
    expect(outcomes.all).toEqual([]);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    // The service still works.
    const next = c.request('svc', { path: '/', cache: false });
    await waitFor(() => g.pending === 1, 'the gate to be asked again');
    g.grant();
    expect((await next).body).toBe('ok');
    expect(g.permits[1]!.reports).toEqual([expect.objectContaining({ ok: true, status: 200 })]);
  });

  it('the deadline while an async gate decides: timeout, and the late permit gets one aborted report (nothing was sent)', async () => {
    const s = await server((_req, res) => res.end('ok'));
    const g = manualGate();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { gate: g.gate });
    const err = await failure(c.request('svc', { path: '/', cache: false, timeoutMs: 50 }));
    expect(err).toMatchObject({ kind: 'timeout', code: 'DEADLINE_EXCEEDED', retryable: true });
    g.grant();
    await sleep(20);
    expect(g.permits[0]!.reports).toEqual([expect.objectContaining({ failureKind: 'aborted' })]);
    expect(s.seen).toHaveLength(0);
  });

  it('a gate that refuses after the caller aborted changes nothing (one rejection, aborted)', async () => {
    const s = await server((_req, res) => res.end('ok'));
    let refuse!: (e: Error) => void;
    const gate: CallGate = { admit: () => new Promise<CallPermit>((_r, reject) => (refuse = reject)) };
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { gate });
    const ac = new AbortController();
    const call = c.request('svc', { path: '/', cache: false }, ac.signal);
    await sleep(5);
    ac.abort();
    refuse(Object.assign(new Error('open'), { retryAfterMs: 1_000 }));
    expect(await failure(call)).toMatchObject({ kind: 'aborted' });
  });

  it('abort while waiting for a rate-limit admission: aborted, no outcome, the permit reports once, the queue moves on', async () => {
    const s = await server((_req, res) => res.end('ok'));
    const outcomes = collectOutcomes();
    const { gate, permits } = recordingGate();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], rateLimit: { perSecond: 1 } }], { gate, outcomes });
    await c.request('svc', { path: '/1', cache: false });
    const ac = new AbortController();
    const waiting = c.request('svc', { path: '/2', cache: false, timeoutMs: 5_000 }, ac.signal);
    const behind = c.request('svc', { path: '/3', cache: false, timeoutMs: 5_000 });
    await sleep(50);
    ac.abort();
    expect(await failure(waiting)).toMatchObject({ kind: 'aborted' });
    // The one behind it takes its place in the queue and is sent when the window allows.
    expect((await behind).body).toBe('ok');
    expect(s.seen.map((x) => x.url)).toEqual(['/1', '/3']);
    expect(outcomes.all.map((o) => o.status)).toEqual([200, 200]);
    expect(permits.map((r) => r.map((o) => o.failureKind ?? 'ok'))).toEqual([['ok'], ['aborted'], ['ok']]);
  });

  it('abort while waiting for a maxConcurrent slot: aborted, the slot holder and the next caller are unaffected', async () => {
    let release!: () => void;
    const s = await server((req, res) => {
      if (req.url === '/slow') release = () => res.end('slow');
      else res.end('fast');
    });
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], rateLimit: { maxConcurrent: 1 } }], { outcomes });
    const holder = c.request('svc', { path: '/slow', cache: false });
    await waitFor(() => s.seen.length === 1, 'the slot holder to reach the server');
    const ac = new AbortController();
    const waiting = c.request('svc', { path: '/fast', cache: false }, ac.signal);
    await sleep(20);
    ac.abort();
    expect(await failure(waiting)).toMatchObject({ kind: 'aborted' });
    release();
    expect((await holder).body).toBe('slow');
    expect((await c.request('svc', { path: '/fast', cache: false })).body).toBe('fast');
    expect(s.seen.map((x) => x.url)).toEqual(['/slow', '/fast']);
    expect(outcomes.all).toHaveLength(2);
  });

  it('abort while the server holds the request (no headers yet): aborted at once, no socket or timer left, no outcome, one permit report', async () => {
    await warmUp();
    const hang = await server(() => {
      /* never answers */
    });
    const outcomes = collectOutcomes();
    const { gate, permits } = recordingGate();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: hang.origin }] }], { outcomes, gate, headersTimeoutMs: 60_000 });
    const sockets = count('TCPSocketWrap');
    const timers = trackTimers();
    const ac = new AbortController();
    const call = c.request('svc', { path: '/', cache: false, timeoutMs: 60_000 }, ac.signal);
    await waitFor(() => hang.seen.length === 1, 'the request to arrive');
    ac.abort();
    const early = await settledWithin(call);
    expect(early.state).toBe('rejected');
    expect((early as { error: CoordinatorError }).error).toMatchObject({ kind: 'aborted', retryable: false });
    await waitFor(() => hang.sockets.size === 0, 'the client to close its end');
    await waitFor(() => count('TCPSocketWrap') <= sockets, 'no client socket left');
    await sleep(20);
    expect(timers.stop()).toEqual([]);
    expect(outcomes.all).toEqual([]);
    expect(permits).toEqual([[expect.objectContaining({ failureKind: 'aborted' })]]);
  });

  it('abort mid-body: aborted, the socket is closed, no outcome; the next call on the service works', async () => {
    const s = await server((req, res) => {
      if (req.url === '/stall') {
        res.writeHead(200, { 'content-length': '1000' });
        res.write('first part');
        return;
      }
      res.end('fine');
    });
    const outcomes = collectOutcomes();
    const { gate, permits } = recordingGate();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes, gate });
    const ac = new AbortController();
    const call = c.request('svc', { path: '/stall', cache: false }, ac.signal);
    await waitFor(() => s.seen.length === 1, 'the request to arrive');
    await sleep(30);
    ac.abort();
    expect(await failure(call)).toMatchObject({ kind: 'aborted' });
    await waitFor(() => s.sockets.size === 0, 'the aborted socket to close');
    expect(outcomes.all).toEqual([]);
    expect(permits).toEqual([[expect.objectContaining({ failureKind: 'aborted' })]]);
    expect((await c.request('svc', { path: '/next', cache: false })).body).toBe('fine');
  });

  it('the deadline mid-body: timeout, socket closed, next call works', async () => {
    const s = await server((req, res) => {
      if (req.url === '/stall') {
        res.writeHead(200, { 'content-length': '1000' });
        res.write('first part');
        return;
      }
      res.end('fine');
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    expect(await failure(c.request('svc', { path: '/stall', cache: false, timeoutMs: 150 }))).toMatchObject({ kind: 'timeout', code: 'DEADLINE_EXCEEDED' });
    await waitFor(() => s.sockets.size === 0, 'the timed-out socket to close');
    expect((await c.request('svc', { path: '/next', cache: false })).body).toBe('fine');
  });

  it('abort during a redirect hop to a host that never answers: aborted, both sockets closed, no outcome, one permit report', async () => {
    await warmUp();
    const hole = await blackHole('127.0.0.2');
    const s = await server((_req, res) => res.writeHead(302, { location: `${hole.origin}/landing`, connection: 'close' }).end());
    const outcomes = collectOutcomes();
    const { gate, permits } = recordingGate();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes, gate, headersTimeoutMs: 60_000 });
    const sockets = count('TCPSocketWrap');
    const timers = trackTimers();
    const ac = new AbortController();
    const call = c.request('svc', { path: '/start', cache: false, timeoutMs: 60_000 }, ac.signal);
    await waitFor(() => hole.sockets.size === 1, 'the redirect hop to connect');
    await sleep(20);
    ac.abort();
    const early = await settledWithin(call);
    expect(early.state).toBe('rejected');
    expect((early as { error: CoordinatorError }).error).toMatchObject({ kind: 'aborted' });
    await waitFor(() => hole.sockets.size === 0 && s.sockets.size === 0, 'every socket closed');
    await waitFor(() => count('TCPSocketWrap') <= sockets, 'no client socket left');
    await sleep(20);
    expect(timers.stop()).toEqual([]);
    expect(outcomes.all).toEqual([]);
    expect(permits).toEqual([[expect.objectContaining({ failureKind: 'aborted' })]]);
  });

  it('abort during decompression of a large gzip body: aborted (not the decoded answer), no outcome, the next call works', async () => {
    const big = gzipSync(Buffer.alloc(4 * 1024 * 1024, 0x61));
    const s = await server((req, res) => {
      if (req.url === '/big') {
        res.writeHead(200, { 'content-encoding': 'gzip', 'content-type': 'text/plain' });
        return res.end(big);
      }
      res.end('small');
    });
    const outcomes = collectOutcomes();
    const { gate, permits } = recordingGate();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes, gate, maxResponseBytes: 64 * 1024 * 1024 });
    const ac = new AbortController();
    // undici publishes 'trailers' right before it hands the end of the body to the call, which then starts
    // zlib (asynchronous): a microtask queued here runs after that and before zlib can answer.
    const onEnd = (msg: unknown) => {
      const { request } = msg as { request: { path: string; origin: unknown } };
      if (request.path === '/big' && String(request.origin).includes(String(s.port))) queueMicrotask(() => ac.abort());
    };
    subscribe('undici:request:trailers', onEnd);
    try {
      const err = await failure(c.request('svc', { path: '/big', cache: false }, ac.signal));
      expect(err).toMatchObject({ kind: 'aborted' });
    } finally {
      unsubscribe('undici:request:trailers', onEnd);
    }
    expect(ac.signal.aborted).toBe(true);
    expect(outcomes.all).toEqual([]);
    await sleep(300); // let zlib finish in the background: its late answer must change nothing
    expect(permits).toEqual([[expect.objectContaining({ failureKind: 'aborted' })]]);
    expect((await c.request('svc', { path: '/small', cache: false })).body).toBe('small');
  });

  it('an abort after the call settled is a no-op; a long-lived signal collects no listeners over many calls', async () => {
    const s = await server((req, res) => res.writeHead(200, { 'cache-control': req.url === '/c' ? 'max-age=60' : 'no-store' }).end('ok'));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const ac = new AbortController();
    for (let i = 0; i < 20; i++) {
      await c.request('svc', { path: `/${i}`, cache: false }, ac.signal);
      await c.request('svc', { path: '/c' }, ac.signal); // coalesced / cached path
      await c.request('svc', { method: 'POST', path: '/p' }, ac.signal);
    }
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    ac.abort();
    expect((await c.request('svc', { path: '/after', cache: false })).body).toBe('ok');
  });

  it('abort while the TCP connect hangs: rejects at once, no outcome, one permit report; the service still works; the socket and timers are gone once connectTimeoutMs passed', async () => {
    await warmUp();
    const hole = await unacceptingListener();
    const ok = await server((_req, res) => res.end('ok'));
    const outcomes = collectOutcomes();
    const { gate, permits } = recordingGate();
    // Equal weights: smooth WRR picks the first endpoint first.
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: hole.origin }, { url: ok.origin }] }], { outcomes, gate, connectTimeoutMs: 300 });
    await sleep(50);
    const connecting = count('ConnectWrap');
    const timers = trackTimers();
    const ac = new AbortController();
    const call = c.request('svc', { path: '/', cache: false, timeoutMs: 60_000 }, ac.signal);
    await waitFor(() => count('ConnectWrap') === connecting + 1, 'the call to start connecting');
    ac.abort();
    const early = await settledWithin(call);
    expect(early.state).toBe('rejected');
    expect((early as { error: CoordinatorError }).error).toMatchObject({ kind: 'aborted' });
    // undici does not cancel a connect in progress when its pool is destroyed: the connect timeout ends it.
    await waitFor(() => count('ConnectWrap') <= connecting, 'the connecting socket to be closed', 3_000);
    // undici's connect timeout is a fast timer: one shared tick (every 499 ms) that ends at the first tick with no
    // timer left, so it can outlive the socket by up to two ticks (a fixed 50 ms wait failed whenever the phase was off).
    await waitFor(() => timers.pending().length === 0, "undici's fast-timer tick to end", 1_500).catch(() => undefined);
    expect(timers.stop()).toEqual([]);
    expect(outcomes.all).toEqual([]);
    expect(permits).toEqual([[expect.objectContaining({ failureKind: 'aborted' })]]);
    expect((await c.request('svc', { path: '/', cache: false })).body).toBe('ok');
  });

  // undici does not cancel a TCP connect in progress when its client is destroyed; the pool's own
  // connector (coordinator.ts buildPool, dropPool) remembers connecting sockets and destroys them.
  it('abort while the TCP connect hangs: the connecting socket is closed promptly, not when connectTimeoutMs ends', async () => {
    const hole = await unacceptingListener();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: hole.origin }] }], { connectTimeoutMs: 60_000 });
    await sleep(50);
    const connecting = count('ConnectWrap');
    const ac = new AbortController();
    const call = c.request('svc', { path: '/', cache: false }, ac.signal).catch((e: unknown) => e);
    await waitFor(() => count('ConnectWrap') === connecting + 1, 'the call to start connecting');
    ac.abort();
    expect(await call).toMatchObject({ kind: 'aborted' });
    await waitFor(() => count('ConnectWrap') <= connecting, 'the connecting socket to be closed', 1_500);
  });

  it('a connect timeout is a not-sent timeout: even a POST without idempotency key fails over, and the endpoint is cooled down', async () => {
    const hole = await unacceptingListener();
    const ok = await server((_req, res) => res.end('ok'));
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: hole.origin }, { url: ok.origin }] }], { outcomes, connectTimeoutMs: 150 });
    expect((await c.request('svc', { method: 'POST', path: '/orders', body: 'x' })).body).toBe('ok');
    expect(outcomes.all).toEqual([
      expect.objectContaining({ endpoint: hole.origin, ok: false, failureKind: 'timeout' }),
      expect.objectContaining({ endpoint: ok.origin, ok: true }),
    ]);
    for (let i = 0; i < 3; i++) expect((await c.request('svc', { method: 'POST', path: '/orders', body: 'x' })).body).toBe('ok');
    expect(outcomes.all.filter((o) => o.endpoint === hole.origin)).toHaveLength(1);
  });

  // A deadline that passes while the request is still connecting is the service's timeout too (call.ts abort).
  it('the deadline firing while the TCP connect hangs is recorded as a timeout outcome for that endpoint, and the permit hears timeout', async () => {
    const hole = await unacceptingListener();
    const outcomes = collectOutcomes();
    const { gate, permits } = recordingGate();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: hole.origin }] }], { outcomes, gate, connectTimeoutMs: 60_000 });
    const err = await failure(c.request('svc', { path: '/', cache: false, timeoutMs: 150 }));
    expect(err).toMatchObject({ kind: 'timeout', code: 'DEADLINE_EXCEEDED' });
    expect(outcomes.all).toEqual([expect.objectContaining({ endpoint: hole.origin, ok: false, failureKind: 'timeout' })]);
    expect(permits).toEqual([[expect.objectContaining({ failureKind: 'timeout' })]]);
  });

  // Regression: the deadline firing while undici holds the request on a socket goes through
  // onResponseError -> transportFailure, which records the timeout.
  it('the deadline firing while the request is on the wire is recorded as a timeout outcome, and the permit hears timeout (not aborted)', async () => {
    const hang = await server(() => {
      /* never answers */
    });
    const outcomes = collectOutcomes();
    const { gate, permits } = recordingGate();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: hang.origin }] }], { outcomes, gate });
    const err = await failure(c.request('svc', { path: '/', cache: false, timeoutMs: 150 }));
    expect(err).toMatchObject({ kind: 'timeout', code: 'DEADLINE_EXCEEDED' });
    expect(permits).toEqual([[expect.objectContaining({ ok: false, failureKind: 'timeout' })]]);
    expect(outcomes.all).toEqual([expect.objectContaining({ serviceId: 'svc', endpoint: hang.origin, ok: false, failureKind: 'timeout' })]);
  });

  // With an asynchronous SecretReader the caller's abort does not wait for the reader (coordinator.ts request).
  it('abort while an asynchronous SecretReader is still reading: rejects at once as aborted', async () => {
    const s = await server((_req, res) => res.end('ok'));
    let answer!: (v: string) => void;
    const slowSecrets: SecretReader = { readSecret: () => new Promise<string>((r) => (answer = r)) };
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], credential: 'key' }], { secrets: slowSecrets });
    const ac = new AbortController();
    const call = c.request('svc', { path: '/', cache: false }, ac.signal);
    await sleep(5);
    ac.abort();
    const early = await settledWithin(call);
    answer(SECRET);
    await call.catch(() => {});
    expect(early.state).toBe('rejected');
    expect(s.seen).toHaveLength(0);
  });
});

describe('coalescing of identical in-flight GETs', () => {
  it('many identical GETs, with and without signals, some aborting: one request, the rest all get the answer', async () => {
    const s = await server((_req, res) => setTimeout(() => res.end('shared'), 120));
    const outcomes = collectOutcomes();
    const { gate, permits } = recordingGate();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes, gate });
    const acs = Array.from({ length: 20 }, () => new AbortController());
    const calls = acs.map((ac, i) => c.request('svc', { path: '/same' }, i % 3 === 0 ? undefined : ac.signal));
    await sleep(30);
    // Every signalled caller but one gives up; the signal-less ones keep the call alive anyway.
    acs.forEach((ac, i) => i % 3 !== 0 && i !== 19 && ac.abort());
    const results = await Promise.allSettled(calls);
    results.forEach((r, i) => {
      if (i % 3 === 0 || i === 19) expect(r).toMatchObject({ status: 'fulfilled', value: { body: 'shared' } });
      else expect(r).toMatchObject({ status: 'rejected', reason: expect.objectContaining({ kind: 'aborted' }) });
    });
    expect(s.seen).toHaveLength(1);
    expect(outcomes.all).toHaveLength(1);
    expect(permits).toEqual([[expect.objectContaining({ ok: true })]]);
    for (const ac of acs) expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('the shared call is aborted only when the last signalled waiter gives up; the next identical GET starts a new call', async () => {
    let mode = 'hang';
    const hang = await server((req, res) => {
      if (mode === 'answer') res.end(`fresh ${req.url}`);
    });
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: hang.origin }] }], { outcomes });
    const acs = [new AbortController(), new AbortController(), new AbortController()];
    const calls = acs.map((ac) => c.request('svc', { path: '/x' }, ac.signal).catch((e: unknown) => e));
    await waitFor(() => hang.seen.length === 1, 'the shared request to arrive');
    acs[0]!.abort();
    acs[1]!.abort();
    await sleep(30);
    // One waiter left: the request is still open.
    expect(hang.sockets.size).toBe(1);
    acs[2]!.abort();
    expect(await Promise.all(calls)).toEqual([0, 1, 2].map(() => expect.objectContaining({ kind: 'aborted' })));
    await waitFor(() => hang.sockets.size === 0, 'the shared request to be dropped');
    expect(outcomes.all).toEqual([]);
    mode = 'answer';
    expect((await c.request('svc', { path: '/x' })).body).toBe('fresh /x');
    expect(hang.seen).toHaveLength(2);
  });

  it('leaves no stale in-flight entry after an error status, a transport error, a redirect or a timeout', async () => {
    let mode = 'fail';
    const s = await server((req, res) => {
      if (mode === 'ok') return res.end(`ok ${req.url}`);
      if (req.url === '/status') return res.writeHead(500).end('boom');
      if (req.url === '/reset') return req.socket.destroy();
      if (req.url === '/redirect') return res.writeHead(302, { location: '/landed' }).end();
      if (req.url === '/landed') return res.end('landed');
      // '/slow': never answers while failing
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    expect(await failure(c.request('svc', { path: '/status' }))).toMatchObject({ status: 500 });
    expect(await failure(c.request('svc', { path: '/reset' }))).toMatchObject({ kind: 'connection_reset' });
    expect((await c.request('svc', { path: '/redirect' })).body).toBe('landed');
    expect(await failure(c.request('svc', { path: '/slow', timeoutMs: 100 }))).toMatchObject({ kind: 'timeout' });
    mode = 'ok';
    for (const p of ['/status', '/reset', '/redirect', '/slow']) expect((await c.request('svc', { path: p })).body).toBe(`ok ${p}`);
  });

  it('an in-flight GET survives a registry reload that rebuilds the pool; joiners get its answer; no stale entry remains', async () => {
    const s = await server((req, res) => setTimeout(() => res.end(`n=${s.seen.length} ${req.url}`), 100));
    const registry = mutableRegistry(registryOf([{ id: 'svc', endpoints: [{ url: s.origin }] }]));
    const c = createCoordinator({ registry, reporterId: 'r' });
    closeAfterTest(c);
    const first = c.request('svc', { path: '/x' });
    await waitFor(() => s.seen.length === 1, 'the first request to arrive');
    // New weight: another fingerprint, so the next request rebuilds the service's pool.
    registry.set(registryOf([{ id: 'svc', endpoints: [{ url: s.origin, weight: 2 }] }]));
    const joiner = c.request('svc', { path: '/x' });
    expect((await first).body).toBe('n=1 /x');
    expect((await joiner).body).toBe('n=1 /x');
    expect((await c.request('svc', { path: '/x' })).body).toBe('n=2 /x');
  });

  it('a joiner does not share a call made with other credentials, and identical GETs with other request headers are separate calls', async () => {
    const s = await server((req, res) => setTimeout(() => res.end(`${req.headers.authorization ?? 'none'} ${req.headers.accept ?? '-'}`), 60));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], credential: 'key' }]);
    const [a, b, d, e] = await Promise.all([
      c.request('svc', { path: '/x' }),
      c.request('svc', { path: '/x', auth: { versionId: 'v2' } }),
      c.request('svc', { path: '/x', auth: false }),
      c.request('svc', { path: '/x', headers: { Accept: 'text/csv' } }),
    ]);
    expect([a.body, b.body, d.body, e.body]).toEqual([`Bearer ${SECRET} -`, `Bearer ${SECRET}-v2 -`, 'none -', `Bearer ${SECRET} text/csv`]);
    expect(s.seen).toHaveLength(4);
  });

  // Joiners copy from an untouched snapshot taken before any caller sees the answer (InFlight.callFinished).
  it("a caller mutating its response (headers, status) does not change what a coalesced joiner gets", async () => {
    const s = await server((_req, res) => setTimeout(() => res.writeHead(200, { 'x-version': 'v1', 'content-type': 'application/json' }).end('{"n":1}'), 60));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const first = c.request('svc', { path: '/doc' }).then((res) => {
      res.headers['x-version'] = 'tampered';
      res.status = 599;
      return res;
    });
    await sleep(10);
    const joinerWithoutSignal = c.request('svc', { path: '/doc' });
    const joinerWithSignal = c.request('svc', { path: '/doc' }, new AbortController().signal);
    await first;
    for (const joiner of [await joinerWithoutSignal, await joinerWithSignal]) {
      expect(joiner.status).toBe(200);
      expect(joiner.headers['x-version']).toBe('v1');
    }
    expect(s.seen).toHaveLength(1);
  });

  // Calls join only one with the same deadline and throwOnStatus (the join key carries both when not default).
  it("a joiner's own timeoutMs bounds its wait: a short deadline is not stretched by the shared call's longer one", async () => {
    const s = await server((_req, res) => setTimeout(() => res.end('late'), 500));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const first = c.request('svc', { path: '/x', timeoutMs: 5_000 }).catch((e: unknown) => e);
    await sleep(10);
    const err = await failure(c.request('svc', { path: '/x', timeoutMs: 100 }));
    expect(err).toMatchObject({ kind: 'timeout' });
    expect(await first).toMatchObject({ body: 'late' });
  });

  // Same: a patient caller is not cut off by a hasty one's deadline.
  it("a joiner's own timeoutMs bounds its wait: a longer deadline is not cut short by the shared call's", async () => {
    const s = await server((_req, res) => setTimeout(() => res.end('in time'), 300));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const hasty = failure(c.request('svc', { path: '/x', timeoutMs: 100 }));
    await sleep(10);
    const patient = c.request('svc', { path: '/x', timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(await hasty).toMatchObject({ kind: 'timeout' });
    expect(await patient).toMatchObject({ body: 'in time' });
  });

  // Same: throwOnStatus is part of the join key.
  it('a joiner with throwOnStatus: false gets the 404 response, not the rejection made for the first caller', async () => {
    const s = await server((_req, res) => setTimeout(() => res.writeHead(404).end('no such thing'), 60));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const strict = failure(c.request('svc', { path: '/thing' }));
    const lenient = c.request('svc', { path: '/thing', throwOnStatus: false }).catch((e: unknown) => e);
    expect(await strict).toMatchObject({ status: 404 });
    expect(await lenient).toMatchObject({ status: 404, body: 'no such thing' });
  });
});

describe('GET cache', () => {
  it('serves max-age responses from cache per credential; no caller can change what another caller or the cache sees', async () => {
    const s = await server((req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'application/json', 'x-who': String(req.headers.authorization) });
      res.end(JSON.stringify({ who: req.headers.authorization, n: s.seen.length }));
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], credential: 'key' }]);
    const filled = await c.request('svc', { path: '/me' });
    // The caller whose call filled the cache tampers with its answer.
    filled.headers['x-who'] = 'tampered';
    filled.status = 500;
    (filled.json as { n: number }).n = 99;
    const hit1 = await c.request('svc', { path: '/me' });
    expect(hit1).toMatchObject({ cached: true, status: 200, json: { who: `Bearer ${SECRET}`, n: 1 } });
    expect(hit1.headers['x-who']).toBe(`Bearer ${SECRET}`);
    // A cache hit's caller tampers with its copy too.
    hit1.headers['x-who'] = 'tampered again';
    delete hit1.headers['cache-control'];
    const hit2 = await c.request('svc', { path: '/me' });
    expect(hit2.headers).toMatchObject({ 'x-who': `Bearer ${SECRET}`, 'cache-control': 'max-age=60' });
    // Another credential version is its own entry.
    const other = await c.request('svc', { path: '/me', auth: { versionId: 'v2' } });
    expect(other).toMatchObject({ json: { who: `Bearer ${SECRET}-v2`, n: 2 } });
    expect(other.cached).toBeUndefined();
    expect((await c.request('svc', { path: '/me', auth: { versionId: 'v2' } })).cached).toBe(true);
    expect(s.seen).toHaveLength(2);
  });

  it('a cache hit costs no gate trial, no rate-limit slot and no outcome; a cache: false call still goes out', async () => {
    const s = await server((_req, res) => res.writeHead(200, { 'cache-control': 'max-age=60' }).end('v'));
    const { gate, permits } = recordingGate();
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], rateLimit: { perMinute: 2 } }], { gate, outcomes });
    await c.request('svc', { path: '/v' });
    for (let i = 0; i < 10; i++) expect((await c.request('svc', { path: '/v' })).cached).toBe(true);
    expect(permits).toHaveLength(1);
    expect(outcomes.all).toHaveLength(1);
    expect((await c.request('svc', { path: '/v', cache: false })).cached).toBeUndefined();
    expect(s.seen).toHaveLength(2);
  });

  // Freshness left = max-age minus Age (RFC 9111 §4.2.3).
  it('a response that is already stale on arrival (Age >= max-age) is not served from cache', async () => {
    const s = await server((_req, res) => res.writeHead(200, { 'cache-control': 'max-age=60', age: '60' }).end(`n=${s.seen.length}`));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    expect((await c.request('svc', { path: '/stale' })).body).toBe('n=1');
    const again = await c.request('svc', { path: '/stale' });
    expect(again.cached).toBeUndefined();
    expect(again.body).toBe('n=2');
  });
});

describe('failover, cool-down and redirects across endpoints', () => {
  it('3 endpoints, 2 refusing: a POST without idempotency key fails over (never sent), both dead endpoints cool down', async () => {
    const ok = await server((_req, res, body) => res.end(`ok:${body}`));
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: 'http://127.0.0.1:9' }, { url: 'http://127.0.0.1:7' }, { url: ok.origin }] }], { outcomes });
    expect((await c.request('svc', { method: 'POST', path: '/o', body: 'b1' })).body).toBe('ok:b1');
    expect(outcomes.all.map((o) => [o.endpoint, o.failureKind ?? 'ok'])).toEqual([
      ['http://127.0.0.1:9', 'connection_refused'],
      ['http://127.0.0.1:7', 'connection_refused'],
      [ok.origin, 'ok'],
    ]);
    outcomes.all.length = 0;
    for (let i = 0; i < 5; i++) expect((await c.request('svc', { method: 'POST', path: '/o', body: `n${i}` })).body).toBe(`ok:n${i}`);
    // Cooling down: the dead ones are not even tried.
    expect(outcomes.all.every((o) => o.endpoint === ok.origin && o.ok)).toBe(true);
    expect(ok.seen.map((x) => x.body)).toEqual(['b1', 'n0', 'n1', 'n2', 'n3', 'n4']);
  });

  it('every endpoint refusing: the call fails once per endpoint, not in a loop, with the last error and notSent', async () => {
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: 'http://127.0.0.1:9' }, { url: 'http://127.0.0.1:7' }, { url: 'http://127.0.0.2:9' }] }], { outcomes });
    const err = await failure(c.request('svc', { method: 'POST', path: '/o', body: 'x' }));
    expect(err).toMatchObject({ kind: 'connection_refused', notSent: true, retryable: true });
    expect(outcomes.all).toHaveLength(3);
    // All cooling down: the one whose cool-down ends first is tried anyway, then the others.
    const again = await failure(c.request('svc', { path: '/o' }));
    expect(again.kind).toBe('connection_refused');
    expect(outcomes.all).toHaveLength(6);
  });

  it('a reset after the request was sent: a GET and a keyed POST fail over, a bare POST does not', async () => {
    const a = await server((req) => req.socket.destroy());
    const b = await server((req, res) => res.end(`b ${req.method}`));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: a.origin }, { url: b.origin }] }], { endpointCoolDownMs: 0 });
    expect((await c.request('svc', { path: '/', cache: false })).body).toBe('b GET');
    expect((await c.request('svc', { method: 'POST', path: '/', body: 'x', idempotencyKey: 'k' })).body).toBe('b POST');
    const bare = await failure(c.request('svc', { method: 'POST', path: '/', body: 'x' }));
    expect(bare).toMatchObject({ kind: 'connection_reset', notSent: false, endpoint: a.origin });
  });

  it('a redirect to another endpoint of the same service that refuses: no failover, not cooled down, notSent false', async () => {
    const outcomes = collectOutcomes();
    const a = await server((_req, res) => res.writeHead(307, { location: 'http://127.0.0.2:9/next' }).end());
    const b = await server((_req, res) => res.end('b'), '127.0.0.2');
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: a.origin }, { url: 'http://127.0.0.2:9' }, { url: b.origin }] }], { outcomes });
    const err = await failure(c.request('svc', { method: 'POST', path: '/o', body: 'x' }));
    expect(err).toMatchObject({ kind: 'connection_refused', notSent: false, endpoint: a.origin });
    expect(a.seen).toHaveLength(1);
    expect(b.seen).toHaveLength(0);
    // a answered: it is not in cool-down, so it is picked again in its turn.
    outcomes.all.length = 0;
    const picks: string[] = [];
    for (let i = 0; i < 3; i++) {
      try {
        picks.push((await c.request('svc', { path: '/x', cache: false })).endpoint);
      } catch (e) {
        picks.push((e as CoordinatorError).endpoint!);
      }
    }
    expect(picks).toContain(a.origin);
  });

  it('a redirect to another endpoint of the same service is followed, the credential kept, one outcome for the first endpoint', async () => {
    const outcomes = collectOutcomes();
    const b = await server((req, res) => res.end(`b saw ${req.url} ${req.headers.authorization}`), '127.0.0.2');
    const a = await server((req, res) => res.writeHead(301, { location: `${b.origin}/moved${req.url}?x=1` }).end());
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: a.origin }, { url: b.origin, weight: 1 }], credential: 'key' }], { outcomes });
    const res = await c.request('svc', { path: '/doc', cache: false });
    expect(res).toMatchObject({ status: 200, body: `b saw /moved/doc?x=1 Bearer ${SECRET}`, endpoint: a.origin });
    expect(outcomes.all).toEqual([expect.objectContaining({ endpoint: a.origin, ok: true, status: 200 })]);
  });

  function reloadable(url: string, extra: Record<string, unknown> = {}) {
    return registryOf([{ id: 'svc', endpoints: [{ url }], ...extra }]);
  }

  // A reload retires the old pool; it closes only when its last call settles (coordinator.ts retire).
  it('a redirect hop of a call in flight during a registry reload that rebuilds the pool is still followed', async () => {
    const s = await server((req, res) => {
      if (req.url === '/start') return setTimeout(() => res.writeHead(302, { location: '/landed' }).end(), 100);
      res.end('landed');
    });
    const registry = mutableRegistry(reloadable(s.origin));
    const outcomes = collectOutcomes();
    const c = createCoordinator({ registry, reporterId: 'r', outcomes });
    closeAfterTest(c);
    const call = c.request('svc', { path: '/start', cache: false }).catch((e: unknown) => e);
    await waitFor(() => s.seen.length === 1, 'the first hop to arrive');
    registry.set(reloadable(s.origin, { rateLimit: { perMinute: 1_000 } }));
    // Any request makes the coordinator adopt the new registry (and rebuild the pool).
    await c.request('svc', { path: '/landed', cache: false });
    expect(await call).toMatchObject({ body: 'landed' });
    expect(outcomes.all.every((o) => o.ok)).toBe(true);
  });

  // Same, for failover within the call.
  it('failover of a call in flight during a registry reload that rebuilds the pool reaches the healthy endpoint', async () => {
    const a = await server((req) => setTimeout(() => req.socket.destroy(), 100));
    const b = await server((_req, res) => res.end('b'));
    const endpoints = [{ url: a.origin }, { url: b.origin }];
    const registry = mutableRegistry(registryOf([{ id: 'svc', endpoints }]));
    const outcomes = collectOutcomes();
    const c = createCoordinator({ registry, reporterId: 'r', outcomes });
    closeAfterTest(c);
    const call = c.request('svc', { path: '/', cache: false }).catch((e: unknown) => e);
    await waitFor(() => a.seen.length === 1, 'the first try to reach a');
    registry.set(registryOf([{ id: 'svc', endpoints, rateLimit: { perMinute: 1_000 } }]));
    await c.request('svc', { path: '/warm', cache: false }).catch(() => {});
    expect(await call).toMatchObject({ body: 'b' });
    expect(outcomes.all.filter((o) => o.endpoint === b.origin && !o.ok)).toEqual([]);
  });
});

describe('pool size and queueing', () => {
  it('100 concurrent slow calls on one endpoint: at most 32 at the server at once, all answered inside their deadline', async () => {
    let active = 0;
    let peak = 0;
    const s = await server((_req, res) => {
      active++;
      peak = Math.max(peak, active);
      setTimeout(() => {
        active--;
        res.end('ok');
      }, 100);
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => c.request('svc', { path: `/${i}`, cache: false, timeoutMs: 10_000 })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(100);
    expect(peak).toBeLessThanOrEqual(32);
    expect(peak).toBeGreaterThan(1);
    expect(s.connections).toBeLessThanOrEqual(32);
  });

  it('100 concurrent slow calls with a short deadline: the queued ones fail with timeout, none hangs, nothing else fails, and the service works after', async () => {
    const s = await server((req, res) => setTimeout(() => res.end('ok'), req.url === '/after' ? 0 : 150));
    const outcomes = collectOutcomes();
    const { gate, permits } = recordingGate();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes, gate });
    const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => c.request('svc', { path: `/${i}`, cache: false, timeoutMs: 250 })));
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const kinds = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as CoordinatorError).kind] : []));
    expect(ok + kinds.length).toBe(100);
    // At most 32 at a time, 150 ms each: inside 250 ms at most 64 can be answered, so some queued ones time out.
    expect(kinds.length).toBeGreaterThan(0);
    expect(new Set(kinds)).toEqual(new Set(['timeout']));
    // Exactly one report per permit.
    expect(permits).toHaveLength(100);
    expect(permits.every((r) => r.length === 1)).toBe(true);
    expect((await c.request('svc', { path: '/after', cache: false })).body).toBe('ok');
    // No socket of the old pool stays open for long (it is recycled once idle).
    await waitFor(() => s.sockets.size <= 32, 'the old pool to be closed', 3_000);
  });

  it('maxConcurrent sets the connections too: 40 calls with maxConcurrent 4 never have more than 4 at the server', async () => {
    let active = 0;
    let peak = 0;
    const s = await server((_req, res) => {
      active++;
      peak = Math.max(peak, active);
      setTimeout(() => {
        active--;
        res.end('ok');
      }, 10);
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], rateLimit: { maxConcurrent: 4 } }]);
    await Promise.all(Array.from({ length: 40 }, (_, i) => c.request('svc', { path: `/${i}`, cache: false })));
    expect(peak).toBeLessThanOrEqual(4);
    expect(s.connections).toBeLessThanOrEqual(4);
  });
});

describe('redirect edge cases', () => {
  it('a loop between two origins (A -> B -> A ...) stops after maxRedirections with the 3xx as the answer, one outcome, one permit report', async () => {
    let a: TestServer | undefined;
    let b: TestServer | undefined;
    const bounce = (other: () => TestServer) => (req: IncomingMessage, res: ServerResponse) =>
      res.writeHead(302, { location: `${other().origin}${req.url}` }).end(`bounce from ${req.socket.localAddress}`);
    a = await server(bounce(() => b!));
    b = await server(bounce(() => a!), '127.0.0.2');
    const outcomes = collectOutcomes();
    const { gate, permits } = recordingGate();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: a.origin }] }], { outcomes, gate });
    const res = await c.request('svc', { path: '/loop?x=1' });
    expect(res.status).toBe(302);
    expect(a.seen.length + b.seen.length).toBe(6); // the first request and 5 redirects
    expect([...a.seen, ...b.seen].every((x) => x.url === '/loop?x=1')).toBe(true);
    expect(outcomes.all).toEqual([expect.objectContaining({ endpoint: a.origin, status: 302, ok: true })]);
    expect(permits).toEqual([[expect.objectContaining({ status: 302 })]]);
  });

  it('a self-redirect loop on one origin also stops, and the next identical GET is a new call', async () => {
    const s = await server((_req, res) => res.writeHead(307, { location: '/self' }).end());
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { maxRedirections: 3 });
    expect((await c.request('svc', { path: '/self' })).status).toBe(307);
    expect((await c.request('svc', { path: '/self' })).status).toBe(307);
    expect(s.seen).toHaveLength(8);
  });

  it.each([
    ['../up?q=1', '/api/a/up?q=1'],
    ['sibling', '/api/a/b/sibling'],
    ['?page=2&sort=desc', '/api/a/b/c?page=2&sort=desc'],
    ['/abs/path?x=%20y#frag', '/abs/path?x=%20y'],
    ['./dot/../here', '/api/a/b/here'],
  ])('a relative Location %s resolves against the full request URL (endpoint prefix included) to %s', async (location, expected) => {
    const s = await server((req, res) => {
      if (req.url === '/api/a/b/c?first') return res.writeHead(302, { location }).end();
      res.end(`at ${req.url}`);
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: `${s.origin}/api/` }] }]);
    expect((await c.request('svc', { path: '/a/b/c?first' })).body).toBe(`at ${expected}`);
  });

  it('a protocol-relative Location to another host drops the credential; one back to the endpoint does not restore it', async () => {
    let s: TestServer | undefined;
    const other = await server((req, res) => {
      if (req.url === '/hop') return res.writeHead(302, { location: `${s!.origin}/final` }).end();
      res.end('?');
    }, '127.0.0.2');
    s = await server((req, res) => {
      if (req.url === '/start') return res.writeHead(302, { location: `//127.0.0.2:${other.port}/hop` }).end();
      res.end(`final auth=${req.headers.authorization ?? 'none'}`);
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }], credential: 'key' }]);
    expect((await c.request('svc', { path: '/start' })).body).toBe('final auth=none');
    expect(other.seen[0]!.headers.authorization).toBeUndefined();
  });

  it('303 on HEAD stays HEAD across origins; 304 and 201 with a Location are answers, not redirects', async () => {
    const other = await server((req, res) => res.writeHead(200, { 'x-method': req.method ?? '' }).end(), '127.0.0.2');
    const s = await server((req, res) => {
      if (req.url === '/head') return res.writeHead(303, { location: `${other.origin}/landing` }).end();
      if (req.url === '/nm') return res.writeHead(304, { location: '/elsewhere' }).end();
      if (req.url === '/created') return res.writeHead(201, { location: '/items/7' }).end('created');
      res.end('elsewhere');
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const head = await c.request('svc', { method: 'HEAD', path: '/head' });
    expect(head.headers['x-method']).toBe('HEAD');
    expect(other.seen.map((x) => x.method)).toEqual(['HEAD']);
    expect((await c.request('svc', { path: '/nm', cache: false })).status).toBe(304);
    expect(await c.request('svc', { method: 'POST', path: '/created', body: 'x' })).toMatchObject({ status: 201, body: 'created' });
    expect(s.seen.map((x) => x.url)).toEqual(['/head', '/nm', '/created']);
  });

  it('a redirect whose target answers with gzip and an error status: decoded excerpt, status failure of the first endpoint', async () => {
    const s = await server((req, res) => {
      if (req.url === '/start') return res.writeHead(301, { location: '/gone' }).end();
      res.writeHead(410, { 'content-encoding': 'gzip' });
      res.end(gzipSync(Buffer.from('gone for good')));
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    expect(await failure(c.request('svc', { path: '/start' }))).toMatchObject({ status: 410, bodyExcerpt: 'gone for good', endpoint: s.origin });
  });
});

describe('bad input', () => {
  async function setup() {
    const s = await server((_req, res) => res.end('ok'));
    const outcomes = collectOutcomes();
    let asked = 0;
    const gate: CallGate = {
      admit: async () => {
        asked++;
        return { generation: 1, report: () => {} };
      },
    };
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes, gate });
    return { s, c, outcomes, asked: () => asked };
  }

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['a method with a space', { method: 'GE T', path: '/' }, /invalid method "GE T"/],
    ['an empty method', { method: '', path: '/' }, /invalid method ""/],
    ['a path without /', { path: 'v1/items' }, /invalid path "v1\/items"/],
    ['an empty path', { path: '' }, /invalid path ""/],
    ['a missing path', {}, /invalid path/],
    ['body and json together', { method: 'POST', path: '/', body: 'a', json: { a: 1 } }, /either body or json/],
    ['timeoutMs 0', { path: '/', timeoutMs: 0 }, /invalid timeoutMs 0/],
    ['timeoutMs NaN', { path: '/', timeoutMs: NaN }, /invalid timeoutMs NaN/],
    ['timeoutMs Infinity', { path: '/', timeoutMs: Infinity }, /invalid timeoutMs Infinity/],
    ['timeoutMs as a string', { path: '/', timeoutMs: '100' }, /invalid timeoutMs 100/],
    ['cache.ttlMs NaN', { path: '/', cache: { ttlMs: NaN } }, /invalid cache.ttlMs NaN/],
  ])('%s: a clear non-retryable CoordinatorError, nothing sent, no gate, no outcome', async (_label, req, message) => {
    const { s, c, outcomes, asked } = await setup();
    const err = await failure(c.request('svc', req as never));
    expect(err).toMatchObject({ kind: 'other', retryable: false, notSent: true });
    expect(err.message).toMatch(message);
    expect(s.seen).toHaveLength(0);
    expect(outcomes.all).toEqual([]);
    expect(asked()).toBe(0);
  });

  it('an unknown service id: a clear CoordinatorError naming it, nothing sent', async () => {
    const { s, c } = await setup();
    const err = await failure(c.request('nope', { path: '/' }));
    expect(err).toMatchObject({ kind: 'other', retryable: false, notSent: true, serviceId: 'nope' });
    expect(err.message).toMatch(/unknown service "nope"/);
    expect(s.seen).toHaveLength(0);
  });

  it('a lower-case method is upper-cased, not refused', async () => {
    const { s, c } = await setup();
    await c.request('svc', { method: 'post', path: '/', body: 'x' });
    expect(s.seen[0]!.method).toBe('POST');
  });

  // Untyped input (an activity's JSON) is checked before use.
  it('a non-string method is refused with a CoordinatorError, not a TypeError', async () => {
    const { s, c } = await setup();
    const err = await failure(c.request('svc', { method: 42 as unknown as string, path: '/' }));
    expect(err).toMatchObject({ kind: 'other', retryable: false, notSent: true });
    expect(s.seen).toHaveLength(0);
  });

  // Spaces and control characters in the path are the caller's error, refused before anything is sent
  // (not a retryable failure counted against the service).
  it.each([
    ['a space', '/search?q=two words'],
    ['a line feed', '/x\nInjected: 1'],
  ])('a path with %s is refused up front: non-retryable, notSent, no outcome, no permit report', async (_label, path) => {
    const s = await server((_req, res) => res.end('ok'));
    const outcomes = collectOutcomes();
    const { gate, permits } = recordingGate();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes, gate });
    const err = await failure(c.request('svc', { path, cache: false }));
    expect(err).toMatchObject({ kind: 'other', retryable: false, notSent: true });
    expect(s.seen).toHaveLength(0);
    expect(outcomes.all).toEqual([]);
    expect(permits.flat().filter((o) => o.failureKind !== 'aborted')).toEqual([]);
  });

  // Only GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS are sent.
  it('CONNECT is refused up front: nothing sent, no outcome, the endpoint not cooled down', async () => {
    const s = await server((_req, res) => res.end('ok'));
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes });
    const err = await failure(c.request('svc', { method: 'CONNECT', path: '/' }));
    expect(err).toMatchObject({ kind: 'other', retryable: false, notSent: true });
    expect(s.connections).toBe(0);
    expect(outcomes.all).toEqual([]);
  });

  // Header names must be tokens and values free of CR, LF and NUL.
  it('a header value with CR/LF is refused up front: non-retryable, notSent, no outcome', async () => {
    const s = await server((_req, res) => res.end('ok'));
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { outcomes });
    const err = await failure(c.request('svc', { path: '/', cache: false, headers: { 'X-Note': 'a\r\nInjected: 1' } }));
    expect(err).toMatchObject({ kind: 'other', retryable: false, notSent: true });
    expect(s.seen).toHaveLength(0);
    expect(outcomes.all).toEqual([]);
  });

  // A deadline longer than a Node timer can wait is refused as bad input (it used to become 1 ms).
  it('timeoutMs above 2^31-1 ms does not turn into a 1 ms deadline', async () => {
    const s = await server((_req, res) => setTimeout(() => res.end('ok'), 30));
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const r = await c.request('svc', { path: '/', cache: false, timeoutMs: 2 ** 31 }).then(
      (res) => ({ ok: true as const, res }),
      (err: unknown) => ({ ok: false as const, err: err as CoordinatorError }),
    );
    if (r.ok) expect(r.res.body).toBe('ok');
    else expect(r.err).toMatchObject({ kind: 'other', notSent: true }); // refused as bad input is fine too
  });
});

describe('odd answers, gates and close()', () => {
  it('a multi-byte UTF-8 character split across two body chunks is decoded whole', async () => {
    const s = await server((_req, res) => {
      const bytes = Buffer.from('{"name":"Zoë ✓"}');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(bytes.subarray(0, 11)); // ends inside 'ë'
      setTimeout(() => res.end(bytes.subarray(11)), 20);
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    expect((await c.request('svc', { path: '/' })).json).toEqual({ name: 'Zoë ✓' });
  });

  it('a 103 Early Hints before the answer does not replace it', async () => {
    const s = await server((_req, res) => {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      setTimeout(() => res.writeHead(200, { 'x-final': 'yes' }).end('final body'), 10);
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }]);
    const res = await c.request('svc', { path: '/' });
    expect(res).toMatchObject({ status: 200, body: 'final body' });
    expect(res.headers['x-final']).toBe('yes');
  });

  it('coalesced GETs refused by the breaker all get breaker_open, and the next identical GET asks the gate again', async () => {
    const s = await server((_req, res) => res.end('ok'));
    let open = true;
    let asked = 0;
    const gate: CallGate = {
      admit: async () => {
        asked++;
        await sleep(20);
        if (open) throw Object.assign(new Error('breaker svc is OPEN'), { retryAfterMs: 500 });
        return { generation: 2, report: () => {} };
      },
    };
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { gate });
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => c.request('svc', { path: '/x' })));
    expect(results.every((r) => r.status === 'rejected' && (r.reason as CoordinatorError).kind === 'breaker_open')).toBe(true);
    expect(asked).toBe(1);
    open = false;
    expect((await c.request('svc', { path: '/x' })).body).toBe('ok');
    expect(asked).toBe(2);
  });

  // A gate that throws instead of rejecting fails the call like a refusal; nothing is left armed or indexed.
  it('a gate whose admit() throws synchronously: a CoordinatorError, no armed deadline left, the next identical GET is a fresh call', async () => {
    const s = await server((_req, res) => res.end('ok'));
    let broken = true;
    const gate: CallGate = {
      admit: () => {
        if (broken) throw new Error('gate store is closed');
        return Promise.resolve({ generation: 1, report: () => {} });
      },
    };
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { gate, timeoutMs: 5_000 });
    const armed: NodeJS.Timeout[] = [];
    const realSetTimeout = global.setTimeout;
    const spy = jest.spyOn(global, 'setTimeout').mockImplementation(((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
      const t = realSetTimeout(fn, ms, ...args);
      if (fn.name === 'fireDeadline') armed.push(t);
      return t;
    }) as typeof setTimeout);
    try {
      const err = await c.request('svc', { path: '/x' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CoordinatorError);
      expect(armed.filter((t) => !(t as unknown as { _destroyed: boolean })._destroyed)).toHaveLength(0);
      broken = false;
      const next = await c.request('svc', { path: '/x' }).catch((e: unknown) => e);
      expect(next).toMatchObject({ body: 'ok' });
    } finally {
      spy.mockRestore();
      for (const t of armed) clearTimeout(t);
    }
  });

  // close(graceMs) waits for calls in flight up to graceMs, then destroys the pools (coordinator.ts close).
  it('close(graceMs) cuts a call still in flight after the grace period', async () => {
    const hang = await server(() => {
      /* never answers */
    });
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: hang.origin }] }]);
    const call = c.request('svc', { path: '/', cache: false }).catch((e: unknown) => e);
    await waitFor(() => hang.seen.length === 1, 'the request to arrive');
    await c.close(50);
    const after = await settledWithin(call, 1_000);
    expect(after.state).toBe('resolved'); // .catch above: a rejection arrives as a resolved value
    expect((after as { value: unknown }).value).toBeInstanceOf(CoordinatorError);
    await waitFor(() => hang.sockets.size === 0, 'the socket to be closed', 500);
  });

  // A call that reaches send() after close() is refused as not sent, with no outcome (call.ts send).
  it('a call still at the gate when the coordinator closes is refused as not sent, with no outcome', async () => {
    const s = await server((_req, res) => res.end('ok'));
    const g = manualGate();
    const outcomes = collectOutcomes();
    const c = coordinatorFor([{ id: 'svc', endpoints: [{ url: s.origin }] }], { gate: g.gate, outcomes });
    const call = c.request('svc', { method: 'POST', path: '/', body: 'x' }).catch((e: unknown) => e);
    await waitFor(() => g.pending === 1, 'the gate to be asked');
    await c.close(50);
    g.grant();
    const err = await call;
    expect(err).toBeInstanceOf(CoordinatorError);
    expect(err).toMatchObject({ notSent: true });
    expect(s.seen).toHaveLength(0);
    expect(outcomes.all).toEqual([]);
    expect(g.permits[0]!.reports.map((o) => o.failureKind)).toEqual(['aborted']);
  });
});
