/**
 * `integration-agent demo-fleet` serves the services of a registry whose URLs
 * name another host (in compose: http://demo-services:<port>), each on its
 * registry port: the compose registry with its ports moved to free ones, so the
 * test never collides with a running `dev`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const CLI = join(ROOT, 'test', 'helpers', 'cli-entry.ts');

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

let dir: string;
let fleet: ChildProcess | undefined;
const portOf = new Map<string, number>();

type Report = { services: { id: string; listen: string; registryUrl: string }[] };

/** The compose registry with its ports moved to free ones, served by `demo-fleet`; its report. */
async function startFleet(): Promise<Report> {
  let text = readFileSync(join(ROOT, 'deploy', 'compose', 'services.yaml'), 'utf8');
  const ports = [...new Set([...text.matchAll(/http:\/\/demo-services:(\d+)/g)].map((m) => m[1]!))];
  expect(ports.length).toBe(8);
  const moved = new Map<string, number>();
  for (const p of ports) moved.set(p, await freePort());
  text = text.replace(/http:\/\/demo-services:(\d+)/g, (_, p: string) => `http://demo-services:${moved.get(p)}`);
  const registry = join(dir, 'services.yaml');
  writeFileSync(registry, text);
  fleet = spawn(process.execPath, ['--require', 'tsx/cjs', CLI, 'demo-fleet', '--registry', registry, '--listen', '127.0.0.1', '--json'], {
    env: { ...process.env, INTEGRATION_AGENT_DATA_DIR: dir, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  fleet.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  return new Promise<Report>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo-fleet printed no report in 30 s: ${out} ${err}`)), 30_000);
    fleet!.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      try {
        const parsed = JSON.parse(out) as Report;
        clearTimeout(timer);
        resolve(parsed);
      } catch {
        // not complete yet
      }
    });
    fleet!.once('exit', (code) => (clearTimeout(timer), reject(new Error(`demo-fleet exited with ${code}: ${err}`))));
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ia-demo-fleet-'));
  // A port found free can be taken by another socket before the child listens on it (a fresh CI run
  // lost one to an outgoing connection's ephemeral port): then pick new ones, at most three times.
  let report: Report | undefined;
  for (let attempt = 1; !report; attempt++) {
    try {
      report = await startFleet();
    } catch (err) {
      if (attempt >= 3 || !/EADDRINUSE/.test((err as Error).message)) throw err;
    }
  }
  for (const s of report.services) {
    const registryPort = Number(new URL(s.registryUrl).port);
    expect(new URL(s.registryUrl).hostname).toBe('demo-services');
    expect(s.listen).toBe(`http://127.0.0.1:${registryPort}`);
    portOf.set(s.id, registryPort);
  }
}, 60_000);

afterAll(async () => {
  if (fleet && fleet.exitCode === null) {
    const exited = new Promise((r) => fleet!.once('exit', r));
    fleet.kill('SIGTERM');
    await exited;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const url = (id: string, path: string) => `http://127.0.0.1:${portOf.get(id)}${path}`;

test('every service answers on its registry port: healthy ones 200, legacy-gateway failing, reports-api slow', async () => {
  expect(portOf.size).toBe(8);
  for (const id of portOf.keys()) {
    if (id === 'reports-api') continue;
    const r = await fetch(url(id, '/health'));
    expect({ id, status: r.status }).toEqual({ id, status: id === 'legacy-gateway' ? 503 : 200 });
  }
  const started = Date.now();
  expect((await fetch(url('reports-api', '/health'))).status).toBe(200);
  expect(Date.now() - started).toBeGreaterThanOrEqual(600);
});

test('a consumer checks a new secret with its issuer inside the fleet, though the registry names another host', async () => {
  const minted = await fetch(url('auth-service', '/credentials/shared-api-key/versions'), { method: 'POST', headers: { 'idempotency-key': 'demo-fleet-test' } });
  expect(minted.status).toBe(201);
  const version = (await minted.json()) as { versionId: string; secret: string };
  const install = await fetch(url('billing-api', '/credentials/shared-api-key'), {
    method: 'PUT',
    headers: { 'content-type': 'application/json', 'idempotency-key': 'demo-fleet-test' },
    body: JSON.stringify(version),
  });
  expect(install.status).toBe(204);
  const held = (await (await fetch(url('billing-api', '/credentials/shared-api-key'))).json()) as { versionId: string };
  expect(held.versionId).toBe(version.versionId);
});

test('SIGTERM stops it with exit 0', async () => {
  const exited = new Promise<number | null>((r) => fleet!.once('exit', (code) => r(code)));
  fleet!.kill('SIGTERM');
  expect(await exited).toBe(0);
});
