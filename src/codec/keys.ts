/**
 * Where codec keys come from: `INTEGRATION_AGENT_CODEC_KEYS` (comma-separated
 * `id:base64key`, the first encrypts) or, when unset, `<dataDir>/codec.keys`
 * created on first use with one random key and mode 0600.
 * Every client and worker of one deployment must share the same keys.
 *
 * A generated key's id is its fingerprint (`k` + 16 hex of its SHA-256), so two
 * different generated keys never share an id: a process that meets a payload
 * written with another process's generated key says so by name instead of
 * failing GCM authentication. Key files written before (date ids such as
 * `k20261206`) keep loading unchanged.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { CodecKey } from './aes-gcm-codec';

/** What every codec-key error ends with: the one fix that holds for any number of hosts. */
export const SHARE_CODEC_KEYS_HINT =
  'every worker and client of one deployment must share INTEGRATION_AGENT_CODEC_KEYS (and INTEGRATION_AGENT_MASTER_KEY); copy the value the deployment already uses from where the workers get it (your secret manager, or codec.keys in the data dir of the process that generated it); only a new deployment makes one, with: export INTEGRATION_AGENT_CODEC_KEYS="k1:$(openssl rand -base64 32)"';

/**
 * The fingerprint of a codec key: `k` + the first 16 hex digits of SHA-256(key).
 * It names the key without revealing it (64 bits of a hash of 256 random bits);
 * generated keys use it as their id, and worker identities carry it (`codec=<fingerprint>`).
 * @param key 32 bytes.
 */
export function codecKeyFingerprint(key: Buffer): string {
  return `k${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}

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

/** Whether the codec keys come from the environment (shared by configuration) rather than a generated per-data-dir file. */
export function codecKeysAreExplicit(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.INTEGRATION_AGENT_CODEC_KEYS);
}

/** Loads the deployment's codec keys, creating a key file under `dataDir` on first use (id = the key's fingerprint). */
export function loadCodecKeys(dataDir: string, env: NodeJS.ProcessEnv = process.env): CodecKey[] {
  const fromEnv = env.INTEGRATION_AGENT_CODEC_KEYS;
  if (fromEnv) return parseCodecKeys(fromEnv, 'INTEGRATION_AGENT_CODEC_KEYS');
  const file = join(dataDir, 'codec.keys');
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const key = randomBytes(32);
    try {
      writeFileSync(file, `${codecKeyFingerprint(key)}:${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      // Another process created it first: use theirs.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  return parseCodecKeys(readFileSync(file, 'utf8'), file);
}

/**
 * Whether `address` (`host:port`, `[v6]:port`) names this machine: `localhost`,
 * 127.0.0.0/8 or ::1. Only then can a worker be sure it is the deployment's one host.
 */
export function isLoopbackAddress(address: string): boolean {
  const colon = address.lastIndexOf(':');
  const host = address.startsWith('[') ? address.slice(1, address.indexOf(']')) : colon >= 0 ? address.slice(0, colon) : address;
  const h = host.toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::1' || h === '0:0:0:0:0:0:0:1';
}

/** Thrown when a worker would run on generated keys against a Temporal server other processes may share. */
export class SharedKeysRequiredError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SharedKeysRequiredError';
  }
}

/**
 * Refuses generated keys where more than one host may be at work: a worker
 * pointed at a non-loopback Temporal address must have INTEGRATION_AGENT_CODEC_KEYS
 * and INTEGRATION_AGENT_MASTER_KEY set explicitly (a key generated into one
 * host's data dir is unknown to every other host).
 * @param address the Temporal `host:port` in force.
 * @throws SharedKeysRequiredError naming the missing variables and the fix.
 */
export function assertSharedKeysFor(address: string, env: NodeJS.ProcessEnv = process.env): void {
  if (isLoopbackAddress(address)) return;
  const missing = ['INTEGRATION_AGENT_CODEC_KEYS', 'INTEGRATION_AGENT_MASTER_KEY'].filter((n) => !env[n]);
  if (missing.length === 0) return;
  throw new SharedKeysRequiredError(
    `refusing to start a worker against Temporal at ${address} with generated keys: ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not set, and workers on other hosts would hold other keys (their workflow tasks would fail to decode). ` +
      `Set ${missing.join(' and ')} to the same values on every worker and client: export INTEGRATION_AGENT_CODEC_KEYS="k1:$(openssl rand -base64 32)" INTEGRATION_AGENT_MASTER_KEY="$(openssl rand -base64 32)" (generated keys are only for \`dev\` and a loopback server)`,
  );
}
