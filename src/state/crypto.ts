/**
 * Secrets at rest, the same on every backend: AES-256-GCM (NIST SP 800-38D:
 * a fresh 96-bit IV per value, 128-bit tag), the credential and version ids
 * (`credential\0version`) as additional authenticated data so a ciphertext
 * cannot be moved to another row, and the id of the master key per row so
 * old keys can be kept for decryption. The master key comes from
 * `INTEGRATION_AGENT_MASTER_KEY` (base64 of 32 bytes) or from
 * `<dataDir>/master.key`, created with mode 0600 on first run. Secret values
 * never appear in errors, logs or the audit trail.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Loads the master key: env `INTEGRATION_AGENT_MASTER_KEY` (base64, 32 bytes) or `<dataDir>/master.key`, created (0600) when absent. */
export function loadMasterKey(dataDir: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  const fromEnv = env.INTEGRATION_AGENT_MASTER_KEY;
  if (fromEnv !== undefined && fromEnv !== '') {
    const key = Buffer.from(fromEnv, 'base64');
    if (key.length !== 32) {
      throw new RangeError(`INTEGRATION_AGENT_MASTER_KEY must be base64 of exactly 32 bytes (got ${key.length} bytes); generate one with: openssl rand -base64 32`);
    }
    return key;
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, 'master.key');
  try {
    // 'wx': only the first process to get here writes; the others read the same key.
    writeFileSync(path, randomBytes(32).toString('base64') + '\n', { flag: 'wx', mode: 0o600 });
    chmodSync(path, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) throw new Error(`${path} is readable by group or others (mode ${mode.toString(8)}): run chmod 600 ${path}`);
  const key = Buffer.from(readFileSync(path, 'utf8').trim(), 'base64');
  if (key.length !== 32) throw new Error(`${path} must hold base64 of exactly 32 bytes (got ${key.length} bytes)`);
  return key;
}

/** Key id of a master key: first 8 hex chars of its sha256 (recorded per row so old keys can be kept for decryption). */
export function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8);
}

/** The encrypted columns of a credential version row. */
export interface SealedSecret {
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
  key_id: string;
}

/** Encrypts with the master key; decrypts with it or any old key given. */
/** The state holds live secrets under a master key this process was not given. */
export class MasterKeyMismatchError extends Error {
  constructor(where: string, missing: readonly string[], own: string) {
    super(
      `${where} holds live secrets sealed under master key ${missing.join(', ')}, which this process was not given (its master key is ${own}): ` +
        'every worker and the CLI must share one INTEGRATION_AGENT_MASTER_KEY. Set it to the key those secrets were sealed with ' +
        '(the key ids are the first 8 hex digits of its sha256); to change keys, keep the old one readable through the store\'s oldKeys while re-sealing',
    );
    this.name = 'MasterKeyMismatchError';
  }
}

export class SecretCipher {
  readonly keyId: string;
  private readonly keys: Map<string, Buffer>;

  /**
   * @param masterKey 32 bytes.
   * @param oldKeys older master keys still accepted for decryption.
   * @throws RangeError when a key is not 32 bytes.
   */
  constructor(private readonly masterKey: Buffer, oldKeys: readonly Buffer[] = []) {
    if (!Buffer.isBuffer(masterKey) || masterKey.length !== 32) throw new RangeError(`masterKey: expected 32 bytes, got ${Buffer.isBuffer(masterKey) ? masterKey.length : typeof masterKey}`);
    for (const k of oldKeys) if (k.length !== 32) throw new RangeError(`oldKeys: expected 32 bytes each, got ${k.length}`);
    this.keyId = keyId(masterKey);
    this.keys = new Map([[this.keyId, masterKey], ...oldKeys.map((k) => [keyId(k), k] as [string, Buffer])]);
  }

  seal(credentialId: string, versionId: string, secret: string): SealedSecret {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.masterKey, iv);
    cipher.setAAD(Buffer.from(`${credentialId}\0${versionId}`));
    const ciphertext = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
    return { iv, tag: cipher.getAuthTag(), ciphertext, key_id: this.keyId };
  }

  /** Whether this cipher holds the master key with id `id` (current or old). */
  holds(id: string): boolean {
    return this.keys.has(id);
  }

  /**
   * Refuses a store whose live secrets (versions with a staging label) are
   * sealed under master keys this cipher lacks: a process with another key
   * would fail every read and seal new secrets no other process can open.
   * @param liveKeyIds the distinct `key_id`s of labelled versions.
   * @param where the database, for the message (never a password).
   * @throws MasterKeyMismatchError naming the key ids (fingerprints, not keys) and what to set.
   */
  assertFits(liveKeyIds: readonly string[], where: string): void {
    const missing = liveKeyIds.filter((id) => !this.keys.has(id));
    if (missing.length > 0) throw new MasterKeyMismatchError(where, missing, this.keyId);
  }

  /** @throws Error (no secret in it) when the row's key is unknown or authentication fails. */
  open(credentialId: string, versionId: string, row: SealedSecret): string {
    const key = this.keys.get(row.key_id);
    if (!key) throw new Error(`credential ${credentialId} version ${versionId} is encrypted under master key ${row.key_id}, which this store was not given`);
    const d = createDecipheriv('aes-256-gcm', key, row.iv);
    d.setAAD(Buffer.from(`${credentialId}\0${versionId}`));
    d.setAuthTag(row.tag);
    try {
      return Buffer.concat([d.update(row.ciphertext), d.final()]).toString('utf8');
    } catch {
      throw new Error(`credential ${credentialId} version ${versionId} failed authentication (wrong master key or tampered row)`);
    }
  }
}
