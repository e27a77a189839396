import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import type { Payload } from '@temporalio/common';
import { defaultPayloadConverter } from '@temporalio/common';
import { AesGcmCodec, ENCRYPTED_ENCODING } from '../../src/codec/aes-gcm-codec';
import { assertSharedKeysFor, codecKeyFingerprint, isLoopbackAddress, loadCodecKeys, parseCodecKeys } from '../../src/codec/keys';
import { loopbackUiOrigins, startCodecServer } from '../../src/codec/server';
import { startDevCodecServer } from '../../src/dev/dev-server';
import { spawn } from 'node:child_process';

const key = (id: string) => ({ id, key: randomBytes(32) });

describe('AES-256-GCM payload codec', () => {
  test('round-trips payloads and leaves no plaintext in the encoded bytes', async () => {
    const codec = new AesGcmCodec([key('k1')]);
    const secret = 'sk_live_' + randomBytes(12).toString('hex');
    const payload = defaultPayloadConverter.toPayload({ credentialId: 'billing-key', note: secret });
    const [encoded] = await codec.encode([payload]);
    expect(Buffer.from(encoded!.metadata!.encoding!).toString()).toBe(ENCRYPTED_ENCODING);
    expect(Buffer.from(encoded!.metadata!['encryption-key-id']!).toString()).toBe('k1');
    expect(Buffer.from(encoded!.data!).includes(Buffer.from(secret))).toBe(false);
    const [decoded] = await codec.decode([encoded!]);
    expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual({ credentialId: 'billing-key', note: secret });
  });

  test('a rotated codec key still decrypts what the old key wrote; an unknown key id is a clear error', async () => {
    const old = key('k-old');
    const [written] = await new AesGcmCodec([old]).encode([defaultPayloadConverter.toPayload(42)]);
    const rotated = new AesGcmCodec([key('k-new'), old]);
    expect(defaultPayloadConverter.fromPayload((await rotated.decode([written!]))[0]!)).toBe(42);
    await expect(new AesGcmCodec([key('k-other')]).decode([written!])).rejects.toThrow(
      new RegExp(`codec key "k-old": that key is missing in this process \\(${hostname()}:${process.pid}, holding "k-other"\\); every worker and client .* must share INTEGRATION_AGENT_CODEC_KEYS`),
    );
  });

  test('tampered ciphertext is rejected by the GCM tag', async () => {
    const codec = new AesGcmCodec([key('k1')]);
    const [enc] = await codec.encode([defaultPayloadConverter.toPayload('hello')]);
    const data = Buffer.from(enc!.data!);
    data[20] ^= 0xff;
    await expect(codec.decode([{ ...enc!, data }])).rejects.toThrow();
  });

  test('unencrypted payloads pass through decode (histories written before the codec)', async () => {
    const codec = new AesGcmCodec([key('k1')]);
    const plain = defaultPayloadConverter.toPayload({ a: 1 });
    expect(await codec.decode([plain])).toEqual([plain]);
  });

  test('bad keys are refused with the option named', () => {
    expect(() => new AesGcmCodec([])).toThrow(RangeError);
    expect(() => new AesGcmCodec([{ id: 'short', key: randomBytes(16) }])).toThrow(/key "short" must be 32 bytes, got 16/);
    expect(() => parseCodecKeys('nocolon', 'ENV')).toThrow(/ENV: entry 1 must be id:base64key/);
    expect(() => parseCodecKeys(`a:${randomBytes(8).toString('base64')}`, 'ENV')).toThrow(/key "a" must be 32 bytes/);
  });
});

describe('codec keys', () => {
  test('a generated key is named by its fingerprint, so two generated keys never share an id', () => {
    const a = loadCodecKeys(mkdtempSync(join(tmpdir(), 'ia-keys-')), {});
    const b = loadCodecKeys(mkdtempSync(join(tmpdir(), 'ia-keys-')), {});
    expect(a[0]!.id).toMatch(/^k[0-9a-f]{16}$/);
    expect(a[0]!.id).toBe(codecKeyFingerprint(a[0]!.key));
    expect(b[0]!.id).not.toBe(a[0]!.id);
    expect(new AesGcmCodec(a).activeFingerprint).toBe(a[0]!.id);
  });

  test('a key file with a date id (written before fingerprints) keeps loading and decoding', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ia-keys-'));
    const k = randomBytes(32);
    writeFileSync(join(dir, 'codec.keys'), `k20261206:${k.toString('base64')}\n`, { mode: 0o600 });
    const loaded = loadCodecKeys(dir, {});
    expect(loaded).toEqual([{ id: 'k20261206', key: k }]);
    const [written] = await new AesGcmCodec([{ id: 'k20261206', key: k }]).encode([defaultPayloadConverter.toPayload('x')]);
    expect(defaultPayloadConverter.fromPayload((await new AesGcmCodec(loaded).decode([written!]))[0]!)).toBe('x');
  });

  test('two different keys under one date id: the message names the id and the fix, not a bare GCM error', async () => {
    const [written] = await new AesGcmCodec([key('k20261206')]).encode([defaultPayloadConverter.toPayload(1)]);
    await expect(new AesGcmCodec([key('k20261206')]).decode([written!])).rejects.toThrow(
      /codec key "k20261206": the payload fails authentication .* must share INTEGRATION_AGENT_CODEC_KEYS/,
    );
  });

  test.each([
    ['localhost:7233', true],
    ['127.0.0.1:7233', true],
    ['127.10.0.3:7233', true],
    ['[::1]:7233', true],
    ['temporal:7233', false],
    ['10.0.0.5:7233', false],
    ['128.0.0.1:7233', false],
    ['ns.tmprl.cloud:7233', false],
  ])('%s is loopback: %s', (address, loopback) => {
    expect(isLoopbackAddress(address)).toBe(loopback);
  });

  test('a non-loopback address without explicit keys is refused, naming what is missing', () => {
    const codec = `k1:${randomBytes(32).toString('base64')}`;
    const master = randomBytes(32).toString('base64');
    expect(() => assertSharedKeysFor('temporal:7233', {})).toThrow(/INTEGRATION_AGENT_CODEC_KEYS and INTEGRATION_AGENT_MASTER_KEY are not set/);
    expect(() => assertSharedKeysFor('temporal:7233', { INTEGRATION_AGENT_CODEC_KEYS: codec })).toThrow(/: INTEGRATION_AGENT_MASTER_KEY is not set/);
    expect(() => assertSharedKeysFor('temporal:7233', { INTEGRATION_AGENT_CODEC_KEYS: codec, INTEGRATION_AGENT_MASTER_KEY: master })).not.toThrow();
    expect(() => assertSharedKeysFor('localhost:7233', {})).not.toThrow();
  });
});

describe('codec server', () => {
  test('decodes for an authorised Web UI origin and refuses without the token', async () => {
    const codec = new AesGcmCodec([key('k1')]);
    const server = await startCodecServer({ codec, host: '127.0.0.1', port: 0, token: 't0ken', allowedOrigins: ['http://ui.local'] });
    try {
      const [enc] = await codec.encode([defaultPayloadConverter.toPayload({ versionId: 'v-1' })]);
      const body = JSON.stringify({
        payloads: [
          {
            metadata: Object.fromEntries(Object.entries(enc!.metadata!).map(([k, v]) => [k, Buffer.from(v!).toString('base64')])),
            data: Buffer.from(enc!.data!).toString('base64'),
          },
        ],
      });
      const denied = await request(`${server.url}/decode`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      expect(denied.statusCode).toBe(401);
      await denied.body.dump();
      const ok = await request(`${server.url}/decode`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json', authorization: 'Bearer t0ken', origin: 'http://ui.local' },
      });
      expect(ok.statusCode).toBe(200);
      expect(ok.headers['access-control-allow-origin']).toBe('http://ui.local');
      const out = (await ok.body.json()) as { payloads: { data: string }[] };
      expect(JSON.parse(Buffer.from(out.payloads[0]!.data, 'base64').toString())).toEqual({ versionId: 'v-1' });
      const foreign = await request(`${server.url}/decode`, { method: 'OPTIONS', headers: { origin: 'http://evil.local' } });
      expect(foreign.headers['access-control-allow-origin']).toBeUndefined();
      await foreign.body.dump();
    } finally {
      await server.close();
    }
  });
});

const BIN = join(__dirname, '..', '..', 'bin', 'integration-agent.js');

/** The codec protocol's JSON body for `payloads`. */
const body = (payloads: Payload[]) =>
  JSON.stringify({
    payloads: payloads.map((p) => ({
      metadata: Object.fromEntries(Object.entries(p.metadata!).map(([k, v]) => [k, Buffer.from(v!).toString('base64')])),
      data: Buffer.from(p.data!).toString('base64'),
    })),
  });

async function post(url: string, headers: Record<string, string>, payload: string) {
  const r = await request(url, { method: 'POST', body: payload, headers: { 'content-type': 'application/json', ...headers } });
  return { status: r.statusCode, allowOrigin: r.headers['access-control-allow-origin'], text: await r.body.text() };
}

describe('codec server: the dev UI decodes without a token, nobody else does', () => {
  test('token-less /decode only from the trusted loopback UI origins; other origins 403; /encode needs the token', async () => {
    const codec = new AesGcmCodec([key('k1')]);
    const server = await startCodecServer({ codec, host: '127.0.0.1', port: 0, token: 't0ken', allowedOrigins: [], trustedDecodeOrigins: loopbackUiOrigins(8233) });
    try {
      const payload = body(await codec.encode([defaultPayloadConverter.toPayload({ credentialId: 'c1' })]));
      for (const origin of ['http://127.0.0.1:8233', 'http://localhost:8233']) {
        const ok = await post(`${server.url}/decode`, { origin }, payload);
        expect({ status: ok.status, allowOrigin: ok.allowOrigin }).toEqual({ status: 200, allowOrigin: origin });
        expect(JSON.parse(Buffer.from(JSON.parse(ok.text).payloads[0].data, 'base64').toString())).toEqual({ credentialId: 'c1' });
      }
      for (const origin of ['http://127.0.0.1:8234', 'http://localhost', 'https://127.0.0.1:8233', 'null', 'http://evil.example']) {
        const refused = await post(`${server.url}/decode`, { origin }, payload);
        expect({ origin, status: refused.status, allowOrigin: refused.allowOrigin }).toEqual({ origin, status: 403, allowOrigin: undefined });
        expect(refused.text).toBe(`origin ${origin} may not decode without a bearer token\n`);
      }
      expect((await post(`${server.url}/decode`, {}, payload)).status).toBe(401);
      expect((await post(`${server.url}/decode`, { origin: 'http://evil.example', authorization: 'Bearer wrong' }, payload)).status).toBe(401);
      const enc = await post(`${server.url}/encode`, { origin: 'http://127.0.0.1:8233' }, payload);
      expect(enc.status).toBe(403);
      // The token path (the Temporal CLI's --codec-auth, a reverse proxy) still works for both routes, from anywhere.
      expect((await post(`${server.url}/encode`, { authorization: 'Bearer t0ken' }, payload)).status).toBe(200);
      expect((await post(`${server.url}/decode`, { authorization: 'Bearer t0ken' }, payload)).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  test('without a token, /encode is refused even from the trusted origin and a wrong token is 401', async () => {
    const codec = new AesGcmCodec([key('k1')]);
    const server = await startCodecServer({ codec, host: '127.0.0.1', port: 0, allowedOrigins: [], trustedDecodeOrigins: loopbackUiOrigins(9000) });
    try {
      const payload = body([defaultPayloadConverter.toPayload('x')]);
      expect((await post(`${server.url}/encode`, { origin: 'http://127.0.0.1:9000' }, payload)).status).toBe(403);
      const r = await post(`${server.url}/encode`, { authorization: 'Bearer anything' }, payload);
      expect(r).toMatchObject({ status: 401, text: expect.stringContaining('takes no token') });
    } finally {
      await server.close();
    }
  });

  test('several CORS origins: each one is answered with itself, others get no CORS header', async () => {
    const codec = new AesGcmCodec([key('k1')]);
    const origins = ['https://temporal.example.com', 'https://ops.example.com:8443'];
    const server = await startCodecServer({ codec, host: '127.0.0.1', port: 0, token: 't', allowedOrigins: origins });
    try {
      for (const origin of [...origins, 'https://other.example.com']) {
        const r = await request(`${server.url}/decode`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST' } });
        await r.body.dump();
        expect({ origin, allow: r.headers['access-control-allow-origin'] }).toEqual({ origin, allow: origins.includes(origin) ? origin : undefined });
      }
      // CORS is not authorisation: an allowed origin without the token is still refused.
      expect((await post(`${server.url}/decode`, { origin: origins[0]! }, body([defaultPayloadConverter.toPayload(1)]))).status).toBe(403);
    } finally {
      await server.close();
    }
  });

  test('a body over 16 MiB is refused with 413 (after the token check), not buffered', async () => {
    const server = await startCodecServer({ codec: new AesGcmCodec([key('k1')]), host: '127.0.0.1', port: 0, token: 't', allowedOrigins: [] });
    try {
      const r = await post(`${server.url}/decode`, { authorization: 'Bearer t' }, 'x'.repeat(16 * 1024 * 1024 + 1));
      expect(r.status).toBe(413);
    } finally {
      await server.close();
    }
  });

  test('misconfigurations are refused at start, naming the problem', async () => {
    const codec = new AesGcmCodec([key('k1')]);
    const base = { codec, host: '127.0.0.1', port: 0, allowedOrigins: [] as string[] };
    await expect(startCodecServer(base)).rejects.toThrow(/give a token \(CODEC_SERVER_TOKEN\) or trusted loopback UI origins/);
    await expect(startCodecServer({ ...base, trustedDecodeOrigins: ['http://ui.example.com:8233'] })).rejects.toThrow(/http:\/\/ui.example.com:8233 is not a loopback http:\/\/ origin/);
    await expect(startCodecServer({ ...base, trustedDecodeOrigins: ['https://localhost:8233'] })).rejects.toThrow(RangeError);
    await expect(startCodecServer({ ...base, host: '0.0.0.0', trustedDecodeOrigins: loopbackUiOrigins(8233) })).rejects.toThrow(/listening on 0.0.0.0 .* listen on 127.0.0.1/);
    await expect(startCodecServer({ ...base, token: 't', allowedOrigins: ['https://ui.example.com/'] })).rejects.toThrow(/"https:\/\/ui.example.com\/" is not an origin as a browser sends it.*e.g. https:\/\/ui.example.com$/);
    expect(() => loopbackUiOrigins(0)).toThrow(RangeError);
  });
});

/** Runs the built CLI (lib/) and returns its exit code and output. */
function runCli(args: string[], env: NodeJS.ProcessEnv, untilStdout?: RegExp): Promise<{ code: number | null; stdout: string; stderr: string; kill(): void }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const result = (code: number | null) => ({ code, stdout, stderr, kill: () => child.kill('SIGTERM') });
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      if (untilStdout?.test(stdout)) resolve(result(null));
    });
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.once('close', (code) => resolve(result(code)));
  });
}

describe('integration-agent codec-server (built CLI)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'ia-codec-cli-'));
  const token = randomBytes(16).toString('hex');

  test('--ui-origin is repeatable and takes comma lists; the token appears in no output', async () => {
    const run = await runCli(
      ['codec-server', '--listen', '127.0.0.1:0', '--ui-origin', 'https://a.example', '--ui-origin', 'https://b.example,https://c.example:8443', '--json'],
      { CODEC_SERVER_TOKEN: token, INTEGRATION_AGENT_DATA_DIR: dataDir },
      /\}\s*$/,
    );
    try {
      const out = JSON.parse(run.stdout);
      expect(out).toMatchObject({ url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/), corsOrigins: ['https://a.example', 'https://b.example', 'https://c.example:8443'], tokenRequired: true });
      const r = await request(`${out.url}/decode`, { method: 'OPTIONS', headers: { origin: 'https://c.example:8443' } });
      await r.body.dump();
      expect(r.headers['access-control-allow-origin']).toBe('https://c.example:8443');
      expect(run.stdout + run.stderr).not.toContain(token);
    } finally {
      run.kill();
    }
  });

  test('clear errors: no token, a bad origin, a non-loopback --listen with --trust-local-ui', async () => {
    const env = { CODEC_SERVER_TOKEN: '', INTEGRATION_AGENT_DATA_DIR: dataDir };
    const noToken = await runCli(['codec-server', '--listen', '127.0.0.1:0'], env);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toMatch(/set CODEC_SERVER_TOKEN .*--codec-auth.*reverse proxy/);
    const badOrigin = await runCli(['codec-server', '--listen', '127.0.0.1:0', '--ui-origin', 'https://ui.example.com/path'], { ...env, CODEC_SERVER_TOKEN: token });
    expect(badOrigin.code).toBe(1);
    expect(badOrigin.stderr).toMatch(/--ui-origin: "https:\/\/ui.example.com\/path" is not an origin/);
    expect(badOrigin.stderr).not.toContain(token);
    const short = await runCli(['codec-server', '--listen', '127.0.0.1:0'], { ...env, CODEC_SERVER_TOKEN: 'hunter2' });
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/CODEC_SERVER_TOKEN is 7 characters long; use at least 16/);
    expect(short.stderr).not.toContain('hunter2');
    const wide = await runCli(['codec-server', '--listen', '0.0.0.0:0', '--trust-local-ui', '8233'], env);
    expect(wide.code).toBe(1);
    expect(wide.stderr).toMatch(/listen on 127.0.0.1/);
  });

  test("dev's codec server: a child process that stop() ends, and that exits by itself when its parent dies", async () => {
    const env = { ...process.env, INTEGRATION_AGENT_DATA_DIR: dataDir, INTEGRATION_AGENT_CODEC_KEYS: '' };
    const dev = await startDevCodecServer({ uiPort: 8233, env });
    expect(dev.origins).toEqual(['http://127.0.0.1:8233', 'http://localhost:8233']);
    const payload = body(await new AesGcmCodec(loadCodecKeys(dataDir, {})).encode([defaultPayloadConverter.toPayload('hi')]));
    expect((await post(`${dev.url}/decode`, { origin: 'http://localhost:8233' }, payload)).status).toBe(200);
    await dev.stop();
    await expect(post(`${dev.url}/decode`, { origin: 'http://localhost:8233' }, payload)).rejects.toThrow();

    // A parent killed with SIGKILL (no chance to stop its child): the child notices its IPC channel closing and exits.
    const script = `require(${JSON.stringify(join(__dirname, '..', '..', 'lib', 'dev', 'dev-server.js'))}).startDevCodecServer({ uiPort: 8233 }).then((s) => { process.stdout.write(JSON.stringify({ pid: s.pid, url: s.url }) + '\\n'); setInterval(() => {}, 1000); });`;
    const parent = spawn(process.execPath, ['-e', script], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve) => parent.stdout.on('data', (b: Buffer) => resolve(b.toString())));
    const { pid, url } = JSON.parse(line) as { pid: number; url: string };
    expect((await post(`${url}/decode`, { origin: 'http://127.0.0.1:8233' }, payload)).status).toBe(200);
    parent.kill('SIGKILL');
    const alive = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (let i = 0; alive() && i < 100; i++) await new Promise((r) => setTimeout(r, 100));
    expect(alive()).toBe(false);
  }, 60_000);
});
