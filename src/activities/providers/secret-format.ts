/**
 * The value format of database-style credentials (postgres, redis): a JSON
 * document `{ "username": "...", "password": "..." }`, so a consumer learns
 * which user to log in as (alternating users) from the secret itself.
 */
import { ProviderError } from './types';

export interface UserPassword {
  username: string;
  password: string;
}

/** Parses a `{ username, password }` secret. @throws ProviderError (non-retryable) naming `what`, never echoing the value. */
export function parseUserPassword(secret: string, what: string): UserPassword {
  let v: unknown;
  try {
    v = JSON.parse(secret);
  } catch {
    throw new ProviderError(`${what}: the stored secret is not JSON {"username","password"}; import it in that form`, false);
  }
  const o = v as Partial<UserPassword>;
  if (typeof o?.username !== 'string' || o.username === '' || typeof o.password !== 'string' || o.password === '') {
    throw new ProviderError(`${what}: the stored secret must be JSON with non-empty "username" and "password"`, false);
  }
  return { username: o.username, password: o.password };
}

export const formatUserPassword = (u: UserPassword): string => JSON.stringify({ username: u.username, password: u.password });
