/**
 * The worker's two Prometheus endpoints as an operator meets them: a real
 * `integration-agent worker` process (built lib/) with METRICS_ADDRESS and
 * SDK_METRICS_ADDRESS on loopback, driven through a sweep, two rotations
 * through the API coordinator (one completed, one refused by a forced-open
 * breaker) and a rate-limited service; then
 *
 * - `promtool check metrics` on the text of each endpoint: exit 0, nothing printed;
 * - a real Prometheus (Debian's package) scraping both endpoints every second,
 *   the provisioning files of deploy/ validated, and every query of every
 *   panel of the Grafana dashboard answered with at least one series.
 *
 * Needs `promtool` and `prometheus` (scripts/setup-system.sh installs them):
 * without them the file fails saying so.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { parseRegistry } from '../../src/domain/registry-parse';
import { startContractServer, type ContractServer } from '../fixtures/rotation-contract';
import { cliJson, ROOT, type CliRun, runCli, useClusterFile, waitFor, WorkerProcess } from '../cluster/harness';
import { testAddress, uniqueTaskQueue } from '../helpers/temporal';
import { Client } from '@temporalio/client';
import { freePort, grafanaToPromQL, prometheusTools, promtool, scrapeConfig, startPrometheus, type PrometheusServer } from './tools';

const tools = prometheusTools(); // fails the file at once, naming scripts/setup-system.sh, when missing
const file = useClusterFile('ia-metrics-');
const DEPLOY = join(ROOT, 'deploy');

let contract: ContractServer;
let probeTarget: Server;
let prometheus: PrometheusServer | undefined;
let worker: WorkerProcess;
let env: Record<string, string>;
let appUrl = '';
let sdkUrl = '';
/** How the rotation whose consumer's breaker is forced open ended. */
let refusedStatus = '';
const tag = `m${randomBytes(3).toString('hex')}`;
const ids = { cred: `${tag}-cred`, iss: `${tag}-iss`, app: `${tag}-app`, cred2: `${tag}-cred2`, iss2: `${tag}-iss2`, down: `${tag}-down`, gone: `${tag}-gone` };

/** The status a `credentials rotate --json` printed (it exits 1 when the rotation did not complete). */
function rotationStatus(what: string, r: CliRun): string {
  try {
    return (JSON.parse(r.stdout) as { status: string }).status;
  } catch {
    throw new Error(`${what} printed no JSON (exit ${r.code}): ${r.stdout.slice(0, 500)} ${r.stderr.slice(0, 1000)}`);
  }
}

async function text(url: string): Promise<string> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return res.text();
}

beforeAll(async () => {
  const dir = file.tempDir();
  contract = await startContractServer({ [ids.iss]: [ids.app], [ids.iss2]: [ids.down] });
  // What the health checks probe: a server that answers, and a port nothing listens on.
  probeTarget = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'));
  await new Promise<void>((r) => probeTarget.listen(0, '127.0.0.1', r));
  const ok = `http://127.0.0.1:${(probeTarget.address() as { port: number }).port}/health`;
  const closed = `http://127.0.0.1:${await freePort()}/health`;
  const healthCheck = (url: string) => ({ url, interval: '30s', timeout: '1s' });
  const step = { provider: 'http', stepTimeout: '2s' };
  const doc = {
    services: [
      { id: ids.iss, type: 'api', endpoints: [{ url: contract.base(ids.iss) }], rotation: step, healthCheck: healthCheck(ok), sla: { availability: 99.9 } },
      // One call a second: the install and the verify right after it make the second wait.
      { id: ids.app, type: 'api', endpoints: [{ url: contract.base(ids.app) }], credential: ids.cred, rateLimit: { perSecond: 1 }, rotation: { ...step, verifyAttempts: 4, verifyInterval: '100ms' }, healthCheck: healthCheck(ok), sla: { availability: 99.5 } },
      { id: ids.iss2, type: 'api', endpoints: [{ url: contract.base(ids.iss2) }], rotation: step },
      { id: ids.down, type: 'api', endpoints: [{ url: contract.base(ids.down) }], credential: ids.cred2, rotation: { ...step, verifyAttempts: 2, verifyInterval: '100ms' }, healthCheck: healthCheck(closed) },
      // Never called by this worker: it only records its breaker's transition.
      { id: ids.gone, type: 'api', endpoints: [{ url: closed }] },
    ],
    credentials: [
      { id: ids.cred, issuer: ids.iss, consumers: [ids.app], provider: 'http', gracePeriod: '0s' },
      { id: ids.cred2, issuer: ids.iss2, consumers: [ids.down], provider: 'http', gracePeriod: '0s' },
    ],
  };
  const registryText = JSON.stringify(doc, null, 2);
  const parsed = parseRegistry(registryText, 'registry.json');
  if (!parsed.ok) throw new Error(`test registry invalid: ${JSON.stringify(parsed.problems)}`);
  writeFileSync(join(dir, 'registry.json'), registryText);
  const metricsPort = await freePort();
  const sdkPort = await freePort();
  appUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  sdkUrl = `http://127.0.0.1:${sdkPort}/metrics`;
  env = {
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_TASK_QUEUE: uniqueTaskQueue('metrics'),
    INTEGRATION_AGENT_DATA_DIR: dir,
    INTEGRATION_AGENT_REGISTRY: join(dir, 'registry.json'),
    METRICS_ADDRESS: `127.0.0.1:${metricsPort}`,
    SDK_METRICS_ADDRESS: `127.0.0.1:${sdkPort}`,
    LOG_LEVEL: 'info',
  };

  // Prometheus starts with the worker, so it has scraped a while when the panels are queried.
  const promDir = file.tempDir();
  const startingPrometheus = startPrometheus(
    tools.prometheus,
    promDir,
    scrapeConfig({ 'integration-agent': [`127.0.0.1:${metricsPort}`], 'temporal-sdk': [`127.0.0.1:${sdkPort}`] }),
  );
  worker = new WorkerProcess('metrics worker', env);
  file.workers.push(worker);
  const [prom] = await Promise.all([startingPrometheus, worker.start(new Client({ connection: file.connection }))]);
  prometheus = prom;

  // Credentials, seeded in the contract server as their CURRENT versions.
  for (const [cred, iss, consumer] of [
    [ids.cred, ids.iss, ids.app],
    [ids.cred2, ids.iss2, ids.down],
  ] as const) {
    const secret = `initial-${randomBytes(12).toString('base64url')}`;
    const r = cliJson<{ versionId: string }>(`credentials import ${cred}`, await runCli(['credentials', 'import', cred, '--version-id', `v-${randomBytes(6).toString('hex')}`, '--json'], env, { input: `${secret}\n` }));
    contract.seed(iss, r.versionId, secret);
    contract.preinstall(consumer, r.versionId);
  }
  // A breaker forced open by an operator: a transition this worker records, and calls its gate rejects.
  cliJson('breaker open', await runCli(['breaker', 'open', ids.down, '--json'], env));
  cliJson('breaker open', await runCli(['breaker', 'open', ids.gone, '--json'], env));
  const [sweep, completed, refused] = await Promise.all([
    runCli(['sweep', '--json'], env),
    runCli(['rotate', ids.cred, '--json'], env),
    // --force: past the preflight's OPEN-breaker check, so the install meets the gate and is rejected until the step times out.
    runCli(['rotate', ids.cred2, '--force', '--json'], env),
  ]);
  cliJson('sweep', sweep);
  expect(rotationStatus('rotate', completed)).toBe('completed');
  refusedStatus = rotationStatus('rotate --force', refused);
  expect(['rolled_back', 'needs_attention', 'failed']).toContain(refusedStatus);
}, 120_000);

afterAll(async () => {
  await prometheus?.stop();
  await contract?.close();
  await new Promise<void>((r) => (probeTarget ? probeTarget.close(() => r()) : r()));
});

describe('the worker metrics endpoint', () => {
  test('passes promtool check metrics, with no warnings', async () => {
    const body = await text(appUrl);
    expect(promtool(tools.promtool, ['check', 'metrics'], body)).toEqual({ code: 0, output: '' });
  });

  test('names the service `service` on every series that has one', async () => {
    const body = await text(appUrl);
    expect(body).not.toContain('service_id=');
    expect(body).toMatch(new RegExp(`integration_agent_outbound_requests_total\\{service="${ids.app}",method="PUT",outcome="2xx"\\} [1-9]`));
    expect(body).toMatch(new RegExp(`integration_agent_outbound_requests_total\\{service="${ids.down}",method="PUT",outcome="breaker_open"\\} [1-9]`));
    expect(body).toMatch(new RegExp(`integration_agent_outbound_rate_limit_waits_total\\{service="${ids.app}"\\} [1-9]`));
    expect(body).toMatch(new RegExp(`integration_agent_breaker_rejected_calls_total\\{service="${ids.down}",state="FORCED_OPEN"\\} [1-9]`));
    expect(body).toContain(`integration_agent_rotations_total{credential="${ids.cred}",outcome="completed"} 1`);
    expect(body).toContain(`integration_agent_rotations_total{credential="${ids.cred2}",outcome="${refusedStatus}"} 1`);
    expect(body).toContain(`integration_agent_service_health_status{service="${ids.down}",status="unhealthy"} 1`);
  });

  test('has a breaker state series for every breaker the process has seen', async () => {
    const body = await text(appUrl);
    // Called through the coordinator (their gate entries), and the one whose transition this worker recorded.
    expect(body).toContain(`integration_agent_breaker_state{service="${ids.iss}"} 0`);
    expect(body).toContain(`integration_agent_breaker_state{service="${ids.app}"} 0`);
    expect(body).toContain(`integration_agent_breaker_state{service="${ids.down}"} 3`);
    // Seen only through the transition this worker recorded (an operator's `breaker open`).
    expect(body).toContain(`integration_agent_breaker_transitions_total{service="${ids.gone}",from="CLOSED",to="FORCED_OPEN",reason="forced_open"} 1`);
    expect(body).toContain(`integration_agent_breaker_state{service="${ids.gone}"} 3`);
  });
});

describe('the Temporal SDK metrics endpoint', () => {
  test('passes promtool check metrics, with no warnings', async () => {
    const body = await text(sdkUrl);
    expect(body).toMatch(/^temporal_\w+_total\{/m); // counters carry _total
    expect(body).toMatch(/^temporal_\w+_seconds_bucket\{/m); // durations are seconds, with the unit
    expect(promtool(tools.promtool, ['check', 'metrics'], body)).toEqual({ code: 0, output: '' });
  });
});

describe('deploy/: Prometheus and Grafana provisioning', () => {
  test('prometheus.yml passes promtool check config and scrapes both endpoints of every worker', () => {
    const path = join(DEPLOY, 'prometheus', 'prometheus.yml');
    const r = promtool(tools.promtool, ['check', 'config', path]);
    expect(r.code).toBe(0);
    const config = parseYaml(readFileSync(path, 'utf8')) as { scrape_configs: { job_name: string; dns_sd_configs?: { names: string[]; port: number }[] }[] };
    const jobs = Object.fromEntries(config.scrape_configs.map((j) => [j.job_name, j.dns_sd_configs?.[0]]));
    expect(jobs['integration-agent']).toMatchObject({ names: ['worker'], port: 9464 });
    expect(jobs['temporal-sdk']).toMatchObject({ names: ['worker'], port: 9465 });
  });

  test('the Grafana provisioning files are valid and point at the dashboard', () => {
    const ds = parseYaml(readFileSync(join(DEPLOY, 'grafana', 'provisioning', 'datasources', 'prometheus.yaml'), 'utf8')) as { apiVersion: number; datasources: { type: string; url: string }[] };
    expect(ds.apiVersion).toBe(1);
    expect(ds.datasources).toEqual([expect.objectContaining({ type: 'prometheus', url: 'http://prometheus:9090' })]);
    const dir = join(DEPLOY, 'grafana', 'provisioning', 'dashboards');
    const providers = readdirSync(dir).flatMap((f) => (parseYaml(readFileSync(join(dir, f), 'utf8')) as { apiVersion: number; providers: { type: string; options: { path: string } }[] }).providers);
    expect(providers).toEqual([expect.objectContaining({ type: 'file', options: expect.objectContaining({ path: '/var/lib/grafana/dashboards' }) })]);
  });

  test('every panel query of the dashboard returns series from Prometheus scraping the worker', async () => {
    const dashboard = JSON.parse(readFileSync(join(DEPLOY, 'grafana', 'dashboards', 'integration-agent.json'), 'utf8')) as Dashboard;
    expect(dashboard).toMatchObject({ uid: 'integration-agent', title: expect.any(String), schemaVersion: expect.any(Number) });
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'service']);
    const panels = dashboard.panels.filter((p) => p.type !== 'row');
    const titles = panels.map((p) => p.title.toLowerCase());
    for (const wanted of ['services by status', 'probe latency p50 / p95 / p99', 'against sla', 'breaker states', 'rotation outcomes', 'call rate by service']) {
      expect(titles.some((t) => t.includes(wanted))).toBe(true);
    }
    const queries = panels.flatMap((p) => {
      expect(p.targets.length).toBeGreaterThan(0);
      expect(p.gridPos).toEqual(expect.objectContaining({ w: expect.any(Number), h: expect.any(Number) }));
      return p.targets.map((t) => ({ panel: p.title, expr: grafanaToPromQL(t.expr) }));
    });
    // Both jobs up, then every query answers with a series (rates need two scrapes of the traffic).
    await waitFor('both scrape targets up', async () => {
      const targets = await prometheus!.targets();
      return targets.length === 2 && targets.every((t) => t.health === 'up');
    }, { timeoutMs: 20_000, detail: () => prometheus!.logs() });
    const empty = async () => {
      const out: string[] = [];
      for (const q of queries) if ((await prometheus!.query(q.expr)).length === 0) out.push(`${q.panel}: ${q.expr}`);
      return out;
    };
    let left: string[] = [];
    await waitFor('a series for every panel query', async () => (left = await empty()).length === 0, { timeoutMs: 20_000, everyMs: 500, detail: () => `no series:\n${left.join('\n')}` });
    // Also every metric a panel names (a query with `or vector(0)` answers even when its metric is misspelt).
    const names = new Set(queries.flatMap((q) => q.expr.match(/\b(integration_agent|temporal|process|nodejs)_[a-z0-9_]+/g) ?? []));
    const missing: string[] = [];
    for (const name of names) if ((await prometheus!.query(`count({__name__="${name}"})`)).length === 0) missing.push(name);
    expect(missing).toEqual([]);
  });
});

interface Dashboard {
  uid: string;
  templating: { list: { name: string }[] };
  panels: { type: string; title: string; gridPos: object; targets: { expr: string }[] }[];
}

