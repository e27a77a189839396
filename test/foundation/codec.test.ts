import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { defaultPayloadConverter } from '@temporalio/common';
import { AesGcmCodec, ENCRYPTED_ENCODING } from '../../src/codec/aes-gcm-codec';
import { assertSharedKeysFor, codecKeyFingerprint, isLoopbackAddress, loadCodecKeys, parseCodecKeys } from '../../src/codec/keys';
import { startCodecServer } from '../../src/codec/server';

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
