/**
 * Rotation steps honour `Retry-After` exactly as `callService` does (issue 14):
 * a consumer in front of the contract server answers installs with 503 and a
 * `Retry-After` first; the rotation runs on the dev server through a real
 * worker, and the gaps between the install arrivals (measured at the server)
 * are at least what the consumer asked for. A malformed header falls back to
 * full-jitter backoff; a huge one is capped at the `callService` cap.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApplicationFailure } from '@temporalio/common';
import { request } from 'undici';
import { createAlertActivities } from '../../src/activities/alerts';
import { DEFAULT_MAX_RETRY_AFTER_MS } from '../../src/activities/coordinator';
import { httpProvider, ProviderError, type ProviderContext } from '../../src/activities/providers';
import { providerFailure } from '../../src/activities/providers/http-failure';
import { startRotation } from '../../src/client/rotation';
import type { RotationResult } from '../../src/domain/rotation';
import { closeTestClient, testClient } from '../helpers/temporal';
import { rotationFixture, type RotationFixture } from './support';

afterAll(closeTestClient);

/**
 * A consumer's front door: the first `busy.length` installs (PUT) get 503 with
 * `Retry-After: busy[i]`; everything else is passed to the contract server.
 * Records when each install arrived (ms since epoch).
 */
interface Front {
  url: string;
  /** Where other requests go (the contract server). */
  upstream: string;
  installArrivals: number[];
  /** Retry-After values for the next 503s (a function is called when the 503 is sent). */
  busy: Array<string | (() => string)>;
  /** The Retry-After values sent, in order. */
  sent: string[];
  close(): Promise<void>;
}

async function startFront(): Promise<Front> {
  const front: Front = { url: '', upstream: '', installArrivals: [], busy: [], sent: [], close: async () => undefined };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method === 'PUT') {
      front.installArrivals.push(Date.now());
      const next = front.busy.shift();
      if (next !== undefined) {
        const retryAfter = typeof next === 'function' ? next() : next;
        front.sent.push(retryAfter);
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': retryAfter });
        res.end(JSON.stringify({ error: 'busy, come back later' }));
        return;
      }
    }
    const headers: Record<string, string> = {};
    for (const name of ['content-type', 'idempotency-key', 'accept']) {
      const v = req.headers[name];
      if (typeof v === 'string') headers[name] = v;
    }
    const up = await request(`${front.upstream}${req.url}`, { method: req.method as 'GET', headers, body: chunks.length ? Buffer.concat(chunks) : undefined });
    const body = await up.body.text();
    res.writeHead(up.statusCode, typeof up.headers['content-type'] === 'string' ? { 'content-type': up.headers['content-type'] } : {});
    res.end(body);
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      res.writeHead(500);
      res.end(err.message);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  front.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  front.close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  return front;
}

const gaps = (t: number[]) => t.slice(1).map((x, i) => x - t[i]!);

/** One consumer behind a front door; the rotation is run to its end on a real worker. */
async function rotateBehindFront(busy: Front['busy'], fanOut?: 'workflow' | 'activity'): Promise<{ result: RotationResult; front: Front; fx: RotationFixture }> {
  const front = await startFront();
  front.busy.push(...busy);
  const fx = await rotationFixture([{ id: 'app', rotation: { baseUrl: `${front.url}/svc/app` } }], fanOut ? { fanOut } : {});
  front.upstream = fx.server.url;
  const client = await testClient();
  const result = await fx.run(async () => {
    const started = await startRotation(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
    return (await started.handle.result()) as RotationResult;
  });
  return { result, front, fx };
}

describe('rotation steps honour Retry-After', () => {
  test('503 + Retry-After: 2, twice: installs arrive >= 2 s apart and the rotation completes', async () => {
    const { result, front, fx } = await rotateBehindFront(['2', '2']);
    try {
      expect(result.status).toBe('completed');
      expect(fx.server.consumer('app').versionId).toBe(result.versionId);
      expect(front.installArrivals.length).toBeGreaterThanOrEqual(3);
      const [first, second] = gaps(front.installArrivals);
      expect(first).toBeGreaterThanOrEqual(1_950);
      expect(second).toBeGreaterThanOrEqual(1_950);
    } finally {
      await front.close();
      await fx.close();
    }
  }, 60_000);

  test('fanOut: activity (installBatch) waits the same Retry-After', async () => {
    const { result, front, fx } = await rotateBehindFront(['2', '2'], 'activity');
    try {
      expect(result.status).toBe('completed');
      expect(fx.server.consumer('app').versionId).toBe(result.versionId);
      const [first, second] = gaps(front.installArrivals);
      expect(first).toBeGreaterThanOrEqual(1_950);
      expect(second).toBeGreaterThanOrEqual(1_950);
    } finally {
      await front.close();
      await fx.close();
    }
  }, 60_000);

  test('an HTTP-date Retry-After is honoured', async () => {
    // IMF-fixdate has whole seconds: 3 s ahead when sent is at least 2 s ahead.
    const { result, front, fx } = await rotateBehindFront([() => new Date(Date.now() + 3_000).toUTCString()]);
    try {
      expect(result.status).toBe('completed');
      expect(front.sent[0]).toMatch(/GMT$/);
      expect(front.installArrivals[1]!).toBeGreaterThanOrEqual(Date.parse(front.sent[0]!) - 50);
      expect(gaps(front.installArrivals)[0]).toBeGreaterThanOrEqual(1_950);
    } finally {
      await front.close();
      await fx.close();
    }
  }, 60_000);

  test('a malformed Retry-After falls back to backoff and the rotation completes', async () => {
    const { result, front, fx } = await rotateBehindFront(['soon', '-1']);
    try {
      expect(result.status).toBe('completed');
      expect(front.installArrivals.length).toBeGreaterThanOrEqual(3);
      expect(fx.server.consumer('app').versionId).toBe(result.versionId);
    } finally {
      await front.close();
      await fx.close();
    }
  }, 60_000);
});

describe('the failure a provider step throws (real HTTP, no worker)', () => {
  let front: Front;
  beforeAll(async () => {
    front = await startFront();
  });
  afterAll(() => front.close());

  const ctx = (): ProviderContext => ({
    credential: { id: 'c1' } as ProviderContext['credential'],
    service: { id: 'app', type: 'api', endpoints: [{ url: `${front.url}/svc/app` }] } as unknown as ProviderContext['service'],
    secrets: { readSecret: async () => undefined } as unknown as ProviderContext['secrets'],
    timeoutMs: 5_000,
  });

  async function installFailure(retryAfter: string, attempt = 1, timing?: Parameters<typeof providerFailure>[2]): Promise<ApplicationFailure> {
    front.busy.push(retryAfter);
    const err = await httpProvider.install(ctx(), { versionId: 'v2', secret: 'not-a-real-secret-value', idempotencyKey: 'k1' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProviderError);
    const f = providerFailure(err, attempt, timing);
    expect(f).toBeInstanceOf(ApplicationFailure);
    return f as ApplicationFailure;
  }

  test('delay-seconds sets nextRetryDelay', async () => {
    const f = await installFailure('2');
    expect(f.nonRetryable).toBe(false);
    expect(f.nextRetryDelay).toBe(2_000);
    expect(f.message).toContain('install c1 v2 in app');
    expect(f.message).not.toContain('not-a-real-secret-value');
  });

  test('a huge Retry-After is capped at the callService cap (5 minutes by default, or the configured one)', async () => {
    expect((await installFailure('86400')).nextRetryDelay).toBe(DEFAULT_MAX_RETRY_AFTER_MS);
    expect((await installFailure('86400', 1, { maxRetryAfterMs: 7_000 })).nextRetryDelay).toBe(7_000);
  });

  test('a malformed Retry-After gets full-jitter backoff (AWS: random_between(0, min(cap, base * 2 ** attempt)))', async () => {
    const f = await installFailure('in a while', 3, { backoff: { baseMs: 1_000, capMs: 60_000 }, random: () => 0.5 });
    expect(f.nonRetryable).toBe(false);
    expect(f.nextRetryDelay).toBe(2_000); // attempt 3, two retries made: 0.5 * min(60_000, 1_000 * 2 ** 2)
  });

  test('a 422 refusal is not retried, whatever its Retry-After', async () => {
    front.busy.length = 0;
    const put = async () => {
      const s = createServer((_req, res) => {
        res.writeHead(422, { 'retry-after': '1', 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'credential rejected' }));
      });
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
      const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
      try {
        const c = { ...ctx(), service: { id: 'app', type: 'api', endpoints: [{ url }] } as unknown as ProviderContext['service'] };
        return await httpProvider.install(c, { versionId: 'v2', secret: 'x-secret-x', idempotencyKey: 'k' }).then(() => undefined, (e: unknown) => e);
      } finally {
        await new Promise<void>((r) => s.close(() => r()));
      }
    };
    const f = providerFailure(await put(), 1) as ApplicationFailure;
    expect(f.nonRetryable).toBe(true);
    expect(f.nextRetryDelay).toBeUndefined();
  });
});

describe('alert webhooks go through the same verdict', () => {
  let server: Server;
  let url = '';
  let answer: { status: number; headers?: Record<string, string> } = { status: 204 };
  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(answer.status, answer.headers ?? {});
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook/secret-token`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const alert = { id: 'health/app#1', kind: 'TRIGGERED' as const, source: 'health' as const, serviceId: 'app', at: Date.now(), summary: 'app is unhealthy' };
  const deliver = async () => {
    const { deliverAlert } = createAlertActivities({ webhooks: [{ name: 'ops', url }] });
    return deliverAlert(alert).then(
      () => undefined,
      (e: unknown) => e as ApplicationFailure,
    );
  };

  test('503 + Retry-After: 7 asks Temporal for 7 s; a huge one is capped', async () => {
    answer = { status: 503, headers: { 'retry-after': '7' } };
    const f = await deliver();
    expect(f).toBeInstanceOf(ApplicationFailure);
    expect(f!.nonRetryable).toBe(false);
    expect(f!.nextRetryDelay).toBe(7_000);
    expect(f!.message).not.toContain('secret-token');
    answer = { status: 429, headers: { 'retry-after': '999999' } };
    expect((await deliver())!.nextRetryDelay).toBe(DEFAULT_MAX_RETRY_AFTER_MS);
  });

  test('a malformed Retry-After gets backoff; 501 and 422 are refusals', async () => {
    answer = { status: 502, headers: { 'retry-after': 'later' } };
    const f = await deliver();
    expect(f!.nonRetryable).toBe(false);
    expect(f!.nextRetryDelay).toBeGreaterThanOrEqual(1);
    expect(f!.nextRetryDelay).toBeLessThanOrEqual(1_000); // first retry: random_between(0, 1 s)
    answer = { status: 501 };
    expect((await deliver())!.nonRetryable).toBe(true);
    answer = { status: 422, headers: { 'retry-after': '1' } };
    expect((await deliver())!.nonRetryable).toBe(true);
  });
});
