/** A validated registry for probe tests, with credentials (issued by a service that is not probed). */
import { parseRegistry } from '../../../src/domain/registry-parse';
import { probeTarget, type ProbeTarget } from '../../../src/domain/health';

/**
 * The probe targets of `services` (those with a healthCheck), after full
 * registry validation; each credential named by a service is declared,
 * issued by an extra unprobed `issuer` service.
 */
export function targetsOf(services: Array<Record<string, unknown>>): ProbeTarget[] {
  const creds = [...new Set(services.map((s) => s.credential).filter((c): c is string => typeof c === 'string'))];
  const doc = {
    services: [...services, ...(creds.length ? [{ id: 'issuer', type: 'api', endpoints: [{ url: 'http://127.0.0.1:9' }] }] : [])],
    credentials: creds.map((id) => ({ id, issuer: 'issuer' })),
  };
  const parsed = parseRegistry(JSON.stringify(doc), 'test-registry.json');
  if (!parsed.ok) throw new Error(parsed.problems.map((p) => `${p.path}: ${p.message}`).join('\n'));
  return parsed.registry.services.filter((s) => s.healthCheck).map(probeTarget);
}
