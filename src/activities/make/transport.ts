/**
 * The Make client's transport in the worker: the API coordinator. The
 * coordinator sends `Authorization: Token <token>` (registry `auth.scheme:
 * make`, token from the credential store), applies the service's own limits,
 * breaker and endpoint pool, and reports every call's outcome.
 */
import type { Coordinator } from '../coordinator';
import type { MakeTransport } from './client';

/**
 * A {@link MakeTransport} over `coordinator.request(serviceId, ...)`. HTTP
 * error statuses resolve (the Make client reads Make's error body in full);
 * transport failures reject with the coordinator's `CoordinatorError`.
 * Responses are never cached: health and run state must be fresh.
 */
export function coordinatorMakeTransport(coordinator: Pick<Coordinator, 'request'>, serviceId: string): MakeTransport {
  return {
    async send(call, signal) {
      const r = await coordinator.request(
        serviceId,
        { method: call.method, path: call.path, json: call.json, idempotencyKey: call.idempotencyKey, timeoutMs: call.timeoutMs, cache: false, throwOnStatus: false },
        signal,
      );
      return { status: r.status, body: r.json ?? r.body, headers: r.headers };
    },
  };
}
