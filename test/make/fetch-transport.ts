/**
 * A minimal MakeTransport over Node's fetch, for testing the Make client's own
 * logic (pagination, errors, the organization limit) in isolation from the
 * coordinator. Product code uses the coordinator transport.
 */
import type { MakeTransport } from '../../src/activities/make/client';

export function fetchTransport(apiBase: string, token: string): MakeTransport {
  return {
    async send(call, signal) {
      const res = await fetch(apiBase + call.path, {
        method: call.method,
        headers: {
          authorization: `Token ${token}`,
          ...(call.json !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(call.idempotencyKey ? { 'idempotency-key': call.idempotencyKey } : {}),
        },
        body: call.json !== undefined ? JSON.stringify(call.json) : undefined,
        signal,
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        /* text body */
      }
      const headers: Record<string, string> = {};
      res.headers.forEach((v, k) => (headers[k] = v));
      return { status: res.status, body, headers };
    },
  };
}
