/**
 * `integration-agent doctor [--json]`: what a worker checks at start, and
 * more, reported without changing anything: Temporal reachable (address,
 * namespace, server version), the search attributes (with the commands to
 * create missing ones), the task queue's pollers and their identities, whether
 * their codec keys (both ways: each encrypting key held by everyone), state
 * stores and limits stores agree with each other and with this process, and
 * whether the configured database is reachable and migrated.
 *
 * Exit 0 when nothing is wrong, 1 when something is (each problem says what to
 * do). Never prints secrets: database URLs lose their user and password.
 */
import type { Command } from 'commander';
import { Connection } from '@temporalio/client';
import { AesGcmCodec } from '../../../codec/aes-gcm-codec';
import { codecKeysAreExplicit, loadCodecKeys } from '../../../codec/keys';
import {
  checkSearchAttributes,
  CODEC_KEY_ROTATION_ORDER,
  describeLimitsStore,
  describeServer,
  disagreements,
  limitsStore,
  listPollers,
  searchAttributesProblem,
  type Poller,
  type SearchAttributeReport,
  type ServerInfo,
} from '../../../worker/cluster-check';
import { clientConnectionOptions, loadConfig, type Config } from '../../../worker/config';
import { emit } from '../context';
import { formatTable } from '../table';

/** One line of the report. */
export interface DoctorCheck {
  name: 'temporal' | 'namespace' | 'search attributes' | 'pollers' | 'codec keys' | 'state' | 'limits' | 'database';
  status: 'ok' | 'warn' | 'fail' | 'skipped';
  /** What was found. */
  detail: string;
  /** What to do, when status is warn or fail (may span lines: commands). */
  fix?: string;
}

/** The `--json` document. */
export interface DoctorReport {
  ok: boolean;
  temporal: { address: string; namespace: string; taskQueue: string } & Partial<ServerInfo>;
  searchAttributes?: SearchAttributeReport;
  pollers?: Poller[];
  /** This process: `codec` encrypts, `codecKeys` are all it holds (encrypting first), `limits` where its configuration counts cluster-wide limits. */
  self: { codec: string; codecKeys: string[]; codecKeysFrom: 'INTEGRATION_AGENT_CODEC_KEYS' | 'generated key file'; state?: string; limits: string };
  database: { kind: 'postgres' | 'sqlite'; where: string; reachable?: boolean; applied?: string[]; pending?: string[]; instanceId?: string; error?: string };
  checks: DoctorCheck[];
}

/**
 * A URL without its user and password (`postgres://***@host:5432/db`), for output.
 * Unparsable input becomes `(hidden)` rather than being echoed.
 */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    const auth = u.username || u.password ? '***@' : '';
    return `${u.protocol}//${auth}${u.host}${u.pathname}`;
  } catch {
    return '(hidden)';
  }
}

type DatabaseReport = DoctorReport['database'];

/** The configured shared database, read-only: reachable, applied and pending migrations, instance id. */
async function checkDatabase(config: Config): Promise<DatabaseReport> {
  if (!config.databaseUrl) return { kind: 'sqlite', where: `${config.dataDir}/ (embedded, this host only)` };
  const where = maskUrl(config.databaseUrl);
  // Loaded here so that `doctor` without a database never loads pg.
  const { openPool, postgresMigrationStatus } = await import('../../../state/postgres/database');
  let pool;
  try {
    pool = await openPool(config.databaseUrl, 1);
  } catch (err) {
    return { kind: 'postgres', where, reachable: false, error: (err as Error).message.split('\n')[0] };
  }
  try {
    const status = await postgresMigrationStatus(pool);
    const instanceId = await pool
      .query<{ value: string }>(`SELECT value FROM state_meta WHERE key = 'instance_id'`)
      .then((r) => r.rows[0]?.value)
      .catch(() => undefined);
    return { kind: 'postgres', where, reachable: true, applied: status.applied, pending: status.pending, instanceId };
  } catch (err) {
    return { kind: 'postgres', where, reachable: true, error: (err as Error).message.split('\n')[0] };
  } finally {
    await pool.end().catch(() => undefined);
  }
}

/**
 * Runs every check; never throws for what it finds (an unreachable server is a failed check).
 * @throws ConfigError for bad configuration only.
 */
export async function runDoctor(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<DoctorReport> {
  const codec = new AesGcmCodec(loadCodecKeys(config.dataDir, env));
  const checks: DoctorCheck[] = [];
  // The database and Temporal are independent: wait for both at once (each call is time-bound).
  const connecting = Connection.connect(clientConnectionOptions(config)).then(
    (c) => ({ connection: c }),
    (err: Error) => ({ error: err }),
  );
  const database = await checkDatabase(config);
  const report: DoctorReport = {
    ok: false,
    temporal: { address: config.address, namespace: config.namespace, taskQueue: config.taskQueue },
    self: {
      codec: codec.activeFingerprint,
      codecKeys: [...codec.fingerprints],
      codecKeysFrom: codecKeysAreExplicit(env) ? 'INTEGRATION_AGENT_CODEC_KEYS' : 'generated key file',
      state: database.instanceId?.slice(0, 8),
      limits: limitsStore(config),
    },
    database,
    checks,
  };
  const skipRest = (why: string) => {
    for (const name of ['search attributes', 'pollers', 'codec keys', 'state', 'limits'] as const) if (!checks.some((c) => c.name === name)) checks.push({ name, status: 'skipped', detail: why });
  };

  const connected = await connecting;
  const connection = 'connection' in connected ? connected.connection : undefined;
  try {
    if ('error' in connected) {
      checks.push({
        name: 'temporal',
        status: 'fail',
        detail: `cannot reach ${config.address}: ${connected.error.message.split('\n')[0]}`,
        fix: 'start a server (`integration-agent dev`) or set TEMPORAL_ADDRESS (and TLS or TEMPORAL_API_KEY) to your cluster',
      });
      skipRest('Temporal unreachable');
    }
    if (connection) await checkTemporal(connection, config, codec, report);
  } finally {
    await connection?.close().catch(() => undefined);
  }
  skipRest('not checked: an earlier check failed');

  if (database.kind === 'postgres') {
    if (database.reachable === false) checks.push({ name: 'database', status: 'fail', detail: `${database.where}: ${database.error}`, fix: 'check INTEGRATION_AGENT_DATABASE_URL, that PostgreSQL runs and that this user may connect' });
    else if (database.error) checks.push({ name: 'database', status: 'fail', detail: `${database.where}: ${database.error}`, fix: 'start a worker once (it migrates), or run its migrations by hand' });
    else if ((database.pending ?? []).length > 0)
      checks.push({ name: 'database', status: 'warn', detail: `${database.where}: ${database.pending!.length} migration(s) pending (${database.pending!.join(', ')})`, fix: 'start a worker of this version: it applies them (safely, one worker at a time)' });
    else checks.push({ name: 'database', status: 'ok', detail: `${database.where}: reachable, ${(database.applied ?? []).length} migration(s) applied, none pending, instance ${database.instanceId?.slice(0, 8) ?? '?'}` });
  } else {
    checks.push({ name: 'database', status: 'ok', detail: `embedded SQLite per data dir (${config.dataDir}); set INTEGRATION_AGENT_DATABASE_URL for workers on several hosts` });
  }
  report.ok = !checks.some((c) => c.status === 'fail');
  return report;
}

async function checkTemporal(connection: Connection, config: Config, codec: AesGcmCodec, report: DoctorReport): Promise<void> {
  const { checks } = report;
  const server = await describeServer(connection, config.namespace);
  Object.assign(report.temporal, server);
  if (!server.reachable) {
    checks.push({ name: 'temporal', status: 'fail', detail: `cannot reach ${config.address}: ${server.error}`, fix: 'start a server (`integration-agent dev`) or set TEMPORAL_ADDRESS (and TLS or TEMPORAL_API_KEY)' });
    return;
  }
  checks.push({ name: 'temporal', status: 'ok', detail: `${config.address} reachable${server.serverVersion ? `, server ${server.serverVersion}` : ''}` });
  if (!server.namespaceFound) {
    checks.push({ name: 'namespace', status: 'fail', detail: `${config.namespace}: ${server.error}`, fix: `set TEMPORAL_NAMESPACE to an existing namespace, or create it: temporal operator namespace create --namespace ${config.namespace}` });
    return;
  }
  checks.push({ name: 'namespace', status: 'ok', detail: config.namespace });

  const attrs = await checkSearchAttributes(connection, config.namespace);
  report.searchAttributes = attrs;
  const attrsProblem = searchAttributesProblem(attrs);
  if (!attrs.listed) checks.push({ name: 'search attributes', status: 'warn', detail: attrs.error ?? 'cannot list', fix: 'run doctor with operator rights on the namespace to check them' });
  else if (attrsProblem) {
    const [first, ...rest] = attrsProblem.split('\n');
    checks.push({ name: 'search attributes', status: 'fail', detail: first!, fix: rest.join('\n').trim() || undefined });
  } else checks.push({ name: 'search attributes', status: 'ok', detail: `${attrs.present.join(', ')} present` });

  let pollers: Poller[];
  try {
    pollers = await listPollers(connection, config.namespace, config.taskQueue);
  } catch (err) {
    checks.push({ name: 'pollers', status: 'fail', detail: `cannot describe task queue ${config.taskQueue}: ${(err as Error).message.split('\n')[0]}` });
    return;
  }
  report.pollers = pollers;
  if (pollers.length === 0) {
    checks.push({ name: 'pollers', status: 'warn', detail: `no worker polled task queue "${config.taskQueue}" in the last 70 s`, fix: 'start one: integration-agent worker (same TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE)' });
  } else {
    checks.push({ name: 'pollers', status: 'ok', detail: `${pollers.length} on "${config.taskQueue}": ${pollers.map((p) => p.process).join(', ')}` });
  }

  // Keys: the pollers among themselves, then with this process (whose results it must read).
  const codecs = [...new Set(pollers.map((p) => p.codec).filter((c): c is string => !!c))];
  const unknownCodec = pollers.filter((p) => !p.codec).map((p) => p.identity);
  const found = disagreements({ codec: codec.activeFingerprint, codecFingerprints: codec.fingerprints }, pollers, config.taskQueue);
  const mine = found.filter((d) => d.kind === 'codec');
  const unheld = found.filter((d) => d.kind === 'codec-unheld');
  // A writer's key some poller lacks: judged on its list of keys, or, for a poller that names only its own (older versions), on that one.
  const gaps = pollers.flatMap((p) => (p.codec ? codecs.filter((c) => (p.codecKeys ? !p.codecKeys.includes(c) : c !== p.codec)).map((c) => `${p.process} lacks ${c}`) : []));
  if (codecs.length > 1 && gaps.length > 0) {
    checks.push({
      name: 'codec keys',
      status: 'fail',
      detail: `the pollers encrypt with ${codecs.length} different keys (${codecs.join(', ')}) and ${gaps.join(', ')}: their workflow tasks fail wherever they land on a worker without the writer's key`,
      fix: `give every worker and client the same INTEGRATION_AGENT_CODEC_KEYS (and INTEGRATION_AGENT_MASTER_KEY), then restart the workers. ${CODEC_KEY_ROTATION_ORDER}`,
    });
  } else if (mine.length > 0) {
    checks.push({
      name: 'codec keys',
      status: 'fail',
      detail: `the pollers encrypt with ${mine[0]!.poller.codec}, which this process (codec=${codec.activeFingerprint}) does not hold: it cannot read their results`,
      fix: `set INTEGRATION_AGENT_CODEC_KEYS here to the workers' keys (this process uses ${report.self.codecKeysFrom === 'INTEGRATION_AGENT_CODEC_KEYS' ? 'INTEGRATION_AGENT_CODEC_KEYS' : `the generated key in ${config.dataDir}/codec.keys`})`,
    });
  } else if (unheld.length > 0) {
    checks.push({
      name: 'codec keys',
      status: 'fail',
      detail: `${unheld.map((d) => `"${d.poller.identity}"`).join(', ')} does not hold this process's encrypting key ${codec.activeFingerprint}: workflows started from here would fail there, and a worker started with these keys would refuse to start`,
      fix: CODEC_KEY_ROTATION_ORDER,
    });
  } else if (codecs.length > 1) {
    checks.push({ name: 'codec keys', status: 'ok', detail: `key rotation under way: the pollers encrypt with ${codecs.join(', ')}, and every poller and this process hold all of them` });
  } else if (codecs.length === 1) {
    checks.push({ name: 'codec keys', status: 'ok', detail: `every poller encrypts with ${codecs[0]}, which this process holds${unknownCodec.length ? ` (${unknownCodec.length} poller(s) do not say)` : ''}` });
  } else {
    checks.push({ name: 'codec keys', status: pollers.length ? 'warn' : 'skipped', detail: pollers.length ? 'no poller says which key it uses (older versions)' : 'no pollers', fix: pollers.length ? 'upgrade the workers to compare their keys' : undefined });
  }

  const states = [...new Set(pollers.map((p) => p.state).filter((s): s is string => !!s))];
  if (states.length > 1) {
    checks.push({
      name: 'state',
      status: 'fail',
      detail: `the pollers use ${states.length} different state stores (${states.join(', ')}): each keeps its own credential versions and audit trail, and they diverge`,
      fix: 'set INTEGRATION_AGENT_DATABASE_URL to the same PostgreSQL database on every worker, or run one worker per embedded data dir, each on its own task queue',
    });
  } else if (states.length === 1 && report.self.state && report.self.state !== states[0]) {
    checks.push({
      name: 'state',
      status: 'fail',
      detail: `the pollers use state ${states[0]}, the database configured here is ${report.self.state}`,
      fix: 'point INTEGRATION_AGENT_DATABASE_URL at the workers\u2019 database (or unset it to use theirs through Temporal)',
    });
  } else if (states.length === 1) {
    checks.push({ name: 'state', status: 'ok', detail: `every poller on state ${states[0]}` });
  } else {
    checks.push({ name: 'state', status: 'skipped', detail: pollers.length ? 'no poller says which state store it uses' : 'no pollers' });
  }

  // Limits: the pollers among themselves, then with this configuration (what a worker started from here would count in).
  const stores = [...new Set(pollers.map((p) => p.limits).filter((l): l is string => !!l))];
  const sameVars = 'set INTEGRATION_AGENT_REDIS_URL and INTEGRATION_AGENT_DATABASE_URL the same on every worker (both, the same one, or neither), then restart them';
  const self = report.self.limits;
  if (stores.length > 1) {
    checks.push({
      name: 'limits',
      status: 'fail',
      detail: `the pollers count cluster-wide limits in ${stores.length} different stores (${stores.map((l) => `${l}: ${pollers.filter((p) => p.limits === l).map((p) => p.process).join(', ')}`).join('; ')}): each store admits the full limits, so services receive them several times over`,
      fix: sameVars,
    });
  } else if (stores.length === 1 && stores[0] !== self) {
    checks.push({
      // A configuration without any shared store is likely an operator's machine, not a worker's: a warning.
      name: 'limits',
      status: self === 'local' ? 'warn' : 'fail',
      detail: `the pollers count limits in ${stores[0]}, this configuration in ${self} (${describeLimitsStore(self)}): a worker started with it would refuse to start`,
      fix: `the workers count limits ${describeLimitsStore(stores[0]!)}: ${sameVars}`,
    });
  } else if (stores.length === 1) {
    const silent = pollers.filter((p) => !p.limits).length;
    checks.push({ name: 'limits', status: 'ok', detail: `every poller counts limits in ${stores[0]} (${describeLimitsStore(stores[0]!)})${silent ? ` (${silent} poller(s) do not say)` : ''}` });
  } else {
    checks.push({ name: 'limits', status: 'skipped', detail: pollers.length ? 'no poller says where it counts limits (older versions)' : 'no pollers' });
  }
}

const MARK: Record<DoctorCheck['status'], string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL', skipped: '-' };

/** The human form: a table of checks, the pollers, then each problem with what to do. */
export function formatDoctor(r: DoctorReport): string {
  const lines = [
    `Temporal ${r.temporal.address}, namespace ${r.temporal.namespace}, task queue ${r.temporal.taskQueue}; this process: codec=${(r.self.codecKeys ?? [r.self.codec]).join('+')} (${r.self.codecKeysFrom}), limits=${r.self.limits}`,
    '',
    formatTable(['CHECK', 'STATUS', 'DETAIL'], r.checks.map((c) => [c.name, MARK[c.status], c.detail])),
  ];
  if (r.pollers && r.pollers.length > 0) {
    lines.push('', formatTable(['POLLER', 'TASKS', 'LAST SEEN'], r.pollers.map((p) => [p.identity, p.kinds.join('+'), p.lastSeenMsAgo === undefined ? '?' : `${Math.round(p.lastSeenMsAgo / 1000)}s ago`])));
  }
  const problems = r.checks.filter((c) => (c.status === 'fail' || c.status === 'warn') && c.fix);
  if (problems.length > 0) {
    lines.push('', 'What to do:');
    for (const p of problems) lines.push(`- ${p.name}: ${p.fix!.split('\n').join('\n    ')}`);
  }
  lines.push('', r.ok ? 'ok' : 'problems found');
  return lines.join('\n');
}

/** Registers `doctor` on the program. */
export function register(program: Command): void {
  program
    .command('doctor')
    .description('check the cluster: Temporal, search attributes, task-queue pollers, codec keys, state and limits stores agreeing, database migrated')
    .option('--json', 'print one JSON document')
    .action(async (opts: { json?: boolean }) => {
      const config = loadConfig();
      const report = await runDoctor(config);
      emit(opts, report, () => formatDoctor(report));
      if (!report.ok) process.exitCode = 1;
    });
}
