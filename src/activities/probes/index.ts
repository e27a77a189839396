/**
 * Probe activities: one module per check type (http, tcp, dns, tls, grpc,
 * postgres, redis), each turning a target into a `ProbeObservation` on the
 * wire; the judgment is `evaluateProbe` in src/domain/health.ts. A service
 * with several endpoints has each probed (at once) and the results combined
 * (`combineEndpointResults`: "2/3 endpoints up" is degraded, none up is a failure).
 *
 * Secrets: a probe with `auth: true` reads the service's CURRENT credential
 * from the store at each probe; the secret stays inside the probe module
 * (results carry the credential id only, error messages are redacted).
 */
import { Context } from '@temporalio/activity';
import pLimit from 'p-limit';
import { combineEndpointResults, evaluateProbe, inMaintenance, type ProbeObservation, type ProbeResult, type ProbeTarget } from '../../domain/health';
import type { SecretReader } from '../ports';
import { readCredential } from './credentials';
import { probeDns } from './dns';
import { classifyProbeError } from './errors';
import { probeGrpc } from './grpc';
import { createHttpProber } from './http';
import { probePostgres } from './postgres';
import { probeRedis } from './redis';
import { probeTcp } from './tcp';
import { probeTls } from './tls';
import { createTlsOptions } from './tls-options';

export { classifyProbeError } from './errors';

export interface ProbeDeps {
  /** Extra trusted CA certificates (PEM) for probes speaking TLS, e.g. a private CA; the system roots stay trusted. */
  ca?: string | string[];
  /** A PEM file of CAs every TLS probe trusts too (the worker passes `INTEGRATION_AGENT_PROBE_CA_FILE`); read when it changes. */
  caFile?: string;
  /** The credential store: `auth: true` probes read the service's CURRENT credential from it. */
  secrets?: SecretReader;
  /** Clock, epoch ms (tests may shift it); default Date.now. */
  now?: () => number;
  /** Largest body read for body rules, bytes; default 1 MiB. */
  maxBodyBytes?: number;
  /** Idle keep-alive connections close after this long, ms; default 4000 (shorter than a sweep interval). */
  keepAliveTimeoutMs?: number;
  /**
   * Told the origins of a service's endpoints a probe found down (when it
   * probes the endpoints, not a `healthCheck.url`): the worker passes the
   * coordinator's load balancer, whose passive view then skips them.
   */
  onEndpointsDown?: (serviceId: string, origins: string[]) => void;
  /**
   * Where each probe connects instead of the URL it was given. A fault
   * injection seam, not a feature: tests give one worker of two
   * `() => 'http://127.0.0.1:<closed port>'` so that its probes meet a real
   * connection refusal, as a prober whose own network is broken does
   * (test/health/prober.test.ts). Unset in production.
   */
  route?: (href: string) => string;
  /**
   * Judges a batch of results before `probeServices` returns them: the
   * worker passes its `ProberHealth.judge` (src/activities/prober-health.ts),
   * which turns them inconclusive while this process's network is down.
   */
  judge?: (results: ProbeResult[]) => Promise<ProbeResult[]>;
}

/** Input of {@link createProbeActivities}'s `probeServices`. */
export interface ProbeBatchInput {
  targets: ProbeTarget[];
  /** Probes in flight at once inside this batch; default all of them. */
  concurrency?: number;
}

/** The probing engine without Temporal: {@link createProbeActivities} and the prober's canaries share it. */
export interface Prober {
  /** Probes every endpoint of one target and judges it (`evaluateProbe`); never throws. */
  probeOne(t: ProbeTarget): Promise<ProbeResult>;
}

/** Builds the probing engine (one keep-alive pool, one TLS context per set of CAs). */
export function createProber(deps: ProbeDeps = {}): Prober {
  const now = deps.now ?? Date.now;
  const extraCa = deps.ca === undefined ? [] : Array.isArray(deps.ca) ? deps.ca : [deps.ca];
  const tlsOptions = createTlsOptions(extraCa, deps.caFile);
  const http = createHttpProber({ tls: tlsOptions, maxBodyBytes: deps.maxBodyBytes ?? 1 << 20, keepAliveTimeoutMs: deps.keepAliveTimeoutMs ?? 4_000, now });

  /** Probes one endpoint of `t`; never throws. */
  async function observe(t: ProbeTarget, given: string): Promise<ProbeObservation> {
    const href = deps.route ? deps.route(given) : given;
    try {
      const credential = await readCredential(t, deps.secrets);
      switch (t.check.type) {
        case 'tcp':
          return await probeTcp(t, href, now);
        case 'dns':
          return await probeDns(t, href, now);
        case 'tls':
          return await probeTls(t, href, tlsOptions, now);
        case 'grpc':
          return await probeGrpc(t, href, credential, tlsOptions, now);
        case 'postgres':
          return await probePostgres(t, href, credential, now);
        case 'redis':
          return await probeRedis(t, href, credential, tlsOptions, now);
        default:
          return href.startsWith('tcp:') ? await probeTcp(t, href, now) : await http.probe(t, href, credential);
      }
    } catch (err) {
      return { startedAt: now(), latencyMs: 0, error: classifyProbeError(err, t.check.timeout) };
    }
  }

  /** Probes every endpoint of one target and judges it; never throws. */
  async function probeOne(t: ProbeTarget): Promise<ProbeResult> {
    const urls = t.urls ?? [t.url];
    const results = await Promise.all(
      urls.map(async (href) => {
        const obs = await observe(t, href);
        const r = evaluateProbe(t.id, t.check, obs, now());
        return r;
      }),
    );
    const result = combineEndpointResults(results, urls);
    if (deps.onEndpointsDown && t.check.url === undefined && t.check.type === 'http') {
      const down = results.flatMap((r, i) => (r.verdict === 'fail' && r.failureKind !== 'credential_rejected' ? [new URL(urls[i]!).origin] : []));
      if (down.length) deps.onEndpointsDown(t.id, down);
    }
    if (t.maintenance.length > 0 && inMaintenance(t.maintenance, result.startedAt)) result.maintenance = true;
    return result;
  }

  return { probeOne };
}

/**
 * Builds the probe activities.
 * @param prober the engine; default a new one from `deps` (a worker passes the one its canaries use).
 * @returns `probeServices({ targets, concurrency })`: one judged result per target,
 *   in target order; heartbeats (at most once a second) so a retried attempt resumes.
 */
export function createProbeActivities(deps: ProbeDeps = {}, prober: Prober = createProber(deps)) {
  const { probeOne } = prober;
  return {
    /**
     * Probes a batch of services, at most `concurrency` at once, and returns
     * one result per target in order. Heartbeats `{ done: (ProbeResult|null)[] }`
     * after a result at most once a second; a retried attempt reuses the results
     * already heartbeated.
     */
    async probeServices(input: ProbeBatchInput): Promise<ProbeResult[]> {
      let ctx: Context | undefined;
      try {
        ctx = Context.current();
      } catch {
        ctx = undefined;
      }
      const prior = (ctx?.info.heartbeatDetails as { done?: (ProbeResult | null)[] } | undefined)?.done;
      const done: (ProbeResult | null)[] = input.targets.map((_, i) => prior?.[i] ?? null);
      const limit = pLimit(Math.max(1, input.concurrency ?? input.targets.length));
      // Heartbeat details are serialised on every call: at most once a second, so a
      // retried attempt loses at most a second of results.
      let lastBeat = 0;
      await Promise.all(
        input.targets.map((t, i) =>
          done[i]
            ? undefined
            : limit(async () => {
                done[i] = await probeOne(t);
                const at = performance.now();
                if (ctx && at - lastBeat >= 1000) {
                  lastBeat = at;
                  ctx.heartbeat({ done });
                }
              }),
        ),
      );
      // The heartbeat keeps the raw results: a retried attempt judges them again (the window keeps one per service).
      return deps.judge ? deps.judge(done as ProbeResult[]) : (done as ProbeResult[]);
    },
  };
}

export type ProbeActivities = ReturnType<typeof createProbeActivities>;
