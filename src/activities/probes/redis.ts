/**
 * The `redis` probe: `PING` must answer `PONG` (ioredis, as the redis
 * rotation provider uses). The login is the service's credential with
 * `auth: true` (a `{username, password}` secret for an ACL user, or the
 * secret as the password of `auth.username` / `default`), else the URL's
 * user with no password. `rediss://` speaks TLS. A refused login with the
 * managed credential (WRONGPASS, NOAUTH) is `credential_rejected`.
 */
import type { SecureContext } from 'node:tls';
import Redis from 'ioredis';
import type { ProbeObservation, ProbeTarget } from '../../domain/health';
import { databaseLogin, rejectedMessage, type ProbeCredential } from './credentials';
import { classifyProbeError, ProbeError, redact, withDeadline, type ProbeFailure } from './errors';
import { hostPort } from './tcp';
import type { TlsOptionsCache } from './tls-options';

export async function probeRedis(t: ProbeTarget, href: string, credential: ProbeCredential | undefined, tlsOptions: TlsOptionsCache, now: () => number): Promise<ProbeObservation> {
  const startedAt = now();
  const t0 = performance.now();
  const u = new URL(href);
  const { host, port } = hostPort(href, 6379);
  const urlUser = u.username ? decodeURIComponent(u.username) : undefined;
  const db = u.protocol.startsWith('redis') && /^\/\d+$/.test(u.pathname) ? Number(u.pathname.slice(1)) : 0;
  const login = credential && t.credential ? databaseLogin(t.credential, credential.secret, urlUser) : { username: urlUser, password: undefined };
  const secrets = credential ? [credential.secret, ...(login.password ? [login.password] : [])] : [];
  const timeout = t.check.timeout;
  const r = new Redis({
    host,
    port,
    db,
    ...(login.username !== undefined ? { username: login.username } : {}),
    ...(login.password !== undefined ? { password: login.password } : {}),
    ...(u.protocol === 'rediss:' ? { tls: tlsFor(t, host, tlsOptions) } : {}),
    ...(t.check.ipFamily ? { family: t.check.ipFamily } : {}),
    lazyConnect: true,
    connectTimeout: timeout,
    commandTimeout: timeout,
    maxRetriesPerRequest: 0,
    enableReadyCheck: false,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  let lastError: unknown;
  r.on('error', (e) => (lastError = e));
  try {
    const pong = await withDeadline(
      timeout,
      'no answer',
      async () => {
        await r.connect();
        return r.ping();
      },
      () => r.disconnect(),
    );
    if (pong !== 'PONG') throw new ProbeError('protocol', `PING answered ${JSON.stringify(String(pong).slice(0, 40))}`);
    return { startedAt, latencyMs: performance.now() - t0, ...(credential ? { credentialId: credential.id } : {}) };
  } catch (err) {
    // ioredis rejects connect() with a bare "Connection is closed." and reports the cause
    // (ECONNREFUSED, WRONGPASS) on its 'error' event: the cause is the one to judge.
    const error = redisFailure(lastError ?? err, timeout, credential);
    error.message = redact(error.message, secrets);
    return { startedAt, latencyMs: performance.now() - t0, error, ...(credential ? { credentialId: credential.id } : {}) };
  } finally {
    r.disconnect();
  }
}

function redisFailure(err: unknown, timeoutMs: number, credential: ProbeCredential | undefined): ProbeFailure {
  const msg = ((err as { message?: string })?.message ?? String(err)).split('\n')[0]!;
  if (/^(WRONGPASS|NOAUTH|NOPERM)/.test(msg) || /invalid (username-)?password|AUTH failed/i.test(msg)) {
    if (credential) return { kind: 'credential_rejected', message: rejectedMessage(credential.id, `Redis ${msg.split(' ')[0]}`) };
    return { kind: 'status', message: `Redis ${msg.split(' ')[0]}: the server wants a login; to log in with the service's credential set healthCheck.auth: true` };
  }
  if (/Command timed out/i.test(msg)) return { kind: 'timeout', message: `no answer within ${timeoutMs}ms` };
  if (/^(LOADING|BUSY|MASTERDOWN|MISCONF)/.test(msg)) return { kind: 'status', message: `Redis ${msg.slice(0, 120)}` };
  return classifyProbeError(err, timeoutMs);
}

/** TLS options of a `rediss://` probe (the `key` of the option set is not a private key: left out). */
function tlsFor(t: ProbeTarget, host: string, tlsOptions: TlsOptionsCache): { secureContext?: SecureContext; rejectUnauthorized?: false; servername?: string } {
  const { secureContext, rejectUnauthorized, servername } = tlsOptions.connectOptions(t.check, t.check.serverName ?? host);
  return { ...(secureContext ? { secureContext } : {}), ...(rejectUnauthorized === false ? { rejectUnauthorized } : {}), ...(servername ? { servername } : {}) };
}
