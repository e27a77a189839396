/**
 * The `status` and `schedule` commands, in process, against the shared dev
 * server and a real worker (the foundation tests cover the built binary).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { register } from '../../src/client/cli/commands/health';
import { CliError } from '../../src/client/cli/context';
import { closeTestClient, testAddress } from '../helpers/temporal';
import { startFleet, type Fleet } from './fleet';
import { healthBench, startReceiver, uniquePrefix, type Receiver } from './harness';

let fleet: Fleet;
let receiver: Receiver;
const saved = { ...process.env };
beforeAll(async () => {
  fleet = await startFleet();
  receiver = await startReceiver();
  process.env.TEMPORAL_ADDRESS = testAddress();
  process.env.INTEGRATION_AGENT_DATA_DIR = mkdtempSync(join(tmpdir(), 'ia-cli-health-'));
});
afterAll(async () => {
  process.env = saved;
  await fleet.close();
  await receiver.close();
  await closeTestClient();
});

async function cli(args: string[]): Promise<string> {
  const program = new Command('integration-agent').exitOverride();
  register(program);
  let out = '';
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    await program.parseAsync(['node', 'integration-agent', ...args]);
  } finally {
    spy.mockRestore();
  }
  return out;
}

test('status [service] --json and the human table: status, root cause, percentiles, availability vs SLA', async () => {
  const p = uniquePrefix();
  const gw = `${p}-gw`;
  const api = `${p}-api`;
  const b = await healthBench(
    [
      { id: gw, type: 'api', endpoints: [{ url: `${fleet.url}/${gw}` }], healthCheck: { failureThreshold: 1 }, sla: { availability: 99.9 } },
      { id: api, type: 'api', endpoints: [{ url: `${fleet.url}/${api}` }], dependsOn: [gw], healthCheck: { failureThreshold: 1 } },
    ],
    receiver.url,
  );
  process.env.TEMPORAL_TASK_QUEUE = b.taskQueue;
  fleet.set(`/${gw}`, { status: 200 });
  fleet.set(`/${api}`, { status: 200 });
  await b.run(async () => {
    await b.sweep();
    fleet.set(`/${gw}`, { status: 503 });
    fleet.set(`/${api}`, { status: 503 });
    await b.sweep();
    const one = JSON.parse(await cli(['status', api, '--json'])) as { serviceId: string; status: string; rootCause: string }[];
    expect(one).toEqual([expect.objectContaining({ serviceId: api, status: 'impacted', rootCause: gw })]);
    const gwRow = JSON.parse(await cli(['status', gw, '--json']))[0];
    expect(gwRow).toMatchObject({ status: 'unhealthy', alertOpen: true, figures: { slaAvailability: 99.9 } });
    expect(gwRow.figures.availability['1h']).toBeGreaterThan(0);
    expect(gwRow.figures.availability['1h']).toBeLessThan(100);
    const table = await cli(['status', gw]);
    expect(table.split('\n')[0]).toMatch(/^SERVICE\s+STATUS\s+ROOT CAUSE\s+P50\s+P95\s+P99\s+AVAIL 24H\s+SLA\s+BREAKER$/);
    expect(table).toMatch(new RegExp(`${gw}\\s+unhealthy\\s+status\\s+\\S+ms\\s+\\S+ms\\s+\\S+ms\\s+\\d+\\.\\d+% \\(below\\)\\s+99.9%`));
  });
});

test('user errors are CliErrors with the fix', async () => {
  // A service the registry lacks: did-you-mean; one it has but never swept: run a sweep. (The registry
  // asked through a worker is covered by test/breaker/cli.test.ts and test/rotation/cli.test.ts.)
  const p = uniquePrefix();
  const registryPath = join(process.env.INTEGRATION_AGENT_DATA_DIR!, 'services.yaml');
  writeFileSync(registryPath, `services:\n  - { id: ${p}-billing, type: api, endpoints: [{ url: "http://127.0.0.1:9/" }] }\n`);
  process.env.INTEGRATION_AGENT_REGISTRY = registryPath;
  // A task queue no test swept on: this file's shards (polled by no worker here) would answer FAILED_PRECONDITION
  // when the new service's shard is one of them (its shard is random: seen in a fresh CI run).
  const taskQueue = process.env.TEMPORAL_TASK_QUEUE;
  process.env.TEMPORAL_TASK_QUEUE = `${p}-never-swept`;
  try {
    await expect(cli(['status', `${p}-biling`, '--json'])).rejects.toThrow(new CliError(`unknown service "${p}-biling" in the registry ${registryPath} (did you mean "${p}-billing"?)`));
    await expect(cli(['status', `${p}-billing`, '--json'])).rejects.toThrow(
      new CliError(`no health recorded for service "${p}-billing": run \`integration-agent sweep\` (or \`integration-agent schedule apply\`)`),
    );
  } finally {
    delete process.env.INTEGRATION_AGENT_REGISTRY;
    process.env.TEMPORAL_TASK_QUEUE = taskQueue;
  }
  // --every takes a unit; a bare number is refused (it used to mean ms, silently).
  await expect(cli(['status', '--watch', '--every', '2000'])).rejects.toThrow(new CliError('--every: "2000" has no unit: write 2000ms or 2000s (a duration takes a unit: 500ms, 2s, 1m)'));
  await expect(cli(['status', '--watch', '--every', '0s'])).rejects.toThrow(new CliError('--every: invalid duration "0s": use e.g. 500ms, 2s, 1m (more than 0)'));
  await expect(cli(['schedule', 'describe', '--id', 'no-such-schedule'])).rejects.toThrow('no schedule "no-such-schedule": create it with `integration-agent schedule apply`');
  await expect(cli(['schedule', 'apply', '--interval', '5'])).rejects.toThrow('--interval: "5" has no unit: write 5ms or 5s (a duration takes a unit: 500ms, 2s, 1m)');
  await expect(cli(['schedule', 'apply', '--interval', '100ms'])).rejects.toThrow('schedule apply: --interval must be at least 1s, got 100ms');
  const help = new Command('integration-agent').exitOverride();
  register(help);
  const status = help.commands.find((c) => c.name() === 'status')!;
  expect(status.helpInformation()).toMatch(/--every <duration>\s+refresh period with --watch, with a unit \(500ms, 2s, 1m\)\s+\(default: 2s\)/);
  await expect(cli(['schedule', 'pause', '--id', 'no-such-schedule'])).rejects.toBeInstanceOf(CliError);
});
