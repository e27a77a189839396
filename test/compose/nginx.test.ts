/**
 * The compose deployment's front door, run for real: Debian's nginx with
 * deploy/nginx/templates/default.conf.template rendered as the nginx image
 * renders it (only the template's ${NAME} variables are substituted, here with
 * loopback host:port values), a stand-in for the Temporal Web UI, and the real
 * codec server from the CLI. A user without the password gets nothing; a
 * logged-in user gets the UI and decoded payloads through /codec/ without ever
 * holding the codec server's token.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPayloadConverter } from '@temporalio/common';
import { AesGcmCodec } from '../../src/codec/aes-gcm-codec';

const ROOT = join(__dirname, '..', '..');
const TEMPLATE = join(ROOT, 'deploy', 'nginx', 'templates', 'default.conf.template');
const CLI = join(ROOT, 'test', 'helpers', 'cli-entry.ts');

/** Where Debian puts nginx; PATH is searched too. */
function findNginx(): string | undefined {
  for (const p of ['/usr/sbin/nginx', '/usr/bin/nginx']) if (existsSync(p)) return p;
  const r = spawnSync('sh', ['-c', 'command -v nginx'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** What the nginx image's entrypoint does to /etc/nginx/templates/*.template: envsubst of the given names only. */
export function renderTemplate(text: string, vars: Record<string, string>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (whole, name: string) => vars[name] ?? whole);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, what: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}: ${log()}`);
    const up = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => (c.destroy(), resolve(true)));
      c.once('error', () => resolve(false));
    });
    if (up) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on 127.0.0.1:${port} within 15 s: ${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

const TOKEN = `tok-${randomBytes(24).toString('hex')}`;
const USER = 'alice';
const PASSWORD = `pw-${randomBytes(8).toString('hex')}`;
const codecKey = { id: 'k1', key: randomBytes(32) };
/** A second name users reach the UI at (CODEC_UI_ORIGINS in compose): its calls to /codec/ are cross-origin. */
const OTHER_ORIGIN = 'http://temporal-ui.example.test:8080';

let dir: string;
let nginx: ChildProcess | undefined;
let codecServer: ChildProcess | undefined;
let ui: Server;
let base: string;
const uiSaw: IncomingHttpHeaders[] = [];
/** Every response the browser side got, for the "token never leaks" check. */
const seen: { url: string; status: number; headers: string; body: string }[] = [];

async function browser(path: string, init: RequestInit = {}): Promise<{ status: number; body: string }> {
  const res = await fetch(base + path, init);
  const body = await res.text();
  seen.push({ url: path, status: res.status, headers: JSON.stringify([...res.headers.entries()]), body });
  return { status: res.status, body };
}

beforeAll(async () => {
  const nginxBin = findNginx();
  if (!nginxBin) {
    throw new Error('nginx is not installed: the compose front door (deploy/nginx) is tested with a real nginx; run `bash scripts/setup-system.sh` (it installs Debian\'s nginx package; /usr/sbin/nginx)');
  }
  dir = mkdtempSync(join(tmpdir(), 'ia-nginx-'));
  // nginx workers run as an unprivileged user when the test runs as root: they must read the password file.
  chmodSync(dir, 0o755);

  ui = createServer((req, res) => {
    uiSaw.push(req.headers);
    res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>Temporal</title><p>stand-in web ui</p>');
  });
  await new Promise<void>((r) => ui.listen(0, '127.0.0.1', () => r()));
  const uiPort = (ui.address() as AddressInfo).port;

  const nginxPort = await freePort();
  base = `http://127.0.0.1:${nginxPort}`;

  // The real codec server, from source, as compose runs it (token required, CORS for the UI's public origin).
  codecServer = spawn(process.execPath, ['--require', 'tsx/cjs', CLI, 'codec-server', '--listen', '127.0.0.1:0', '--ui-origin', base, '--ui-origin', OTHER_ORIGIN, '--json'], {
    env: {
      ...process.env,
      CODEC_SERVER_TOKEN: TOKEN,
      INTEGRATION_AGENT_CODEC_KEYS: `${codecKey.id}:${codecKey.key.toString('base64')}`,
      INTEGRATION_AGENT_DATA_DIR: dir,
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  codecServer.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  codecServer.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const codecUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`codec server did not report its address in 30 s: ${out} ${err}`)), 30_000);
    const check = () => {
      const m = /"url":\s*"(http:\/\/[^"]+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    codecServer!.stdout!.on('data', check);
    codecServer!.once('exit', (code) => (clearTimeout(timer), reject(new Error(`codec server exited with ${code}: ${err}`))));
  });

  const conf = renderTemplate(readFileSync(TEMPLATE, 'utf8'), {
    NGINX_LISTEN: `127.0.0.1:${nginxPort}`,
    TEMPORAL_UI_UPSTREAM: `127.0.0.1:${uiPort}`,
    CODEC_SERVER_UPSTREAM: new URL(codecUrl).host,
    CODEC_SERVER_TOKEN: TOKEN,
  });
  expect(conf).not.toMatch(/\$\{/);
  mkdirSync(join(dir, 'conf.d'));
  writeFileSync(join(dir, 'conf.d', 'default.conf'), conf);
  // The image's nginx.conf, reduced to what a non-root, non-daemon run in a temp dir needs.
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => {
    mkdirSync(join(dir, t), { mode: 0o777 });
    chmodSync(join(dir, t), 0o777);
    return `  ${t}_temp_path ${join(dir, t)};`;
  });
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      'daemon off;',
      'worker_processes 1;',
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'error.log')} info;`,
      'events { worker_connections 64; }',
      'http {',
      `  access_log ${join(dir, 'access.log')};`,
      ...temp,
      `  include ${join(dir, 'conf.d', '*.conf')};`,
      '}',
      '',
    ].join('\n'),
  );
  // The template reads "htpasswd" beside nginx.conf, as /etc/nginx/htpasswd in the image; made as deploy/nginx/README.md says.
  const hash = spawnSync('openssl', ['passwd', '-6', PASSWORD], { encoding: 'utf8' });
  expect(hash.status).toBe(0);
  writeFileSync(join(dir, 'htpasswd'), `${USER}:${hash.stdout.trim()}\n`, { mode: 0o644 });

  const args = ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')];
  const t = spawnSync(nginxBin, ['-t', ...args], { encoding: 'utf8' });
  if (t.status !== 0) throw new Error(`nginx -t rejects the rendered template: ${t.stderr}`);
  nginx = spawn(nginxBin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let nginxErr = '';
  nginx.stderr!.on('data', (c: Buffer) => (nginxErr += c.toString()));
  await waitForPort(nginxPort, 'nginx', nginx, () => nginxErr + (existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : ''));
}, 60_000);

afterAll(async () => {
  const stop = (p: ChildProcess | undefined, signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      if (!p || p.exitCode !== null || p.signalCode !== null) return resolve();
      p.once('exit', () => resolve());
      p.kill(signal);
    });
  await Promise.all([stop(nginx, 'SIGQUIT'), stop(codecServer, 'SIGTERM'), new Promise<void>((r) => (ui ? ui.close(() => r()) : r()))]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('no credentials, or wrong ones: 401 for the UI and for the codec server', async () => {
  expect((await browser('/')).status).toBe(401);
  expect((await browser('/', { headers: { authorization: basic(USER, 'wrong') } })).status).toBe(401);
  expect((await browser('/codec/decode', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"payloads":[]}' })).status).toBe(401);
  // A bearer token of one's own is not a login either.
  expect((await browser('/codec/decode', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '{"payloads":[]}' })).status).toBe(401);
  expect(uiSaw).toHaveLength(0);
});

test('logged in: the Web UI page, without the user password passed on to the UI', async () => {
  const r = await browser('/namespaces/default/workflows', { headers: { authorization: basic(USER, PASSWORD) } });
  expect(r.status).toBe(200);
  expect(r.body).toContain('stand-in web ui');
  expect(uiSaw.at(-1)?.authorization).toBeUndefined();
});

test('logged in: POST /codec/decode decodes (the proxy adds the bearer token), as the UI calls it', async () => {
  const secret = { credentialId: 'shared-api-key', versionId: 'v-1234' };
  const [encoded] = await new AesGcmCodec([codecKey]).encode([defaultPayloadConverter.toPayload(secret)]);
  const asJson = {
    metadata: Object.fromEntries(Object.entries(encoded!.metadata!).map(([k, v]) => [k, Buffer.from(v!).toString('base64')])),
    data: Buffer.from(encoded!.data!).toString('base64'),
  };
  const r = await browser('/codec/decode?preserveStorageRefs=true', {
    method: 'POST',
    headers: { authorization: basic(USER, PASSWORD), 'content-type': 'application/json', 'x-namespace': 'default', origin: base },
    body: JSON.stringify({ payloads: [asJson] }),
  });
  expect(r.status).toBe(200);
  const [decoded] = (JSON.parse(r.body) as { payloads: { metadata: Record<string, string>; data: string }[] }).payloads;
  expect(Buffer.from(decoded!.metadata.encoding!, 'base64').toString()).toBe('json/plain');
  expect(JSON.parse(Buffer.from(decoded!.data, 'base64').toString())).toEqual(secret);
});

test('/codec/ takes POST only; the health location answers without a login', async () => {
  expect((await browser('/codec/decode', { headers: { authorization: basic(USER, PASSWORD) } })).status).toBe(403);
  expect((await browser('/nginx-health')).status).toBe(200);
});

test('CORS for the UI\'s other origins: the preflight passes without a login, the call itself needs one', async () => {
  const preflight = await fetch(`${base}/codec/decode`, {
    method: 'OPTIONS',
    headers: { origin: OTHER_ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-namespace' },
  });
  seen.push({ url: 'OPTIONS /codec/decode', status: preflight.status, headers: JSON.stringify([...preflight.headers.entries()]), body: await preflight.text() });
  expect(preflight.status).toBe(204);
  expect(preflight.headers.get('access-control-allow-origin')).toBe(OTHER_ORIGIN);
  expect(preflight.headers.get('access-control-allow-credentials')).toBe('true');
  const stranger = await fetch(`${base}/codec/decode`, { method: 'OPTIONS', headers: { origin: 'http://evil.example.test', 'access-control-request-method': 'POST' } });
  expect(stranger.headers.get('access-control-allow-origin')).toBeNull();
  expect((await browser('/codec/decode', { method: 'POST', headers: { origin: OTHER_ORIGIN, 'content-type': 'application/json' }, body: '{"payloads":[]}' })).status).toBe(401);
  const r = await fetch(`${base}/codec/decode`, {
    method: 'POST',
    headers: { origin: OTHER_ORIGIN, authorization: basic(USER, PASSWORD), 'content-type': 'application/json' },
    body: '{"payloads":[]}',
  });
  expect(r.status).toBe(200);
  expect(r.headers.get('access-control-allow-origin')).toBe(OTHER_ORIGIN);
  seen.push({ url: 'POST /codec/decode cross-origin', status: r.status, headers: JSON.stringify([...r.headers.entries()]), body: await r.text() });
});

test('the codec token is in no response, header or body', () => {
  expect(seen.length).toBeGreaterThanOrEqual(8);
  for (const s of seen) {
    expect(s.headers).not.toContain(TOKEN);
    expect(s.body).not.toContain(TOKEN);
  }
});
