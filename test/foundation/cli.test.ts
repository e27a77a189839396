/**
 * The CLI as a user meets it: a real process, the built `lib/` (npm test builds it first).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testAddress, uniqueTaskQueue } from '../helpers/temporal';

const BIN = join(__dirname, '..', '..', 'bin', 'integration-agent.js');
const EXAMPLE_REGISTRY = join(__dirname, '..', '..', 'examples', 'services.yaml');

beforeAll(() => {
  if (!existsSync(join(__dirname, '..', '..', 'lib', 'client', 'cli', 'main.js'))) throw new Error('lib/ is not built: run `npm run build` (npm test does it first)');
});

function cli(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });
}

test('--help lists the commands', () => {
  const r = cli(['--help']);
  expect(r.status).toBe(0);
  for (const c of ['dev', 'worker', 'sweep', 'codec-server']) expect(r.stdout).toContain(c);
});

test('an unknown command fails with one line and a non-zero code', () => {
  const r = cli(['frobnicate']);
  expect(r.status).not.toBe(0);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(/unknown command 'frobnicate'/);
});

test('an unreachable server is one line naming the address, no stack trace', () => {
  const r = cli(['sweep', '--json'], { TEMPORAL_ADDRESS: '127.0.0.1:1', INTEGRATION_AGENT_DATA_DIR: mkdtempSync(join(tmpdir(), 'ia-cli-')) });
  expect(r.status).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^integration-agent: cannot reach Temporal at 127\.0\.0\.1:1/);
  expect(r.stderr).not.toMatch(/\n\s+at /);
});

test('bad configuration is named', () => {
  const r = cli(['sweep'], { TEMPORAL_ADDRESS: 'nonsense' });
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/TEMPORAL_ADDRESS="nonsense": must be host:port/);
});

test('an invalid registry stops the worker before it starts, with the file and line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ia-cli-'));
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, 'services:\n  - id: a\n    type: api\n    endpoints: [{ url: "not a url" }]\n');
  const r = cli(['worker', '--registry', file], { TEMPORAL_ADDRESS: testAddress(), INTEGRATION_AGENT_DATA_DIR: dir });
  expect(r.status).toBe(1);
  expect(r.stderr).toContain(`${file}:4`);
  expect(r.stderr).not.toMatch(/\n\s+at /);
});

describe.each(['SIGINT', 'SIGTERM'] as const)('worker on %s', (signal) => {
  test('exits 0 within 10 s', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ia-worker-'));
    const child = spawn(process.execPath, [BIN, 'worker'], {
      env: { ...process.env, TEMPORAL_ADDRESS: testAddress(), TEMPORAL_TASK_QUEUE: uniqueTaskQueue('sig'), INTEGRATION_AGENT_DATA_DIR: dir, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const deadline = Date.now() + 30_000;
    while (!out.includes('worker started')) {
      if (child.exitCode !== null) throw new Error(`worker exited early (${child.exitCode}):\n${out}`);
      if (Date.now() > deadline) throw new Error(`worker did not start:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const t0 = Date.now();
    child.kill(signal);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect({ code, withinMs: Date.now() - t0 < 10_000 }).toEqual({ code: 0, withinMs: true });
    expect(out).toContain('worker stopped');
  });
});

test('sweep, rotate and the state reads fail at once, in one line, when no worker polls the task queue', () => {
  const env = { TEMPORAL_ADDRESS: testAddress(), TEMPORAL_TASK_QUEUE: uniqueTaskQueue('nobody'), INTEGRATION_AGENT_DATA_DIR: mkdtempSync(join(tmpdir(), 'ia-cli-')) };
  for (const args of [['sweep', '--json'], ['rotate', 'shared-api-key', '--json'], ['credentials', 'list', '--json'], ['credentials', 'status', 'shared-api-key'], ['audit', '--json']]) {
    const r = cli(args, env); // spawnSync's 30 s timeout turns a hang into a failure (status null)
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^integration-agent: no worker is polling task queue "nobody-/)]);
  }
});

test('with INTEGRATION_AGENT_REGISTRY set, an unknown id is named first: before "no worker" (rotate) and before the secret is read (import)', () => {
  const env = {
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_TASK_QUEUE: uniqueTaskQueue('nobody'),
    INTEGRATION_AGENT_DATA_DIR: mkdtempSync(join(tmpdir(), 'ia-cli-')),
    INTEGRATION_AGENT_REGISTRY: join(__dirname, '..', '..', 'examples', 'services.yaml'),
  };
  const rotate = cli(['rotate', 'shared-api-ky'], env);
  expect(rotate.status).toBe(1);
  expect(rotate.stderr).toMatch(/unknown credential "shared-api-ky" .*did you mean "shared-api-key"/);
  // stdin is empty here (spawnSync gives none): the id is refused, not the empty secret.
  const imported = cli(['credentials', 'import', 'nope'], env);
  expect(imported.status).toBe(1);
  expect(imported.stderr).toMatch(/unknown credential "nope"/);
  expect(imported.stderr).not.toMatch(/empty/);
});

test('unknown service and credential ids are refused with a did-you-mean, exit 1, nothing created; --every takes a unit', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'ia-cli-ids-'));
  const env = {
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_TASK_QUEUE: uniqueTaskQueue('ids'),
    INTEGRATION_AGENT_DATA_DIR: dataDir,
    INTEGRATION_AGENT_REGISTRY: EXAMPLE_REGISTRY,
  };
  const refused = (args: string[], message: string, input?: string) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000, input });
    expect({ args, status: r.status, stdout: r.stdout, stderr: r.stderr }).toEqual({ args, status: 1, stdout: '', stderr: `integration-agent: ${message}\n` });
  };
  const where = `in the registry ${EXAMPLE_REGISTRY}`;
  refused(['breaker', 'show', 'nope'], `unknown service "nope" ${where}`);
  refused(['breaker', 'show', 'auth-servce'], `unknown service "auth-servce" ${where} (did you mean "auth-service"?)`);
  refused(['breaker', 'open', 'legacy-gatway', '--json'], `unknown service "legacy-gatway" ${where} (did you mean "legacy-gateway"?)`);
  refused(['status', 'reports-ap'], `unknown service "reports-ap" ${where} (did you mean "reports-api"?)`);
  refused(['credentials', 'import', 'shared-api-kye'], `unknown credential "shared-api-kye" ${where} (did you mean "shared-api-key"?)`, 'some-secret-value\n');
  refused(['status', '--watch', '--every', '2000'], '--every: "2000" has no unit: write 2000ms or 2000s (a duration takes a unit: 500ms, 2s, 1m)');
  // Nothing was created: no breaker workflow for the typos (count through the CLI's own view of breakers).
  const list = spawnSync(process.execPath, [BIN, 'breakers', '--json'], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });
  expect(list.status).toBe(0);
  const ids = (JSON.parse(list.stdout) as { serviceId: string }[]).map((b) => b.serviceId);
  expect(ids).not.toContain('nope');
  expect(ids).not.toContain('legacy-gatway');
  const help = cli(['status', '--help']);
  expect(help.stdout).toMatch(/--every <duration>\s+refresh period with --watch, with a unit \(500ms, 2s, 1m\)\s+\(default: 2s\)/);
});
