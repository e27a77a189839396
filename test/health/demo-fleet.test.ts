/**
 * The demo fleet `dev` starts: on free ports by default (two runs side by
 * side, or a port some other program holds, never collide), or from a fixed
 * base; the registry it writes follows the ports it got, so a worker loading
 * it probes the services that are really there.
 */
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { startDemoFleet } from '../../src/dev/example-fleet';
import { loadRegistryFile } from '../../src/activities/registry-file';

const EXAMPLE = join(__dirname, '..', '..', 'examples', 'services.yaml');

const strip = (r: ReturnType<typeof loadRegistryFile>) => r.services.map((s) => ({ ...s, endpoints: s.endpoints.map((e) => ({ ...e, url: '' })) }));

async function get(url: string): Promise<number> {
  return (await fetch(`${url}/health`)).status;
}

test('two demo fleets from examples/services.yaml side by side, on free ports; each registry follows its fleet; rotation across the new ports works', async () => {
  // Hold one of the example's own ports, as another program (or a second `dev`) would.
  const holder = createServer();
  await new Promise<void>((resolve) => holder.once('error', () => resolve()).listen(17101, '127.0.0.1', () => resolve()));
  const a = await startDemoFleet(EXAMPLE);
  const b = await startDemoFleet(EXAMPLE);
  try {
    const source = loadRegistryFile(EXAMPLE);
    for (const demo of [a, b]) {
      expect(strip(demo.registry)).toEqual(strip(source));
      expect(demo.registry.credentials).toEqual(source.credentials);
      for (const s of demo.registry.services) expect(s.endpoints[0]!.url).toBe(demo.fleet.get(s.id).url);
      // The file is the source's text: comments kept, only the URLs changed.
      const text = readFileSync(demo.registryPath, 'utf8');
      expect(text).toContain('# Eight services with dependencies');
      expect(text).toMatch(/^# Written by integration-agent from .*services\.yaml: its demo services on free ports\./);
    }
    const portsOf = (d: typeof a) => d.registry.services.map((s) => Number(new URL(s.endpoints[0]!.url).port));
    expect(new Set([...portsOf(a), ...portsOf(b)]).size).toBe(2 * source.services.length);
    expect(portsOf(a)).not.toContain(17101);
    expect(await get(a.fleet.get('auth-service').url)).toBe(200);
    expect(await get(b.fleet.get('legacy-gateway').url)).toBe(503);

    // A consumer checks a new secret with its issuer at the issuer's new port before taking it.
    const issuer = a.fleet.get('auth-service').url;
    const minted = (await (await fetch(`${issuer}/credentials/shared-api-key/versions`, { method: 'POST', headers: { 'idempotency-key': 'k1' } })).json()) as { versionId: string; secret: string };
    const put = await fetch(`${a.fleet.get('billing-api').url}/credentials/shared-api-key`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(minted) });
    expect(put.status).toBe(204);
    // ... and refuses one its own issuer (fleet a's) does not know, even if fleet b's minted it.
    const other = (await (await fetch(`${b.fleet.get('auth-service').url}/credentials/shared-api-key/versions`, { method: 'POST', headers: { 'idempotency-key': 'k2' } })).json()) as { versionId: string; secret: string };
    expect((await fetch(`${a.fleet.get('inventory-api').url}/credentials/shared-api-key`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(other) })).status).toBe(422);
  } finally {
    await a.close();
    await b.close();
    await new Promise((r) => holder.close(r));
  }
  expect(() => readFileSync(a.registryPath)).toThrow(/ENOENT/);
});

test('a fixed port base: base, base+1, ... in registry order; a bad base is a RangeError naming it', async () => {
  const outPath = join(tmpdir(), `ia-demo-${process.pid}.yaml`);
  let demo;
  // A base whose eight ports are free now (another test could take one in between: try a few).
  for (let attempt = 0; !demo && attempt < 5; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    try {
      demo = await startDemoFleet(EXAMPLE, { ports: { base }, outPath });
    } catch (err) {
      if (!/EADDRINUSE/.test((err as Error).message)) throw err;
    }
  }
  if (!demo) throw new Error('no free range of 8 ports found in 5 tries');
  try {
    const ports = demo.registry.services.map((s) => Number(new URL(s.endpoints[0]!.url).port));
    expect(ports).toEqual(ports.map((_, i) => ports[0]! + i));
    expect(demo.registryPath).toBe(outPath);
    expect(readFileSync(outPath, 'utf8')).toMatch(new RegExp(`demo services on ports from ${ports[0]}\\.`));
  } finally {
    await demo.close();
  }
  expect(readFileSync(outPath, 'utf8')).toContain('auth-service'); // a file the caller named stays
  rmSync(outPath);
  await expect(startDemoFleet(EXAMPLE, { ports: { base: 65_530 } })).rejects.toThrow(new RangeError('demo port base: expected a whole number from 1 to 65528 (the fleet takes 8 ports from it), got 65530'));
});
