/**
 * The `dns` probe: one query of `recordType` for `queryName` (default: the
 * probed URL's host) to `resolver` (default: the system's), through Node's
 * c-ares resolver. Each probe uses a fresh resolver channel, so nothing is
 * cached between probes: a changed answer is seen by the next probe (well
 * within "its TTL plus one interval"), and a resolver that stops answering is
 * seen at once.
 *
 * Answers are reported in the text form `expect.answers` uses: A/AAAA an
 * address, CNAME/NS a name, MX `priority exchange`, TXT the record's strings
 * joined, SRV `priority weight port target`.
 */
import { Resolver } from 'node:dns/promises';
import type { ProbeObservation, ProbeTarget } from '../../domain/health';
import { ProbeError, withDeadline } from './errors';

/** c-ares error codes (node:dns) as failure kinds and words an operator knows (RFC 1035 RCODEs). */
function dnsError(code: string | undefined, name: string, type: string, server: string): ProbeError | 'empty' {
  switch (code) {
    case 'ENODATA':
      return 'empty';
    case 'ENOTFOUND':
      return new ProbeError('dns', `${name}: NXDOMAIN from ${server}`);
    case 'ESERVFAIL':
      return new ProbeError('dns', `${name} ${type}: SERVFAIL from ${server}`);
    case 'EREFUSED':
      return new ProbeError('dns', `${name} ${type}: REFUSED by ${server}`);
    case 'ETIMEOUT':
      return new ProbeError('timeout', `${name} ${type}: no answer from ${server}`);
    case 'ECONNREFUSED':
      return new ProbeError('connection_refused', `${name} ${type}: connection refused by ${server}`);
    default:
      return new ProbeError('dns', `${name} ${type}: ${code ?? 'error'} from ${server}`);
  }
}

/** Probes `href` (its host is the default name queried). */
export async function probeDns(t: ProbeTarget, href: string, now: () => number): Promise<ProbeObservation> {
  const startedAt = now();
  const t0 = performance.now();
  const type = t.check.recordType ?? 'A';
  const name = t.check.queryName ?? new URL(href).hostname.replace(/^\[|\]$/g, '');
  // One try within the probe's timeout: a retry would hide a resolver that drops packets.
  const resolver = new Resolver({ timeout: t.check.timeout, tries: 1 });
  const server = t.check.resolver ?? 'the system resolver';
  if (t.check.resolver) resolver.setServers([t.check.resolver]);
  const query = async (): Promise<string[]> => {
    switch (type) {
      case 'A':
        return resolver.resolve4(name);
      case 'AAAA':
        return resolver.resolve6(name);
      case 'CNAME':
        return resolver.resolveCname(name);
      case 'NS':
        return resolver.resolveNs(name);
      case 'MX':
        return (await resolver.resolveMx(name)).map((r) => `${r.priority} ${r.exchange}`);
      case 'TXT':
        return (await resolver.resolveTxt(name)).map((chunks) => chunks.join(''));
      case 'SRV':
        return (await resolver.resolveSrv(name)).map((r) => `${r.priority} ${r.weight} ${r.port} ${r.name}`);
    }
  };
  try {
    const answers = await withDeadline(t.check.timeout, `${name} ${type}: no answer from ${server}`, query, () => resolver.cancel());
    return { startedAt, latencyMs: performance.now() - t0, answers };
  } catch (err) {
    const latencyMs = performance.now() - t0;
    if (err instanceof ProbeError) return { startedAt, latencyMs, error: { kind: err.kind, message: err.message } };
    const e = dnsError((err as { code?: string }).code, name, type, server);
    if (e === 'empty') return { startedAt, latencyMs, answers: [] };
    return { startedAt, latencyMs, error: { kind: e.kind, message: e.message } };
  }
}
