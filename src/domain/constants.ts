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

/*
 * Search-attribute values are lower_snake_case, all of them: `Phase`
 * (`preflight` ... `completed`), `HealthStatus` (`healthy` ... `unhealthy`)
 * and `BreakerState` (`closed`, `open`, `half_open`, `forced_open`,
 * `disabled`: the state's name in that case, see `breakerStateSearchValue`),
 * so one query style fits every attribute
 * (`BreakerState = "open" OR HealthStatus = "unhealthy"`). The domain keeps
 * the field's names (CLOSED/OPEN/HALF_OPEN) everywhere else.
 */

/** Workflow ids are meaningful and stable (DESIGN.md). */
export const workflowIds = {
  rotation: (credentialId: string) => `rotation/${credentialId}`,
  breaker: (serviceId: string) => `breaker/${serviceId}`,
  service: (serviceId: string) => `service/${serviceId}`,
  sweep: (at: Date | string) => `sweep/${typeof at === 'string' ? at : at.toISOString()}`,
} as const;
