/**
 * The status page end to end, as `dev` runs it but on the run's shared dev
 * server: the demo services (examples/services.yaml on free ports), a real
 * `integration-agent worker` on them with sweeps on a 2 s Schedule, the
 * `dashboard` command, and Debian's headless Chromium reading the page. A
 * namespace of its own keeps the demo's `service/<id>` workflows apart from
 * other test files'. The tests share that one run, in order.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { createConnection, createServer, type Socket } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { Page } from 'playwright-core';
import { startDemoFleet, type DemoFleet } from '../../src/dev/example-fleet';
import { testAddress } from '../helpers/temporal';
import { BIN, ROOT, WorkerProcess, cliJson, requireBuiltLib, runCli, waitFor } from '../cluster/harness';
import { freshNamespace } from '../cluster/namespaces';
import { launchChromium } from './chromium';

const EXAMPLE = join(ROOT, 'examples', 'services.yaml');
const SWEEP_INTERVAL_MS = 2000;
/** examples/services.yaml sets no failureThreshold: the registry default. */
const FAILURE_THRESHOLD = 3;
const TOKEN = 'dashboard-test-token-0123456789';

let connection: Connection;
let demo: DemoFleet;
let env: Record<string, string>;
let worker: WorkerProcess;
let dashboard: ChildProcessWithoutNullStreams | undefined;
let dashboardOut = '';
let url = '';
let browser: Awaited<ReturnType<typeof launchChromium>>;
let page: Page;

/** Every secret the demo issuer ever minted for the credential (read from the fixture itself, never from our code). */
function mintedSecrets(): string[] {
  const issued = demo.fleet.get('auth-service').state.issued.get('shared-api-key');
  return [...(issued?.values() ?? [])].map((v) => v.secret);
}

async function rowStatuses(): Promise<Record<string, string>> {
  return page.$$eval('#services tbody tr[data-service-id]', (trs) => Object.fromEntries(trs.map((tr) => [tr.getAttribute('data-service-id')!, tr.getAttribute('data-status')!])));
}

beforeAll(async () => {
  requireBuiltLib();
  connection = await Connection.connect({ address: testAddress() });
  const namespace = await freshNamespace(connection, 'dash');
  demo = await startDemoFleet(EXAMPLE);
  const dataDir = mkdtempSync(join(tmpdir(), 'ia-dash-'));
  env = {
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_NAMESPACE: namespace,
    TEMPORAL_TASK_QUEUE: 'dash',
    INTEGRATION_AGENT_DATA_DIR: dataDir,
    INTEGRATION_AGENT_REGISTRY: demo.registryPath,
    LOG_LEVEL: 'info',
  };
  worker = new WorkerProcess('worker', env);
  await worker.start(new Client({ connection, namespace }));
  cliJson('schedule apply', await runCli(['schedule', 'apply', '--mode', 'sweep', '--interval', `${SWEEP_INTERVAL_MS}ms`, '--json'], env));

  dashboard = spawn(process.execPath, [BIN, 'dashboard', '--listen', '127.0.0.1:0', '--poll', '250ms', '--temporal-ui-url', 'http://127.0.0.1:8233', '--json'], {
    cwd: ROOT,
    env: { ...process.env, ...env, LOG_LEVEL: 'warn' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  dashboard.stdout.on('data', (b: Buffer) => (dashboardOut += b.toString()));
  dashboard.stderr.on('data', (b: Buffer) => (dashboardOut += b.toString()));
  url = (await waitFor('the dashboard to print its address', () => /"url": "([^"]+)"/.exec(dashboardOut)?.[1], { timeoutMs: 30_000, detail: () => dashboardOut })) as string;
  browser = await launchChromium();
  page = await browser.context.newPage();
  await page.setViewportSize({ width: 1400, height: 1000 });
  await page.goto(url);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  if (dashboard && dashboard.exitCode === null) {
    dashboard.kill('SIGTERM');
    await new Promise((r) => dashboard!.once('exit', r));
  }
  await worker?.kill();
  await demo?.close();
  await connection?.close();
});

test('the page lists the demo services with the statuses `status --json` reports', async () => {
  // Wait for the fleet to settle as `status` sees it: every demo service judged, the broken ones broken.
  const status = await waitFor(
    'status --json to report all eight demo services with legacy-gateway unhealthy and storefront impacted',
    async () => {
      const rows = cliJson<Array<{ serviceId: string; status: string }>>('status', await runCli(['status', '--json'], env));
      const by = Object.fromEntries(rows.map((r) => [r.serviceId, r.status]));
      return rows.length === 8 && rows.every((r) => r.status !== 'unknown') && by['legacy-gateway'] === 'unhealthy' && by['storefront'] === 'impacted' && by['auth-service'] === 'healthy' ? by : undefined;
    },
    { timeoutMs: 60_000, everyMs: 1000, detail: () => worker.logs() },
  );
  await waitFor('the page to show the same statuses', async () => sortedEqual(await rowStatuses(), status), {
    timeoutMs: 10_000,
    detail: () => `status --json: ${JSON.stringify(status)}`,
  });
  expect(await rowStatuses()).toEqual(status);
  // The summary counts agree, each with its word, not colour alone.
  const unhealthy = Object.values(status).filter((s) => s === 'unhealthy').length;
  expect(await page.innerText('[data-count="unhealthy"]')).toBe(`${unhealthy}\n✕ unhealthy`);
});

function sortedEqual(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort();
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

test('the graph is drawn with the failing service and its impacted dependant marked, and a click opens the detail', async () => {
  const gateway = page.locator('#graph g.node[data-id="legacy-gateway"]');
  await expect(gateway.getAttribute('data-status')).resolves.toBe('unhealthy');
  expect(await gateway.textContent()).toContain('✕ unhealthy');
  const storefront = page.locator('#graph g.node[data-id="storefront"]');
  expect(await storefront.getAttribute('data-status')).toBe('impacted');
  expect(await storefront.textContent()).toContain('impacted by legacy-gateway');
  // The edge from the dependant to its failing dependency is marked; one to a healthy dependency is not.
  expect(await page.locator('#graph path.edge.bad[data-from="storefront"][data-to="legacy-gateway"]').count()).toBe(1);
  expect(await page.locator('#graph path.edge.bad[data-from="storefront"][data-to="inventory-api"]').count()).toBe(0);
  // Laid out by dagre: eight distinct positions.
  const positions = await page.$$eval('#graph g.node', (gs) => gs.map((g) => g.getAttribute('transform')));
  expect(new Set(positions).size).toBe(8);

  await storefront.click();
  await page.waitForSelector('#detail[data-service-id="storefront"]:not([hidden])');
  expect(await page.innerText('#detail [data-field="root-cause"]')).toBe('legacy-gateway');
  expect(await page.innerText('#detail [data-window="24h"]')).toMatch(/^\d+\.\d+%$/);
  expect(await page.locator('#detail .uptime span').count()).toBeGreaterThan(0);
  // The chart is uPlot's canvas, and the workflow links go to the Web UI.
  await page.waitForSelector('#detail #chart canvas');
  // (The workflow holding the service's status, as the client facade names it: `service/<id>`, or its health shard.)
  const fleet = (await (await fetch(`${url}/api/fleet`)).json()) as { namespace: string; services: Array<{ id: string; workflowId: string }> };
  const workflowId = fleet.services.find((r) => r.id === 'storefront')!.workflowId;
  const link = await page.getAttribute(`#detail a[data-workflow-link="${workflowId}"]`, 'href');
  expect(link).toBe(`http://127.0.0.1:8233/namespaces/${fleet.namespace}/workflows?query=${encodeURIComponent(`WorkflowId="${workflowId}"`)}`);
});

test('a rotation started from the CLI shows its progress and ends completed on the page; no secret value reaches the page, its JSON or its event stream', async () => {
  const before = mintedSecrets();
  // Listen to the event stream for the whole rotation, as a second browser would.
  const stream = new AbortController();
  let events = '';
  const listening = fetch(`${url}/events`, { signal: stream.signal }).then(async (r) => {
    const reader = r.body!.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      events += Buffer.from(value).toString('utf8');
    }
  }).catch(() => undefined);
  // A consumer that shows a new secret 2 s after its install keeps the rotation in verify for
  // seconds, so the page is seen showing it running (without it the saga can finish between two of
  // the page's reads on a quiet machine). Its health endpoint is not slowed: nothing else changes.
  const slow = demo.fleet.get('billing-api');
  slow.behaviour.propagationDelayMs = 2000;
  const rotation = runCli(['rotate', 'shared-api-key', '--json'], env, { timeoutMs: 90_000 });
  void rotation.finally(() => (slow.behaviour.propagationDelayMs = 0));
  let ended: Awaited<typeof rotation> | undefined;
  void rotation.then((r) => (ended = r));
  const cred = page.locator('[data-credential-id="shared-api-key"]');
  const seen = new Set<string>();
  let progressSeen = false;
  let text = '';
  await waitFor(
    'the page to show the rotation running with its progress, then completed',
    async () => {
      if (ended && ended.code !== 0) throw new Error(`rotate exited ${ended.code}: ${ended.stderr || ended.stdout}`);
      text = await cred.innerText().catch(() => '');
      const s = await cred.locator('[data-rotation-status]').getAttribute('data-rotation-status').catch(() => null);
      if (s) seen.add(s);
      if (s === 'running' && (await cred.locator('[role="progressbar"]').count()) === 1 && (await cred.locator('.batch').count()) > 0) progressSeen = true;
      return seen.has('running') && s === 'completed';
    },
    { timeoutMs: 60_000, everyMs: 100, detail: () => `statuses seen: ${[...seen].join(', ')}; rotate: ${ended ? `exit ${ended.code} ${ended.stdout}` : 'still running'}; the credential on the page:\n${text}` },
  );
  expect(progressSeen).toBe(true);
  const result = cliJson<{ status: string; versionId: string }>('rotate', await rotation);
  expect(result.status).toBe('completed');
  await waitFor('the new CURRENT version on the page', async () => (await cred.innerText()).includes(result.versionId), { timeoutMs: 20_000 });

  const secrets = mintedSecrets();
  expect(secrets.length).toBeGreaterThan(before.length);
  const html = await page.content();
  const fleet = await (await fetch(`${url}/api/fleet`)).text();
  const details = await Promise.all(['auth-service', 'billing-api', 'inventory-api', 'notifications-webhook'].map(async (id) => (await fetch(`${url}/api/services/${id}`)).text()));
  stream.abort();
  await listening;
  expect(events).toContain('event: delta');
  expect(events).toContain(result.versionId);
  for (const secret of secrets) {
    expect(secret.length).toBeGreaterThan(8);
    for (const [where, text] of [['html', html], ['fleet', fleet], ['details', details.join('\n')], ['events', events]] as const) {
      expect({ where, leaked: text.includes(secret) }).toEqual({ where, leaked: false });
    }
  }
}, 120_000);

test('a service made to fail shows unhealthy within failureThreshold x interval + 2 s, without a reload', async () => {
  await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 42));
  const service = demo.fleet.get('notifications-webhook');
  expect((await rowStatuses())['notifications-webhook']).toBe('healthy');
  const t0 = Date.now();
  service.behaviour.failing = true;
  try {
    await page.waitForSelector('#services tr[data-service-id="notifications-webhook"][data-status="unhealthy"]', { timeout: 60_000 });
    const shownAt = Date.now();
    // The probes that counted, as the service's status workflow received them (the detail's uptime history).
    const d = (await (await fetch(`${url}/api/services/notifications-webhook`)).json()) as { service: { since: number; status: string }; history: { results: Array<{ at: number; verdict: string }> } };
    expect(d.service.status).toBe('unhealthy');
    const fails = d.history.results.filter((r) => r.at >= t0 && r.verdict === 'fail').map((r) => r.at);
    expect(fails.length).toBeGreaterThanOrEqual(FAILURE_THRESHOLD);
    // The interval is the Schedule's, unless the loaded machine stretched it (sweeps overlap-SKIP): then the longest gap seen.
    const gaps = [fails[0]! - t0, ...fails.slice(1).map((at, i) => at - fails[i]!)];
    const interval = Math.max(SWEEP_INTERVAL_MS, ...gaps);
    const why = `unhealthy on the page at +${shownAt - t0} ms, status changed at +${d.service.since - t0} ms, failing probes at ${fails.map((f) => `+${f - t0}`).join(' ')} ms, interval ${interval} ms`;
    expect({ within: shownAt - t0 <= FAILURE_THRESHOLD * interval + 2000, why }).toEqual({ within: true, why });
    expect(await page.evaluate(() => (globalThis as unknown as { marker?: number }).marker)).toBe(42);
    expect(await page.getAttribute('#graph g.node[data-id="notifications-webhook"]', 'data-status')).toBe('unhealthy');
    if (process.env.IA_UPDATE_SCREENSHOT === '1') {
      await page.click('#graph g.node[data-id="storefront"]');
      await page.waitForSelector('#detail[data-service-id="storefront"] #chart canvas');
      await page.screenshot({ path: join(ROOT, 'docs', 'dashboard.png'), fullPage: true });
    }
  } finally {
    service.behaviour.failing = false;
  }
});

test('read-only, and beyond loopback only with a token: a non-loopback listen without one is refused; with a token every request needs it', async () => {
  const put = await fetch(`${url}/api/fleet`, { method: 'POST', body: '{}' });
  expect(put.status).toBe(405);

  const refused = await runCli(['dashboard', '--listen', '0.0.0.0:0'], env, { timeoutMs: 30_000 });
  expect(refused.code).toBe(1);
  expect(refused.stderr.trim()).toMatch(/^integration-agent: dashboard: refusing to listen on 0\.0\.0\.0:0 without a bearer token: .*Set INTEGRATION_AGENT_DASHBOARD_TOKEN/);

  const short = await runCli(['dashboard', '--listen', '0.0.0.0:0'], { ...env, INTEGRATION_AGENT_DASHBOARD_TOKEN: 'short' }, { timeoutMs: 30_000 });
  expect(short.code).toBe(1);
  expect(short.stderr).toContain('INTEGRATION_AGENT_DASHBOARD_TOKEN is 5 characters long');

  // With a token (here on loopback, so no traffic leaves the machine), every request must carry it.
  const child = spawn(process.execPath, [BIN, 'dashboard', '--listen', '127.0.0.1:0', '--json'], { cwd: ROOT, env: { ...process.env, ...env, INTEGRATION_AGENT_DASHBOARD_TOKEN: TOKEN }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  try {
    const guarded = (await waitFor('the guarded dashboard to start', () => /"url": "([^"]+)"/.exec(out)?.[1], { timeoutMs: 30_000, detail: () => out })) as string;
    expect((await fetch(`${guarded}/api/fleet`)).status).toBe(401);
    expect((await fetch(`${guarded}/api/fleet`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status).toBe(401);
    expect((await fetch(`${guarded}/api/fleet`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    // A browser: /?token= sets an HttpOnly cookie and leaves the token out of the address bar; the page then streams.
    const p2 = await browser.context.newPage();
    await p2.goto(`${guarded}/?token=${TOKEN}`);
    expect(p2.url()).toBe(`${guarded}/`);
    await p2.waitForSelector('#live[data-state="live"]');
    await p2.close();
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
});

test('a service impacted by two failing dependencies names both, on the graph, in the table and in the detail', async () => {
  const inventory = demo.fleet.get('inventory-api');
  inventory.behaviour.failing = true;
  try {
    const node = page.locator('#graph g.node[data-id="storefront"]');
    await waitFor('storefront impacted by inventory-api and legacy-gateway on the page', async () => /impacted by (inventory-api, legacy-gateway|legacy-gateway, inventory-api)/.test((await node.textContent().catch(() => '')) ?? ''), { timeoutMs: 60_000, everyMs: 250 });
    expect(await page.innerText('#services tr[data-service-id="storefront"]')).toMatch(/inventory-api, legacy-gateway|legacy-gateway, inventory-api/);
    for (const to of ['legacy-gateway', 'inventory-api']) expect(await page.locator(`#graph path.edge.bad[data-from="storefront"][data-to="${to}"]`).count()).toBe(1);
    await node.click();
    await page.waitForSelector('#detail[data-service-id="storefront"]:not([hidden])');
    expect(await page.innerText('#detail [data-field="root-cause"]')).toMatch(/inventory-api, legacy-gateway|legacy-gateway, inventory-api/);
  } finally {
    inventory.behaviour.failing = false;
  }
}, 90_000);

/** GET `url` with a Host header of our choosing (fetch will not send one), resolving to the status. */
function getWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

test('without a token only loopback names may address the page (DNS rebinding): another Host gets 421', async () => {
  const port = new URL(url).port;
  expect(await getWithHost(`${url}/api/fleet`, `evil.example.com:${port}`)).toBe(421);
  expect(await getWithHost(`${url}/`, 'evil.example.com')).toBe(421);
  expect(await getWithHost(`${url}/api/fleet`, `localhost:${port}`)).toBe(200);
  expect(await getWithHost(`${url}/api/fleet`, `127.0.0.1:${port}`)).toBe(200);
  expect(await getWithHost(`${url}/api/fleet`, `[::1]:${port}`)).toBe(200);
});

test('a --poll too long for a timer is refused with the option named', async () => {
  const r = await runCli(['dashboard', '--listen', '127.0.0.1:0', '--poll', '25d'], env, { timeoutMs: 30_000 });
  expect(r.code).toBe(1);
  expect(r.stderr).toContain('--poll must be from 50ms to 1h');
});

test('when Temporal cannot be reached, the page says its data is stale instead of live, and says live again once it can', async () => {
  // The dashboard reaches Temporal through a TCP relay that the test cuts: Temporal is down, as this dashboard sees it.
  const [thost, tport] = testAddress().split(':');
  const sockets = new Set<Socket>();
  let open = true;
  const relay = createServer((client) => {
    if (!open) return void client.destroy();
    const upstream = createConnection({ host: thost, port: Number(tport) });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  const relayAddress = `127.0.0.1:${(relay.address() as { port: number }).port}`;
  const child = spawn(process.execPath, [BIN, 'dashboard', '--listen', '127.0.0.1:0', '--poll', '500ms', '--json'], {
    cwd: ROOT,
    env: { ...process.env, ...env, TEMPORAL_ADDRESS: relayAddress, LOG_LEVEL: 'warn' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const p2 = await browser.context.newPage();
  try {
    const relayed = (await waitFor('the relayed dashboard to start', () => /"url": "([^"]+)"/.exec(out)?.[1], { timeoutMs: 30_000, detail: () => out })) as string;
    await p2.goto(relayed);
    await p2.waitForSelector('#live[data-state="live"]', { timeout: 30_000 });
    const snap = (await (await fetch(`${relayed}/api/fleet`)).json()) as { staleAfterMs: number };
    expect(snap.staleAfterMs).toBe(10_000);
    open = false;
    for (const s of sockets) s.destroy();
    const cutAt = Date.now();
    await p2.waitForSelector('#live[data-state="stale"]', { timeout: snap.staleAfterMs + 15_000 });
    expect(await p2.innerText('#live')).toMatch(/^stale: no fresh read for \d+s/);
    expect(await p2.getAttribute('body', 'data-stale')).toBe('true');
    expect(Date.now() - cutAt).toBeGreaterThanOrEqual(snap.staleAfterMs - 2000);
    open = true;
    await p2.waitForSelector('#live[data-state="live"]', { timeout: 60_000 });
    expect(await p2.getAttribute('body', 'data-stale')).toBe('false');
  } finally {
    await p2.close();
    child.kill('SIGKILL');
    for (const s of sockets) s.destroy();
    relay.close();
  }
}, 120_000);
