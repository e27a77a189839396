/**
 * The `dns` probe against a real DNS server on loopback (dns2, UDP): each
 * record type with expected answers, a changed answer, NXDOMAIN, an empty
 * answer, a resolver that does not answer.
 */
import * as dgram from 'node:dgram';
import dns2 from 'dns2';
import { createProbeActivities } from '../../../src/activities/probes';
import { probeTarget, type ProbeResult } from '../../../src/domain/health';
import { registryOf } from '../fleet';

const { Packet } = dns2;
type Answer = Record<string, unknown>;
/** The zone served: name -> record type -> answers (mutable: tests change it). */
const zone: Record<string, Record<number, Answer[]>> = {
  'api.test': {
    [Packet.TYPE.A]: [{ address: '10.0.0.1' }, { address: '10.0.0.2' }],
    [Packet.TYPE.AAAA]: [{ address: 'fd00::1' }],
    [Packet.TYPE.MX]: [{ exchange: 'mail.api.test', priority: 10 }],
    [Packet.TYPE.TXT]: [{ data: 'v=spf1 -all' }],
  },
  'www.api.test': { [Packet.TYPE.CNAME]: [{ domain: 'api.test' }] },
  '_sip._tcp.api.test': { [Packet.TYPE.SRV]: [{ priority: 10, weight: 5, port: 5060, target: 'sip.api.test' }] },
};

let server: ReturnType<typeof dns2.createServer>;
let resolver: string;
beforeAll(async () => {
  server = dns2.createServer({
    udp: true,
    handle: (request, send) => {
      const response = Packet.createResponseFromRequest(request);
      const q = request.questions[0]!;
      const records = zone[q.name.toLowerCase()];
      if (!records) {
        response.header.rcode = Packet.RCODE.NXDOMAIN;
        send(response);
        return;
      }
      for (const a of records[q.type] ?? []) response.answers.push({ name: q.name, type: q.type, class: Packet.CLASS.IN, ttl: 1, ...a } as never);
      send(response);
    },
  });
  await server.listen({ udp: { port: 0, address: '127.0.0.1' } });
  resolver = `127.0.0.1:${(server.addresses().udp as { port: number }).port}`;
});
afterAll(async () => {
  await server.close();
});

const svc = (id: string, healthCheck: Record<string, unknown>) => ({ id, type: 'api', endpoints: [{ url: 'https://api.test' }], healthCheck: { type: 'dns', timeout: '1s', ...healthCheck } });

async function probe(services: unknown[]): Promise<Map<string, ProbeResult>> {
  const reg = registryOf(services);
  const { probeServices } = createProbeActivities();
  const results = await probeServices({ targets: reg.services.map(probeTarget) });
  return new Map(results.map((r) => [r.serviceId, r]));
}

test('each record type is asked of the configured resolver and compared with the expected answers', async () => {
  const r = await probe([
    svc('a', { resolver, expect: { answers: ['10.0.0.2', '10.0.0.1'] } }),
    svc('aaaa', { resolver, recordType: 'AAAA', expect: { answers: ['fd00:0:0:0:0:0:0:1'] } }),
    svc('cname', { resolver, recordType: 'CNAME', queryName: 'www.api.test', expect: { answers: ['api.test.'] } }),
    svc('mx', { resolver, recordType: 'MX', expect: { answers: ['10 mail.api.test'] } }),
    svc('txt', { resolver, recordType: 'TXT', expect: { answers: ['v=spf1 -all'] } }),
    svc('srv', { resolver, recordType: 'SRV', queryName: '_sip._tcp.api.test', expect: { answers: ['10 5 5060 sip.api.test'] } }),
    svc('any-a', { resolver }),
  ]);
  for (const id of ['a', 'aaaa', 'cname', 'mx', 'txt', 'srv', 'any-a']) expect([id, r.get(id)!.verdict, r.get(id)!.detail]).toEqual([id, 'pass', undefined]);
});

test('a wrong answer is `answer`, a missing name NXDOMAIN and an empty answer are `dns`', async () => {
  const r = await probe([
    svc('wrong', { resolver, expect: { answers: ['10.0.0.1'] } }),
    svc('nx', { resolver, queryName: 'gone.api.test' }),
    svc('empty', { resolver, recordType: 'SRV' }),
  ]);
  expect(r.get('wrong')).toMatchObject({ verdict: 'fail', failureKind: 'answer', detail: 'A answer ["10.0.0.1","10.0.0.2"], expected ["10.0.0.1"]' });
  expect(r.get('nx')).toMatchObject({ verdict: 'fail', failureKind: 'dns' });
  expect(r.get('nx')!.detail).toContain('NXDOMAIN');
  expect(r.get('empty')).toMatchObject({ verdict: 'fail', failureKind: 'dns', detail: 'no SRV record' });
});

test('a changed answer is seen by the next probe (nothing cached across probes)', async () => {
  const target = [svc('moving', { resolver, queryName: 'www.api.test', recordType: 'CNAME', expect: { answers: ['api.test'] } })];
  expect((await probe(target)).get('moving')!.verdict).toBe('pass');
  zone['www.api.test']![Packet.TYPE.CNAME] = [{ domain: 'elsewhere.test' }];
  try {
    // Within the answer's 1 s TTL: the prober keeps no cache of its own, so it sees the change at once.
    expect((await probe(target)).get('moving')).toMatchObject({ verdict: 'fail', failureKind: 'answer' });
  } finally {
    zone['www.api.test']![Packet.TYPE.CNAME] = [{ domain: 'api.test' }];
  }
});

test('a resolver that never answers is a timeout within the probe timeout', async () => {
  // A UDP socket that reads queries and never replies.
  const silent = dgram.createSocket('udp4');
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
  try {
    const r = await probe([svc('mute', { resolver: `127.0.0.1:${silent.address().port}`, timeout: '300ms' })]);
    expect(r.get('mute')).toMatchObject({ verdict: 'fail', failureKind: 'timeout' });
  } finally {
    silent.close();
  }
});
