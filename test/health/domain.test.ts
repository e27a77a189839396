/**
 * The pure health rules: expectation judgment, dependency-aware status,
 * hysteresis and alert decisions, availability, maintenance windows.
 */
import fc from 'fast-check';
import {
  applyObservation,
  applySkippedPass,
  availability,
  classifySweep,
  evaluateProbe,
  healthJsonVerdict,
  initialServiceHealth,
  inMaintenance,
  isSteady,
  isWarningAlert,
  markStale,
  openMaintenanceOccurrence,
  probeTarget,
  statusMatches,
  zonedTimeToUtc,
  type AvailabilitySpan,
  type HealthObservation,
  type ProbeVerdict,
  type ServiceHealthState,
} from '../../src/domain/health';
import { healthCheckSchema, maintenanceWindowSchema } from '../../src/domain/registry';
import { parseRegistry } from '../../src/domain/registry-parse';

const check = (c: unknown = {}) => healthCheckSchema.parse(c);
const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const DAY = 86_400_000;

describe('expectations', () => {
  test('status codes, classes and ranges', () => {
    expect(statusMatches(204, 204)).toBe(true);
    expect(statusMatches(204, '2xx')).toBe(true);
    expect(statusMatches(301, '2xx')).toBe(false);
    expect(statusMatches(299, '200-299')).toBe(true);
    expect(statusMatches(300, '200-299')).toBe(false);
    expect(statusMatches(418, '418')).toBe(true);
  });

  test('health+json pass/warn/fail and aliases; unknown values fail', () => {
    expect(['pass', 'ok', 'UP', 'warn', 'fail', 'down', 'error', 'weird'].map(healthJsonVerdict)).toEqual(['pass', 'pass', 'pass', 'warn', 'fail', 'fail', 'fail', 'fail']);
  });

  test('each rule fails with its own kind and a line naming the value', () => {
    const base = { startedAt: NOW, latencyMs: 20, status: 200 };
    const c = check({ expect: { status: ['2xx'], maxResponseTime: '100ms', body: [{ path: '$.db', equals: 'ok' }, { path: '$.v', matches: '^1\\.' }, { path: '$.x', exists: false }] } });
    expect(evaluateProbe('a', c, { ...base, bodyMatches: [['ok'], ['1.2'], []] }, NOW)).toMatchObject({ verdict: 'pass' });
    expect(evaluateProbe('a', c, { ...base, status: 500, bodyMatches: [['ok'], ['1.2'], []] }, NOW)).toMatchObject({ verdict: 'fail', failureKind: 'status', detail: 'status 500, expected 2xx' });
    expect(evaluateProbe('a', c, { ...base, bodyMatches: [['bad'], ['1.2'], []] }, NOW)).toMatchObject({ failureKind: 'body', detail: '$.db is "bad", expected "ok"' });
    expect(evaluateProbe('a', c, { ...base, bodyMatches: [['ok'], ['2.0'], []] }, NOW)).toMatchObject({ failureKind: 'body' });
    expect(evaluateProbe('a', c, { ...base, bodyMatches: [['ok'], ['1.0'], [1]] }, NOW)).toMatchObject({ failureKind: 'body', detail: '$.x exists but must not' });
    expect(evaluateProbe('a', c, { ...base, bodyParseError: 'Unexpected token' }, NOW)).toMatchObject({ failureKind: 'body' });
    expect(evaluateProbe('a', c, { ...base, latencyMs: 150, bodyMatches: [['ok'], ['1.2'], []] }, NOW)).toMatchObject({ failureKind: 'slow' });
    expect(evaluateProbe('a', c, { startedAt: NOW, latencyMs: 2000, error: { kind: 'timeout', message: 'no answer within 2000ms' } }, NOW)).toMatchObject({
      verdict: 'fail',
      failureKind: 'timeout',
    });
  });

  test('health+json warn is degraded; certificate close to expiry is degraded, expired fails', () => {
    const c = check({ expect: { certificateExpiresAfter: '14d' } });
    expect(evaluateProbe('a', c, { startedAt: NOW, latencyMs: 5, status: 200, healthJsonStatus: 'warn' }, NOW).verdict).toBe('warn');
    expect(evaluateProbe('a', c, { startedAt: NOW, latencyMs: 5, status: 200, healthJsonStatus: 'fail' }, NOW)).toMatchObject({ verdict: 'fail', failureKind: 'body' });
    expect(evaluateProbe('a', c, { startedAt: NOW, latencyMs: 5, status: 200, certNotAfter: NOW + 30 * DAY }, NOW)).toMatchObject({ verdict: 'pass', certDaysLeft: 30 });
    expect(evaluateProbe('a', c, { startedAt: NOW, latencyMs: 5, status: 200, certNotAfter: NOW + 3.5 * DAY }, NOW)).toMatchObject({ verdict: 'warn', failureKind: 'tls', certDaysLeft: 3 });
    expect(evaluateProbe('a', c, { startedAt: NOW, latencyMs: 5, status: 200, certNotAfter: NOW - DAY }, NOW)).toMatchObject({ verdict: 'fail', failureKind: 'tls' });
  });
});

describe('dependency-aware status', () => {
  const nodes = [
    { id: 'db', dependsOn: [] },
    { id: 'gw', dependsOn: ['db'] },
    { id: 'api', dependsOn: ['gw'] },
    { id: 'web', dependsOn: ['api', 'cache'] },
    { id: 'cache', dependsOn: [] },
  ];
  const results = (v: Record<string, ProbeVerdict>) => new Map(Object.entries(v).map(([k, verdict]) => [k, { verdict }]));

  test('the deepest failing dependency is the root cause; its dependents are impacted', () => {
    const c = classifySweep(nodes, results({ db: 'pass', gw: 'fail', api: 'fail', web: 'fail', cache: 'pass' }));
    expect(c.get('gw')).toMatchObject({ status: 'unhealthy', impacts: ['api', 'web'] });
    expect(c.get('api')).toMatchObject({ status: 'impacted', rootCauses: ['gw'] });
    expect(c.get('web')).toMatchObject({ status: 'impacted', rootCauses: ['gw'] });
    expect(c.get('db')!.status).toBe('healthy');
  });

  test('two independent roots are both named; inconclusive dependencies impact nobody', () => {
    const c = classifySweep(nodes, results({ db: 'fail', gw: 'fail', api: 'pass', web: 'fail', cache: 'fail' }));
    expect(c.get('web')).toMatchObject({ status: 'impacted', rootCauses: ['cache', 'db'] });
    expect(c.get('db')).toMatchObject({ status: 'unhealthy', impacts: ['api', 'gw', 'web'] });
    const d = classifySweep(nodes, results({ db: 'inconclusive', gw: 'fail', api: 'pass', web: 'pass', cache: 'pass' }));
    expect(d.get('db')!.status).toBe('unknown');
    expect(d.get('gw')!.status).toBe('unhealthy');
  });

  test('a service in maintenance shows maintenance but still explains its dependents', () => {
    const r = results({ db: 'fail', gw: 'fail', api: 'pass', web: 'pass', cache: 'pass' });
    r.set('db', { verdict: 'fail', maintenance: true } as never);
    const c = classifySweep(nodes, r);
    expect(c.get('db')!.status).toBe('maintenance');
    expect(c.get('gw')).toMatchObject({ status: 'impacted', rootCauses: ['db'] });
  });

  test('cycles and unknown ids never hang or throw', () => {
    const cyc = [
      { id: 'a', dependsOn: ['b'] },
      { id: 'b', dependsOn: ['a', 'ghost'] },
    ];
    const c = classifySweep(cyc, results({ a: 'fail', b: 'fail' }));
    expect(c.get('a')).toMatchObject({ status: 'unhealthy', impacts: ['b'] });
    expect(c.get('b')).toMatchObject({ status: 'impacted', rootCauses: ['a'] });
  });
});

describe('hysteresis and alerts', () => {
  const obs = (i: number, verdict: ProbeVerdict, extra: Partial<HealthObservation> = {}): HealthObservation => ({
    sweepId: `s${i}`,
    at: NOW + i * 30_000,
    verdict,
    latencyMs: 10,
    failureThreshold: 3,
    successThreshold: 2,
    ...extra,
  });
  const run = (verdicts: (ProbeVerdict | [ProbeVerdict, Partial<HealthObservation>])[], start?: ServiceHealthState) => {
    let s = start ?? initialServiceHealth('svc', NOW);
    const kinds: string[] = [];
    const statuses: string[] = [];
    verdicts.forEach((v, i) => {
      const [verdict, extra] = Array.isArray(v) ? v : [v, {}];
      const r = applyObservation(s, obs(i, verdict, extra));
      s = r.state;
      kinds.push(...r.alerts.map((a) => a.kind));
      statuses.push(s.status);
    });
    return { s, kinds, statuses };
  };

  test('failureThreshold failures before unhealthy, successThreshold passes before healthy again', () => {
    const { kinds, statuses } = run(['pass', 'fail', 'fail', 'fail', 'fail', 'pass', 'pass', 'pass']);
    expect(statuses).toEqual(['healthy', 'healthy', 'healthy', 'unhealthy', 'unhealthy', 'unhealthy', 'healthy', 'healthy']);
    expect(kinds).toEqual(['TRIGGERED', 'RESOLVED']);
  });

  test('steadiness, and a skipped pass reported later still breaks a failure streak', () => {
    const steady = run(['pass']).s;
    expect(isSteady(steady)).toBe(true);
    expect(isSteady(run(['pass', 'fail']).s)).toBe(false);
    // Another sender delivered two failures; this sender had skipped a pass after them.
    const failing = run(['pass', 'fail', 'fail']).s;
    expect(failing.failStreak).toBe(2);
    const afterSkip = applySkippedPass(failing, failing.last!.at + 1, { failureThreshold: 3, successThreshold: 2 });
    expect(afterSkip.failStreak).toBe(0);
    expect(applyObservation(afterSkip, obs(10, 'fail')).alerts).toEqual([]);
    // A skipped pass older than what the state has seen is ignored.
    expect(applySkippedPass(failing, failing.last!.at - 1, { failureThreshold: 3, successThreshold: 2 })).toBe(failing);
  });

  test('property: from any state, successThreshold plain passes make the service steady (the publisher relies on it)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ verdict: fc.constantFrom<ProbeVerdict>('pass', 'warn', 'fail', 'inconclusive'), rooted: fc.boolean(), maintenance: fc.boolean() }), { maxLength: 40 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 5 }),
        (steps, ft, st) => {
          let s = initialServiceHealth('svc', NOW);
          let i = 0;
          for (const x of steps) {
            const o: HealthObservation = { ...obs(i++, x.verdict), failureThreshold: ft, successThreshold: st };
            if (x.rooted) o.rootCauses = ['up'];
            if (x.maintenance) o.maintenance = true;
            s = applyObservation(s, o).state;
          }
          for (let k = 0; k < st; k++) s = applyObservation(s, { ...obs(i++, 'pass'), failureThreshold: ft, successThreshold: st }).state;
          expect(isSteady(s)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('a duplicate sweep changes nothing', () => {
    const a = applyObservation(initialServiceHealth('svc', NOW), obs(1, 'fail'));
    expect(applyObservation(a.state, obs(1, 'fail')).state).toBe(a.state);
  });

  test('impacted failures never alert; the root being fixed but this service still failing alerts after a full threshold', () => {
    const impacted = { rootCauses: ['gw'] };
    const r = run([['fail', impacted], ['fail', impacted], ['fail', impacted], ['fail', impacted], 'fail', 'fail', 'fail']);
    expect(r.statuses).toEqual(['impacted', 'impacted', 'impacted', 'impacted', 'unhealthy', 'unhealthy', 'unhealthy']);
    expect(r.kinds).toEqual(['TRIGGERED']);
  });

  test('maintenance silences alerts but keeps measuring; a failure outlasting the window alerts after it', () => {
    const m = { maintenance: true };
    const r = run([['fail', m], ['fail', m], ['fail', m], ['fail', m], 'fail', 'pass', 'pass']);
    expect(r.statuses.slice(0, 4)).toEqual(['maintenance', 'maintenance', 'maintenance', 'maintenance']);
    expect(r.kinds).toEqual(['TRIGGERED', 'RESOLVED']);
    const quiet = run([['fail', m], ['fail', m], ['fail', m], ['pass', m], ['pass', m], 'pass']);
    expect(quiet.kinds).toEqual([]);
  });

  test('inconclusive results never read as healthy; staleness turns the status unknown', () => {
    const r = run(['pass', 'inconclusive', 'inconclusive', 'inconclusive']);
    expect(r.statuses).toEqual(['healthy', 'healthy', 'healthy', 'unknown']);
    expect(r.kinds).toEqual([]);
    const s = run(['pass']).s;
    expect(markStale(s, NOW + 10 * 60_000, 5 * 60_000).status).toBe('unknown');
    expect(markStale(s, NOW + 60_000, 5 * 60_000)).toBe(s);
  });

  test('property: alerts strictly alternate TRIGGERED/RESOLVED; each TRIGGERED follows failureThreshold rootless failures', () => {
    const step = fc.record({
      verdict: fc.constantFrom<ProbeVerdict>('pass', 'warn', 'fail', 'fail', 'inconclusive'),
      rooted: fc.boolean(),
      maintenance: fc.boolean(),
      dup: fc.boolean(),
      certThresholdDays: fc.constantFrom(undefined, 21, 14, 7),
    });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 80 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), (steps, ft, st) => {
        let s = initialServiceHealth('svc', NOW);
        let expectNext: 'TRIGGERED' | 'RESOLVED' = 'TRIGGERED';
        let rootless = 0;
        // Warnings: their own incident; WARNING opens it, lower certificate thresholds add notices, RESOLVED closes it.
        let warning: { incidentId: string; threshold: number } | undefined;
        let warnRun = 0;
        let passRun = 0;
        steps.forEach((x, i) => {
          const o: HealthObservation = { ...obs(i, x.verdict), failureThreshold: ft, successThreshold: st };
          if (x.rooted) o.rootCauses = ['up'];
          if (x.maintenance && i % 3 === 0) o.maintenance = true;
          if (x.verdict === 'warn' && x.certThresholdDays) o.certThresholdMs = x.certThresholdDays * DAY;
          const r = applyObservation(s, o);
          rootless = x.verdict === 'fail' ? (x.rooted ? 0 : rootless + 1) : x.verdict === 'inconclusive' ? rootless : 0;
          warnRun = x.verdict === 'warn' && !x.rooted ? warnRun + 1 : x.verdict === 'inconclusive' ? warnRun : 0;
          passRun = x.verdict === 'pass' ? passRun + 1 : x.verdict === 'inconclusive' ? passRun : 0;
          for (const a of r.alerts.filter(isWarningAlert)) {
            expect(o.maintenance).toBeUndefined();
            expect(a.id).toMatch(/^health\/svc\/warning#\d+$/);
            if (a.kind === 'WARNING' && !warning) {
              expect(warnRun).toBeGreaterThanOrEqual(ft);
              expect(a.incidentId).toBe(a.id);
              warning = { incidentId: a.id, threshold: o.certThresholdMs ?? Infinity };
            } else if (a.kind === 'WARNING') {
              expect(a.incidentId).toBe(warning!.incidentId);
              expect(o.certThresholdMs).toBeLessThan(warning!.threshold);
              warning!.threshold = o.certThresholdMs!;
            } else {
              expect(warning).toBeDefined();
              expect(passRun).toBeGreaterThanOrEqual(st);
              expect(a.incidentId).toBe(warning!.incidentId);
              warning = undefined;
            }
          }
          expect(r.alerts.filter(isWarningAlert).length).toBeLessThanOrEqual(1);
          for (const a of r.alerts.filter((a) => !isWarningAlert(a))) {
            expect(a.kind).toBe(expectNext);
            if (a.kind === 'TRIGGERED') expect(rootless).toBeGreaterThanOrEqual(ft);
            expect(o.maintenance).toBeUndefined();
            expectNext = a.kind === 'TRIGGERED' ? 'RESOLVED' : 'TRIGGERED';
          }
          s = r.state;
          if (x.dup) expect(applyObservation(s, o).alerts).toEqual([]);
        });
        expect(s.alert.open).toBe((expectNext as string) === 'RESOLVED');
        expect(s.warning?.open ?? false).toBe(warning !== undefined);
      }),
      { numRuns: 300 },
    );
  });
});

describe('availability', () => {
  const H = 3_600_000;
  test('up / (up + down); excluded time and gaps count for neither', () => {
    const spans: AvailabilitySpan[] = [
      { from: NOW - 4 * H, to: NOW - 3 * H, state: 'up' },
      { from: NOW - 3 * H, to: NOW - 2 * H, state: 'excluded' },
      // a gap from -2h to -1.5h
      { from: NOW - 1.5 * H, to: NOW - 1 * H, state: 'down' },
      { from: NOW - 1 * H, to: NOW + 5 * H, state: 'up' },
    ];
    expect(availability(spans, NOW, 24 * H)).toBeCloseTo((100 * 2) / 2.5, 6);
    expect(availability(spans, NOW, H)).toBe(100);
    expect(availability(spans, NOW, 1.5 * H)).toBeCloseTo((100 * 1) / 1.5, 6);
    expect(availability([], NOW, H)).toBeUndefined();
    expect(availability([{ from: NOW - 2 * H, to: NOW - H, state: 'excluded' }], NOW, 24 * H)).toBeUndefined();
  });

  test('property: any spans (overlapping, reversed, in the future, from clock jumps) give a value in [0, 100] or none', () => {
    const span = fc.record({
      from: fc.integer({ min: NOW - 40 * DAY, max: NOW + DAY }),
      len: fc.integer({ min: -H, max: 3 * DAY }),
      state: fc.constantFrom<AvailabilitySpan['state']>('up', 'down', 'excluded'),
    });
    fc.assert(
      fc.property(fc.array(span, { maxLength: 50 }), fc.constantFrom(H, 24 * H, 7 * DAY, 30 * DAY), (xs, w) => {
        const a = availability(
          xs.map((x) => ({ from: x.from, to: x.from + x.len, state: x.state })),
          NOW,
          w,
        );
        if (a !== undefined) {
          expect(a).toBeGreaterThanOrEqual(0);
          expect(a).toBeLessThanOrEqual(100);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('maintenance windows', () => {
  const w = (x: unknown) => maintenanceWindowSchema.parse(x);
  test('a one-off window in a time zone', () => {
    const win = w({ start: '2026-06-01T14:00', duration: '2h', timezone: 'Europe/Berlin' }); // 12:00Z (CEST)
    expect(inMaintenance([win], Date.UTC(2026, 5, 1, 11, 59))).toBe(false);
    expect(inMaintenance([win], Date.UTC(2026, 5, 1, 12, 0))).toBe(true);
    expect(inMaintenance([win], Date.UTC(2026, 5, 1, 13, 59))).toBe(true);
    expect(inMaintenance([win], Date.UTC(2026, 5, 1, 14, 0))).toBe(false);
  });

  test('daily recurrence keeps local wall time across a DST change', () => {
    const win = w({ start: '2026-03-20T02:30', duration: '1h', timezone: 'Europe/Berlin', recurrence: 'daily' });
    // Before DST (CET, +1): 01:30Z. After DST on 29 March (CEST, +2): 00:30Z.
    expect(openMaintenanceOccurrence(win, Date.UTC(2026, 2, 25, 1, 45))).toEqual([Date.UTC(2026, 2, 25, 1, 30), Date.UTC(2026, 2, 25, 2, 30)]);
    expect(inMaintenance([win], Date.UTC(2026, 3, 2, 0, 45))).toBe(true);
    expect(inMaintenance([win], Date.UTC(2026, 3, 2, 1, 45))).toBe(false);
    expect(inMaintenance([win], Date.UTC(2026, 2, 19, 1, 45))).toBe(false); // before the first occurrence
  });

  test('weekly and monthly recurrence; a window spanning midnight', () => {
    const weekly = w({ start: '2026-06-06T23:00', duration: '3h', recurrence: 'weekly' }); // Saturdays, UTC
    expect(inMaintenance([weekly], Date.UTC(2026, 5, 14, 1, 0))).toBe(true); // Sunday 01:00 after Saturday 23:00
    expect(inMaintenance([weekly], Date.UTC(2026, 5, 15, 1, 0))).toBe(false);
    const monthly = w({ start: '2026-01-15T00:00', duration: '1d', recurrence: 'monthly', timezone: 'America/New_York' });
    expect(inMaintenance([monthly], zonedTimeToUtc(2026, 7, 15, 12, 0, 0, 'America/New_York'))).toBe(true);
    expect(inMaintenance([monthly], zonedTimeToUtc(2026, 7, 16, 12, 0, 0, 'America/New_York'))).toBe(false);
  });

  test('bad windows are refused with the field and the fix', () => {
    expect(() => w({ start: '2026-06-01 14:00', duration: '1h' })).toThrow(/local date-time like 2026-12-01T02:00/);
    expect(() => w({ start: '2026-06-01T14:00', duration: '1h', timezone: 'Mars/Olympus' })).toThrow(/IANA time zone/);
    expect(() => w({ start: '2026-06-01T14:00', duration: '0s' })).toThrow(/longer than 0/);
  });
});

describe('what a service is probed at (docs/registry.md, healthCheck and path)', () => {
  const registry = (yaml: string) => {
    const r = parseRegistry(yaml, 'inline.yaml');
    if (!r.ok) throw new Error(r.problems.map((p) => p.message).join('\n'));
    return r.registry;
  };

  it('probes a service without healthCheck with the defaults: GET on each endpoint, every 30 s, 2 s timeout, 200 expected', () => {
    const [s] = registry('services:\n  - id: bare\n    type: api\n    endpoints: [{ url: "http://127.0.0.1:18080/svc/bare" }]\n').services;
    const t = probeTarget(s!);
    expect(t.url).toBe('http://127.0.0.1:18080/svc/bare');
    expect(t.check).toMatchObject({ type: 'http', method: 'GET', interval: 30_000, timeout: 2_000, failureThreshold: 3 });
    expect(t.check.expect.status).toEqual([200]);
  });

  it('path replaces the endpoint URL\'s path and query (it is not appended to them)', () => {
    const yaml = 'services:\n  - id: a\n    type: api\n    endpoints: [{ url: "http://127.0.0.1:18080/svc/a?x=1" }, { url: "http://127.0.0.2:18080/base/" }]\n    healthCheck: { path: "/health?deep=1" }\n';
    const t = probeTarget(registry(yaml).services[0]!);
    expect(t.urls).toEqual(['http://127.0.0.1:18080/health?deep=1', 'http://127.0.0.2:18080/health?deep=1']);
  });
});
