/**
 * Trust settings for probes that speak TLS (http, tls, grpc): the system's
 * roots, plus the prober's extra CAs (`ProbeDeps.ca`, the `INTEGRATION_AGENT_PROBE_CA_FILE`
 * environment variable), plus a check's own `caFile`; or no verification
 * with `insecureSkipVerify` (the handshake still happens and the certificate
 * is still read).
 */
import { readFileSync, statSync } from 'node:fs';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import type { HealthCheck } from '../../domain/registry';
import { ProbeError } from './errors';

export interface TlsConnectOptions {
  /** Trusted CAs, when any extra is configured (Node's `ca` replaces the roots, so they are included). */
  ca?: string[];
  /**
   * A secure context holding `ca`, built once per set of CAs: building one
   * parses every root (~150 certificates), which per connection cost 80 ms
   * of CPU a probe (measured: 1,000 TLS probes at 25 in flight timed out by
   * the hundreds before, see docs/health.md).
   */
  secureContext?: SecureContext;
  rejectUnauthorized?: false;
  servername?: string;
  /** Identifies the option set (for pooling connections per set). */
  key: string;
}

export type TlsOptionsCache = ReturnType<typeof createTlsOptions>;

/**
 * @param extra PEM certificates trusted by every probe, besides the system roots.
 * @param envCaFile a PEM file trusted by every probe (`INTEGRATION_AGENT_PROBE_CA_FILE`).
 */
export function createTlsOptions(extra: string[], envCaFile: string | undefined) {
  const files = new Map<string, { mtimeMs: number; pem: string }>();
  const contexts = new Map<string, SecureContext>();
  const read = (path: string, what: string): string => {
    let st;
    try {
      st = statSync(path);
    } catch (err) {
      throw new ProbeError('other', `${what} ${path}: cannot read it on this worker (${(err as { code?: string }).code ?? (err as Error).message})`);
    }
    const hit = files.get(path);
    if (hit && hit.mtimeMs === st.mtimeMs) return hit.pem;
    const pem = readFileSync(path, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ProbeError('other', `${what} ${path}: no PEM certificate in it`);
    files.set(path, { mtimeMs: st.mtimeMs, pem });
    return pem;
  };
  return {
    /**
     * Connection options for `check`.
     * @throws ProbeError (`other`) when a CA file cannot be read: a configuration problem, named.
     */
    connectOptions(check: Pick<HealthCheck, 'caFile' | 'insecureSkipVerify'>, servername?: string): TlsConnectOptions {
      const pems = [...extra];
      if (envCaFile) pems.push(read(envCaFile, 'INTEGRATION_AGENT_PROBE_CA_FILE'));
      if (check.caFile) pems.push(read(check.caFile, 'healthCheck.caFile'));
      const out: TlsConnectOptions = { key: JSON.stringify([check.caFile ?? '', check.insecureSkipVerify === true, servername ?? '']) };
      if (pems.length) {
        out.ca = [...rootCertificates, ...pems];
        const id = pems.join('');
        let ctx = contexts.get(id);
        if (!ctx) {
          // Few distinct CA sets exist (the worker's, and each caFile's): a small map suffices.
          if (contexts.size >= 64) contexts.clear();
          ctx = createSecureContext({ ca: out.ca });
          contexts.set(id, ctx);
        }
        out.secureContext = ctx;
      }
      if (check.insecureSkipVerify) out.rejectUnauthorized = false;
      if (servername) out.servername = servername;
      return out;
    },
  };
}
