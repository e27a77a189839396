/**
 * Worker identities and the agreement rules, as plain functions: what a
 * worker refuses to start beside, and what it lets pass (a codec key
 * rotation in progress, pollers that do not say).
 */
import { disagreements, formatWorkerIdentity, limitsStore, parseWorkerIdentity, searchAttributeCommands, type Poller } from '../../src/worker/cluster-check';

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

test('identities of this version list every codec key (encrypting first) and the limits store; the old single form still parses', () => {
  const id = formatWorkerIdentity({ process: 'h:7', codec: 'knew', codecKeys: ['knew', 'kold'], state: '11111111-2222', limits: 'redis:0a1b2c3d' });
  expect(id).toBe('h:7 codec=knew+kold state=11111111 limits=redis:0a1b2c3d');
  expect(parseWorkerIdentity(id)).toEqual({ process: 'h:7', codec: 'knew', codecKeys: ['knew', 'kold'], state: '11111111', limits: 'redis:0a1b2c3d' });
  // One key, this version (it states its limits store): the list is complete.
  expect(parseWorkerIdentity('h:8 codec=kone state=11111111 limits=local')).toEqual({ process: 'h:8', codec: 'kone', codecKeys: ['kone'], state: '11111111', limits: 'local' });
  // An earlier version named only its encrypting key: what else it holds is unknown.
  expect(parseWorkerIdentity('h:9 codec=kone state=11111111')).toEqual({ process: 'h:9', codec: 'kone', state: '11111111' });
});

describe('limitsStore', () => {
  test('local without a shared store, pg for the state database, redis (preferred) by a short hash of host:port/db, never the password', () => {
    expect(limitsStore({})).toBe('local');
    expect(limitsStore({ databaseUrl: 'postgres://a:secret@db:5432/agent' })).toBe('pg');
    const r = limitsStore({ databaseUrl: 'postgres://a:b@db/agent', redisUrl: 'redis://:hunter2@cache.example:6379/0' });
    expect(r).toMatch(/^redis:[0-9a-f]{8}$/);
    expect(r).not.toContain('hunter2');
    expect(limitsStore({ redisUrl: 'redis://other-user:other-pass@CACHE.example' })).toBe(r);
    expect(limitsStore({ redisUrl: 'redis://cache.example:6379/1' })).not.toBe(r);
    expect(limitsStore({ redisUrl: 'redis://cache2.example:6379/0' })).not.toBe(r);
  });
});

describe('disagreements, both ways and on the limits store', () => {
  const self = { identity: 'me:1', codec: 'knew', codecFingerprints: new Set(['knew', 'kold']), state: '11111111', limits: 'pg' };

  test('a poller that does not hold the key this process encrypts with is named, with the key-rotation order', () => {
    const found = disagreements(self, [poller('old:2 codec=kold state=11111111 limits=pg')], 'tq');
    expect(found.map((d) => d.kind)).toEqual(['codec-unheld']);
    expect(found[0]!.message).toContain('"old:2 codec=kold state=11111111 limits=pg" (last seen 3 s ago) holds codec=kold only');
    expect(found[0]!.message).toMatch(/this process encrypts with knew.*first add the new key to INTEGRATION_AGENT_CODEC_KEYS on every worker and client as a decryption key, listed after the current one.*then make it first everywhere/);
  });

  test('passes: a poller holding our encrypting key (rotation under way), an older poller that does not list its keys', () => {
    expect(disagreements(self, [poller('b:2 codec=kold+knew state=11111111 limits=pg'), poller('c:3 codec=knew+kold state=11111111 limits=pg'), poller('d:4 codec=kold state=11111111')], 'tq')).toEqual([]);
  });

  test('a poller counting limits in another store is named, with the variables to set alike; pollers that do not say are not judged', () => {
    const found = disagreements(self, [poller('r:5 codec=knew state=11111111 limits=redis:0a1b2c3d'), poller('l:6 codec=knew state=11111111 limits=local')], 'tq');
    expect(found.map((d) => [d.kind, d.poller.process])).toEqual([
      ['limits', 'r:5'],
      ['limits', 'l:6'],
    ]);
    expect(found[0]!.message).toContain('"r:5 codec=knew state=11111111 limits=redis:0a1b2c3d" (last seen 3 s ago) counts limits in limits=redis:0a1b2c3d, this process in limits=pg');
    expect(found[0]!.message).toMatch(/INTEGRATION_AGENT_REDIS_URL and INTEGRATION_AGENT_DATABASE_URL the same on every worker/);
    expect(disagreements(self, [poller('x:7 codec=knew state=11111111')], 'tq')).toEqual([]);
    expect(disagreements({ ...self, limits: undefined }, [poller('r:5 codec=knew state=11111111 limits=redis:0a1b2c3d')], 'tq')).toEqual([]);
  });
});

test('commands: one line per attribute, with namespace and type', () => {
  expect(searchAttributeCommands('prod', ['Phase', 'ServiceId'])).toEqual([
    'temporal operator search-attribute create --namespace prod --name Phase --type Keyword',
    'temporal operator search-attribute create --namespace prod --name ServiceId --type Keyword',
  ]);
});
