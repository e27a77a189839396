/**
 * The `tls` probe: a TLS handshake and the served certificate, no HTTP. The
 * chain must verify against the trusted CAs (unless `insecureSkipVerify`)
 * and the certificate must match the server name (`serverName`, default the
 * URL's host), which is also sent as SNI. `starttls: smtp` first speaks SMTP
 * (RFC 3207: greeting, EHLO, STARTTLS) on the plain connection, then
 * upgrades it. Certificate days left are reported as for HTTPS probes.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { ProbeObservation, ProbeTarget } from '../../domain/health';
import { classifyProbeError, ProbeError, type ProbeFailure } from './errors';
import { hostPort } from './tcp';
import type { TlsOptionsCache } from './tls-options';

/**
 * Reads one SMTP reply (RFC 5321 §4.2: lines `ddd-text`, the last `ddd text`).
 * @returns the code and the text lines.
 */
function smtpReply(sock: net.Socket, buffered: { data: string }): Promise<{ code: number; lines: string[] }> {
  return new Promise((resolve, reject) => {
    const tryParse = (): boolean => {
      const lines = buffered.data.split('\r\n');
      for (let i = 0; i < lines.length - 1; i++) {
        const m = /^(\d{3})([ -])(.*)$/.exec(lines[i]!);
        if (!m) {
          reject(new ProbeError('protocol', `not an SMTP reply: ${JSON.stringify(lines[i]!.slice(0, 60))}`));
          return true;
        }
        if (m[2] === ' ') {
          buffered.data = lines.slice(i + 1).join('\r\n');
          resolve({ code: Number(m[1]), lines: lines.slice(0, i + 1).map((l) => l.slice(4)) });
          return true;
        }
      }
      return false;
    };
    if (tryParse()) return;
    const onData = (d: Buffer) => {
      buffered.data += d.toString('latin1');
      if (buffered.data.length > 64 * 1024) {
        cleanup();
        reject(new ProbeError('protocol', 'SMTP reply longer than 64 KiB'));
      } else if (tryParse()) cleanup();
    };
    const onEnd = () => {
      cleanup();
      reject(new ProbeError('protocol', 'the server closed the connection during the SMTP dialogue'));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    const cleanup = () => {
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onError);
    };
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.once('error', onError);
  });
}

async function smtpStartTls(sock: net.Socket): Promise<void> {
  const buffered = { data: '' };
  const greeting = await smtpReply(sock, buffered);
  if (greeting.code !== 220) throw new ProbeError('protocol', `SMTP greeting ${greeting.code} ${greeting.lines[0] ?? ''}`.trim());
  sock.write('EHLO integration-agent-probe\r\n');
  const ehlo = await smtpReply(sock, buffered);
  if (ehlo.code !== 250) throw new ProbeError('protocol', `SMTP EHLO answered ${ehlo.code}`);
  if (!ehlo.lines.some((l) => /^STARTTLS\b/i.test(l))) throw new ProbeError('protocol', 'the SMTP server does not offer STARTTLS');
  sock.write('STARTTLS\r\n');
  const go = await smtpReply(sock, buffered);
  if (go.code !== 220) throw new ProbeError('protocol', `SMTP STARTTLS answered ${go.code} ${go.lines[0] ?? ''}`.trim());
}

/** Probes `href` (`tcp://host:port` or `https://host[:port]`). */
export function probeTls(t: ProbeTarget, href: string, tlsOptions: TlsOptionsCache, now: () => number): Promise<ProbeObservation> {
  const startedAt = now();
  const t0 = performance.now();
  const { host, port } = hostPort(href, 443);
  const servername = t.check.serverName ?? (net.isIP(host) ? undefined : host);
  return new Promise((resolve) => {
    let plain: net.Socket | undefined;
    let secure: tls.TLSSocket | undefined;
    let settled = false;
    const done = (obs: Omit<ProbeObservation, 'startedAt' | 'latencyMs'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      secure?.destroy();
      plain?.destroy();
      resolve({ startedAt, latencyMs: performance.now() - t0, ...obs });
    };
    const fail = (error: ProbeFailure) => done({ error });
    const timer = setTimeout(() => fail({ kind: 'timeout', message: `no TLS handshake within ${t.check.timeout}ms` }), t.check.timeout);
    let conn;
    try {
      conn = tlsOptions.connectOptions(t.check, servername);
    } catch (err) {
      fail(classifyProbeError(err, t.check.timeout));
      return;
    }
    const family = t.check.ipFamily ? { family: t.check.ipFamily, autoSelectFamily: false } : {};
    const handshake = (socket?: net.Socket) => {
      secure = tls.connect({
        ...(socket ? { socket } : { host, port, ...family }),
        ...(servername ? { servername } : {}),
        ...(conn.secureContext ? { secureContext: conn.secureContext } : {}),
        ...(conn.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
        // Without a server name the certificate must match the address dialled.
        ...(servername ? {} : { checkServerIdentity: (_h: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(host, cert) }),
      });
      secure.once('secureConnect', () => {
        const cert = secure!.getPeerCertificate();
        const notAfter = cert?.valid_to ? Date.parse(cert.valid_to) : undefined;
        done(notAfter !== undefined && Number.isFinite(notAfter) ? { certNotAfter: notAfter } : { error: { kind: 'tls', message: 'TLS: the server sent no certificate' } });
      });
      secure.once('error', (err) => fail(classifyTlsError(err, t.check.timeout)));
    };
    if (t.check.starttls !== 'smtp') {
      handshake();
      return;
    }
    plain = net.connect({ host, port, ...family });
    plain.once('error', (err) => fail(classifyProbeError(err, t.check.timeout)));
    plain.once('connect', () => {
      smtpStartTls(plain!).then(
        () => handshake(plain),
        (err: unknown) => fail(classifyProbeError(err, t.check.timeout)),
      );
    });
  });
}

/** A TLS-layer error: connection-level codes keep their kind; everything else on this path is `tls`. */
function classifyTlsError(err: unknown, timeoutMs: number): ProbeFailure {
  const c = classifyProbeError(err, timeoutMs);
  if (c.kind !== 'other') return c;
  const code = (err as { code?: string }).code;
  if (code === 'ECONNRESET') return { kind: 'tls', message: `TLS: the server closed the connection during the handshake (${code})` };
  return { kind: 'tls', message: `TLS: ${code ?? c.message}` };
}
