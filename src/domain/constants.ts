/** Names shared by workers, workflows and clients. */

/** Default task queue; override with TEMPORAL_TASK_QUEUE. */
export const DEFAULT_TASK_QUEUE = 'integration-agent';

/**
 * Custom search attributes this project upserts (all Keyword). The dev server
 * registers them at start (`--search-attribute Name=Keyword`); on another
 * cluster a worker creates the missing ones at start when the server lets it,
 * else it prints the `temporal operator search-attribute create` commands
 * (src/worker/cluster-check.ts; `integration-agent doctor` reports them).
 */
export const SEARCH_ATTRIBUTES = {
  ServiceId: 'Keyword',
  CredentialId: 'Keyword',
  Phase: 'Keyword',
  BreakerState: 'Keyword',
  HealthStatus: 'Keyword',
} as const;

export type SearchAttributeName = keyof typeof SEARCH_ATTRIBUTES;

/** Workflow ids are meaningful and stable (DESIGN.md). */
export const workflowIds = {
  rotation: (credentialId: string) => `rotation/${credentialId}`,
  breaker: (serviceId: string) => `breaker/${serviceId}`,
  service: (serviceId: string) => `service/${serviceId}`,
  sweep: (at: Date | string) => `sweep/${typeof at === 'string' ? at : at.toISOString()}`,
} as const;
