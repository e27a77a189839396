/**
 * Make.com activities: health checks, scenario runs, webhook delivery and
 * dead letters, composed from explicit dependencies. The `make` rotation
 * provider is built from the same clients: `createMakeProvider(clients)`.
 */
import { createMakeClients, type MakeDeps } from './clients';
import { createMakeHealthActivities } from './health';
import { createMakeScenarioActivities } from './scenarios';
import { createWebhookActivities } from './webhooks';
import type { DeadLetterStore } from '../../state/types';

export { MakeApiError, MakeClient, MakeOrganizationLimits, MakeRateLimitWaitError } from './client';
export type { MakeCall, MakeReply, MakeTransport } from './client';
export { createMakeClients, makeConfigOf } from './clients';
export type { MakeClients, MakeDeps, MakeService } from './clients';
export { coordinatorMakeTransport } from './transport';
export { createMakeProvider } from './provider';
export type { MakeRotationProvider } from './provider';
export type { MakeHealthInput, MakeHealthReport } from './health';
export type { PostWebhookInput, PostWebhookResult, RecordDeadLetterInput, WebhookDeadLetter } from './webhooks';

export interface MakeActivityDeps extends MakeDeps {
  /** Webhook dead letters (the state backend's `deadLetters`). */
  deadLetters: DeadLetterStore;
}

/**
 * @param clients the Make clients; pass the same instance to `createMakeProvider`
 *   so the activities and the rotation provider share one per-organization limit.
 * @returns the activities `checkMakeService`, `probeMakeServices`,
 *   `startMakeScenarioRun`, `getMakeScenarioExecution`, `postWebhook`,
 *   `resolveMakeHookUrls`, `recordWebhookDeadLetter`, `resolveWebhookDeadLetter`,
 *   `listWebhookDeadLetters`, `getWebhookDeadLetter`.
 */
export function createMakeActivities(deps: MakeActivityDeps, clients = createMakeClients(deps)) {
  return {
    ...createMakeHealthActivities(deps, clients),
    ...createMakeScenarioActivities(clients),
    ...createWebhookActivities({ deadLetters: deps.deadLetters, clients }),
  };
}

export type MakeActivities = ReturnType<typeof createMakeActivities>;
