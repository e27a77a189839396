/** The `tcp` probe: a connection is opened and closed; nothing is sent. */
import * as net from 'node:net';
import type { ProbeObservation, ProbeTarget } from '../../domain/health';
import { classifyProbeError, type ProbeFailure } from './errors';

/** host and port of a `tcp://`, `http(s)://`, `postgres://`, `redis://` URL (the scheme's default port when none). */
export function hostPort(href: string, defaultPort?: number): { host: string; port: number } {
  const u = new URL(href);
  const dflt: Record<string, number> = { 'http:': 80, 'https:': 443, 'postgres:': 5432, 'postgresql:': 5432, 'redis:': 6379, 'rediss:': 6379 };
  const port = Number(u.port || dflt[u.protocol] || defaultPort || 0);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port };
}

export function probeTcp(t: ProbeTarget, href: string, now: () => number): Promise<ProbeObservation> {
  const startedAt = now();
  const t0 = performance.now();
  const { host, port } = hostPort(href);
  return new Promise((resolve) => {
    const sock = net.connect({ host, port, ...(t.check.ipFamily ? { family: t.check.ipFamily, autoSelectFamily: false } : {}) });
    const done = (error?: ProbeFailure) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(error ? { startedAt, latencyMs: performance.now() - t0, error } : { startedAt, latencyMs: performance.now() - t0 });
    };
    const timer = setTimeout(() => done({ kind: 'timeout', message: `no connection within ${t.check.timeout}ms` }), t.check.timeout);
    sock.once('connect', () => done());
    sock.once('error', (err) => done(classifyProbeError(err, t.check.timeout)));
  });
}
