/**
 * Fleet health on the dashboard with two workers, as deployed: two real
 * `integration-agent worker` processes (built lib/) on one task queue, one
 * PostgreSQL store, shared codec and master keys, each serving its own
 * METRICS_ADDRESS, and a real Prometheus scraping both every second.
 *
 * Nothing pins a sweep to a worker: the service `flip` answers 200 and 500 in
 * turn, one behaviour per sweep, and sweeps run (`integration-agent sweep`,
 * as an operator or the schedule would) until the last two were published by
 * different workers (read from which worker's probe count for the service
 * went up). Both workers stay alive and scraped, so each still exports what it
 * last published: the older worker the previous status, the newer one the
 * latest. Every fleet-health panel query of the dashboard must then show each
 * service once, with the status (and the availability) of the latest sweep.
 * Then a service leaves the registry: the worker that publishes the next
 * sweep drops it, the other still exports it, and the panels no longer show it.
 *
 * Needs `promtool`/`prometheus` (scripts/setup-system.sh) and PostgreSQL.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { Client } from '@temporalio/client';
import { AesGcmCodec } from '../../src/codec/aes-gcm-codec';
import { parseCodecKeys } from '../../src/codec/keys';
import { parseRegistry } from '../../src/domain/registry-parse';
import { startPostgres, type TestPostgres } from '../helpers/postgres';
import { testAddress, uniqueTaskQueue } from '../helpers/temporal';
import { cliJson, ROOT, runCli, useClusterFile, waitFor, WorkerProcess } from '../cluster/harness';
import { freePort, grafanaToPromQL, prometheusTools, scrapeConfig, startPrometheus, type PrometheusServer } from './tools';

const tools = prometheusTools();
const file = useClusterFile('ia-metrics2-');
const tag = `w${randomBytes(3).toString('hex')}`;
const ids = { flip: `${tag}-flip`, steady: `${tag}-steady` };

let pg: TestPostgres | undefined;
let prometheus: PrometheusServer | undefined;
let probeTarget: Server | undefined;
/** What `flip`'s health endpoint answers now. */
let flipOk = true;

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

interface Panel {
  type: string;
  title: string;
  targets: { expr: string }[];
}


/** `name{labels} value` lines of one worker's /metrics for series whose labels include `service="<id>"`. */
async function seriesOf(url: string, name: string, service: string): Promise<Map<string, number>> {
  const body = await (await fetch(url)).text();
  const out = new Map<string, number>();
  for (const line of body.split('\n')) {
    if (!line.startsWith(`${name}{`) || !line.includes(`service="${service}"`)) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** How many probes of `service` a worker has published (its probe histogram counts, all results). */
async function published(url: string, service: string): Promise<number> {
  let n = 0;
  for (const v of (await seriesOf(url, 'integration_agent_probe_duration_seconds_count', service)).values()) n += v;
  return n;
}

/** The status a worker exports for `service` (its state set's 1), if any. */
async function exportedStatus(url: string, service: string): Promise<string | undefined> {
  for (const [k, v] of await seriesOf(url, 'integration_agent_service_health_status', service)) if (v === 1) return /status="([^"]+)"/.exec(k)![1];
  return undefined;
}

afterAll(async () => {
  await Promise.all(file.workers.map((w) => w.kill()));
  await prometheus?.stop();
  probeTarget?.closeAllConnections();
  await new Promise<void>((r) => (probeTarget ? probeTarget.close(() => r()) : r()));
  await pg?.stop().catch(() => undefined);
});

test('every fleet-health panel shows each service once, with the latest sweep\'s status, when the last two sweeps were published by different workers', async () => {
  const dir = file.tempDir();
  probeTarget = createServer((req, res) => {
    const ok = req.url?.startsWith('/flip') ? flipOk : true;
    res.writeHead(ok ? 200 : 500, { 'content-type': 'text/plain' }).end(ok ? 'ok' : 'down');
  });
  await new Promise<void>((r) => probeTarget!.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(probeTarget.address() as { port: number }).port}`;
  const healthCheck = (path: string) => ({ url: `${base}${path}`, interval: '30s', timeout: '1s' });
  const doc = {
    services: [
      { id: ids.flip, type: 'api', endpoints: [{ url: base }], healthCheck: healthCheck('/flip'), sla: { availability: 99.9 } },
      { id: ids.steady, type: 'api', endpoints: [{ url: base }], healthCheck: healthCheck('/steady'), sla: { availability: 99.5 } },
    ],
  };
  const registryText = JSON.stringify(doc, null, 2);
  const parsed = parseRegistry(registryText, 'registry.json');
  if (!parsed.ok) throw new Error(`test registry invalid: ${JSON.stringify(parsed.problems)}`);
  writeFileSync(join(dir, 'registry.json'), registryText);

  pg = await startPostgres();
  const dbPassword = randomBytes(12).toString('hex');
  await pg.sql(`CREATE ROLE agent LOGIN PASSWORD '${dbPassword}'`);
  await pg.sql('CREATE DATABASE agent OWNER agent');
  const keys = `k${randomBytes(4).toString('hex')}:${randomBytes(32).toString('base64')}`;
  const shared = {
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_TASK_QUEUE: uniqueTaskQueue('metrics2'),
    INTEGRATION_AGENT_DATABASE_URL: pg.url('agent', dbPassword).replace(/\/postgres$/, '/agent'),
    INTEGRATION_AGENT_CODEC_KEYS: keys,
    INTEGRATION_AGENT_MASTER_KEY: randomBytes(32).toString('base64'),
    INTEGRATION_AGENT_REGISTRY: join(dir, 'registry.json'),
    LOG_LEVEL: 'warn',
  };
  const ports = [await freePort(), await freePort()];
  const urls = ports.map((p) => `http://127.0.0.1:${p}/metrics`);
  const promDir = file.tempDir();
  const startingPrometheus = startPrometheus(
    tools.prometheus,
    promDir,
    scrapeConfig({ 'integration-agent': ports.map((p) => `127.0.0.1:${p}`) }),
  );
  const workers = ports.map(
    (p, i) => new WorkerProcess(`worker ${'AB'[i]}`, { ...shared, LOG_LEVEL: 'info', INTEGRATION_AGENT_DATA_DIR: join(dir, `worker-${i}`), METRICS_ADDRESS: `127.0.0.1:${p}` }),
  );
  file.workers.push(...workers);
  const client = new Client({ connection: file.connection, dataConverter: { payloadCodecs: [new AesGcmCodec(parseCodecKeys(keys, 'test codec keys'))] } });
  [prometheus] = await Promise.all([startingPrometheus, ...workers.map((w) => w.start(client))]);
  const cliEnv = { ...shared, INTEGRATION_AGENT_DATA_DIR: join(dir, 'cli') };

  // Sweeps with `flip` alternating, until the last two were published on different workers.
  const publishers: number[] = [];
  const statuses: string[] = [];
  for (let i = 0; i < 16 && !(publishers.length >= 2 && publishers.at(-1) !== publishers.at(-2)); i++) {
    flipOk = i % 2 === 1;
    const before = await Promise.all(urls.map((u) => published(u, ids.flip)));
    const sweep = cliJson<{ services: { id: string; status: string }[] }>('sweep', await runCli(['sweep', '--json'], cliEnv));
    statuses.push(sweep.services.find((s) => s.id === ids.flip)!.status);
    const after = await Promise.all(urls.map((u) => published(u, ids.flip)));
    const by = [0, 1].filter((w) => after[w]! > before[w]!);
    expect(by).toHaveLength(1); // each sweep is published once, by one worker
    publishers.push(by[0]!);
  }
  expect(publishers.at(-1)).not.toBe(publishers.at(-2));
  const latest = statuses.at(-1)!;
  const previous = statuses.at(-2)!;
  expect(new Set([latest, previous])).toEqual(new Set(['healthy', 'unhealthy']));
  const newer = publishers.at(-1)!;
  // The scenario is the one the dashboard must survive: the two workers export different statuses for `flip`.
  expect(await exportedStatus(urls[newer]!, ids.flip)).toBe(latest);
  expect(await exportedStatus(urls[1 - newer]!, ids.flip)).toBe(previous);

  // Prometheus has scraped both workers since the last publish.
  const scrapedStatus = async () =>
    ((await prometheus!.query(`integration_agent_service_health_status{service="${ids.flip}"} == 1`)) as Sample[]).map((s) => `${s.metric.instance} ${s.metric.status}`).sort();
  const want = [`127.0.0.1:${ports[newer]} ${latest}`, `127.0.0.1:${ports[1 - newer]} ${previous}`].sort();
  await waitFor('Prometheus to scrape both workers\' latest exports', async () => JSON.stringify(await scrapedStatus()) === JSON.stringify(want), {
    timeoutMs: 15_000,
    everyMs: 250,
    detail: () => prometheus!.logs(),
  });
  const newerAvailability = [...(await seriesOf(urls[newer]!, 'integration_agent_service_availability_percent', ids.flip))].find(([k]) => k.includes('window="24h"'))?.[1];
  expect(newerAvailability).toEqual(expect.any(Number));

  const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'dashboards', 'integration-agent.json'), 'utf8')) as { panels: Panel[] };
  const q = async (title: string, i = 0) => {
    const panel = dashboard.panels.find((p) => p.title === title);
    if (!panel) throw new Error(`no panel "${title}" in the dashboard`);
    return (await prometheus!.query(grafanaToPromQL(panel.targets[i]!.expr))) as Sample[];
  };
  // Every panel reading the status or the availability is checked below.
  const fleetPanels = dashboard.panels.filter((p) => p.targets?.some((t) => /integration_agent_service_(health_status|availability_percent)\b/.test(t.expr))).map((p) => p.title);
  expect(fleetPanels.sort()).toEqual(['Availability (24h) against SLA', 'Services below SLA', 'Services by status', 'Services not healthy']);

  const byStatus = Object.fromEntries((await q('Services by status')).map((s) => [s.metric.status, Number(s.value[1])]));
  expect(byStatus).toEqual(latest === 'healthy' ? { healthy: 2 } : { healthy: 1, [latest]: 1 });

  const notHealthy = (await q('Services not healthy')).map((s) => `${s.metric.service} ${s.metric.status}`);
  expect(notHealthy).toEqual(latest === 'healthy' ? [] : [`${ids.flip} ${latest}`]);

  const availability = (await q('Availability (24h) against SLA')).map((s) => [s.metric.service, Number(s.value[1])] as const);
  expect(availability.map(([s]) => s).sort()).toEqual([ids.flip, ids.steady].sort());
  expect(Object.fromEntries(availability)[ids.flip]).toBeCloseTo(newerAvailability!, 6);
  const targets = (await q('Availability (24h) against SLA', 1)).map((s) => s.metric.service).sort();
  expect(targets).toEqual([ids.flip, ids.steady].sort());

  const below = await q('Services below SLA');
  expect(below).toHaveLength(1);
  expect(Number(below[0]!.value[1])).toBe(newerAvailability! < 99.9 ? 1 : 0);

  // The README's query for the fleet's view (Metrics, health across workers): each service once, its latest status.
  const readme = /\*\*Health across workers\.\*\*[\s\S]*?```promql\n([\s\S]*?)```/.exec(readFileSync(join(ROOT, 'README.md'), 'utf8'))?.[1];
  expect(readme).toEqual(expect.any(String));
  const fleet = ((await prometheus!.query(readme!)) as Sample[]).filter((x) => x.value[1] === '1').map((x) => `${x.metric.service} ${x.metric.status}`);
  expect(fleet.sort()).toEqual([`${ids.flip} ${latest}`, `${ids.steady} healthy`].sort());

  // `steady` leaves the registry (both workers follow the file). The first sweep without it is
  // published by one worker, which drops it; the other still exports what it last published.
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ services: doc.services.filter((x) => x.id !== ids.steady) }, null, 2));
  let by = -1;
  await waitFor(
    'a sweep without the removed service',
    async () => {
      const before = await Promise.all(urls.map((u) => published(u, ids.flip)));
      const sweep = cliJson<{ services: { id: string }[] }>('sweep', await runCli(['sweep', '--json'], cliEnv));
      const after = await Promise.all(urls.map((u) => published(u, ids.flip)));
      by = after.findIndex((n, w) => n > before[w]!);
      return !sweep.services.some((x) => x.id === ids.steady);
    },
    { timeoutMs: 20_000, everyMs: 200 },
  );
  expect(await exportedStatus(urls[by]!, ids.steady)).toBeUndefined();
  expect(await exportedStatus(urls[1 - by]!, ids.steady)).toBe('healthy');
  await waitFor(
    'Prometheus to scrape the sweep without the removed service',
    async () => (await prometheus!.query(`integration_agent_service_health_status{service="${ids.steady}",instance="127.0.0.1:${ports[by]}"}`)).length === 0,
    { timeoutMs: 15_000, everyMs: 250 },
  );
  for (const title of fleetPanels) {
    for (let i = 0; i < dashboard.panels.find((p) => p.title === title)!.targets.length; i++) {
      expect({ title, series: (await q(title, i)).filter((x) => x.metric.service === ids.steady) }).toEqual({ title, series: [] });
    }
  }
  expect(Object.fromEntries((await q('Services by status')).map((x) => [x.metric.status, Number(x.value[1])]))).toEqual({ [latest]: 1 });
}, 90_000);
