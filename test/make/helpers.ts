/**
 * Shared set-up of the Make tests: a registry with one `type: make` service
 * pointing at the fake Make server, and the real coordinator as transport.
 */
import { parseRegistry } from '../../src/domain/registry-parse';
import type { Registry } from '../../src/domain/registry';
import { createCoordinator, type Coordinator } from '../../src/activities/coordinator';
import { staticRegistry, type RegistrySource } from '../../src/activities/registry';
import type { SecretReader } from '../../src/activities/ports';
import { coordinatorMakeTransport } from '../../src/activities/make/transport';
import { createMakeClients, type MakeClients } from '../../src/activities/make/clients';
import { MakeOrganizationLimits } from '../../src/activities/make/client';
import type { FakeMake } from '../fixtures/make-server';

/** Registry YAML for the fake: `make-prod` (type make) plus `crm-api` whose key a Make connection holds. */
export function makeRegistryYaml(fake: FakeMake, makeBlock: string, extra = ''): string {
  return `
services:
  - id: crm-api
    type: api
    endpoints: [{ url: http://127.0.0.1:9 }]
  - id: make-prod
    type: make
    endpoints: [{ url: ${fake.apiBase} }]
    credential: make-token
    auth: { scheme: make }
    make:
      zone: ${fake.url}
      organizationId: ${fake.organizationId}
      teamId: ${fake.teamId}
${makeBlock
  .split('\n')
  .map((l) => (l.trim() ? `      ${l}` : l))
  .join('\n')}
${extra}
credentials:
  - { id: make-token, issuer: make-prod }
  - { id: crm-key, issuer: crm-api, consumers: [make-prod], provider: http }
  - { id: other-key, issuer: crm-api, consumers: [make-prod], provider: http }
`;
}

export function registryOf(yaml: string): Registry {
  const r = parseRegistry(yaml, 'test-registry.yaml');
  if (!r.ok) throw new Error(r.problems.map((p) => `${p.path}: ${p.message}`).join('\n'));
  return r.registry;
}

/** A secret reader holding fixed values (the credential store's role in these tests). */
export function fixedSecrets(values: Record<string, string>): SecretReader {
  return { readSecret: async (id) => values[id] };
}

export interface MakeRig {
  registry: RegistrySource;
  coordinator: Coordinator;
  clients: MakeClients;
  close(): Promise<void>;
}

/** Coordinator + Make clients over the fake, with Make's window shortened to the fake's. */
export function makeRig(fake: FakeMake, yaml: string, secrets: SecretReader = fixedSecrets({ 'make-token': fake.token })): MakeRig {
  const registry = staticRegistry(registryOf(yaml));
  const coordinator = createCoordinator({ registry, secrets, reporterId: 'test-make' });
  const clients = createMakeClients({
    registry,
    transportFor: (s) => coordinatorMakeTransport(coordinator, s.id),
    limits: new MakeOrganizationLimits({ windowMs: fake.options.rateWindowMs, marginMs: Math.min(1000, fake.options.rateWindowMs / 2) }),
  });
  return { registry, coordinator, clients, close: () => coordinator.close() };
}
