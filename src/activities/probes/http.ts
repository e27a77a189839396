/**
 * The `http` probe: one request (method, headers, body from the registry;
 * the managed credential with `auth: true`), redirects followed up to
 * `maxRedirects` (each hop connects to the new origin, so SNI and Host follow
 * the new host), and the body read for `expect.body` rules: JSONPath on JSON,
 * `contains`/`matches` on the text.
 *
 * Connections come from keep-alive pools (undici Agents), one per set of
 * connection options (extra CA, insecureSkipVerify, IP family, server name),
 * whose idle connections expire well within a sweep interval: each sweep
 * connects afresh (a server that stops accepting connections is seen at once,
 * and the certificate read is the one served now), while a burst of probes to
 * one origin reuses connections (measured: docs/health.md).
 */
import type { TLSSocket } from 'node:tls';
import { JSONPath } from 'jsonpath-plus';
import { Agent, buildConnector, type Dispatcher } from 'undici';
import type { ProbeObservation, ProbeTarget } from '../../domain/health';
import { authHeader, rejectedMessage, type ProbeCredential } from './credentials';
import { classifyProbeError, ProbeError, redact } from './errors';
import type { TlsOptionsCache } from './tls-options';

export interface HttpProberOptions {
  tls: TlsOptionsCache;
  /** Largest body read for body rules, bytes. */
  maxBodyBytes: number;
  keepAliveTimeoutMs: number;
  now: () => number;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** Builds the http prober; `close()` ends its pools. */
export function createHttpProber(o: HttpProberOptions) {
  /** Leaf certificate notAfter per `host:port`, read on every new TLS connection. */
  const certs = new Map<string, number>();
  const agents = new Map<string, Agent>();

  function agentFor(t: ProbeTarget, servername: string | undefined): Agent {
    const conn = o.tls.connectOptions(t.check, servername);
    const key = JSON.stringify([conn.key, t.check.ipFamily ?? 0]);
    let agent = agents.get(key);
    if (agent) return agent;
    const connector = buildConnector({
      ...(conn.secureContext ? { secureContext: conn.secureContext } : {}),
      ...(conn.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
      ...(t.check.ipFamily ? { family: t.check.ipFamily, autoSelectFamily: false } : {}),
    } as buildConnector.BuildOptions);
    // One pooled keep-alive agent per option set, like real callers: a burst of probes
    // reuses connections; between sweeps they expire (keepAliveTimeout), so each sweep
    // connects afresh and reads the certificate served now.
    agent = new Agent({
      keepAliveTimeout: o.keepAliveTimeoutMs,
      keepAliveMaxTimeout: o.keepAliveTimeoutMs,
      connect: (opts, cb) =>
        connector(servername && opts.protocol === 'https:' ? { ...opts, servername } : opts, (err, socket) => {
          if (!err && socket && typeof (socket as TLSSocket).getPeerCertificate === 'function') {
            const cert = (socket as TLSSocket).getPeerCertificate();
            if (cert?.valid_to) certs.set(`${opts.hostname}:${opts.port || '443'}`, Date.parse(cert.valid_to));
          }
          (cb as (e: Error | null, s: unknown) => void)(err, socket);
        }),
    });
    agents.set(key, agent);
    return agent;
  }

  /** Probes `target` at `href` (one endpoint). */
  async function probe(t: ProbeTarget, href: string, credential: ProbeCredential | undefined): Promise<ProbeObservation> {
    const startedAt = o.now();
    const t0 = performance.now();
    const ac = new AbortController();
    const timeout = t.check.timeout;
    const timer = setTimeout(() => ac.abort(new ProbeError('timeout', `no answer within ${timeout}ms`)), timeout);
    const first = new URL(href);
    const secrets = credential ? [credential.secret] : [];
    let url = first;
    try {
      let res: Dispatcher.ResponseData;
      let method = t.check.method;
      let body = t.check.body;
      for (let hop = 0; ; hop++) {
        const sameOrigin = url.origin === first.origin;
        // The credential goes to the probed origin only, as the coordinator drops it on a foreign redirect.
        const headers: Record<string, string> = {
          'user-agent': 'integration-agent-probe',
          accept: 'application/health+json, application/json;q=0.9, */*;q=0.5',
          ...(t.check.headers ?? {}),
        };
        if (credential && t.credential && sameOrigin) {
          const h = authHeader(t.credential, credential.secret);
          headers[h.name] = h.value;
        }
        const dispatcher = agentFor(t, sameOrigin ? t.check.serverName : undefined);
        const target = url;
        const send = () =>
          dispatcher.request({
            origin: target.origin,
            path: target.pathname + target.search,
            method,
            signal: ac.signal,
            headers,
            ...(body !== undefined ? { body } : {}),
          });
        try {
          res = await send();
        } catch (err) {
          // A pooled connection the server had just closed: once more on a fresh one.
          const code = (err as { code?: string }).code;
          if (ac.signal.aborted || (code !== 'UND_ERR_SOCKET' && code !== 'ECONNRESET')) throw err;
          res = await send();
        }
        const location = res.headers.location;
        const maxRedirects = t.check.maxRedirects ?? 0;
        if (!REDIRECTS.has(res.statusCode) || hop >= maxRedirects || typeof location !== 'string') break;
        await res.body.dump({ limit: o.maxBodyBytes });
        const next = new URL(location, url);
        if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new ProbeError('status', `redirect to a ${next.protocol} URL`);
        // RFC 9110 §15.4: 303 turns into GET; so do 301/302 after POST, as browsers and curl do.
        if (res.statusCode === 303 || ((res.statusCode === 301 || res.statusCode === 302) && method === 'POST')) {
          method = 'GET';
          body = undefined;
        }
        url = next;
      }
      const contentType = String(res.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const obs: ProbeObservation = { startedAt, latencyMs: 0, status: res.statusCode, contentType };
      if (credential) obs.credentialId = credential.id;
      if (credential && (res.statusCode === 401 || res.statusCode === 403) && !t.check.expect.status.some((m) => m === res.statusCode || m === String(res.statusCode))) {
        await res.body.dump({ limit: o.maxBodyBytes });
        obs.latencyMs = performance.now() - t0;
        obs.error = { kind: 'credential_rejected', message: rejectedMessage(credential.id, `HTTP ${res.statusCode}`) };
        return obs;
      }
      const rules = t.check.expect.body;
      const isHealthJson = contentType === 'application/health+json';
      const needsJson = rules.some((r) => r.path !== undefined) || isHealthJson;
      if (t.check.method !== 'HEAD' && (rules.length > 0 || isHealthJson)) {
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const c of res.body) {
          size += (c as Buffer).length;
          if (size > o.maxBodyBytes) throw new ProbeError('body', `body larger than ${o.maxBodyBytes} bytes`);
          chunks.push(c as Buffer);
        }
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        if (needsJson) {
          try {
            json = JSON.parse(text);
          } catch (e) {
            // health+json alone with text rules: a body that is not JSON is not a failure of a JSON rule.
            if (rules.some((r) => r.path !== undefined)) obs.bodyParseError = (e as Error).message.split('\n')[0]!;
          }
        }
        if (obs.bodyParseError === undefined) {
          obs.bodyMatches = rules.map((r) => {
            if (r.path !== undefined) return JSONPath({ path: r.path, json: json as object, wrap: true }) as unknown[];
            if (r.contains !== undefined) return text.includes(r.contains) ? [r.contains] : [];
            const m = new RegExp(r.matches!).exec(text);
            return m ? [m[0].slice(0, 80)] : [];
          });
          if (isHealthJson && json && typeof json === 'object' && typeof (json as { status?: unknown }).status === 'string') {
            obs.healthJsonStatus = (json as { status: string }).status;
          }
        }
      } else {
        await res.body.dump({ limit: o.maxBodyBytes });
      }
      obs.latencyMs = performance.now() - t0;
      if (url.protocol === 'https:') {
        const cert = certs.get(`${url.hostname}:${url.port || '443'}`);
        if (cert !== undefined) obs.certNotAfter = cert;
      }
      return obs;
    } catch (err) {
      const reason = ac.signal.aborted ? ac.signal.reason : err;
      const error = classifyProbeError(reason, timeout);
      error.message = redact(error.message, secrets);
      return { startedAt, latencyMs: performance.now() - t0, error, ...(credential ? { credentialId: credential.id } : {}) };
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    probe,
    async close(): Promise<void> {
      await Promise.all([...agents.values()].map((a) => a.close()));
      agents.clear();
    },
  };
}
