/**
 * The prober's own health, pure (src/domain/prober-health.ts): when one
 * process's results say its network is down rather than the fleet, and the
 * alert decisions of its workflow.
 */
import fc from 'fast-check';
import {
  applyProberReport,
  assessProber,
  initialProberAlertState,
  isSuspect,
  nextProberMode,
  proberRule,
  type ProberMode,
  type ProberSample,
} from '../../src/domain/prober-health';
import type { Alert, ProbeFailureKind } from '../../src/domain/health';

const NOW = Date.UTC(2026, 11, 7, 21, 0, 0);
const rule = proberRule();

const refused = (id: string, host: string, dependsOn: string[] = [], kind: ProbeFailureKind = 'connection_refused'): ProberSample => ({
  serviceId: id,
  hosts: [host],
  dependsOn,
  at: NOW - 1000,
  verdict: 'fail',
  failureKind: kind,
});
const pass = (id: string, host: string): ProberSample => ({ serviceId: id, hosts: [host], dependsOn: [], at: NOW - 1000, verdict: 'pass' });

const connKind = fc.constantFrom<ProbeFailureKind>('connection_refused', 'dns', 'timeout');
const otherKind = fc.constantFrom<ProbeFailureKind>('status', 'body', 'tls', 'protocol', 'other', 'credential_rejected', 'slow', 'answer');
/** Samples on hosts h0..h7, any verdicts and kinds, deps among the services, times around the window. */
const sample = fc.record({
  serviceId: fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'),
  hosts: fc.array(fc.constantFrom('h0', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'h7'), { minLength: 1, maxLength: 2 }),
  dependsOn: fc.array(fc.constantFrom('a', 'b', 'c', 'd'), { maxLength: 2 }),
  at: fc.integer({ min: NOW - 40_000, max: NOW }),
  verdict: fc.constantFrom('pass', 'warn', 'fail', 'inconclusive' as const),
  failureKind: fc.option(fc.oneof(connKind, otherKind), { nil: undefined }),
});

describe('the rule', () => {
  test('every service on three unrelated hosts refused, DNS-failed or timed out: suspect; two hosts: not', () => {
    expect(isSuspect(assessProber([refused('a', 'h1'), refused('b', 'h2', [], 'dns'), refused('c', 'h3', [], 'timeout')], NOW, rule), rule)).toBe(true);
    expect(isSuspect(assessProber([refused('a', 'h1'), refused('b', 'h2'), refused('c', 'h2')], NOW, rule), rule)).toBe(false);
  });

  test('failures explained by a failing dependency do not count; one answering host among five keeps it under 80 %', () => {
    const viaGateway = [refused('gw', 'h1'), refused('a', 'h2', ['gw']), refused('b', 'h3', ['a']), refused('c', 'h4', ['gw'])];
    const a = assessProber(viaGateway, NOW, rule);
    expect(a).toMatchObject({ hostsFailed: 1, hostsProbed: 1, explained: 3 });
    expect(isSuspect(a, rule)).toBe(false);
    const mostly = [refused('a', 'h1'), refused('b', 'h2'), refused('c', 'h3'), refused('d', 'h4'), pass('e', 'h5')];
    expect(assessProber(mostly, NOW, rule).share).toBe(0.8);
    expect(isSuspect(assessProber([...mostly, pass('f', 'h6')], NOW, rule), rule)).toBe(false);
  });

  test('properties: share in [0, 1]; fewer than minHosts distinct hosts, or no connection-level failure, never suspect', () => {
    fc.assert(
      fc.property(fc.array(sample, { maxLength: 40 }), (xs) => {
        const a = assessProber(xs, NOW, rule);
        expect(a.hostsFailed).toBeLessThanOrEqual(a.hostsProbed);
        expect(a.share).toBeGreaterThanOrEqual(0);
        expect(a.share).toBeLessThanOrEqual(1);
        const hosts = new Set(xs.flatMap((s) => s.hosts));
        if (hosts.size < rule.minHosts) expect(isSuspect(a, rule)).toBe(false);
        const noConn = xs.map((s) => (s.failureKind && ['connection_refused', 'dns', 'timeout'].includes(s.failureKind) ? { ...s, failureKind: 'status' as const } : s));
        expect(isSuspect(assessProber(noConn, NOW, rule), rule)).toBe(false);
      }),
    );
  });

  test('property: a host turning from refused to answering never makes a prober suspect that was not', () => {
    fc.assert(
      fc.property(fc.array(sample, { maxLength: 40 }), fc.nat(), (xs, k) => {
        if (xs.length === 0) return;
        const i = k % xs.length;
        const healed = xs.map((s, j) => (j === i ? { ...s, verdict: 'pass' as const, failureKind: undefined } : s));
        const before = isSuspect(assessProber(xs, NOW, rule), rule);
        // Healing one sample can also un-explain others (its dependents now count), but never the healed host's verdict.
        const after = assessProber(healed, NOW, rule);
        if (!before && isSuspect(after, rule)) {
          // Allowed only when the healed service explained failures that now count.
          expect(assessProber(xs, NOW, rule).explained).toBeGreaterThan(after.explained);
        }
      }),
    );
  });

  test('property: results older than the window are forgotten: an offline prober with no new results comes back', () => {
    fc.assert(
      fc.property(fc.array(sample, { maxLength: 40 }), fc.constantFrom<ProberMode>('online', 'offline'), (xs, mode) => {
        const later = NOW + rule.windowMs + 1;
        expect(assessProber(xs, later, rule).hostsProbed).toBe(0);
        expect(nextProberMode(mode, assessProber(xs, later, rule), 'silent', rule)).toBe('online');
      }),
    );
  });

  test('property: hysteresis: the window that took a prober offline keeps it offline; canaries that answer keep it online', () => {
    fc.assert(
      fc.property(fc.array(sample, { maxLength: 40 }), (xs) => {
        const a = assessProber(xs, NOW, rule);
        const went = nextProberMode('online', a, 'silent', rule);
        if (went === 'offline') expect(nextProberMode('offline', a, 'silent', rule)).toBe('offline');
        expect(nextProberMode('online', a, 'answered', rule)).toBe('online');
        expect(nextProberMode('online', a, 'untried', rule)).toBe('online');
        expect(nextProberMode('offline', a, 'answered', rule)).toBe('online');
      }),
    );
  });

  test('bad thresholds are refused naming the option', () => {
    expect(() => proberRule({ clearShare: 0.9 })).toThrow(/clearShare must be in \(0, suspectShare=0.8\], got 0.9/);
    expect(() => proberRule({ minHosts: 0 })).toThrow(/minHosts/);
  });
});

describe('the alert decisions', () => {
  test('property: any sequence of reports alerts TRIGGERED and RESOLVED alternately, each id once, each RESOLVED closing the TRIGGERED before it', () => {
    const report = fc.record({ mode: fc.constantFrom<ProberMode>('online', 'offline'), dt: fc.integer({ min: -5, max: 1000 }) });
    fc.assert(
      fc.property(fc.array(report, { maxLength: 60 }), (rs) => {
        let state = initialProberAlertState('q', 'host:1');
        let at = NOW;
        const alerts: Alert[] = [];
        for (const r of rs) {
          at += r.dt;
          const out = applyProberReport(state, { mode: r.mode, at, evidence: 'e', canaries: 'none configured' });
          state = out.state;
          alerts.push(...out.alerts);
        }
        alerts.forEach((x, i) => {
          expect(x.kind).toBe(i % 2 === 0 ? 'TRIGGERED' : 'RESOLVED');
          if (x.kind === 'RESOLVED') expect(x.incidentId).toBe(alerts[i - 1]!.id);
        });
        expect(new Set(alerts.map((x) => x.id)).size).toBe(alerts.length);
        expect(state.open !== undefined).toBe(alerts.length % 2 === 1);
      }),
    );
  });
});
