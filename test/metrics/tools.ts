/**
 * Real Prometheus tools for the metrics tests: Debian's `promtool` and
 * `prometheus` (installed by scripts/setup-system.sh), a Prometheus server on
 * loopback with its storage in a temp dir, and its HTTP query API.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

/** Where the tools are looked for: PATH, then Debian's /usr/bin. */
function which(tool: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
  const found = r.status === 0 ? r.stdout.trim() : '';
  if (found) return found;
  return existsSync(`/usr/bin/${tool}`) ? `/usr/bin/${tool}` : undefined;
}

/**
 * The paths of `promtool` and `prometheus`.
 * @throws Error naming scripts/setup-system.sh when either is missing (the tests do not skip).
 */
export function prometheusTools(): { promtool: string; prometheus: string } {
  const promtool = which('promtool');
  const prometheus = which('prometheus');
  if (!promtool || !prometheus) {
    throw new Error(
      `${!promtool ? 'promtool' : 'prometheus'} is not installed: the metrics tests run Debian's Prometheus on loopback. ` +
        'Run scripts/setup-system.sh (it installs the prometheus package), or `apt-get install prometheus`.',
    );
  }
  return { promtool, prometheus };
}

/** Runs `promtool <args>` with `input` on stdin; returns its exit code and everything it printed. */
export function promtool(bin: string, args: string[], input?: string): { code: number | null; output: string } {
  const r = spawnSync(bin, args, { input, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

/** A free TCP port on 127.0.0.1 (bound and released: another process may still take it first). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A running Prometheus server. */
export interface PrometheusServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Runs an instant query; returns the result vector (or throws with Prometheus' error). */
  query(expr: string): Promise<unknown[]>;
  /** The scrape targets' health, by job. */
  targets(): Promise<{ job: string; health: string; lastError: string }[]>;
  /** What Prometheus printed (last 4000 characters). */
  logs(): string;
  stop(): Promise<void>;
}

/**
 * Starts `prometheus` on 127.0.0.1 with `config` (YAML text) written to `dir`,
 * its TSDB in `dir/data`, and resolves once it answers /-/ready.
 * @throws Error with its output when it exits or is not ready within 30 s.
 */
export async function startPrometheus(bin: string, dir: string, config: string): Promise<PrometheusServer> {
  const configFile = join(dir, 'prometheus.yml');
  writeFileSync(configFile, config);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(bin, [`--config.file=${configFile}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-4000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`prometheus exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${out}`);
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`prometheus not ready at ${url} within 30 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    async query(expr) {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: unknown[] } };
      if (body.status !== 'success') throw new Error(`query ${expr} failed: ${body.error}`);
      return body.data!.resultType === 'vector' || body.data!.resultType === 'matrix' ? body.data!.result : [body.data!.result];
    },
    async targets() {
      const res = await fetch(`${url}/api/v1/targets`);
      const body = (await res.json()) as { data: { activeTargets: { labels: { job: string }; health: string; lastError: string }[] } };
      return body.data.activeTargets.map((t) => ({ job: t.labels.job, health: t.health, lastError: t.lastError }));
    },
    logs: () => out,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/**
 * A Prometheus config scraping loopback targets every second.
 * @param jobs job name → `host:port` targets.
 */
export function scrapeConfig(jobs: Record<string, string[]>): string {
  const lines = ['global:', '  scrape_interval: 1s', '  evaluation_interval: 1s', 'scrape_configs:'];
  for (const [job, targets] of Object.entries(jobs)) {
    lines.push(`  - job_name: ${job}`, `    static_configs: [{ targets: [${targets.map((t) => `'${t}'`).join(', ')}] }]`);
  }
  return `${lines.join('\n')}\n`;
}

/** A dashboard panel's expression as Grafana would send it: its variables substituted (every service, 15 s scrapes, the last 5 minutes). */
export function grafanaToPromQL(expr: string): string {
  return expr
    .replace(/\$service\b|\$\{service\}/g, '.*')
    .replace(/\$__rate_interval\b|\$\{__rate_interval\}/g, '1m')
    .replace(/\$__interval\b|\$\{__interval\}/g, '15s')
    .replace(/\$__range\b|\$\{__range\}/g, '5m');
}
