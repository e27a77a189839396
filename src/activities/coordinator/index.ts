/** The API coordinator: see coordinator.ts for the request pipeline and docs/coordinator.md for the policies. */
export { createCoordinator, COORDINATOR_DEFAULTS } from './coordinator';
export type { Coordinator, CoordinatorDeps, CoordinatorRequest, CoordinatorResponse } from './coordinator';
export { CoordinatorError, BODY_EXCERPT_CHARS } from './errors';
export type { CoordinatorErrorInit } from './errors';
export { toApplicationFailure, DEFAULT_BACKOFF, DEFAULT_MAX_RETRY_AFTER_MS } from './failure';
export type { RetryTiming } from './failure';
export { createCoordinatorActivities } from './activities';
export type { CoordinatorActivities, CoordinatorActivityOptions } from './activities';
