/**
 * The prober's own health, on real parts: loopback HTTP services on four
 * hosts (127.0.0.2-5), a "broken network" made of a real closed loopback
 * port (`probes.route` sends one worker's connections there: real
 * ECONNREFUSED), the real health store, and for the alerts the dev server
 * with two worker processes' activities (two Workers, two identities).
 * With IA_CAPTURE_PROBER_HISTORY=1 the two-worker test also writes the
 * offline prober's workflow history to test/histories/ for the replay test.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { Registry as MetricsRegistry } from 'prom-client';
import { createActivities } from '../../src/activities';
import { NO_CANARIES, ProberHealth, registerProberMetrics } from '../../src/activities/prober-health';
import { createProber } from '../../src/activities/probes';
import type { ProbeResult } from '../../src/domain/health';
import { openState, type StateBackend } from '../../src/state';
import { listHealth, listOfflineProbers, type OfflineProber } from '../../src/client/health';
import { formatOfflineProbers } from '../../src/client/cli/commands/health';
import { proberWorkflowId } from '../../src/domain/prober-health';
import { healthSweep } from '../../src/workflows/sweep';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { freePort, registryOf } from './fleet';
import { eventually, startReceiver, type Receiver } from './harness';

const HOSTS = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
let servers: Server[] = [];
let closed: number;
let receiver: Receiver;
const states: StateBackend[] = [];

beforeAll(async () => {
  servers = await Promise.all(
    HOSTS.map(async (h) => {
      const s = createServer((_, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
      s.keepAliveTimeout = 500;
      await new Promise<void>((ok) => s.listen(0, h, ok));
      return s;
    }),
  );
  closed = await freePort();
  receiver = await startReceiver();
});
afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((ok) => s.close(ok));
  }
  await receiver.close();
  for (const s of states) await s.close();
  await closeTestClient();
});

const fleet = (prefix: string, canaries?: string[]) =>
  registryOf(servers.map((s, i) => ({ id: `${prefix}-${i}`, type: 'api', endpoints: [{ url: `http://${HOSTS[i]}:${(s.address() as AddressInfo).port}` }], healthCheck: { path: '/health', timeout: '1s', interval: '2s' } })), canaries && { canaries });

/** A worker process's network: broken sends every connection to the closed port. */
const network = () => {
  const n = { broken: true, route: (href: string) => (n.broken ? `http://127.0.0.1:${closed}/` : href) };
  return n;
};

async function state(): Promise<StateBackend> {
  const s = await openState({ dataDir: mkdtempSync(join(tmpdir(), 'ia-prober-')) });
  states.push(s);
  return s;
}

test('a prober whose network is down records no downtime: its refused probes are inconclusive; a real outage seen while a canary answers stays downtime; a silent canary confirms the prober is offline', async () => {
  const registry = fleet('solo');
  const page = { registryVersion: registry.versionHash, from: 0, to: 4, concurrency: 4, intervalMs: 1000 };
  const net = network();
  const s = await state();
  const metrics = new MetricsRegistry();
  const acts = createActivities({ registry: { current: () => registry }, state: s, probes: { route: net.route }, prober: { metrics: registerProberMetrics(metrics) } });
  const gauge = async (name: string) => (await metrics.getSingleMetric(name)!.get()).values[0]?.value;
  expect((await acts.probeRegistryPage(page)).verdicts).toBe('iiii');
  expect([await gauge('integration_agent_prober_offline'), await gauge('integration_agent_prober_connection_failure_ratio')]).toEqual([1, 1]);
  expect(Object.values((await acts.probeRegistryPage(page)).notable ?? {}).map((r) => r.detail)[0]).toMatch(/^prober offline: connection_refused: connection refused/);
  net.broken = false;
  expect((await acts.probeRegistryPage(page)).verdicts).toBe('PPPP');
  expect([await gauge('integration_agent_prober_offline'), await gauge('integration_agent_prober_connection_failure_ratio')]).toEqual([0, 0]);
  const now = Date.now();
  for (const id of registry.services.map((x) => x.id)) {
    expect((await s.health.spans(id, now - 60_000, now + 1)).map((x) => x.state)).toEqual(['excluded', 'up']);
    expect((await s.health.figures(id, now + 1)).availability['1h']).toBe(100);
  }

  // Today's behaviour (the prober's health off) on the same broken network: downtime.
  const off = await state();
  const net2 = network();
  const today = createActivities({ registry: { current: () => registry }, state: off, probes: { route: net2.route }, prober: false });
  expect((await today.probeRegistryPage(page)).verdicts).toBe('ffff');
  expect((await off.health.spans('solo-0', now - 60_000, Date.now() + 1)).map((x) => x.state)).toEqual(['down']);

  // The fleet really down (nothing listens where the probes go) while a canary answers: failures stand.
  const canary = createTcpServer((c) => c.end());
  await new Promise<void>((ok) => canary.listen(0, '127.0.0.1', ok));
  try {
    const canaryUrl = `tcp://127.0.0.1:${(canary.address() as AddressInfo).port}`;
    // Canaries from the worker's environment (INTEGRATION_AGENT_PROBER_CANARIES: the prober option)...
    const withCanary = createActivities({
      registry: { current: () => registry },
      state: await state(),
      probes: { route: (href) => (href.startsWith('tcp:') ? href : `http://127.0.0.1:${closed}/`) },
      prober: { canaries: [canaryUrl] },
    });
    expect((await withCanary.probeRegistryPage(page)).verdicts).toBe('ffff');
    // ... or from the registry (prober.canaries); out of reach too (the prober's network is down after all): offline.
    const withCanaries = fleet('solo', [canaryUrl]);
    const cutOff = createActivities({ registry: { current: () => withCanaries }, state: await state(), probes: { route: () => `http://127.0.0.1:${closed}/` } });
    expect((await cutOff.probeRegistryPage({ ...page, registryVersion: withCanaries.versionHash })).verdicts).toBe('iiii');
  } finally {
    await new Promise((ok) => canary.close(ok));
  }
});

test('planned or answered failures are no evidence: failures in maintenance and a dns probe\'s NXDOMAIN leave the prober online', async () => {
  const at = Date.now();
  const refused = (id: string, extra: Partial<ProbeResult> = {}): ProbeResult => ({ serviceId: id, verdict: 'fail', failureKind: 'connection_refused', latencyMs: 1, startedAt: at, detail: 'connection refused', ...extra });
  const http = HOSTS.map((h, i) => ({ id: `web-${i}`, type: 'api', endpoints: [{ url: `http://${h}:8080` }] }));
  const dns = HOSTS.map((h, i) => ({ id: `dns-${i}`, type: 'api', endpoints: [{ url: 'tcp://fleet.internal:53' }], healthCheck: { type: 'dns', resolver: `${h}:5353` } }));
  const registry = registryOf([...http, ...dns]);
  const judge = (results: ProbeResult[]) => new ProberHealth({ identity: 't:1', registry: { current: () => registry }, probe: createProber().probeOne }).judge(results);
  const nxdomain = dns.map((d) => refused(d.id, { failureKind: 'dns', detail: 'NXDOMAIN' }));
  expect((await judge(nxdomain)).map((r) => r.verdict)).toEqual(['fail', 'fail', 'fail', 'fail']);
  const planned = http.map((w) => refused(w.id, { maintenance: true }));
  expect((await judge(planned)).map((r) => r.verdict)).toEqual(['fail', 'fail', 'fail', 'fail']);
  expect((await judge(http.map((w) => refused(w.id)))).map((r) => r.verdict)).toEqual(['inconclusive', 'inconclusive', 'inconclusive', 'inconclusive']);
});

test('a restarted prober still offline sends no second alert: the decision is the workflow\'s, not the process\'s', async () => {
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('prober-restart');
  const registry = fleet('again');
  const page = { registryVersion: registry.versionHash, from: 0, to: 4, concurrency: 4, intervalMs: 1000 };
  const net = network();
  const s = await state();
  const life = () =>
    createActivities({ registry: { current: () => registry }, state: s, reporterId: 'web-7:99', probes: { route: net.route }, health: { client, taskQueue, alertWebhooks: [{ name: 'ops', url: receiver.url, format: 'json', timeoutMs: 2000 }] } });
  const mine = () => receiver.alerts.filter((a) => a.id.startsWith(proberWorkflowId(taskQueue, 'web-7:99')));
  const first = life();
  await withTestWorker({ taskQueue, activities: first }, async () => {
    expect((await first.probeRegistryPage(page)).verdicts).toBe('iiii');
    await eventually(() => mine().length === 1, 'TRIGGERED');
    // `integration-agent status` names it under the table.
    let offline: OfflineProber[] = [];
    await eventually(async () => (offline = await listOfflineProbers(client, { taskQueue })).length === 1, 'the prober listed offline');
    expect(formatOfflineProbers(offline)).toMatch(new RegExp(`^\\nprober web-7:99 OFFLINE since \\d{4}-.*Z: its connection-level failures count as no result, not downtime \\(alert prober/${taskQueue}/web-7:99@\\d+#1\\)$`));
    const second = life(); // the same process identity, started again, its network still down
    expect((await second.probeRegistryPage(page)).verdicts).toBe('iiii');
    net.broken = false;
    expect((await second.probeRegistryPage(page)).verdicts).toBe('PPPP');
    await eventually(() => mine().length === 2, 'RESOLVED');
    expect(await listOfflineProbers(client, { taskQueue })).toEqual([]);
  });
  expect(mine().map((a) => a.kind)).toEqual(['TRIGGERED', 'RESOLVED']);
});

test('two workers, one with a broken network: the fleet stays healthy, the broken prober alerts once and resolves once', async () => {
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('prober');
  const registry = fleet('duo');
  const bad = network();
  const good = network();
  good.broken = false;
  const webhooks = [{ name: 'ops', url: receiver.url, format: 'json' as const, timeoutMs: 2000 }];
  const worker = async (reporterId: string, net: ReturnType<typeof network>) =>
    createActivities({
      registry: { current: () => registry },
      state: await state(),
      reporterId,
      probes: { route: net.route },
      health: { client, alertWebhooks: webhooks, figuresEveryMs: 0 },
    });
  const badActs = await worker('bad-host:1', bad);
  const goodActs = await worker('good-host:2', good);
  let n = 0;
  const sweep = () => client.workflow.execute(healthSweep, { taskQueue, workflowId: `sweep/${taskQueue}-${++n}`, args: [{ intervalMs: 1000, chunkSize: 4 }] });
  const proberAlerts = () => receiver.alerts.filter((a) => a.source === 'prober' && a.id.startsWith(`prober/${taskQueue}/`));
  const statuses = new Set<string>();
  const sweepUntil = async (done: () => boolean, what: string) => {
    for (let i = 0; i < 40 && !done(); i++) {
      const r = await sweep();
      for (const sv of r.services) statuses.add(sv.status);
    }
    await eventually(done, what, 20_000);
  };

  await withTestWorker({ taskQueue, activities: badActs, identity: 'bad-host:1' }, () =>
    withTestWorker({ taskQueue, activities: goodActs, identity: 'good-host:2' }, async () => {
      // Pages go to whichever worker polls first: sweep until the broken one has taken one.
      await sweepUntil(() => proberAlerts().length >= 1, 'a prober offline alert');
      bad.broken = false;
      await sweepUntil(() => proberAlerts().length >= 2, 'the prober resolved');
      const views = await listHealth(client, { taskQueue });
      expect(views.filter((v) => v.serviceId.startsWith('duo-')).map((v) => v.status)).toEqual(['healthy', 'healthy', 'healthy', 'healthy']);
    }),
  );

  const [trig, res] = proberAlerts();
  expect(proberAlerts()).toHaveLength(2);
  expect(trig).toMatchObject({ kind: 'TRIGGERED', serviceId: 'bad-host:1', summary: expect.stringContaining(`prober bad-host:1 (task queue ${taskQueue}) is offline`) });
  expect(trig!.detail).toBe(`4 of 4 hosts failed at the connection level (connection_refused 4); canaries: ${NO_CANARIES}`);
  expect(res).toMatchObject({ kind: 'RESOLVED', incidentId: trig!.id });
  // No service alerted, none was ever unhealthy in a sweep, and the healthy prober never reported.
  expect(receiver.alerts.filter((a) => a.source !== 'prober' && a.serviceId.startsWith('duo-'))).toEqual([]);
  expect(statuses.has('unhealthy')).toBe(false);
  await expect(client.workflow.getHandle(proberWorkflowId(taskQueue, 'good-host:2')).describe()).rejects.toThrow(/not found/i);

  if (process.env.IA_CAPTURE_PROBER_HISTORY) {
    // For the replay test (npm run histories:capture): the bad prober's workflow through TRIGGERED and RESOLVED.
    const workflowId = proberWorkflowId(taskQueue, 'bad-host:1');
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    writeFileSync(join(__dirname, '..', 'histories', 'prober-offline-resolved.json'), JSON.stringify({ workflowId, history: JSON.parse(historyToJSON(history)) }, null, 1) + '\n');
  }
});

test('continuous monitoring: lanes judging results one at a time take a broken worker offline; no service alerts, one prober alert each way', async () => {
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('prober-lane');
  const registry = fleet('lane');
  const net = network();
  const activities = createActivities({
    registry: { current: () => registry },
    state: await state(),
    reporterId: 'lane-host:3',
    probes: { route: net.route },
    health: { client, alertWebhooks: [{ name: 'ops', url: receiver.url, format: 'json', timeoutMs: 2000 }], figuresEveryMs: 0 },
  });
  const mine = () => receiver.alerts.filter((a) => a.id.startsWith(`prober/${taskQueue}/`) || a.serviceId.startsWith('lane-'));
  await withTestWorker({ taskQueue, activities }, async () => {
    const h = await client.workflow.start('healthMonitor', { taskQueue, workflowId: `monitor/${taskQueue}`, args: [{ windowStart: Date.now() + 500, windowMs: 8_000, concurrency: 4 }] });
    await eventually(() => mine().length === 1, 'prober offline', 15_000);
    net.broken = false;
    await eventually(() => mine().length === 2, 'prober back online', 15_000);
    await h.result();
    const views = await listHealth(client, { taskQueue });
    expect(views.map((v) => v.status)).not.toContain('unhealthy');
  });
  expect(mine().map((a) => `${a.source} ${a.kind} ${a.serviceId}`)).toEqual(['prober TRIGGERED lane-host:3', 'prober RESOLVED lane-host:3']);
}, 40_000);

