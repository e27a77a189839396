/**
 * AES-256-GCM payload codec (Temporal Data Converter "PayloadCodec"): every
 * payload the client and worker exchange with the server is encrypted, so
 * workflow history holds ciphertext only. Keys carry an id; the first key
 * encrypts, every key decrypts (rotation of the codec key keeps old history readable).
 *
 * Wire format of an encoded payload: metadata `encoding = binary/encrypted`,
 * `encryption-key-id = <id>`; data = 12-byte IV || ciphertext || 16-byte tag
 * (NIST SP 800-38D; the original payload is serialised with its protobuf encoding).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { codecKeyFingerprint, SHARE_CODEC_KEYS_HINT } from './keys';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface CodecKey {
  /** Short identifier stored beside each payload, e.g. `k2026-11`. */
  id: string;
  /** 32 bytes. */
  key: Buffer;
}

const enc = (s: string) => Buffer.from(s, 'utf8');

/**
 * A payload this process cannot decode: it names the key id the payload
 * carries, this process (`host:pid`), the ids it holds, and the fix.
 */
export class CodecKeyError extends Error {
  /** The key id written beside the payload. */
  readonly keyId: string;
  constructor(keyId: string, message: string) {
    super(message);
    this.name = 'CodecKeyError';
    this.keyId = keyId;
  }
}

export class AesGcmCodec implements PayloadCodec {
  private readonly byId: Map<string, Buffer>;
  private readonly active: CodecKey;
  /** Fingerprint (`k` + 16 hex of SHA-256) of the key that encrypts; what worker identities carry as `codec=`. */
  readonly activeFingerprint: string;
  /** Fingerprints of every key this codec decrypts with. */
  readonly fingerprints: ReadonlySet<string>;

  /**
   * @param keys first key encrypts; all decrypt.
   * @throws RangeError when no key is given, a key is not 32 bytes, or ids repeat.
   */
  constructor(keys: CodecKey[]) {
    if (keys.length === 0) throw new RangeError('AesGcmCodec: at least one key is required');
    this.byId = new Map();
    for (const k of keys) {
      if (k.key.length !== 32) throw new RangeError(`AesGcmCodec: key "${k.id}" must be 32 bytes, got ${k.key.length}`);
      if (this.byId.has(k.id)) throw new RangeError(`AesGcmCodec: duplicate key id "${k.id}"`);
      this.byId.set(k.id, k.key);
    }
    this.active = keys[0]!;
    this.activeFingerprint = codecKeyFingerprint(this.active.key);
    this.fingerprints = new Set(keys.map((k) => codecKeyFingerprint(k.key)));
  }

  /** Ids of the keys this codec holds, the encrypting one first. */
  get keyIds(): string[] {
    return [...this.byId.keys()];
  }

  private cannotDecode(keyId: string, why: string): CodecKeyError {
    return new CodecKeyError(
      keyId,
      `cannot decode a payload encrypted with codec key "${keyId}": ${why} in this process (${hostname()}:${process.pid}, holding ${this.keyIds.map((id) => `"${id}"`).join(', ')}); ${SHARE_CODEC_KEYS_HINT}`,
    );
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', this.active.key, iv);
      const plain = temporal.api.common.v1.Payload.encode(p).finish();
      const data = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return { metadata: { encoding: enc(ENCRYPTED_ENCODING), 'encryption-key-id': enc(this.active.id) }, data };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => {
      const encoding = p.metadata?.encoding ? Buffer.from(p.metadata.encoding).toString() : undefined;
      if (encoding !== ENCRYPTED_ENCODING) return p;
      const keyId = p.metadata?.['encryption-key-id'] ? Buffer.from(p.metadata['encryption-key-id']).toString() : '';
      const key = this.byId.get(keyId);
      if (!key) throw this.cannotDecode(keyId, 'that key is missing');
      const data = Buffer.from(p.data ?? new Uint8Array());
      if (data.length < IV_BYTES + TAG_BYTES) throw new Error('encrypted payload is truncated');
      const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      let plain: Buffer;
      try {
        plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
      } catch {
        // Tampering, or another key under the same id (date ids of keys generated before ids were fingerprints).
        throw this.cannotDecode(keyId, 'the payload fails authentication with the key of that id (tampered, or a different key under the same id)');
      }
      return temporal.api.common.v1.Payload.decode(plain) as Payload;
    });
  }
}
