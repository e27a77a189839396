/**
 * Health of a `type: make` service, checked through the Make API:
 *
 * - token: `GET /users/me` (a 401/403 makes the whole service unhealthy: nothing else can be read);
 * - organization: `GET /organizations/{id}`: paused (`isPaused`) is unhealthy,
 *   operations used (`operations`) near or at the limit (`license.operations`) degraded;
 * - connections: `GET /connections/{id}` (`expire`: passed is unhealthy, within
 *   `make.connectionExpiryWarning` degraded) and `POST /connections/{id}/test`
 *   (`verified: false` is unhealthy);
 * - scenarios: `GET /scenarios/{id}` (active, valid, incomplete executions
 *   `dlqCount`) and `GET /scenarios/{id}/logs` (recent executions),
 *   `impacted` when a registry service one of its connections stands for is unhealthy;
 * - hooks: `GET /hooks/{id}` (enabled, not gone, queue not full) and a TCP
 *   connect to the hook's address (reachable) — never a request to the hook,
 *   which would start the scenario.
 *
 * The result carries a {@link ProbeResult} so the health sweep can treat the
 * service like any other, plus the per-resource detail.
 */
import { connect as netConnect } from 'node:net';
import { Context } from '@temporalio/activity';
import pLimit from 'p-limit';
import type { ProbeFailureKind, ProbeResult } from '../../domain/health';
import {
  evaluateConnection,
  evaluateHook,
  evaluateOrganization,
  evaluateScenario,
  overallMakeStatus,
  type MakeHealthStatus,
  type MakeHook,
  type MakeResourceHealth,
  type MakeScenario,
  type MakeScenarioLog,
} from '../../domain/make';
import { MakeApiError } from './client';
import type { MakeClients, MakeDeps } from './clients';

export interface MakeHealthInput {
  serviceId: string;
  /** Registry services the sweep found unhealthy (for scenario impact). */
  unhealthyServices?: string[];
}

/** The health of one Make service (JSON-serialisable; no secrets). */
export interface MakeHealthReport {
  serviceId: string;
  status: MakeHealthStatus;
  /** The same facts as a probe result, for the sweep. */
  probe: ProbeResult;
  /** One entry per checked resource: token, organization, connections, scenarios, hooks. */
  parts: MakeResourceHealth[];
}

const PROBE_KINDS: ReadonlySet<string> = new Set(['timeout', 'connection_refused', 'dns', 'tls', 'status', 'body', 'slow', 'other']);

/** Short reason for a failed call (Make's words, or the transport failure). */
function reasonOf(err: unknown): { reason: string; kind: ProbeFailureKind; notFound: boolean; definite: boolean } {
  if (err instanceof MakeApiError) {
    const words = err.info.detail ?? err.info.message ?? `HTTP ${err.info.status}`;
    return { reason: `${err.info.status} ${words}`, kind: 'status', notFound: err.info.status === 404, definite: !err.retryable };
  }
  const e = err as { kind?: string; message?: string };
  const kind = (e?.kind && PROBE_KINDS.has(e.kind) ? e.kind : 'other') as ProbeFailureKind;
  return { reason: String(e?.message ?? err).slice(0, 200), kind, notFound: false, definite: false };
}

function heartbeat(detail?: unknown): void {
  try {
    Context.current().heartbeat(detail);
  } catch {
    /* called outside an activity (tests, tools) */
  }
}

/**
 * True when a TCP connection to the URL's host and port opens within `timeoutMs`.
 * Undefined when the URL is missing or not http(s).
 */
export function addressReachable(url: string | undefined, timeoutMs: number): Promise<boolean | undefined> {
  if (!url) return Promise.resolve(undefined);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return Promise.resolve(undefined);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return Promise.resolve(undefined);
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  return new Promise((resolve) => {
    const socket = netConnect({ host: u.hostname.replace(/^\[|\]$/g, ''), port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

const VERDICT: Record<MakeHealthStatus, ProbeResult['verdict']> = {
  healthy: 'pass',
  degraded: 'warn',
  impacted: 'warn',
  unhealthy: 'fail',
  unknown: 'inconclusive',
};

export function createMakeHealthActivities(deps: Pick<MakeDeps, 'hookConnectTimeoutMs'>, clients: MakeClients) {
  const hookTimeoutMs = deps.hookConnectTimeoutMs ?? 3_000;
  if (!Number.isFinite(hookTimeoutMs) || hookTimeoutMs <= 0) throw new RangeError(`invalid hookConnectTimeoutMs ${hookTimeoutMs}: must be > 0`);

  const activities = {
    /**
     * Checks a Make service's token, connections, scenarios and hooks.
     * @returns the report; never throws for an unhealthy Make (that is a result), only for a registry error (non-retryable).
     */
    async checkMakeService(input: MakeHealthInput): Promise<MakeHealthReport> {
      const startedAt = Date.now();
      const t0 = performance.now();
      const signal = (() => {
        try {
          return Context.current().cancellationSignal;
        } catch {
          return undefined;
        }
      })();
      const { config, client } = await clients.forService(input.serviceId, signal);
      const parts: MakeResourceHealth[] = [];
      let firstFailure: { kind: ProbeFailureKind; status?: number } | undefined;

      const finish = (): MakeHealthReport => {
        const status = overallMakeStatus(parts);
        const bad = parts.filter((p) => p.status !== 'healthy');
        const detail = bad.length ? bad.map((p) => `${p.kind} ${p.id}${p.name ? ` (${p.name})` : ''}: ${p.status}${p.reason ? ` — ${p.reason}` : ''}`).join('; ').slice(0, 500) : undefined;
        const probe: ProbeResult = { serviceId: input.serviceId, verdict: VERDICT[status], latencyMs: performance.now() - t0, startedAt };
        if (detail) probe.detail = detail;
        if (status === 'unhealthy' && firstFailure) {
          probe.failureKind = firstFailure.kind;
          if (firstFailure.status !== undefined) probe.status = firstFailure.status;
        }
        return { serviceId: input.serviceId, status, probe, parts };
      };

      // Token first: when it fails nothing else can be read.
      try {
        const me = await client.me(signal);
        parts.push({ kind: 'token', id: 'users/me', name: me.name, status: 'healthy' });
      } catch (err) {
        const r = reasonOf(err);
        firstFailure = { kind: r.kind, status: err instanceof MakeApiError ? err.info.status : undefined };
        parts.push({ kind: 'token', id: 'users/me', status: 'unhealthy', reason: `token check failed: ${r.reason}` });
        return finish();
      }
      heartbeat('token');

      const limit = pLimit(4);
      const unhealthy = new Set(input.unhealthyServices ?? []);

      const organizationCheck = limit(async (): Promise<MakeResourceHealth> => {
        try {
          return evaluateOrganization(await client.organization(signal), { operationsWarningPercent: config.operationsWarningPercent });
        } catch (err) {
          const r = reasonOf(err);
          firstFailure ??= { kind: r.kind, status: err instanceof MakeApiError ? err.info.status : undefined };
          return { kind: 'organization', id: String(config.organizationId), status: r.definite ? 'unhealthy' : 'unknown', reason: r.notFound ? `organization ${config.organizationId} not found` : r.reason };
        }
      });

      const connectionChecks = config.connections.map((c) =>
        limit(async (): Promise<MakeResourceHealth> => {
          try {
            const { expire } = await client.connection(c.id, signal);
            const verified = await client.testConnection(c.id, signal);
            return evaluateConnection(c, { verified, expire }, Date.now(), config.connectionExpiryWarning);
          } catch (err) {
            const r = reasonOf(err);
            firstFailure ??= { kind: r.kind, status: err instanceof MakeApiError ? err.info.status : undefined };
            return { kind: 'connection', id: String(c.id), name: c.name, status: r.definite ? 'unhealthy' : 'unknown', reason: r.notFound ? `connection ${c.id} not found` : r.reason };
          }
        }),
      );

      const scenarioChecks = config.scenarios.map((s) =>
        limit(async (): Promise<MakeResourceHealth> => {
          let scenario: MakeScenario | undefined;
          let logs: MakeScenarioLog[] = [];
          try {
            scenario = await client.scenario(s.id, signal);
            logs = await client.scenarioLogs(s.id, config.recentExecutions, signal);
          } catch (err) {
            const r = reasonOf(err);
            if (!r.notFound) return { kind: 'scenario', id: String(s.id), name: s.name, status: r.definite ? 'unhealthy' : 'unknown', reason: r.reason };
          }
          return evaluateScenario(s, scenario, logs, config.connections, unhealthy);
        }),
      );

      const hookChecks = config.hooks.map((h) =>
        limit(async (): Promise<MakeResourceHealth> => {
          let hook: MakeHook | undefined;
          try {
            hook = await client.hook(h.id, signal);
          } catch (err) {
            const r = reasonOf(err);
            if (!r.notFound) return { kind: 'hook', id: String(h.id), name: h.name, status: r.definite ? 'unhealthy' : 'unknown', reason: r.reason };
          }
          const reachable = hook && hook.enabled && !hook.gone ? await addressReachable(hook.url, hookTimeoutMs) : undefined;
          return evaluateHook(h.id, hook, reachable);
        }),
      );

      for (const p of await Promise.all([organizationCheck, ...connectionChecks, ...scenarioChecks, ...hookChecks])) {
        parts.push(p);
        heartbeat(p.kind);
      }
      return finish();
    },
  };

  return {
    ...activities,
    /**
     * The health sweep's view: one {@link ProbeResult} per Make service, in
     * the order given, checked with bounded concurrency (2 at once: Make's limit
     * is per organization). A service whose check cannot run (not a make
     * service, no make block) gets an `inconclusive` result naming why — never healthy.
     * @param input.unhealthyServices services the sweep already found unhealthy (scenario impact).
     */
    async probeMakeServices(input: { serviceIds: string[]; unhealthyServices?: string[] }): Promise<ProbeResult[]> {
      const limit = pLimit(2);
      return Promise.all(
        input.serviceIds.map((serviceId) =>
          limit(async (): Promise<ProbeResult> => {
            const startedAt = Date.now();
            try {
              const r = await activities.checkMakeService({ serviceId, unhealthyServices: input.unhealthyServices });
              heartbeat(serviceId);
              return r.probe;
            } catch (err) {
              return { serviceId, verdict: 'inconclusive', latencyMs: 0, startedAt, detail: `Make check could not run: ${(err as Error).message}`.slice(0, 300) };
            }
          }),
        ),
      );
    },
  };
}
