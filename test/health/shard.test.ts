/**
 * The shard reducer (src/domain/health-shard.ts): one message per sweep per
 * shard, members in order with one verdict character each.
 */
import { applyShardObservations, HEALTH_SHARDS, initialShardState, markShardStale, shardOf, type ShardObservations } from '../../src/domain/health-shard';

const msg = (sweepId: string, at: number, ids: string[], verdicts: string, extra: Partial<ShardObservations> = {}): ShardObservations => ({ sweepId, at, ids, verdicts, thresholds: [3, 2], ...extra });

test('a service maps to one shard of HEALTH_SHARDS, the same every time', () => {
  const k = shardOf('billing-api');
  expect(k).toBeGreaterThanOrEqual(0);
  expect(k).toBeLessThan(HEALTH_SHARDS);
  expect(shardOf('billing-api')).toBe(k);
  const used = new Set(Array.from({ length: 10_000 }, (_, i) => shardOf(`svc-${i}`)));
  expect(used.size).toBe(HEALTH_SHARDS);
});

test('hysteresis and one TRIGGERED per member; a sweep applied twice changes nothing; members not listed are dropped unless the message is partial', () => {
  let s = initialShardState(0);
  s = applyShardObservations(s, msg('s1', 1000, ['a', 'b'], 'pp'), 1000).state;
  const alerts = [];
  for (let i = 2; i <= 4; i++) {
    const r = applyShardObservations(s, msg(`s${i}`, i * 1000, ['a', 'b'], 'fp', { notable: { a: { failureKind: 'status', detail: '503' } } }), i * 1000);
    s = r.state;
    alerts.push(...r.alerts);
  }
  expect(alerts.map((a) => `${a.serviceId}:${a.kind}`)).toEqual(['a:TRIGGERED']);
  expect(s.services.a).toMatchObject({ status: 'unhealthy', last: { failureKind: 'status' } });
  expect(s.services.b).toMatchObject({ status: 'healthy', observations: 4 });
  expect(applyShardObservations(s, msg('s4', 4000, ['a', 'b'], 'pp'), 4000).state).toBe(s);
  expect(Object.keys(applyShardObservations(s, msg('s5', 5000, ['a'], 'f', { partial: true }), 5000).state.services)).toEqual(['a', 'b']);
  expect(Object.keys(applyShardObservations(s, msg('s5', 5000, ['a'], 'f'), 5000).state.services)).toEqual(['a']);
});

test('a skipped all-pass sweep counts as a pass for members that saw nothing later; no message for staleAfterMs turns members unknown', () => {
  let s = initialShardState(0, 60_000);
  s = applyShardObservations(s, msg('s1', 1000, ['a'], 'f'), 1000).state;
  expect(s.services.a!.status).toBe('unhealthy');
  // successThreshold 2: the skipped pass and this pass make two.
  s = applyShardObservations(s, msg('s3', 3000, ['a'], 'p', { skippedPassAt: 2000 }), 3000).state;
  expect(s.services.a).toMatchObject({ status: 'healthy', successStreak: 2 });
  expect(markShardStale(s, 3000 + 30_000)).toBe(s);
  expect(markShardStale(s, 3000 + 60_000).services.a!.status).toBe('unknown');
});
