/**
 * Worker identities and the agreement rules, as plain functions: what a
 * worker refuses to start beside, and what it lets pass (a codec key
 * rotation in progress, pollers that do not say).
 */
import { disagreements, formatWorkerIdentity, parseWorkerIdentity, searchAttributeCommands, type Poller } from '../../src/worker/cluster-check';

const poller = (identity: string): Poller => ({ identity, ...parseWorkerIdentity(identity), kinds: ['workflow'], lastSeenMsAgo: 3000 });

test('identities round-trip; the state id is shortened to 8 characters; foreign identities are all process', () => {
  const id = formatWorkerIdentity({ process: 'host-a:41', codec: 'k0123456789abcdef', state: '6f1c2a9e-2b1d-4c55-9a61-0d7c7d1e2f3a' });
  expect(id).toBe('host-a:41 codec=k0123456789abcdef state=6f1c2a9e');
  expect(parseWorkerIdentity(id)).toEqual({ process: 'host-a:41', codec: 'k0123456789abcdef', state: '6f1c2a9e' });
  expect(formatWorkerIdentity({ process: 'host-a:41' })).toBe('host-a:41');
  expect(parseWorkerIdentity('12345@some-host')).toEqual({ process: '12345@some-host' });
});

describe('disagreements', () => {
  const self = { identity: 'me:1 codec=kaaaa state=11111111', codec: 'kaaaa', codecFingerprints: new Set(['kaaaa', 'kold']), state: '11111111-0000-4000-8000-000000000000' };

  test('a poller encrypting with a key this process lacks, or on another state store, is named', () => {
    const found = disagreements(self, [poller('other:2 codec=kbbbb state=22222222')], 'tq');
    expect(found.map((d) => d.kind)).toEqual(['codec', 'state']);
    expect(found[0]!.message).toContain('"other:2 codec=kbbbb state=22222222" (last seen 3 s ago) encrypts with codec=kbbbb');
    expect(found[1]!.message).toContain('INTEGRATION_AGENT_DATABASE_URL');
  });

  test('passes: itself, the same key and state, a key it also holds (rotation in progress), pollers that do not say', () => {
    expect(
      disagreements(self, [poller(self.identity), poller('b:2 codec=kaaaa state=11111111'), poller('c:3 codec=kold state=11111111'), poller('d:4'), poller('4242@legacy')], 'tq'),
    ).toEqual([]);
  });

  test('without a state id of its own, only keys are compared', () => {
    expect(disagreements({ ...self, state: undefined }, [poller('b:2 codec=kaaaa state=22222222')], 'tq')).toEqual([]);
  });
});

test('commands: one line per attribute, with namespace and type', () => {
  expect(searchAttributeCommands('prod', ['Phase', 'ServiceId'])).toEqual([
    'temporal operator search-attribute create --namespace prod --name Phase --type Keyword',
    'temporal operator search-attribute create --namespace prod --name ServiceId --type Keyword',
  ]);
});
