/**
 * The `postgres` probe: log in and run `SELECT 1` (the pg client, as the
 * postgres rotation provider uses). The login is the service's credential
 * with `auth: true` (a `{username, password}` secret, or the secret as the
 * password of `auth.username`), else the URL's user (default `postgres`)
 * with no password (trust or peer setups). Database: the URL's path, else
 * `postgres`. A rejected login with the managed credential is
 * `credential_rejected`; a server that answers with an error (starting up,
 * too many connections) is `status` with its SQLSTATE.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { Client } from 'pg';
import type { ProbeObservation, ProbeTarget } from '../../domain/health';
import { databaseLogin, rejectedMessage, type ProbeCredential } from './credentials';
import { classifyProbeError, ProbeError, redact, withDeadline, type ProbeFailure } from './errors';
import { hostPort } from './tcp';

/** SQLSTATEs of a refused login: invalid_password, invalid_authorization_specification. */
const AUTH_FAILED = new Set(['28P01', '28000']);

export async function probePostgres(t: ProbeTarget, href: string, credential: ProbeCredential | undefined, now: () => number): Promise<ProbeObservation> {
  const startedAt = now();
  const t0 = performance.now();
  const u = new URL(href);
  const { host, port } = hostPort(href, 5432);
  const urlUser = u.username ? decodeURIComponent(u.username) : undefined;
  const database = (u.protocol === 'postgres:' || u.protocol === 'postgresql:') && u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : 'postgres';
  const login = credential && t.credential ? databaseLogin(t.credential, credential.secret, urlUser) : { username: urlUser, password: undefined };
  const user = login.username ?? 'postgres';
  const secrets = credential ? [credential.secret, ...(login.password ? [login.password] : [])] : [];
  const timeout = t.check.timeout;
  // pg dials the name it is given: an IP family is honoured by dialling that family's address.
  const dial = t.check.ipFamily && !isIP(host) ? await lookup(host, { family: t.check.ipFamily }).then((a) => a.address, () => host) : host;
  const client = new Client({
    host: dial,
    port,
    database,
    user,
    ...(login.password !== undefined ? { password: login.password } : {}),
    connectionTimeoutMillis: timeout,
    statement_timeout: timeout,
    query_timeout: timeout,
    application_name: 'integration-agent-probe',
  });
  client.on('error', () => undefined);
  try {
    const rows = await withDeadline(
      timeout,
      'no answer',
      async () => {
        await client.connect();
        return (await client.query<{ ok: number }>('SELECT 1 AS ok')).rows;
      },
      () => void client.end().catch(() => undefined),
    );
    if (rows[0]?.ok !== 1) throw new ProbeError('protocol', `SELECT 1 returned ${JSON.stringify(rows[0] ?? null)}`);
    return { startedAt, latencyMs: performance.now() - t0, ...(credential ? { credentialId: credential.id } : {}) };
  } catch (err) {
    const error = pgFailure(err, timeout, credential, user);
    error.message = redact(error.message, secrets);
    return { startedAt, latencyMs: performance.now() - t0, error, ...(credential ? { credentialId: credential.id } : {}) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

function pgFailure(err: unknown, timeoutMs: number, credential: ProbeCredential | undefined, user: string): ProbeFailure {
  const e = err as { code?: string; message?: string };
  const msg = (e?.message ?? String(err)).split('\n')[0]!;
  if (e?.code && AUTH_FAILED.has(e.code)) {
    if (credential) return { kind: 'credential_rejected', message: rejectedMessage(credential.id, `PostgreSQL ${e.code} for user "${user}"`) };
    return { kind: 'status', message: `PostgreSQL ${e.code}: login as "${user}" refused; to log in with the service's credential set healthCheck.auth: true` };
  }
  if (/client password must be a string|password authentication|SASL/i.test(msg) && !e?.code) {
    // pg refuses a password-based login without a password before sending anything.
    return { kind: 'status', message: `PostgreSQL wants a password for "${user}"; to log in with the service's credential set healthCheck.auth: true` };
  }
  if (e?.code && /^[0-9A-Z]{5}$/.test(e.code)) return { kind: 'status', message: `PostgreSQL ${e.code}: ${msg}` };
  if (/timeout/i.test(msg) && !(err instanceof ProbeError)) return { kind: 'timeout', message: `no answer within ${timeoutMs}ms` };
  if (/Connection terminated|server closed the connection/i.test(msg)) return { kind: 'protocol', message: `PostgreSQL: ${msg}` };
  return classifyProbeError(err, timeoutMs);
}
