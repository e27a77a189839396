/**
 * The `postgres` provider: a PostgreSQL role's password, rotated with the
 * alternating-users strategy (AWS Secrets Manager, "alternating users"): two
 * roles with the same grants; each rotation sets a new password on the role
 * that is not live, so the live one keeps working until every consumer has
 * switched. Revoking a version removes its role's password (PASSWORD NULL) if
 * that password is still the role's.
 *
 * Issuer options (`services[].rotation` of the database service):
 * - `roles`: the two role names, e.g. `[app_blue, app_green]` (must exist);
 * - `adminCredential`: the store credential whose CURRENT value is the admin's password;
 * - `adminUser` (default `postgres`);
 * - `url`: `postgres://host:port/database`, else the first endpoint (`tcp://host:port`) and database `postgres`.
 *
 * Secret value: JSON `{ "username", "password" }`. Consumers install it through
 * their own provider (usually `http`); this provider only mints and revokes.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Client, type ClientConfig } from 'pg';
import type { ServiceSpec } from '../../domain/registry';
import { formatUserPassword, parseUserPassword } from './secret-format';
import { issuerOnly, ProviderError, stringOption, type ProviderContext, type RotationProvider } from './types';

/** SQLSTATEs: invalid_password, invalid_authorization_specification. */
const AUTH_FAILED = new Set(['28P01', '28000']);

function target(service: ServiceSpec): { host: string; port: number; database: string } {
  const raw = (service.rotation?.url as string | undefined) ?? service.endpoints[0]!.url;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ProviderError(`services.${service.id}.rotation.url: not a URL: ${JSON.stringify(raw)}`, false);
  }
  const database = u.protocol === 'postgres:' || u.protocol === 'postgresql:' ? decodeURIComponent(u.pathname.replace(/^\//, '')) || 'postgres' : 'postgres';
  return { host: u.hostname, port: Number(u.port || 5432), database };
}

function roles(service: ServiceSpec): [string, string] {
  const r = service.rotation?.roles;
  if (!Array.isArray(r) || r.length !== 2 || !r.every((x) => typeof x === 'string' && x !== '') || r[0] === r[1]) {
    throw new ProviderError(`services.${service.id}.rotation.roles: expected two different role names (alternating users), got ${JSON.stringify(r)}`, false);
  }
  return [r[0], r[1]];
}

async function connect(ctx: ProviderContext, cfg: Partial<ClientConfig>): Promise<Client> {
  const t = target(ctx.service);
  const c = new Client({ host: t.host, port: t.port, database: t.database, connectionTimeoutMillis: ctx.timeoutMs, statement_timeout: ctx.timeoutMs, ...cfg });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

async function asAdmin<T>(ctx: ProviderContext, what: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const credId = stringOption(ctx.service, 'adminCredential');
  const password = await ctx.secrets.readSecret(credId);
  if (password === undefined) throw new ProviderError(`${what}: admin credential ${credId} has no CURRENT version in the store; import it with \`integration-agent credentials import ${credId}\``, false);
  let c: Client | undefined;
  try {
    c = await connect(ctx, { user: stringOption(ctx.service, 'adminUser', 'postgres'), password });
    return await fn(c);
  } catch (err) {
    if (err instanceof ProviderError) throw err;
    throw pgError(what, err);
  } finally {
    await c?.end().catch(() => undefined);
  }
}

/** Maps a pg error to a ProviderError: auth and SQL errors are final, connection trouble retries. Never includes SQL text (it may hold a password). */
function pgError(what: string, err: unknown): ProviderError {
  const e = err as { code?: string; message?: string };
  const retryable = !e.code || /^(08|53|57P)/.test(e.code) || ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT'].includes(e.code);
  const msg = (e.message ?? 'error').split('\n')[0]!.replace(/PASSWORD\s+'[^']*'/gi, "PASSWORD '…'");
  return new ProviderError(`${what}: PostgreSQL ${e.code ?? ''} ${msg}`.replace(/\s+/g, ' ').trim(), retryable);
}

export const postgresProvider: RotationProvider = {
  name: 'postgres',
  // By the password itself: a version imported under a local id is revoked all the same.
  revokesBy: 'secret',

  async mint(ctx, req) {
    const what = `mint ${ctx.credential.id} at ${ctx.service.id}`;
    const [a, b] = roles(ctx.service);
    const live = req.currentSecret ? parseUserPassword(req.currentSecret, what).username : undefined;
    const username = live === a ? b : a;
    const password = randomBytes(24).toString('base64url');
    await asAdmin(ctx, what, async (c) => {
      const exists = await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [username]);
      if (exists.rowCount === 0) throw new ProviderError(`${what}: role ${username} does not exist; create both roles of rotation.roles with the same grants`, false);
      await c.query(`ALTER ROLE ${c.escapeIdentifier(username)} WITH LOGIN PASSWORD ${c.escapeLiteral(password)}`);
    });
    return { versionId: `v-${randomUUID().slice(0, 12)}`, secret: formatUserPassword({ username, password }) };
  },

  ...issuerOnly('postgres', 'the database'),

  async revoke(ctx, req) {
    const what = `revoke ${ctx.credential.id} ${req.versionId} at ${ctx.service.id}`;
    if (req.secret === undefined) return; // nothing stored for it: nothing we can still revoke
    const { username, password } = parseUserPassword(req.secret, what);
    // Only if that password still logs in: the role may already carry a newer one.
    let stillValid = false;
    let probe: Client | undefined;
    try {
      probe = await connect(ctx, { user: username, password });
      stillValid = true;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (!code || !AUTH_FAILED.has(code)) throw pgError(what, err);
    } finally {
      await probe?.end().catch(() => undefined);
    }
    if (!stillValid) return;
    await asAdmin(ctx, what, async (c) => {
      await c.query(`ALTER ROLE ${c.escapeIdentifier(username)} WITH PASSWORD NULL`);
    });
  },
};
