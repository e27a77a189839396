/**
 * The managed credential, as probes present it: read CURRENT from the store
 * at each probe (a rotation or a revocation outside the agent is seen by the
 * next probe), and presented as the coordinator presents it on calls
 * (`auth.scheme`: bearer, basic, a custom header, Make's `Token`).
 */
import type { ProbeTarget } from '../../domain/health';
import type { SecretReader } from '../ports';
import { ProbeError } from './errors';

/** The credential read for one probe. `secret` must never leave the probe module. */
export interface ProbeCredential {
  id: string;
  secret: string;
}

/**
 * Reads the CURRENT version of the target's credential.
 * @throws ProbeError (`other`) naming the credential when the store has none, or no store was given.
 */
export async function readCredential(t: ProbeTarget, secrets: SecretReader | undefined): Promise<ProbeCredential | undefined> {
  const c = t.credential;
  if (!c) return undefined;
  if (!secrets) throw new ProbeError('other', `credential "${c.id}": the prober has no credential store (ProbeDeps.secrets)`);
  const secret = await secrets.readSecret(c.id);
  if (secret === undefined) throw new ProbeError('other', `credential "${c.id}" has no CURRENT version in the store: import it (integration-agent credentials import ${c.id}) or rotate it`);
  return { id: c.id, secret };
}

/**
 * The header carrying `secret` for `scheme`, exactly as the coordinator sends
 * it on calls (src/activities/coordinator/coordinator.ts `authFromSecret`):
 * `Authorization: Bearer <secret>`; Basic `username:secret` (the secret alone
 * without a username); a custom header (`x-api-key` by default); `Token <secret>` for Make.
 */
export function authHeader(credential: NonNullable<ProbeTarget['credential']>, secret: string): { name: string; value: string } {
  switch (credential.scheme) {
    case 'basic': {
      const pair = credential.username !== undefined ? `${credential.username}:${secret}` : secret;
      return { name: 'authorization', value: `Basic ${Buffer.from(pair).toString('base64')}` };
    }
    case 'header':
      return { name: (credential.header ?? 'x-api-key').toLowerCase(), value: secret };
    case 'make':
      return { name: 'authorization', value: `Token ${secret}` };
    default:
      return { name: 'authorization', value: `Bearer ${secret}` };
  }
}

/**
 * User and password for a database login from a credential: a JSON
 * `{ "username", "password" }` secret (the format the postgres and redis
 * rotation providers mint), else the secret as the password of
 * `auth.username`, else of `fallbackUser`.
 */
export function databaseLogin(credential: NonNullable<ProbeTarget['credential']>, secret: string, fallbackUser: string | undefined): { username: string | undefined; password: string } {
  if (secret.startsWith('{')) {
    try {
      const v = JSON.parse(secret) as { username?: unknown; password?: unknown };
      if (typeof v.password === 'string') return { username: typeof v.username === 'string' && v.username ? v.username : (credential.username ?? fallbackUser), password: v.password };
    } catch {
      // not JSON: the secret is the password itself
    }
  }
  return { username: credential.username ?? fallbackUser, password: secret };
}

/** The message a rejected credential gets: which one, and what to do. */
export function rejectedMessage(credentialId: string, how: string): string {
  return `credential "${credentialId}" rejected (${how}): if it was revoked or expired outside the agent, run \`integration-agent rotate ${credentialId}\``;
}
