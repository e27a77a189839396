/**
 * The `redis` provider: the password of a Redis ACL user (Redis 6+ ACLs). A
 * user may hold several passwords at once, so minting adds the new password
 * (`ACL SETUSER user on >new`) and the old one stays valid through the grace
 * period; revoking removes exactly that password by its SHA-256
 * (`ACL SETUSER user !<hash>`), which is idempotent when it is already gone.
 *
 * Issuer options (`services[].rotation` of the Redis service):
 * - `user`: the ACL user rotated;
 * - `rules`: ACL rules given when the user is created (default `~* &* +@all`);
 * - `adminCredential`: store credential whose CURRENT value is the admin password (omit for no AUTH);
 * - `adminUser` (default `default`);
 * - `url`: `redis://host:port`, else the first endpoint.
 *
 * Secret value: JSON `{ "username", "password" }`.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import type { ServiceSpec } from '../../domain/registry';
import { formatUserPassword, parseUserPassword } from './secret-format';
import { issuerOnly, ProviderError, stringOption, type ProviderContext, type RotationProvider } from './types';

function target(service: ServiceSpec): { host: string; port: number } {
  const raw = (service.rotation?.url as string | undefined) ?? service.endpoints[0]!.url;
  try {
    const u = new URL(raw);
    return { host: u.hostname, port: Number(u.port || 6379) };
  } catch {
    throw new ProviderError(`services.${service.id}.rotation.url: not a URL: ${JSON.stringify(raw)}`, false);
  }
}

async function asAdmin<T>(ctx: ProviderContext, what: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const credId = ctx.service.rotation?.adminCredential as string | undefined;
  let password: string | undefined;
  if (credId !== undefined) {
    password = await ctx.secrets.readSecret(credId);
    if (password === undefined) throw new ProviderError(`${what}: admin credential ${credId} has no CURRENT version in the store; import it with \`integration-agent credentials import ${credId}\``, false);
  }
  const t = target(ctx.service);
  const r = new Redis({
    host: t.host,
    port: t.port,
    username: credId !== undefined ? stringOption(ctx.service, 'adminUser', 'default') : undefined,
    password,
    lazyConnect: true,
    connectTimeout: ctx.timeoutMs,
    commandTimeout: ctx.timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return await fn(r);
  } catch (err) {
    if (err instanceof ProviderError) throw err;
    const e = err as { message?: string; code?: string };
    const msg = (e.message ?? 'error').split('\n')[0]!;
    const auth = /WRONGPASS|NOAUTH|NOPERM/.test(msg);
    throw new ProviderError(`${what}: Redis ${msg.replace(/[>!<]\S+/g, '…')}`, !auth);
  } finally {
    r.disconnect();
  }
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** The password hashes of an ACL user, or undefined when it does not exist (`ACL GETUSER`). */
async function passwordHashes(r: Redis, user: string): Promise<string[] | undefined> {
  const reply = (await r.call('ACL', 'GETUSER', user)) as unknown[] | null;
  if (!reply) return undefined;
  for (let i = 0; i + 1 < reply.length; i += 2) if (String(reply[i]) === 'passwords') return (reply[i + 1] as unknown[]).map(String);
  return [];
}

export const redisProvider: RotationProvider = {
  name: 'redis',
  // By the password's hash: a version imported under a local id is revoked all the same.
  revokesBy: 'secret',

  async mint(ctx) {
    const what = `mint ${ctx.credential.id} at ${ctx.service.id}`;
    const username = stringOption(ctx.service, 'user');
    const rules = String(ctx.service.rotation?.rules ?? '~* &* +@all').split(/\s+/).filter(Boolean);
    const password = randomBytes(24).toString('base64url');
    await asAdmin(ctx, what, async (r) => {
      const existing = await passwordHashes(r, username);
      await r.call('ACL', 'SETUSER', username, 'on', `#${sha256(password)}`, ...(existing === undefined ? rules : []));
    });
    return { versionId: `v-${randomUUID().slice(0, 12)}`, secret: formatUserPassword({ username, password }) };
  },

  ...issuerOnly('redis', 'the server'),

  async revoke(ctx, req) {
    const what = `revoke ${ctx.credential.id} ${req.versionId} at ${ctx.service.id}`;
    if (req.secret === undefined) return;
    const { username, password } = parseUserPassword(req.secret, what);
    const hash = sha256(password);
    await asAdmin(ctx, what, async (r) => {
      const hashes = await passwordHashes(r, username);
      if (!hashes || !hashes.includes(hash)) return;
      await r.call('ACL', 'SETUSER', username, `!${hash}`);
    });
  },
};
