/** The rotation providers by name (`credentials[].provider`, `services[].rotation.provider`). */
import { httpProvider } from './http';
import type { RotationProvider } from './types';

export * from './types';
export { httpProvider } from './http';

/** The built-in providers by name. */
export function builtInProviders(): Record<string, RotationProvider> {
  return { http: httpProvider };
}
