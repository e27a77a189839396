import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { defaultPayloadConverter } from '@temporalio/common';
import { AesGcmCodec, ENCRYPTED_ENCODING } from '../../src/codec/aes-gcm-codec';
import { parseCodecKeys } from '../../src/codec/keys';
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
    await expect(new AesGcmCodec([key('k-other')]).decode([written!])).rejects.toThrow(/unknown codec key id "k-old"/);
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
