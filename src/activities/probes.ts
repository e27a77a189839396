/**
 * Probe activities: HTTP(S) with the registry's `expect` rules, TCP connect,
 * and the TLS leaf certificate of the connection actually used. The wire work
 * (timing, JSONPath lookup, certificate capture) happens here; the judgment
 * is `evaluateProbe` in src/domain/health.ts.
 *
 * Probes share one keep-alive pool (undici Agent) whose idle connections
 * expire well within a sweep interval: in production each sweep connects
 * afresh (a server that stops accepting connections is seen at once, and the
 * certificate read is the one served now), while a burst of probes to one
 * origin reuses connections (measured: docs/health.md).
 */
import * as net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Context } from '@temporalio/activity';
import { JSONPath } from 'jsonpath-plus';
import pLimit from 'p-limit';
import { Agent, buildConnector } from 'undici';
import { evaluateProbe, inMaintenance, type ProbeFailureKind, type ProbeObservation, type ProbeResult, type ProbeTarget } from '../domain/health';

export interface ProbeDeps {
  /** Extra trusted CA certificates (PEM) for HTTPS probes, e.g. a private CA; the Node defaults stay trusted. */
  ca?: string | string[];
  /** Clock, epoch ms (tests may shift it); default Date.now. */
  now?: () => number;
  /** Largest body read for JSON rules, bytes; default 1 MiB. */
  maxBodyBytes?: number;
  /** Idle keep-alive connections close after this long, ms; default 4000 (shorter than a sweep interval). */
  keepAliveTimeoutMs?: number;
}

/** Input of {@link createProbeActivities}'s `probeServices`. */
export interface ProbeBatchInput {
  targets: ProbeTarget[];
  /** Probes in flight at once inside this batch; default all of them. */
  concurrency?: number;
}

class ProbeError extends Error {
  constructor(
    readonly kind: ProbeFailureKind,
    message: string,
  ) {
    super(message);
  }
}

const TLS_CODES = /^(ERR_TLS|ERR_SSL|CERT_|DEPTH_ZERO|UNABLE_TO_|SELF_SIGNED|EPROTO|HOSTNAME_MISMATCH)/;

/** Maps a Node/undici error to a failure kind and a one-line message (no secrets: URLs carry none). */
export function classifyProbeError(err: unknown, timeoutMs: number): { kind: ProbeFailureKind; message: string } {
  if (err instanceof ProbeError) return { kind: err.kind, message: err.message };
  const e = err as { code?: string; name?: string; message?: string; cause?: unknown };
  const code = e?.code ?? (e?.cause as { code?: string } | undefined)?.code ?? '';
  const msg = e?.message ?? String(err);
  if (code === 'ECONNREFUSED') return { kind: 'connection_refused', message: `connection refused (${msg})` };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME' || code === 'EAI_FAIL') return { kind: 'dns', message: `name did not resolve (${code})` };
  if (TLS_CODES.test(code) || /certificate|SSL|TLS/i.test(msg)) return { kind: 'tls', message: `TLS: ${code || msg}` };
  if (
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'ETIMEDOUT' ||
    e?.name === 'TimeoutError'
  ) {
    return { kind: 'timeout', message: `no answer within ${timeoutMs}ms` };
  }
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return { kind: 'other', message: `connection reset (${code})` };
  return { kind: 'other', message: msg.split('\n')[0]! };
}

/**
 * Builds the probe activities.
 * @returns `probeServices({ targets, concurrency })`: one judged result per target,
 *   in target order; heartbeats (at most once a second) so a retried attempt resumes.
 */
export function createProbeActivities(deps: ProbeDeps = {}) {
  const now = deps.now ?? Date.now;
  const maxBody = deps.maxBodyBytes ?? 1 << 20;
  const connector = buildConnector({ ...(deps.ca ? { ca: deps.ca } : {}) } as buildConnector.BuildOptions);
  /** Leaf certificate notAfter per `host:port`, read on every new TLS connection. */
  const certs = new Map<string, number>();
  // One pooled keep-alive agent, like real callers: a burst of probes reuses
  // connections; between 30 s sweeps they expire (keepAliveTimeout), so each
  // sweep connects afresh and reads the certificate served now.
  const dispatcher = new Agent({
    keepAliveTimeout: deps.keepAliveTimeoutMs ?? 4_000,
    keepAliveMaxTimeout: deps.keepAliveTimeoutMs ?? 4_000,
    connect: (opts, cb) =>
      connector(opts, (err, socket) => {
        if (!err && socket && typeof (socket as TLSSocket).getPeerCertificate === 'function') {
          const cert = (socket as TLSSocket).getPeerCertificate();
          if (cert?.valid_to) certs.set(`${opts.hostname}:${opts.port || '443'}`, Date.parse(cert.valid_to));
        }
        (cb as (e: Error | null, s: unknown) => void)(err, socket);
      }),
  });
  async function probeHttp(t: ProbeTarget): Promise<ProbeObservation> {
    const startedAt = now();
    const t0 = performance.now();
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new ProbeError('timeout', `no answer within ${t.check.timeout}ms`)), t.check.timeout);
    const url = new URL(t.url);
    const send = () =>
      dispatcher.request({
        origin: url.origin,
        path: url.pathname + url.search,
        method: t.check.method,
        signal: ac.signal,
        headers: { 'user-agent': 'integration-agent-probe', accept: 'application/health+json, application/json;q=0.9, */*;q=0.5' },
      });
    try {
      let res: Awaited<ReturnType<typeof send>>;
      try {
        res = await send();
      } catch (err) {
        // A pooled connection the server had just closed: once more on a fresh one.
        const code = (err as { code?: string }).code;
        if (ac.signal.aborted || (code !== 'UND_ERR_SOCKET' && code !== 'ECONNRESET')) throw err;
        res = await send();
      }
      const contentType = String(res.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const obs: ProbeObservation = { startedAt, latencyMs: 0, status: res.statusCode, contentType };
      const rules = t.check.expect.body;
      const isHealthJson = contentType === 'application/health+json';
      if (t.check.method !== 'HEAD' && (rules.length > 0 || isHealthJson)) {
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const c of res.body) {
          size += (c as Buffer).length;
          if (size > maxBody) throw new ProbeError('body', `body larger than ${maxBody} bytes`);
          chunks.push(c as Buffer);
        }
        let json: unknown;
        try {
          json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch (e) {
          obs.bodyParseError = (e as Error).message.split('\n')[0]!;
        }
        if (obs.bodyParseError === undefined) {
          obs.bodyMatches = rules.map((r) => JSONPath({ path: r.path, json: json as object, wrap: true }) as unknown[]);
          if (isHealthJson && json && typeof json === 'object' && typeof (json as { status?: unknown }).status === 'string') {
            obs.healthJsonStatus = (json as { status: string }).status;
          }
        }
      } else {
        await res.body.dump({ limit: maxBody });
      }
      obs.latencyMs = performance.now() - t0;
      if (url.protocol === 'https:') {
        const cert = certs.get(`${url.hostname}:${url.port || '443'}`);
        if (cert !== undefined) obs.certNotAfter = cert;
      }
      return obs;
    } catch (err) {
      const reason = ac.signal.aborted ? ac.signal.reason : err;
      return { startedAt, latencyMs: performance.now() - t0, error: classifyProbeError(reason, t.check.timeout) };
    } finally {
      clearTimeout(timer);
    }
  }

  function probeTcp(t: ProbeTarget): Promise<ProbeObservation> {
    const startedAt = now();
    const t0 = performance.now();
    const u = new URL(t.url);
    return new Promise((resolve) => {
      const sock = net.connect({ host: u.hostname, port: Number(u.port) });
      const done = (error?: { kind: ProbeFailureKind; message: string }) => {
        clearTimeout(timer);
        sock.destroy();
        resolve(error ? { startedAt, latencyMs: performance.now() - t0, error } : { startedAt, latencyMs: performance.now() - t0 });
      };
      const timer = setTimeout(() => done({ kind: 'timeout', message: `no connection within ${t.check.timeout}ms` }), t.check.timeout);
      sock.once('connect', () => done());
      sock.once('error', (err) => done(classifyProbeError(err, t.check.timeout)));
    });
  }

  /** Probes one target and judges it; never throws. */
  async function probeOne(t: ProbeTarget): Promise<ProbeResult> {
    let obs: ProbeObservation;
    try {
      obs = t.check.type === 'tcp' || t.url.startsWith('tcp:') ? await probeTcp(t) : await probeHttp(t);
    } catch (err) {
      obs = { startedAt: now(), latencyMs: 0, error: classifyProbeError(err, t.check.timeout) };
    }
    const result = evaluateProbe(t.id, t.check, obs, now());
    if (t.maintenance.length > 0 && inMaintenance(t.maintenance, obs.startedAt)) result.maintenance = true;
    return result;
  }

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
      return done as ProbeResult[];
    },
  };
}

export type ProbeActivities = ReturnType<typeof createProbeActivities>;
