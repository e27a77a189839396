/**
 * One master key per state database: a process whose key cannot open the
 * live secrets already stored refuses at open (worker start, `credentials
 * import`, `state migrate` into such a target), naming the key ids, instead
 * of sealing new secrets no other process can read.
 */
import { randomBytes } from 'node:crypto';
import { keyId } from '../../src/state';
import { freshLocation, openAt, STATE_BACKENDS, useStateBackends } from '../helpers/state';

useStateBackends();

describe.each(STATE_BACKENDS)('%s: the master key must fit the stored secrets', (kind) => {
  it('refuses another key, names both key ids, and opens with the right key or with it kept as an old key', async () => {
    const loc = await freshLocation(kind);
    const right = randomBytes(32);
    const wrong = randomBytes(32);
    const first = await openAt(loc, { masterKey: right });
    await first.credentials.importCurrent('api-key', 'a-secret-value', 'cli:test');
    await first.close();

    const err = await openAt(loc, { masterKey: wrong }).then(
      async (s) => {
        await s.close();
        return undefined;
      },
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toContain(keyId(right));
    expect(err!.message).toContain(keyId(wrong));
    expect(err!.message).toContain('INTEGRATION_AGENT_MASTER_KEY');
    expect(err!.message).not.toContain('a-secret-value');

    const again = await openAt(loc, { masterKey: right });
    expect(await again.credentials.readSecret('api-key')).toBe('a-secret-value');
    await again.close();
    const rotated = await openAt(loc, { masterKey: wrong, oldKeys: [right] });
    expect(await rotated.credentials.readSecret('api-key')).toBe('a-secret-value');
    await rotated.close();
  });

  it('does not judge retired versions (no label) sealed under a key no longer held', async () => {
    const loc = await freshLocation(kind);
    const old = randomBytes(32);
    const current = randomBytes(32);
    const s1 = await openAt(loc, { masterKey: old });
    await s1.credentials.importCurrent('api-key', 'v1', 'cli:test');
    await s1.close();
    const s2 = await openAt(loc, { masterKey: current, oldKeys: [old] });
    await s2.credentials.importCurrent('api-key', 'v2', 'cli:test'); // v1 becomes PREVIOUS
    await s2.credentials.importCurrent('api-key', 'v3', 'cli:test'); // v1 loses its label
    await s2.close();
    const s3 = await openAt(loc, { masterKey: current });
    expect(await s3.credentials.readSecret('api-key')).toBe('v3');
    await s3.close();
  });
});
