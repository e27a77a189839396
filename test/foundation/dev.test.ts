/**
 * The main job end to end, as `npm start -- --json` runs it: embedded dev
 * server, worker, demo fleet, a sweep and a rotation; the Web UI in a real
 * headless Chromium showing the rotation's payloads decoded (and encrypted
 * once the codec server is stopped); then Ctrl-C.
 * (This is the one test file that starts a second dev server: it tests the
 * command that embeds it. The tests below share that one `dev` run, in order.)
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import type { Page } from 'playwright-core';
import { defaultPayloadConverter } from '@temporalio/common';
import { Client, Connection } from '@temporalio/client';
import { freePort } from '../../src/dev/dev-server';
import { resolveTemporalCli } from '../../src/dev/temporal-cli';
import { AesGcmCodec } from '../../src/codec/aes-gcm-codec';
import { loadCodecKeys } from '../../src/codec/keys';
import { launchChromium } from '../ui/chromium';

const BIN = join(__dirname, '..', '..', 'bin', 'integration-agent.js');
const STATUSES = ['healthy', 'degraded', 'unhealthy', 'impacted', 'unknown', 'maintenance'];
/** How the UI shows the rotation's input once decoded (pretty-printed JSON). */
const DECODED_INPUT = '"credentialId": "shared-api-key"';
const DECODED_RESULT_STATUS = '"status": "completed"';
/** `binary/encrypted` in base64, as the UI prints an undecoded payload's metadata. */
const ENCRYPTED_ENCODING_B64 = Buffer.from('binary/encrypted').toString('base64');

// As on a fresh machine: the data dir does not exist yet (dev creates it).
const dataDir = join(mkdtempSync(join(tmpdir(), 'ia-dev-')), 'home', '.local', 'share', 'integration-agent');
/** Set for this run so that the Temporal CLI can decode with --codec-auth too; it must show up in no output. */
const codecToken = randomBytes(16).toString('hex');
let child: ChildProcessWithoutNullStreams;
let stdout = '';
let stderr = '';
let report: any;
let port: number;
let uiPort: number;

beforeAll(async () => {
  [port, uiPort] = [await freePort(), await freePort()];
  child = spawn(process.execPath, [BIN, 'dev', '--json', '--port', String(port), '--ui-port', String(uiPort)], {
    env: { ...process.env, INTEGRATION_AGENT_DATA_DIR: dataDir, CODEC_SERVER_TOKEN: codecToken },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const deadline = Date.now() + 120_000;
  while (!report) {
    try {
      report = JSON.parse(stdout);
    } catch {
      /* not complete yet */
    }
    if (child.exitCode !== null) throw new Error(`dev exited early with ${child.exitCode}\n${stdout}\n${stderr}`);
    if (Date.now() > deadline) throw new Error(`no JSON report in time\n${stdout}\n${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}, 150_000);

afterAll(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  const pid = report?.temporal?.codecServerPid;
  if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Reloads nothing: polls the page's text until `done(text)` holds, else fails with the text and a screenshot path. */
async function waitForText(page: Page, what: string, done: (text: string) => boolean, timeoutMs = 45_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  for (;;) {
    text = await page.innerText('body').catch(() => '');
    if (done(text)) return text;
    if (Date.now() > deadline) {
      const shot = join(tmpdir(), `ia-ui-${what.replace(/\W+/g, '-')}-${Date.now()}.png`);
      await page.screenshot({ path: shot, fullPage: true }).catch(() => undefined);
      throw new Error(`the Web UI at ${page.url()} did not show ${what} in ${timeoutMs} ms (screenshot: ${shot}); page text:\n${text.slice(0, 3000)}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

test('dev --json on a fresh machine (no data dir yet): every example service has a status, the credential rotates, the UI decodes through the codec server', async () => {
  expect(report.temporal).toEqual({
    address: `127.0.0.1:${port}`,
    uiUrl: `http://127.0.0.1:${uiPort}`,
    namespace: 'default',
    uiDecodesPayloads: true,
    codecUrl: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
    codecServerPid: expect.any(Number),
  });
  expect(report.temporal.codecServerPid).not.toBe(child.pid);
  expect(report.sweep.workflowId).toMatch(/^sweep\//);
  const byId = Object.fromEntries(report.sweep.services.map((s: any) => [s.id, s]));
  expect(Object.keys(byId).sort()).toEqual(
    ['auth-service', 'billing-api', 'inventory-api', 'legacy-gateway', 'notifications-webhook', 'orders-db', 'reports-api', 'storefront'].sort(),
  );
  for (const s of report.sweep.services) expect(STATUSES).toContain(s.status);
  expect(byId['auth-service'].status).toBe('healthy');
  expect(byId['legacy-gateway'].status).toBe('unhealthy');
  expect(byId['storefront']).toMatchObject({ status: 'impacted', rootCause: 'legacy-gateway' });
  expect(['degraded', 'unhealthy']).toContain(byId['reports-api'].status);
  expect(report.rotations).toEqual([
    expect.objectContaining({ credentialId: 'shared-api-key', workflowId: 'rotation/shared-api-key', status: 'completed', versionId: expect.any(String) }),
  ]);
  // The Web UI answers.
  const ui = await fetch(report.temporal.uiUrl);
  expect(ui.status).toBe(200);
});

test('dev keeps monitoring: it applies the sweep Schedule, and scheduled sweeps run after the first', async () => {
  expect(report.schedule).toEqual({ scheduleId: 'health-sweep', intervalMs: 10_000 });
  const connection = await Connection.connect({ address: `127.0.0.1:${port}` });
  try {
    const client = new Client({ connection });
    const deadline = Date.now() + 40_000;
    let scheduled = 0;
    while (scheduled === 0 && Date.now() < deadline) {
      // Scheduled runs carry the schedule's id in TemporalScheduledById; dev's first sweep does not.
      for await (const w of client.workflow.list({ query: `WorkflowType = 'healthSweep' AND TemporalScheduledById = 'health-sweep'` })) if (w.status.name === 'COMPLETED') scheduled++;
      if (scheduled === 0) await new Promise((r) => setTimeout(r, 1000));
    }
    expect(scheduled).toBeGreaterThan(0);
  } finally {
    await connection.close();
  }
}, 60_000);

test("the dev codec server decodes without a token only for the dev UI's own origins; other origins get 403, /encode stays closed", async () => {
  const codecUrl: string = report.temporal.codecUrl;
  // A real payload written with this run's codec key (dev generated it into the data dir).
  const [enc] = await new AesGcmCodec(loadCodecKeys(dataDir)).encode([defaultPayloadConverter.toPayload({ versionId: 'v-ui' })]);
  const body = JSON.stringify({
    payloads: [
      {
        metadata: Object.fromEntries(Object.entries(enc!.metadata!).map(([k, v]) => [k, Buffer.from(v!).toString('base64')])),
        data: Buffer.from(enc!.data!).toString('base64'),
      },
    ],
  });
  const post = async (route: string, origin?: string) => {
    const r = await request(`${codecUrl}${route}`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', 'x-namespace': 'default', ...(origin ? { origin } : {}) },
    });
    return { status: r.statusCode, allowOrigin: r.headers['access-control-allow-origin'], text: await r.body.text() };
  };
  for (const origin of [`http://127.0.0.1:${uiPort}`, `http://localhost:${uiPort}`]) {
    const ok = await post('/decode', origin);
    expect({ origin, status: ok.status, allowOrigin: ok.allowOrigin }).toEqual({ origin, status: 200, allowOrigin: origin });
    const out = JSON.parse(ok.text) as { payloads: { data: string }[] };
    expect(JSON.parse(Buffer.from(out.payloads[0]!.data, 'base64').toString())).toEqual({ versionId: 'v-ui' });
  }
  for (const origin of ['https://evil.example', `http://127.0.0.1:${port}`, `http://127.0.0.1:${uiPort}.evil.example`, `https://127.0.0.1:${uiPort}`]) {
    const refused = await post('/decode', origin);
    expect({ origin, status: refused.status, allowOrigin: refused.allowOrigin }).toEqual({ origin, status: 403, allowOrigin: undefined });
    expect(refused.text).toContain(`origin ${origin} may not decode without a bearer token`);
  }
  const noOrigin = await post('/decode');
  expect(noOrigin.status).toBe(401);
  const encode = await post('/encode', `http://127.0.0.1:${uiPort}`);
  expect(encode.status).toBe(403);
  expect(encode.text).not.toContain('v-ui');
});

test('the Temporal CLI decodes the result with --codec-endpoint and --codec-auth "Bearer <token>"; without them it shows binary/encrypted', async () => {
  const cli = resolveTemporalCli({ build: false });
  const describe = (...extra: string[]) =>
    promisify(execFile)(cli, ['workflow', 'describe', '-w', 'rotation/shared-api-key', '--address', report.temporal.address, ...extra], { encoding: 'utf8', timeout: 30_000 });
  const decoded = await describe('--codec-endpoint', report.temporal.codecUrl, '--codec-auth', `Bearer ${codecToken}`);
  expect(decoded.stdout).toMatch(/ResultEncoding\s+json\/plain/);
  expect(decoded.stdout).toContain('"status":"completed"');
  const raw = await describe();
  expect(raw.stdout).toMatch(/ResultEncoding\s+binary\/encrypted/);
  expect(raw.stdout).not.toContain('"status":"completed"');
});

test('in Chromium, the rotation page shows the decoded input and result; with the codec server stopped, the same page shows ciphertext and the codec notice', async () => {
  const browser = await launchChromium();
  try {
    const url = `${report.temporal.uiUrl}/namespaces/default/workflows/${encodeURIComponent('rotation/shared-api-key')}`;
    const page = await browser.context.newPage();
    const decodeCalls: Promise<Record<string, string>>[] = [];
    page.on('request', (r) => {
      if (r.url() === `${report.temporal.codecUrl}/decode` && r.method() === 'POST') decodeCalls.push(r.allHeaders());
    });
    await page.goto(url);
    const decoded = await waitForText(page, 'the decoded input and result', (t) => t.includes(DECODED_INPUT) && t.includes(DECODED_RESULT_STATUS));
    expect(page.url()).toMatch(/\/workflows\/rotation%2Fshared-api-key\/[0-9a-f-]{36}\/history$/);
    expect(decoded).toContain('rotateCredential');
    expect(decoded).not.toContain('Codec Server could not connect');
    // The browser decoded through the codec server, from the UI's origin, with no token.
    expect(decodeCalls.length).toBeGreaterThan(0);
    for (const h of await Promise.all(decodeCalls)) expect({ authorization: h.authorization, origin: h.origin }).toEqual({ authorization: undefined, origin: `http://127.0.0.1:${uiPort}` });
    await page.close();

    // Stop just the codec server (a child process of dev): dev keeps running, the UI can no longer decode.
    const pid: number = report.temporal.codecServerPid;
    process.kill(pid, 'SIGTERM');
    for (let i = 0; alive(pid) && i < 100; i++) await new Promise((r) => setTimeout(r, 100));
    expect(alive(pid)).toBe(false);
    expect(child.exitCode).toBeNull();

    const again = await browser.context.newPage();
    await again.goto(url);
    const encrypted = await waitForText(again, 'the ciphertext and the codec notice', (t) => t.includes('Codec Server could not connect') && t.includes(ENCRYPTED_ENCODING_B64));
    expect(encrypted).not.toContain(DECODED_INPUT);
    expect(encrypted).not.toContain(DECODED_RESULT_STATUS);
    expect(encrypted).toContain('"encryption-key-id"');
    expect(stderr).toContain('the codec server exited');
  } finally {
    await browser.close();
  }
}, 120_000);

test('Ctrl-C exits 0 within 10 s', async () => {
  const t0 = Date.now();
  child.kill('SIGINT');
  const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (c) => resolve(c))));
  expect({ code, withinMs: Date.now() - t0 < 10_000 }).toEqual({ code: 0, withinMs: true });
  expect(stdout + stderr).not.toContain(codecToken);
  // Nothing of this run is left listening.
  for (const p of [port, uiPort]) await expect(fetch(`http://127.0.0.1:${p}/`)).rejects.toThrow();
}, 30_000);
