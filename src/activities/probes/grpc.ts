/**
 * The `grpc` probe: the standard health check, `grpc.health.v1.Health/Check`
 * (https://github.com/grpc/grpc/blob/master/doc/health-checking.md), with
 * `grpcService` as the service asked about ("" = the whole server).
 * SERVING passes; NOT_SERVING, UNKNOWN and SERVICE_UNKNOWN (the spec's
 * NOT_FOUND) fail with kind `status`; a server without the health service
 * (UNIMPLEMENTED) is `protocol`. An `https://` URL speaks TLS (verified as
 * other TLS probes, days left reported); `http://` and `tcp://` speak h2c.
 * With `auth: true` the credential goes in the call's metadata, as the
 * coordinator's header; UNAUTHENTICATED / PERMISSION_DENIED is `credential_rejected`.
 */
import { lookup } from 'node:dns/promises';
import * as net from 'node:net';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import type { ProbeObservation, ProbeTarget } from '../../domain/health';
import { authHeader, rejectedMessage, type ProbeCredential } from './credentials';
import { classifyProbeError, ProbeError, redact, type ProbeFailure } from './errors';
import { hostPort } from './tcp';
import type { TlsOptionsCache } from './tls-options';

const HealthClient = grpc.makeGenericClientConstructor(healthService, 'Health');

type CheckFn = (req: { service: string }, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: { status: string | number }) => void) => void;

const STATUS_NAMES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

/** Probes `href` with `grpc.health.v1.Health/Check`. */
export async function probeGrpc(t: ProbeTarget, href: string, credential: ProbeCredential | undefined, tlsOptions: TlsOptionsCache, now: () => number): Promise<ProbeObservation> {
  const startedAt = now();
  const t0 = performance.now();
  const secrets = credential ? [credential.secret] : [];
  const timeout = t.check.timeout;
  const u = new URL(href);
  const { host, port } = hostPort(href, 443);
  let client: grpc.Client | undefined;
  try {
    let certNotAfter: number | undefined;
    let creds: grpc.ChannelCredentials;
    const options: grpc.ChannelOptions = { 'grpc.enable_retries': 0, 'grpc.max_reconnect_backoff_ms': timeout };
    const servername = t.check.serverName ?? (net.isIP(host) ? undefined : host);
    if (u.protocol === 'https:') {
      const conn = tlsOptions.connectOptions(t.check, servername);
      const verify: grpc.VerifyOptions = {
        // Called with the served leaf on every handshake: the place to read its notAfter.
        checkServerIdentity: (hostname, cert) => {
          if (cert?.valid_to) certNotAfter = Date.parse(cert.valid_to);
          return conn.rejectUnauthorized === false ? undefined : tls.checkServerIdentity(servername ?? hostname, cert);
        },
        ...(conn.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
      };
      // Extra CAs: the shared secure context (building one per probe parses every root again).
      creds = conn.secureContext ? grpc.credentials.createFromSecureContext(conn.secureContext, verify) : grpc.credentials.createSsl(null, null, null, verify);
      if (servername) options['grpc.ssl_target_name_override'] = servername;
    } else {
      creds = grpc.credentials.createInsecure();
    }
    // An IP family is honoured by dialling the address of that family (gRPC targets take `ipv4:`/`ipv6:`).
    let target = `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
    if (t.check.ipFamily) {
      const ip = net.isIP(host) ? host : (await lookup(host, { family: t.check.ipFamily })).address;
      if (net.isIP(ip) !== t.check.ipFamily) throw new ProbeError('connection_refused', `${host} has no IPv${t.check.ipFamily} address`);
      target = t.check.ipFamily === 6 ? `ipv6:[${ip}]:${port}` : `ipv4:${ip}:${port}`;
      if (!options['grpc.default_authority']) options['grpc.default_authority'] = `${servername ?? host}:${port}`;
    }
    client = new HealthClient(target, creds, options);
    const md = new grpc.Metadata();
    if (credential && t.credential) {
      const h = authHeader(t.credential, credential.secret);
      md.set(h.name, h.value);
    }
    const check = (client as unknown as { check: CheckFn }).check.bind(client);
    const status = await new Promise<string>((resolve, reject) => {
      check({ service: t.check.grpcService ?? '' }, md, { deadline: Date.now() + timeout }, (err, res) => {
        if (err) reject(err);
        else resolve(typeof res?.status === 'number' ? (STATUS_NAMES[res.status] ?? String(res.status)) : String(res?.status ?? 'UNKNOWN'));
      });
    });
    const obs: ProbeObservation = { startedAt, latencyMs: performance.now() - t0, servingStatus: status };
    if (certNotAfter !== undefined) obs.certNotAfter = certNotAfter;
    if (credential) obs.credentialId = credential.id;
    return obs;
  } catch (err) {
    const latencyMs = performance.now() - t0;
    const error = grpcFailure(err, timeout, credential);
    error.message = redact(error.message, secrets);
    if (error.kind === 'status') return { startedAt, latencyMs, servingStatus: 'SERVICE_UNKNOWN' };
    return { startedAt, latencyMs, error, ...(credential ? { credentialId: credential.id } : {}) };
  } finally {
    client?.close();
  }
}

function grpcFailure(err: unknown, timeoutMs: number, credential: ProbeCredential | undefined): ProbeFailure {
  const e = err as Partial<grpc.ServiceError>;
  if (err instanceof ProbeError || typeof e?.code !== 'number') return classifyProbeError(err, timeoutMs);
  const details = (e.details ?? e.message ?? '').split('\n')[0]!;
  switch (e.code) {
    case grpc.status.NOT_FOUND:
      // The health spec: Check answers NOT_FOUND for a service the server does not know.
      return { kind: 'status', message: details };
    case grpc.status.UNIMPLEMENTED:
      return { kind: 'protocol', message: `the server does not implement grpc.health.v1.Health (UNIMPLEMENTED)` };
    case grpc.status.DEADLINE_EXCEEDED:
      return { kind: 'timeout', message: `no answer within ${timeoutMs}ms` };
    case grpc.status.UNAUTHENTICATED:
    case grpc.status.PERMISSION_DENIED:
      if (credential) return { kind: 'credential_rejected', message: rejectedMessage(credential.id, `gRPC ${grpc.status[e.code]}`) };
      return { kind: 'status', message: `gRPC ${grpc.status[e.code]}: the server wants credentials (set healthCheck.auth: true)` };
    case grpc.status.UNAVAILABLE: {
      if (/ECONNREFUSED/.test(details)) return { kind: 'connection_refused', message: `connection refused (${details})` };
      if (/ENOTFOUND|EAI_AGAIN|Name resolution failed|DNS resolution failed/i.test(details)) return { kind: 'dns', message: details };
      if (/certificate|SSL|TLS|handshake/i.test(details)) return { kind: 'tls', message: `TLS: ${details}` };
      return { kind: 'other', message: `UNAVAILABLE: ${details}` };
    }
    default:
      return { kind: 'other', message: `gRPC ${grpc.status[e.code] ?? e.code}: ${details}` };
  }
}
