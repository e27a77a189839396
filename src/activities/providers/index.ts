/** The rotation providers by name (`credentials[].provider`, `services[].rotation.provider`). */
import { httpProvider } from './http';
import { postgresProvider } from './postgres';
import { redisProvider } from './redis';
import type { RotationProvider } from './types';

export * from './types';
export { httpProvider } from './http';
export { postgresProvider } from './postgres';
export { redisProvider } from './redis';

/** The built-in providers by name. */
export function builtInProviders(): Record<string, RotationProvider> {
  return { http: httpProvider, postgres: postgresProvider, redis: redisProvider };
}
