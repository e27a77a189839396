import { MakeApiError, MakeClient, MakeAnswerError, MakeOrganizationLimits } from '../../src/activities/make/client';
import { startFakeMake, type FakeMake } from '../fixtures/make-server';
import { fetchTransport } from './fetch-transport';

let fake: FakeMake;
beforeEach(async () => {
  fake = await startFakeMake({ apiLimitPerMinute: 5, rateWindowMs: 400 });
});
afterEach(() => fake.close());

const client = (over: Partial<ConstructorParameters<typeof MakeClient>[0]> = {}) =>
  new MakeClient({ serviceId: 'make-prod', organizationId: fake.organizationId, transport: fetchTransport(fake.apiBase, fake.token), pageLimit: 10, ...over });

test('listing walks pg[offset]/pg[limit] pages until a short page and yields every item once', async () => {
  for (let i = 1; i <= 23; i++) fake.addConnection({ id: 100 + i });
  fake.addConnection({ id: 999, teamId: 7 }); // another team
  const limits = new MakeOrganizationLimits({ windowMs: 400, marginMs: 200 });
  limits.set(fake.organizationId, 5);
  const ids = (await MakeClient.all(client({ limits }).connections(fake.teamId))).map((c) => c.id);
  expect(ids).toEqual(Array.from({ length: 23 }, (_, i) => 101 + i));
  const pages = fake.requests.filter((r) => r.path === '/api/v2/connections');
  expect(pages.map((r) => [r.query['pg[offset]'], r.query['pg[limit]'], r.query.teamId])).toEqual([
    ['0', '10', '42'],
    ['10', '10', '42'],
    ['20', '10', '42'],
  ]);
});

test('a server that ignores pg[offset] ends the listing with a clear error instead of looping', async () => {
  for (let i = 1; i <= 23; i++) fake.addConnection({ id: 100 + i });
  fake.options.ignoreOffset = true;
  const err = await MakeClient.all(client().connections(fake.teamId)).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(MakeAnswerError);
  expect((err as MakeAnswerError).retryable).toBe(false);
  expect((err as Error).message).toBe(
    'Make API GET /connections (service make-prod): the page at pg[offset]=10 repeats the previous page (the same 10 ids), so the server ignores pg[offset]; listing stopped after 2 pages — check that the API base URL is Make\'s (no proxy rewriting the query string)',
  );
  expect(fake.requests.filter((r) => r.path === '/api/v2/connections')).toHaveLength(2);
});

test('a listing stops at its bound with a clear error naming the endpoint', async () => {
  for (let i = 1; i <= 23; i++) fake.addScenario({ id: 100 + i });
  const err = await MakeClient.all(client({ maxListItems: 15 }).scenarios(fake.teamId)).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(MakeAnswerError);
  expect((err as Error).message).toBe(
    'Make API GET /scenarios (service make-prod): more than 15 items (maxListItems); listing stopped after 2 pages — narrow the listing or raise maxListItems',
  );
  const pages = await MakeClient.all(client({ maxListPages: 2 }).scenarios(fake.teamId)).catch((e: unknown) => e);
  expect((pages as Error).message).toBe(
    'Make API GET /scenarios (service make-prod): more than 2 pages (maxListPages) of 10 items; listing stopped — narrow the listing or raise maxListPages',
  );
  expect(() => client({ maxListItems: 0 })).toThrow(/invalid maxListItems 0/);
  expect(() => client({ maxListPages: 1.5 })).toThrow(/invalid maxListPages 1.5/);
});

test("Make's error body becomes a readable error: what failed, Make's words, code, suberrors, hint", async () => {
  const c = client();
  const err = await c.call({ method: 'GET', path: '/connections' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(MakeApiError);
  expect((err as MakeApiError).retryable).toBe(false);
  expect((err as MakeApiError).message).toBe(
    "Make API GET /connections (service make-prod) failed: 400 Bad Request: Validation failed for 1 parameter(s). [SC400] (Missing value of required parameter 'teamId'. (IM006)) — check the request against the Make API documentation",
  );
  await expect(c.connection(404404)).rejects.toThrow(/GET \/connections\/404404 .* 404 Not Found: Connection not found\. \[SC404\] — check the id in the registry/);
});

test('a wrong token is a non-retryable 401 that says to check the token, and never shows the token', async () => {
  const bad = new MakeClient({ serviceId: 'make-prod', organizationId: fake.organizationId, transport: fetchTransport(fake.apiBase, 'wrong-token-value') });
  const err = (await bad.me().catch((e: unknown) => e)) as MakeApiError;
  expect(err.info.status).toBe(401);
  expect(err.retryable).toBe(false);
  expect(err.message).toMatch(/check the Make API token/);
  expect(err.message).not.toContain('wrong-token-value');
  expect(err.message).not.toContain(fake.token);
});

test('without the organization limit Make answers 429, a retryable error with the documented message', async () => {
  const c = client();
  const results = await Promise.allSettled(Array.from({ length: 8 }, () => c.me()));
  const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as MakeApiError);
  expect(rejected).toHaveLength(3);
  for (const e of rejected) {
    expect(e.info.status).toBe(429);
    expect(e.retryable).toBe(true);
    expect(e.message).toMatch(/Requests limit for organization exceeded/);
  }
});

test('the organization limit, shared by two services of one organization, keeps both under Make\'s limit', async () => {
  const limits = new MakeOrganizationLimits({ windowMs: 400, marginMs: 200 });
  limits.set(fake.organizationId, 5);
  const a = client({ limits, serviceId: 'make-a' });
  const b = client({ limits, serviceId: 'make-b' });
  const results = await Promise.allSettled(Array.from({ length: 14 }, (_, i) => (i % 2 ? a : b).me()));
  expect(results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
  expect(fake.requests.filter((r) => r.status === 429)).toHaveLength(0);
  expect(fake.requests).toHaveLength(14);
});

test('scenario run is exempt from the organization limit, as Make documents', async () => {
  fake.addScenario({ id: 111, runDurationMs: 5 });
  const c = client();
  for (let i = 0; i < 5; i++) await c.me();
  const { executionId } = await c.runScenario(111, { order: 1 });
  expect(executionId).toMatch(/^[0-9a-f]{32}$/);
  expect(fake.executions.get(executionId)!.data).toEqual({ order: 1 });
});

test('pageLimit and timeoutMs are validated by name', () => {
  expect(() => client({ pageLimit: 0 })).toThrow(/pg\[limit\] 0/);
  expect(() => client({ timeoutMs: -1 })).toThrow(/timeoutMs -1/);
  expect(() => new MakeOrganizationLimits().set(1, 0)).toThrow(/invalid Make API limit 0 for organization 1/);
});

test('Make errors become Temporal failures: 429 retryable after Retry-After (either form), 4xx non-retryable, with Make\'s words', async () => {
  const { toMakeFailure } = await import('../../src/activities/make/failure');
  const c = client();
  fake.inject({ status: 429, headers: { 'retry-after': '7' }, body: { detail: 'Requests limit for organization exceeded, please try again later.', message: 'Too Many Requests', code: 'SC429' } });
  const e429 = (await c.me().catch((e: unknown) => e)) as MakeApiError;
  expect(e429.retryAfterMs).toBe(7000);
  const f429 = toMakeFailure(e429, { attempt: 1, method: 'GET' });
  expect(f429.nonRetryable).toBe(false);
  expect(f429.nextRetryDelay).toBe(7000);
  expect(f429.type).toBe('MAKE_HTTP_429');

  fake.inject({ status: 503, headers: { 'retry-after': new Date(Date.now() + 30_000).toUTCString() } });
  const e503 = (await c.me().catch((e: unknown) => e)) as MakeApiError;
  expect(e503.retryAfterMs).toBeGreaterThan(25_000);
  expect(e503.retryAfterMs).toBeLessThanOrEqual(30_000);

  const f404 = toMakeFailure(await c.hook(4040).catch((e: unknown) => e), { attempt: 1, method: 'GET' });
  expect(f404.nonRetryable).toBe(true);
  expect(f404.message).toMatch(/GET \/hooks\/4040 .* 404 Not Found: Hook not found\./);
});
