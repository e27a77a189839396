/**
 * Where codec keys come from: `INTEGRATION_AGENT_CODEC_KEYS` (comma-separated
 * `id:base64key`, the first encrypts) or, when unset, `<dataDir>/codec.keys`
 * created on first use with one random key and mode 0600.
 * Every client and worker of one deployment must share the same keys.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { CodecKey } from './aes-gcm-codec';

/**
 * Parses `id:base64[,id:base64...]`.
 * @param where names the source in error messages (env var or file path).
 * @throws Error naming the entry and what is wrong with it.
 */
export function parseCodecKeys(text: string, where: string): CodecKey[] {
  const entries = text.split(/[,\n]/).map((s) => s.trim()).filter(Boolean);
  if (entries.length === 0) throw new Error(`${where}: no codec keys; expected id:base64key[,id:base64key...]`);
  return entries.map((e, i) => {
    const at = e.indexOf(':');
    if (at <= 0) throw new Error(`${where}: entry ${i + 1} must be id:base64key`);
    const key = Buffer.from(e.slice(at + 1), 'base64');
    if (key.length !== 32) throw new Error(`${where}: key "${e.slice(0, at)}" must be 32 bytes of base64 (got ${key.length} bytes); make one with: openssl rand -base64 32`);
    return { id: e.slice(0, at), key };
  });
}

/** Loads the deployment's codec keys, creating a key file under `dataDir` on first use. */
export function loadCodecKeys(dataDir: string, env: NodeJS.ProcessEnv = process.env): CodecKey[] {
  const fromEnv = env.INTEGRATION_AGENT_CODEC_KEYS;
  if (fromEnv) return parseCodecKeys(fromEnv, 'INTEGRATION_AGENT_CODEC_KEYS');
  const file = join(dataDir, 'codec.keys');
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const id = `k${new Date().toISOString().slice(0, 10).replace(/-/g, '')}`;
    try {
      writeFileSync(file, `${id}:${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      // Another process created it first: use theirs.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  return parseCodecKeys(readFileSync(file, 'utf8'), file);
}
