/**
 * The main job end to end, as `npm start -- --json` runs it: embedded dev
 * server, worker, demo fleet, a sweep and a rotation; then Ctrl-C.
 * (This is the one test that starts a second dev server: it tests the command that embeds it.)
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/dev/dev-server';

const BIN = join(__dirname, '..', '..', 'bin', 'integration-agent.js');
const STATUSES = ['healthy', 'degraded', 'unhealthy', 'impacted', 'unknown', 'maintenance'];

test('dev --json on a fresh machine (no data dir yet): every example service has a status, the credential rotates, Ctrl-C exits 0 within 10 s', async () => {
  // As on a fresh machine: the data dir does not exist yet (dev creates it).
  const dataDir = join(mkdtempSync(join(tmpdir(), 'ia-dev-')), 'home', '.local', 'share', 'integration-agent');
  const [port, uiPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, [BIN, 'dev', '--json', '--port', String(port), '--ui-port', String(uiPort)], {
    env: { ...process.env, INTEGRATION_AGENT_DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  try {
    const deadline = Date.now() + 120_000;
    let report: any;
    while (!report) {
      try {
        report = JSON.parse(stdout);
      } catch {
        /* not complete yet */
      }
      if (child.exitCode !== null) throw new Error(`dev exited early with ${child.exitCode}\n${stdout}\n${stderr}`);
      if (Date.now() > deadline) throw new Error(`no JSON report in time\n${stdout}\n${stderr}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(report.temporal.address).toBe(`127.0.0.1:${port}`);
    expect(report.temporal.uiUrl).toBe(`http://127.0.0.1:${uiPort}`);
    expect(report.sweep.workflowId).toMatch(/^sweep\//);
    const byId = Object.fromEntries(report.sweep.services.map((s: any) => [s.id, s]));
    expect(Object.keys(byId).sort()).toEqual(
      ['auth-service', 'billing-api', 'inventory-api', 'legacy-gateway', 'notifications-webhook', 'orders-db', 'reports-api', 'storefront'].sort(),
    );
    for (const s of report.sweep.services) expect(STATUSES).toContain(s.status);
    expect(byId['auth-service'].status).toBe('healthy');
    expect(byId['legacy-gateway'].status).toBe('unhealthy');
    expect(byId['storefront']).toMatchObject({ status: 'impacted', rootCause: 'legacy-gateway' });
    expect(['degraded', 'unhealthy']).toContain(byId['reports-api'].status);
    expect(report.rotations).toEqual([
      expect.objectContaining({ credentialId: 'shared-api-key', workflowId: 'rotation/shared-api-key', status: 'completed', versionId: expect.any(String) }),
    ]);
    // The Web UI answers.
    const ui = await fetch(report.temporal.uiUrl);
    expect(ui.status).toBe(200);

    const t0 = Date.now();
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (c) => resolve(c))));
    expect({ code, withinMs: Date.now() - t0 < 10_000 }).toEqual({ code: 0, withinMs: true });
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}, 180_000);
