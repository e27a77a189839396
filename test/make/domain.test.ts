import fc from 'fast-check';
import {
  EndpointFailover,
  evaluateConnection,
  evaluateHook,
  evaluateOrganization,
  evaluateScenario,
  MAKE_ROTATION_SCOPES,
  makeMissingScopes,
  formatMakeError,
  makeApiBaseUrl,
  makeConfigSchema,
  makeConnectionData,
  makeNextOffset,
  makePageRepeats,
  makePageQuery,
  makePagesNeeded,
  makeRateLimitPerMinute,
  overallMakeStatus,
  parseMakeError,
  webhookBackoffMs,
  webhookIdempotencyKey,
  webhookRetryPolicy,
  type MakeScenario,
} from '../../src/domain/make';
import { parseRegistry } from '../../src/domain/registry-parse';

describe('zone base URL', () => {
  test.each([
    ['eu1', 'https://eu1.make.com/api/v2'],
    ['eu2', 'https://eu2.make.com/api/v2'],
    ['us1', 'https://us1.make.com/api/v2'],
    ['us2', 'https://us2.make.com/api/v2'],
    ['eu1.make.com', 'https://eu1.make.com/api/v2'],
    ['acme.make.cloud', 'https://acme.make.cloud/api/v2'],
    ['https://acme.make.cloud/', 'https://acme.make.cloud/api/v2'],
    ['http://127.0.0.1:4010', 'http://127.0.0.1:4010/api/v2'],
    ['http://127.0.0.1:4010/api/v2', 'http://127.0.0.1:4010/api/v2'],
  ])('%s -> %s', (zone, base) => expect(makeApiBaseUrl(zone)).toBe(base));

  test('a bad zone is refused with a message naming it', () => {
    expect(() => makeApiBaseUrl('eu 1')).toThrow(/invalid Make zone "eu 1"/);
    expect(() => makeApiBaseUrl('https://x.make.com/?a=1')).toThrow(RangeError);
  });
});

describe('plan limits', () => {
  test('documented figures per plan, the lowest when unknown', () => {
    expect(makeRateLimitPerMinute({ plan: 'core' })).toBe(60);
    expect(makeRateLimitPerMinute({ plan: 'pro' })).toBe(120);
    expect(makeRateLimitPerMinute({ plan: 'teams' })).toBe(240);
    expect(makeRateLimitPerMinute({ plan: 'enterprise' })).toBe(1000);
    expect(makeRateLimitPerMinute({})).toBe(60);
  });
  test('license.apiLimit beats the plan; an explicit figure beats both', () => {
    expect(makeRateLimitPerMinute({ plan: 'core', licenseApiLimit: 300 })).toBe(300);
    expect(makeRateLimitPerMinute({ plan: 'core', licenseApiLimit: 300, apiLimitPerMinute: 30 })).toBe(30);
  });
  test('a non-positive figure is refused naming the option', () => {
    expect(() => makeRateLimitPerMinute({ apiLimitPerMinute: 0 })).toThrow(/apiLimitPerMinute 0/);
    expect(() => makeRateLimitPerMinute({ licenseApiLimit: 1.5 })).toThrow(/license.apiLimit 1.5/);
  });
});

describe('Make error bodies', () => {
  test('detail, message, code and suberrors become one readable line with a hint', () => {
    const info = parseMakeError(400, 'get', '/connections?teamId=42', {
      detail: 'Validation failed for 1 parameter(s).',
      message: 'Bad Request',
      code: 'SC400',
      suberrors: [{ message: "Missing value of required parameter 'teamId'.", code: 'IM006' }],
    });
    expect(info).toEqual({
      status: 400,
      method: 'GET',
      path: '/connections',
      code: 'SC400',
      message: 'Bad Request',
      detail: 'Validation failed for 1 parameter(s).',
      suberrors: ["Missing value of required parameter 'teamId'. (IM006)"],
    });
    const line = formatMakeError(info, 'service make-prod');
    expect(line).toBe(
      "Make API GET /connections (service make-prod) failed: 400 Bad Request: Validation failed for 1 parameter(s). [SC400] (Missing value of required parameter 'teamId'. (IM006)) — check the request against the Make API documentation",
    );
  });
  test('401 tells the user to check the token; text bodies and junk are tolerated', () => {
    expect(formatMakeError(parseMakeError(401, 'GET', '/users/me', '{"detail":"Invalid credentials.","message":"Access denied","code":"SC401"}'))).toMatch(
      /401 Access denied: Invalid credentials\. \[SC401\] — check the Make API token/,
    );
    expect(parseMakeError(502, 'GET', '/x', '<html>bad gateway</html>').detail).toBe('<html>bad gateway</html>');
    expect(parseMakeError(500, 'GET', '/x', [1, 2]).suberrors).toEqual([]);
    expect(parseMakeError(500, 'GET', '/x', 'x'.repeat(1000)).detail!.length).toBeLessThanOrEqual(301);
  });
});

describe('pagination maths', () => {
  test('page query uses pg[offset] and pg[limit] and refuses bad values', () => {
    expect(makePageQuery(20, 10)).toEqual({ 'pg[offset]': '20', 'pg[limit]': '10' });
    expect(() => makePageQuery(-1, 10)).toThrow(/pg\[offset\] -1/);
    expect(() => makePageQuery(0, 0)).toThrow(/pg\[limit\] 0/);
    expect(() => makePageQuery(0, 10_001)).toThrow(/pg\[limit\] 10001/);
  });
  test('a page repeats only when it holds exactly the ids of the previous page', () => {
    expect(makePageRepeats(undefined, ['1', '2'])).toBe(false);
    expect(makePageRepeats(['1', '2'], ['1', '2'])).toBe(true);
    expect(makePageRepeats(['1', '2'], ['3', '4'])).toBe(false);
    expect(makePageRepeats(['1', '2'], ['1'])).toBe(false);
    expect(makePageRepeats([], [])).toBe(false);
  });
  test('walking pages visits every item exactly once and asks for the predicted number of pages', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 500 }), fc.integer({ min: 1, max: 60 }), (total, limit) => {
        const seen: number[] = [];
        let requests = 0;
        let offset: number | undefined = 0;
        while (offset !== undefined) {
          requests++;
          const got = Math.max(0, Math.min(limit, total - offset));
          for (let i = 0; i < got; i++) seen.push(offset + i);
          offset = makeNextOffset(offset, limit, got);
        }
        expect(seen).toEqual(Array.from({ length: total }, (_, i) => i));
        expect(requests).toBe(makePagesNeeded(total, limit));
      }),
    );
  });
});

describe('registry make block', () => {
  const yaml = (extra: string) => `
services:
  - id: crm-api
    type: api
    endpoints: [{ url: http://127.0.0.1:1 }]
  - id: make-prod
    type: make
    endpoints: [{ url: https://eu1.make.com/api/v2 }]
    credential: make-token
    make:
      zone: eu1
      organizationId: 11
      teamId: 22
      plan: pro
      connections:
        - { id: 128, standsFor: crm-api, credential: crm-key, dataField: apiKey, data: { baseUrl: "https://crm" } }
      scenarios:
        - { id: 111, connections: [${extra}] }
      hooks: [{ id: 5 }]
credentials:
  - { id: make-token, issuer: make-prod }
  - { id: crm-key, issuer: crm-api, consumers: [make-prod] }
`;
  test('parses with defaults', () => {
    const r = parseRegistry(yaml('128'), 'services.yaml');
    if (!r.ok) throw new Error(JSON.stringify(r.problems));
    const m = r.registry.services[1]!.make!;
    expect(m.scenarios[0]).toEqual({ id: 111, connections: [128], expectActive: true });
    expect(m.recentExecutions).toBe(10);
    expect(m.operationsWarningPercent).toBe(90);
    expect(m.connectionExpiryWarning).toBe(7 * 86_400_000);
    expect(m.connections[0]!.data).toEqual({ baseUrl: 'https://crm' });
  });
  test('a scenario naming an unlisted connection is a problem with its path and line', () => {
    const r = parseRegistry(yaml('999'), 'services.yaml');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems.map((p) => p.path)).toContain('services[1].make.scenarios[0].connections[0]');
    expect(r.problems.find((p) => p.path.includes('connections[0]'))!.message).toMatch(/connection 999 is not listed/);
  });
  test('references: standsFor and credential must exist, the credential must list the service, and type and block go together', () => {
    const text = yaml('128')
      .replace('standsFor: crm-api', 'standsFor: crm-apii')
      .replace('consumers: [make-prod]', 'consumers: []')
      .replace('  - id: crm-api\n    type: api\n', '  - id: crm-api\n    type: api\n    make: { zone: eu1, organizationId: 1, teamId: 1 }\n');
    const r = parseRegistry(text, 'services.yaml');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const byPath = Object.fromEntries(r.problems.map((p) => [p.path, p.message]));
    expect(byPath['services[1].make.connections[0].standsFor']).toBe('unknown service "crm-apii"');
    expect(byPath['services[1].make.connections[0].credential']).toMatch(/credential "crm-key" does not list "make-prod" among its consumers/);
    expect(byPath['services[0].make']).toMatch(/has a make: block but is type api/);
    expect(r.problems.find((p) => p.path === 'services[1].make.connections[0].standsFor')!.line).toBeGreaterThan(0);
    const bare = parseRegistry('services:\n  - { id: m, type: make, endpoints: [{ url: "https://eu1.make.com/api/v2" }] }\n', 'm.yaml');
    expect(bare.ok ? [] : bare.problems.map((p) => p.message)).toEqual(['service "m" is type make but has no make: block (zone, organizationId, teamId)']);
  });

  test('health thresholds: connectionExpiryWarning is a duration with a unit, operationsWarningPercent a percentage in [1, 100]', () => {
    const ok = makeConfigSchema.safeParse({ zone: 'eu1', organizationId: 1, teamId: 1, connectionExpiryWarning: '36h', operationsWarningPercent: 75 });
    expect(ok.success && ok.data.connectionExpiryWarning).toBe(36 * 3_600_000);
    expect(ok.success && ok.data.operationsWarningPercent).toBe(75);
    const bare = makeConfigSchema.safeParse({ zone: 'eu1', organizationId: 1, teamId: 1, connectionExpiryWarning: 7 });
    expect(bare.success).toBe(false);
    expect(bare.error!.issues[0]!.path).toEqual(['connectionExpiryWarning']);
    const pct = makeConfigSchema.safeParse({ zone: 'eu1', organizationId: 1, teamId: 1, operationsWarningPercent: 120 });
    expect(pct.success).toBe(false);
    expect(pct.error!.issues[0]!.path).toEqual(['operationsWarningPercent']);
  });

  test('a bad zone is a problem on make.zone', () => {
    const bad = makeConfigSchema.safeParse({ zone: 'eu 1', organizationId: 1, teamId: 1 });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues[0]!.path).toEqual(['zone']);
  });
});

describe('connection data for set-data', () => {
  test('the secret goes under dataField next to the static fields', () => {
    expect(makeConnectionData({ id: 1, dataField: 'apiKey', data: { baseUrl: 'u' } }, 's3cret')).toEqual({ baseUrl: 'u', apiKey: 's3cret' });
  });
  test('without dataField a JSON object secret is the data; anything else is refused without echoing the secret', () => {
    expect(makeConnectionData({ id: 1, data: {} }, '{"user":"a","password":"b"}')).toEqual({ user: 'a', password: 'b' });
    let msg = '';
    try {
      makeConnectionData({ id: 7, data: {} }, 'plain-secret-value');
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/connection 7.*dataField/);
    expect(msg).not.toContain('plain-secret-value');
  });
});

describe('health evaluation', () => {
  const scenario = (over: Partial<MakeScenario> = {}): MakeScenario => ({ id: 1, name: 's', isActive: true, isPaused: false, isinvalid: false, ...over });
  const cfg = { id: 1, connections: [128], expectActive: true };
  const conns = [{ id: 128, standsFor: 'crm-api', data: {} }];
  const log = (status: number) => ({ status, timestamp: '2026-01-01T00:00:00Z' });

  test('inactive, invalid and missing scenarios are unhealthy with the reason', () => {
    expect(evaluateScenario(cfg, scenario({ isActive: false }), [], conns, new Set())).toMatchObject({ status: 'unhealthy', reason: 'scenario is inactive' });
    expect(evaluateScenario(cfg, scenario({ isinvalid: true }), [], conns, new Set())).toMatchObject({ status: 'unhealthy', reason: 'scenario is invalid' });
    expect(evaluateScenario(cfg, undefined, [], conns, new Set())).toMatchObject({ status: 'unhealthy' });
    expect(evaluateScenario({ ...cfg, expectActive: false }, scenario({ isActive: false }), [], conns, new Set()).status).toBe('healthy');
  });
  test('active is read from isActive first; the deprecated islinked only when isActive is absent', () => {
    expect(evaluateScenario(cfg, scenario({ isActive: false, islinked: true }), [], conns, new Set())).toMatchObject({ status: 'unhealthy', reason: 'scenario is inactive' });
    expect(evaluateScenario(cfg, scenario({ isActive: true, islinked: false }), [], conns, new Set()).status).toBe('healthy');
    expect(evaluateScenario(cfg, scenario({ isActive: undefined, islinked: false }), [], conns, new Set())).toMatchObject({ status: 'unhealthy', reason: 'scenario is inactive' });
    expect(evaluateScenario(cfg, scenario({ isActive: undefined, islinked: true }), [], conns, new Set()).status).toBe('healthy');
    expect(evaluateScenario(cfg, scenario({ isActive: undefined, islinked: undefined }), [], conns, new Set())).toMatchObject({ status: 'unhealthy', reason: 'scenario is inactive' });
  });
  test('failing recent executions: latest failed is unhealthy, older failures degrade', () => {
    expect(evaluateScenario(cfg, scenario(), [log(3), log(1)], conns, new Set())).toMatchObject({ status: 'unhealthy' });
    expect(evaluateScenario(cfg, scenario(), [log(1), log(3), log(2)], conns, new Set())).toMatchObject({
      status: 'degraded',
      reason: '1 failed and 1 warning of 3 recent executions',
    });
    expect(evaluateScenario(cfg, scenario(), [log(1), log(1)], conns, new Set()).status).toBe('healthy');
  });
  test('a scenario whose connection stands for an unhealthy service is impacted, naming the root cause', () => {
    expect(evaluateScenario(cfg, scenario(), [log(1)], conns, new Set(['crm-api']))).toMatchObject({ status: 'impacted', rootCause: ['crm-api'] });
    expect(evaluateScenario(cfg, scenario(), [log(1)], conns, new Set(['other'])).status).toBe('healthy');
  });
  test('incomplete executions (dlqCount > 0) degrade a scenario that is otherwise healthy, with the count', () => {
    expect(evaluateScenario(cfg, scenario({ dlqCount: 3 }), [log(1)], conns, new Set())).toMatchObject({
      status: 'degraded',
      reason: '3 incomplete executions wait to be resolved in Make (dlqCount)',
    });
    expect(evaluateScenario(cfg, scenario({ dlqCount: 1 }), [log(1), log(2)], conns, new Set())).toMatchObject({
      status: 'degraded',
      reason: '0 failed and 1 warning of 2 recent executions; 1 incomplete execution waits to be resolved in Make (dlqCount)',
    });
    expect(evaluateScenario(cfg, scenario({ dlqCount: 0 }), [log(1)], conns, new Set()).status).toBe('healthy');
    // An unhealthy scenario stays unhealthy; the count is still told.
    expect(evaluateScenario(cfg, scenario({ dlqCount: 2 }), [log(3)], conns, new Set())).toMatchObject({ status: 'unhealthy', reason: expect.stringMatching(/latest execution failed.*2 incomplete executions/) });
  });

  describe('organization', () => {
    const org = (over: Record<string, unknown> = {}) => ({ id: 11, name: 'Acme', isPaused: false, operations: '1000', operationsExt: '0', nextReset: '2026-12-31T00:00:00.000Z', license: { operations: 10_000 }, ...over });
    const opts = { operationsWarningPercent: 90 };

    test('healthy when not paused and operations are under the warning share of the limit', () => {
      expect(evaluateOrganization(org(), opts)).toEqual({ kind: 'organization', id: '11', name: 'Acme', status: 'healthy' });
      expect(evaluateOrganization(org({ operations: 8_999 }), opts).status).toBe('healthy');
    });
    test('a paused organization is unhealthy: none of its scenarios run', () => {
      expect(evaluateOrganization(org({ isPaused: true }), opts)).toMatchObject({ status: 'unhealthy', reason: expect.stringMatching(/^organization is paused \(isPaused\): its scenarios do not run/) });
    });
    test('operations near or at the limit degrade, with the figures', () => {
      expect(evaluateOrganization(org({ operations: '9000' }), opts)).toMatchObject({
        status: 'degraded',
        reason: 'operations used 9000 of 10000 (90%) this period, at or above the 90% warning; the period resets 2026-12-31T00:00:00.000Z',
      });
      expect(evaluateOrganization(org({ operations: '10500', nextReset: null }), opts)).toMatchObject({
        status: 'degraded',
        reason: 'operations used 10500 of 10000 (105%) this period: the limit is reached, scenarios stop until the period resets or operations are added',
      });
      expect(evaluateOrganization(org({ operations: '5000' }), { operationsWarningPercent: 50 }).status).toBe('degraded');
    });
    test('paused and at the limit: unhealthy, both told', () => {
      const r = evaluateOrganization(org({ isPaused: true, operations: '10000' }), opts);
      expect(r.status).toBe('unhealthy');
      expect(r.reason).toMatch(/paused.*; operations used 10000 of 10000 \(100%\)/);
    });
    test('an answer it cannot read is unknown, never healthy', () => {
      expect(evaluateOrganization(org({ isPaused: undefined }), opts)).toMatchObject({ status: 'unknown', reason: expect.stringMatching(/no isPaused/) });
      expect(evaluateOrganization(org({ operations: 'lots' }), opts)).toMatchObject({ status: 'unknown', reason: expect.stringMatching(/operations used \(operations\) or the limit \(license\.operations\) unreadable/) });
      expect(evaluateOrganization(org({ license: {} }), opts).status).toBe('unknown');
      expect(evaluateOrganization(org({ license: { operations: 0 } }), opts).status).toBe('unknown');
      // Known bad news is not hidden behind an unreadable part.
      expect(evaluateOrganization(org({ isPaused: true, operations: undefined }), opts).status).toBe('unhealthy');
    });
  });

  describe('connection', () => {
    const now = Date.parse('2026-12-07T12:00:00.000Z');
    const week = 7 * 86_400_000;
    const c = { id: 128, name: 'CRM' };
    test('verified and not expiring is healthy; no expire (null) never expires', () => {
      expect(evaluateConnection(c, { verified: true, expire: null }, now, week)).toEqual({ kind: 'connection', id: '128', name: 'CRM', status: 'healthy' });
      expect(evaluateConnection(c, { verified: true, expire: '2027-01-07T12:00:00.000Z' }, now, week).status).toBe('healthy');
    });
    test('expiring within the warning is degraded, expired is unhealthy, each naming when', () => {
      expect(evaluateConnection(c, { verified: true, expire: '2026-12-10T12:00:00.000Z' }, now, week)).toMatchObject({
        status: 'degraded',
        reason: 'connection expires at 2026-12-10T12:00:00.000Z (in 3d, within the 7d warning): reauthorize it in Make',
      });
      expect(evaluateConnection(c, { verified: true, expire: '2026-12-07T11:00:00.000Z' }, now, week)).toMatchObject({
        status: 'unhealthy',
        reason: 'connection expired at 2026-12-07T11:00:00.000Z: reauthorize it in Make',
      });
      expect(evaluateConnection(c, { verified: true, expire: '2026-12-07T12:00:00.000Z' }, now, week).status).toBe('unhealthy');
    });
    test('a failed test is unhealthy whatever the expiry; an unreadable expire is unknown, never healthy', () => {
      expect(evaluateConnection(c, { verified: false, expire: null }, now, week)).toMatchObject({ status: 'unhealthy', reason: 'connection test failed (verified: false)' });
      expect(evaluateConnection(c, { verified: false, expire: '2026-12-08T12:00:00.000Z' }, now, week)).toMatchObject({ status: 'unhealthy', reason: expect.stringMatching(/verified: false.*; connection expires at/) });
      expect(evaluateConnection(c, { verified: true, expire: 'soon' }, now, week)).toMatchObject({ status: 'unknown', reason: 'connection expire "soon" is not a date' });
    });
  });

  test('hooks: disabled, gone, unreachable, full queue', () => {
    const h = { id: 5, name: 'h', enabled: true, gone: false, queueCount: 0, queueLimit: 10, url: 'http://x/hook/a' };
    expect(evaluateHook(5, h, true).status).toBe('healthy');
    expect(evaluateHook(5, { ...h, enabled: false }, true)).toMatchObject({ status: 'unhealthy', reason: 'hook is disabled' });
    expect(evaluateHook(5, { ...h, gone: true }, true).status).toBe('unhealthy');
    expect(evaluateHook(5, h, false).reason).toMatch(/not reachable/);
    expect(evaluateHook(5, { ...h, queueCount: 10 }, true).status).toBe('degraded');
    expect(evaluateHook(5, undefined, undefined).status).toBe('unhealthy');
  });
  test('overall status is the worst part', () => {
    const p = (status: 'healthy' | 'impacted' | 'degraded' | 'unhealthy') => ({ kind: 'hook' as const, id: '1', status });
    expect(overallMakeStatus([])).toBe('unknown');
    expect(overallMakeStatus([p('healthy'), p('impacted')])).toBe('impacted');
    expect(overallMakeStatus([p('impacted'), p('degraded')])).toBe('degraded');
    expect(overallMakeStatus([p('degraded'), p('unhealthy'), p('healthy')])).toBe('unhealthy');
  });
});

describe('token scopes', () => {
  test('rotating into connections needs connections:read and connections:write', () => {
    expect([...MAKE_ROTATION_SCOPES]).toEqual(['connections:read', 'connections:write']);
  });
  test('the missing scopes, in the order required; exact names only', () => {
    expect(makeMissingScopes(['connections:read', 'connections:write', 'scenarios:read'], MAKE_ROTATION_SCOPES)).toEqual([]);
    expect(makeMissingScopes(['connections:read'], MAKE_ROTATION_SCOPES)).toEqual(['connections:write']);
    expect(makeMissingScopes([], MAKE_ROTATION_SCOPES)).toEqual(['connections:read', 'connections:write']);
    expect(makeMissingScopes(['Connections:Write', 'connections:write '], ['connections:write'])).toEqual(['connections:write']);
  });
});

describe('webhook delivery maths', () => {
  test('backoff is whole ms within [0, cap] and reaches the cap with random near 1', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.double({ min: 0, max: 0.999999, noNaN: true }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.double({ min: 1, max: 10, noNaN: true }),
        (retry, r, initial, coefficient) => {
          const p = webhookRetryPolicy({ initialIntervalMs: initial, backoffCoefficient: coefficient, maximumIntervalMs: initial + 50_000 });
          const d = webhookBackoffMs(retry, p, r);
          expect(Number.isInteger(d)).toBe(true);
          expect(d).toBeGreaterThanOrEqual(0);
          expect(d).toBeLessThanOrEqual(p.maximumIntervalMs);
        },
      ),
    );
    const p = webhookRetryPolicy({ initialIntervalMs: 100, backoffCoefficient: 2, maximumIntervalMs: 1000 });
    expect(webhookBackoffMs(1, p, 0.999)).toBe(99);
    expect(webhookBackoffMs(3, p, 0.999)).toBe(399);
    expect(webhookBackoffMs(30, p, 0.999)).toBe(999);
  });
  test('policy options are validated by name', () => {
    expect(() => webhookRetryPolicy({ maximumAttempts: 0 })).toThrow(/maximumAttempts 0/);
    expect(() => webhookRetryPolicy({ backoffCoefficient: 0.5 })).toThrow(/backoffCoefficient 0.5/);
    expect(() => webhookRetryPolicy({ initialIntervalMs: 10, maximumIntervalMs: 5 })).toThrow(/maximumIntervalMs 5/);
  });
  test('each failure fails over to the next endpoint, wrapping round, and permanent refusals drop it; the key is stable per subscriber', () => {
    const f = new EndpointFailover(3);
    const seen: Array<number | undefined> = [];
    for (const permanent of [false, false, false, true, false, true, false]) {
      seen.push(f.current());
      f.failed(permanent);
    }
    // 0,1,2 round robin; 0 fails for good (dropped), then 1, 2; 2 dropped; then only 1 remains.
    expect(seen).toEqual([0, 1, 2, 0, 1, 2, 1]);
    expect(f.remaining).toBe(1);
    f.failed(true);
    expect(f.current()).toBeUndefined();
    expect(() => new EndpointFailover(-1)).toThrow(/endpoint count -1/);
    expect(webhookIdempotencyKey('evt-1', 'crm')).toBe(webhookIdempotencyKey('evt-1', 'crm'));
    expect(webhookIdempotencyKey('evt-1', 'crm')).not.toBe(webhookIdempotencyKey('evt-1', 'erp'));
  });
});
