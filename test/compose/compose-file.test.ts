/**
 * docker-compose.yml read as a reviewer would, since no Docker engine runs in
 * the test environment: every long-running service says how it is healthy,
 * one-shot jobs fail loudly and are waited for, every file it mounts exists,
 * secrets have no defaults, no image floats, and only nginx faces users.
 * When a `docker compose` CLI is present, `docker compose config` must accept
 * the file too (it parses and interpolates offline).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { loadRegistryFile } from '../../src/activities/registry-file';
import { findGo } from '../../src/dev/temporal-cli';

const ROOT = join(__dirname, '..', '..');
const COMPOSE_FILE = join(ROOT, 'docker-compose.yml');

interface Healthcheck {
  test?: string | string[];
  disable?: boolean;
}
interface Service {
  image?: string;
  build?: unknown;
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: string[] | Record<string, string>;
  volumes?: (string | { type: string; source: string; target: string; bind?: { create_host_path?: boolean } })[];
  ports?: string[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: Healthcheck;
  restart?: string;
}

const compose = parse(readFileSync(COMPOSE_FILE, 'utf8')) as { services: Record<string, Service> };
const services = Object.entries(compose.services);
/** Jobs that run once and exit: they say so with `restart: "no"`. */
const oneShot = new Set(services.filter(([, s]) => s.restart === 'no').map(([name]) => name));
const longRunning = services.filter(([name]) => !oneShot.has(name));

/** Host files the user creates (documented where they are mounted), not in git. */
const USER_CREATED: Record<string, string> = {
  'deploy/nginx/htpasswd': 'deploy/nginx/README.md',
};

const env = (s: Service): Record<string, string> =>
  Array.isArray(s.environment)
    ? Object.fromEntries(s.environment.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]))
    : (s.environment ?? {});
const scripts = (s: Service): string[] =>
  [s.command, s.entrypoint, s.healthcheck?.test].flatMap((x) => (x === undefined ? [] : Array.isArray(x) ? x : [x]));
/** `${VAR:-default}` -> default, as compose does with VAR unset. */
const withDefaults = (text: string) => text.replace(/\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}/g, '$1');

test('the file has the services the deployment needs', () => {
  for (const name of ['postgresql', 'db-setup', 'temporal-schema', 'temporal', 'temporal-namespace', 'worker', 'codec-server', 'temporal-ui', 'nginx', 'demo-services', 'prometheus', 'grafana']) {
    expect(compose.services).toHaveProperty([name]);
  }
  expect([...oneShot].sort()).toEqual(['db-setup', 'temporal-namespace', 'temporal-schema']);
});

test.each(longRunning.map(([name]) => name))('long-running service %s has a healthcheck', (name) => {
  const hc = compose.services[name]!.healthcheck;
  expect(hc?.disable).not.toBe(true);
  expect(hc?.test).toBeDefined();
  expect([hc!.test].flat()[0]).not.toBe('NONE');
});

test('every depends_on names a condition: one-shot jobs service_completed_successfully, the rest service_healthy', () => {
  for (const [name, s] of services) {
    if (!s.depends_on) continue;
    expect({ name, dependsOn: Array.isArray(s.depends_on) ? 'list without conditions' : 'conditions' }).toEqual({ name, dependsOn: 'conditions' });
    for (const [dep, { condition }] of Object.entries(s.depends_on as Record<string, { condition?: string }>)) {
      expect(compose.services).toHaveProperty([dep]);
      expect({ name, dep, condition }).toEqual({ name, dep, condition: oneShot.has(dep) ? 'service_completed_successfully' : 'service_healthy' });
    }
  }
});

test('no command hides a failure (no `|| true`, no `; exit 0`), and the setup scripts stop at the first error', () => {
  for (const [name, s] of services) {
    for (const line of scripts(s)) {
      expect({ name, line }).not.toEqual({ name, line: expect.stringMatching(/\|\|\s*(true|:)\b|;\s*exit 0\b/) });
    }
  }
  for (const name of oneShot) expect(compose.services[name]!.entrypoint).toEqual(['/bin/sh', '-ec']);
  expect(scripts(compose.services['db-setup']!).join('\n')).toContain('ON_ERROR_STOP=1');
});

test('every bind-mounted host path exists in the repository, or is one the user creates and the docs say how', () => {
  const mounts: { service: string; source: string }[] = [];
  for (const [name, s] of services) {
    for (const v of s.volumes ?? []) {
      const source = typeof v === 'string' ? withDefaults(v).split(':')[0]! : v.type === 'bind' ? withDefaults(v.source) : '';
      if (/^[./]/.test(source)) mounts.push({ service: name, source });
      // A mount of a file the user must create may not silently become an empty directory.
      if (typeof v !== 'string' && v.type === 'bind' && v.source.replace(/^\.\//, '') in USER_CREATED) expect(v.bind?.create_host_path).toBe(false);
    }
  }
  expect(mounts.length).toBeGreaterThanOrEqual(8);
  for (const { service, source } of mounts) {
    const rel = source.replace(/^\.\//, '');
    if (rel in USER_CREATED) {
      expect(readFileSync(join(ROOT, USER_CREATED[rel]!), 'utf8')).toContain(rel);
      expect(readFileSync(join(ROOT, 'deploy', 'nginx', '.gitignore'), 'utf8')).toMatch(/^htpasswd$/m);
      continue;
    }
    expect({ service, source, exists: existsSync(resolve(ROOT, source)) }).toEqual({ service, source, exists: true });
  }
});

test('secrets are required (`${VAR:?message}`), never defaulted, wherever they are used; the workers need nothing optional', () => {
  const secrets = ['AGENT_DB_PASSWORD', 'INTEGRATION_AGENT_CODEC_KEYS', 'INTEGRATION_AGENT_MASTER_KEY', 'CODEC_SERVER_TOKEN', 'GRAFANA_ADMIN_PASSWORD'];
  const text = readFileSync(COMPOSE_FILE, 'utf8');
  for (const name of secrets) {
    const uses = [...text.matchAll(new RegExp(`\\$\\{${name}([^}]*)\\}`, 'g'))].map((m) => m[1]);
    expect({ name, used: uses.length > 0 }).toEqual({ name, used: true });
    for (const rest of uses) expect({ name, rest }).toEqual({ name, rest: expect.stringMatching(/^:\?.+/) });
  }
  const worker = compose.services.worker!;
  for (const value of Object.values(env(worker))) {
    for (const m of value.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}/g)) expect({ variable: m[1], rest: m[2] }).toEqual({ variable: m[1], rest: expect.stringMatching(/^:\?.+/) });
  }
});

test('every image is pinned: a tag, never `latest`', () => {
  for (const [name, s] of services) {
    if (!s.image) {
      expect({ name, build: s.build }).toEqual({ name, build: '.' });
      continue;
    }
    const tag = /:([^/:]+)$/.exec(s.image)?.[1];
    expect({ name, image: s.image, tag }).toEqual({ name, image: s.image, tag: expect.stringMatching(/^(?!latest$)[\w][\w.-]*$/) });
  }
  // The header says how the tags were checked and how to re-check them.
  expect(readFileSync(COMPOSE_FILE, 'utf8').split('\nservices:')[0]).toMatch(/docker manifest inspect/);
});

test('only nginx faces users: the codec server and the UI publish no port; the UI decodes through nginx at its own origin', () => {
  expect(compose.services['codec-server']!.ports).toBeUndefined();
  expect(compose.services['temporal-ui']!.ports).toBeUndefined();
  expect(compose.services.nginx!.ports).toEqual(['8080:8080']);
  // Every other published port (Temporal's frontend has no authentication here) is bound to loopback.
  for (const [name, s] of Object.entries(compose.services)) {
    if (name === 'nginx') continue;
    for (const port of s.ports ?? []) expect({ name, port }).toEqual({ name, port: expect.stringMatching(/^127\.0\.0\.1:/) });
  }
  const ui = env(compose.services['temporal-ui']!);
  const publicUrl = withDefaults(ui.TEMPORAL_CORS_ORIGINS!);
  expect(publicUrl).toBe('http://localhost:8080');
  expect(withDefaults(ui.TEMPORAL_CODEC_ENDPOINT!)).toBe(`${publicUrl}/codec`);
  expect(ui.TEMPORAL_CODEC_PASS_ACCESS_TOKEN).toBe('false');
  expect(ui.TEMPORAL_CODEC_INCLUDE_CREDENTIALS).toBe('true');
  // The codec server's CORS admits that origin.
  const codecCommand = compose.services['codec-server']!.command as string[];
  expect(withDefaults(codecCommand[codecCommand.indexOf('--ui-origin') + 1]!)).toBe(publicUrl);
  // nginx's environment provides every variable of its template, and points at the two services.
  const template = readFileSync(join(ROOT, 'deploy', 'nginx', 'templates', 'default.conf.template'), 'utf8');
  const nginxEnv = env(compose.services.nginx!);
  for (const [, name] of template.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) expect(nginxEnv).toHaveProperty([name!]);
  expect(nginxEnv.TEMPORAL_UI_UPSTREAM).toBe('temporal-ui:8080');
  expect(nginxEnv.CODEC_SERVER_UPSTREAM).toBe(`codec-server:${codecCommand[codecCommand.indexOf('--listen') + 1]!.split(':')[1]}`);
  expect(nginxEnv.NGINX_LISTEN).toBe('8080');
});

test('the workers expose both metrics endpoints, and their healthcheck reads the application one', () => {
  const worker = compose.services.worker!;
  const e = env(worker);
  expect(e.METRICS_ADDRESS).toBe('0.0.0.0:9464');
  expect(e.SDK_METRICS_ADDRESS).toBe('0.0.0.0:9465');
  expect(scripts(worker).join(' ')).toContain('http://127.0.0.1:9464/metrics');
  expect(e.INTEGRATION_AGENT_DATABASE_URL).toMatch(/@postgresql:5432\/integration_agent$/);
  // Prometheus scrapes those ports on every replica (found by the service name), and Grafana reads Prometheus.
  const prometheus = parse(readFileSync(join(ROOT, 'deploy', 'prometheus', 'prometheus.yml'), 'utf8')) as {
    scrape_configs: { dns_sd_configs?: { names: string[]; port: number }[] }[];
  };
  const scraped = prometheus.scrape_configs.flatMap((j) => j.dns_sd_configs ?? []).map((d) => `${d.names.join(',')}:${d.port}`);
  expect(scraped.sort()).toEqual(['worker:9464', 'worker:9465']);
  expect(compose.services.prometheus!.volumes).toContain('./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro');
});

test('Grafana: provisioning and dashboards mounted where the provisioning files say, admin password required', () => {
  const grafana = compose.services.grafana!;
  expect(grafana.volumes).toContain('./deploy/grafana/provisioning:/etc/grafana/provisioning:ro');
  const dashboards = parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'provisioning', 'dashboards', 'integration-agent.yaml'), 'utf8')) as {
    providers: { options: { path: string } }[];
  };
  for (const p of dashboards.providers) expect(grafana.volumes).toContain(`./deploy/grafana/dashboards:${p.options.path}:ro`);
  const datasources = readFileSync(join(ROOT, 'deploy', 'grafana', 'provisioning', 'datasources', 'prometheus.yaml'), 'utf8');
  expect(datasources).toContain('url: http://prometheus:9090');
  expect(grafana.ports).toEqual(['127.0.0.1:3000:3000']);
  expect(env(grafana).GF_SECURITY_ADMIN_PASSWORD).toMatch(/^\$\{GRAFANA_ADMIN_PASSWORD:\?.+\}$/);
});

test('the compose registry names the demo-services container, serves the demo fleet of examples/services.yaml, and is what the workers mount', () => {
  const composeRegistry = loadRegistryFile(join(ROOT, 'deploy', 'compose', 'services.yaml'));
  const example = loadRegistryFile(join(ROOT, 'examples', 'services.yaml'));
  for (const s of composeRegistry.services) expect({ id: s.id, host: new URL(s.endpoints[0]!.url).hostname }).toEqual({ id: s.id, host: 'demo-services' });
  // Same services, dependencies, credentials and checks; only where they listen differs.
  const shape = (r: typeof example) =>
    JSON.parse(JSON.stringify({ services: r.services, credentials: r.credentials }, (key, value: unknown) => (key === 'url' && typeof value === 'string' ? new URL(value).pathname : value))) as unknown;
  expect(shape(composeRegistry)).toEqual(shape(example));
  // The demo container serves that file; its healthcheck probes one of its services.
  const demo = compose.services['demo-services']!;
  expect(demo.volumes).toContain('./deploy/compose/services.yaml:/demo/services.yaml:ro');
  expect(demo.command).toEqual(['demo-fleet', '--registry', '/demo/services.yaml', '--listen', '0.0.0.0']);
  const probed = /127\.0\.0\.1:(\d+)\/health/.exec(scripts(demo).join(' '))?.[1];
  const healthy = composeRegistry.services.filter((s) => !['reports-api', 'legacy-gateway'].includes(s.id)).map((s) => new URL(s.endpoints[0]!.url).port);
  expect(healthy).toContain(probed);
  // The workers read deploy/compose/ as /config unless told otherwise.
  expect(compose.services.worker!.volumes).toContain('${INTEGRATION_AGENT_CONFIG_DIR:-./deploy/compose}:/config:ro');
});

// The file as Compose v2 loads it: compose-spec/compose-go (tools/compose-check, built with Go from the
// module proxy), since no Docker engine or compose plugin runs here or in CI.
test("Compose's own loader accepts the file, and refuses it without a required secret, naming it", () => {
  const go = findGo();
  if (!go) throw new Error('no Go toolchain: the compose check builds tools/compose-check with Go (the same Go that builds the Temporal CLI; see README)');
  const bin = join(ROOT, '.cache', 'bin', 'compose-check');
  const built = spawnSync(go, ['build', '-o', bin, '.'], { cwd: join(ROOT, 'tools', 'compose-check'), encoding: 'utf8' });
  // (stderr carries "go: downloading …" on a fresh machine; it is shown only when the build fails.)
  expect({ status: built.status, stderr: built.status === 0 ? '' : built.stderr }).toEqual({ status: 0, stderr: '' });
  const secrets = { AGENT_DB_PASSWORD: 'x', INTEGRATION_AGENT_CODEC_KEYS: 'k1:x', INTEGRATION_AGENT_MASTER_KEY: 'x', CODEC_SERVER_TOKEN: 'x', GRAFANA_ADMIN_PASSWORD: 'x' };
  const ok = spawnSync(bin, [COMPOSE_FILE], { cwd: ROOT, encoding: 'utf8', env: { PATH: process.env.PATH, ...secrets } });
  expect(ok.stderr).toBe('');
  expect(ok.status).toBe(0);
  // The resolved project keeps what the other tests read from the raw file.
  const resolved = parse(ok.stdout) as { services: Record<string, { ports?: { published?: string; host_ip?: string }[] }> };
  expect(Object.keys(resolved.services).sort()).toEqual(Object.keys(compose.services).sort());
  expect(resolved.services.nginx!.ports).toEqual([expect.objectContaining({ published: '8080' })]);
  expect(resolved.services.temporal!.ports).toEqual([expect.objectContaining({ host_ip: '127.0.0.1', published: '7233' })]);
  for (const name of Object.keys(secrets)) {
    const { [name as keyof typeof secrets]: _, ...missing } = secrets;
    const bad = spawnSync(bin, [COMPOSE_FILE], { cwd: ROOT, encoding: 'utf8', env: { PATH: process.env.PATH, ...missing } });
    expect({ name, status: bad.status }).toEqual({ name, status: 1 });
    expect(bad.stderr).toContain(`required variable ${name} is missing a value`);
  }
});
