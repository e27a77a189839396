/**
 * `validate`, `plan` and `graph`, run through commander in-process against
 * real files, reading what they print.
 */
import { Command, CommanderError } from 'commander';
import { join } from 'node:path';
import { register } from '../../src/client/cli/commands/registry';
import { CliError } from '../../src/client/cli/context';
import { RegistryValidationError } from '../../src/domain/registry-parse';

const FULL = join(__dirname, '../fixtures/registries/valid/full.yaml');
const INVALID = join(__dirname, '../fixtures/registries/invalid/every-problem-at-once.yaml');

/** Runs one command line; returns stdout and the exit code it set. */
async function run(...args: string[]): Promise<{ out: string; exitCode: number | undefined }> {
  const program = new Command('integration-agent').exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  register(program);
  let out = '';
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  const before = process.exitCode;
  try {
    await program.parseAsync(['node', 'integration-agent', ...args]);
    return { out, exitCode: process.exitCode as number | undefined };
  } finally {
    spy.mockRestore();
    process.exitCode = before;
  }
}

async function failure(...args: string[]): Promise<unknown> {
  try {
    await run(...args);
  } catch (err) {
    return err;
  }
  throw new Error(`expected "${args.join(' ')}" to fail`);
}

describe('validate', () => {
  test('prints a one-line summary for a valid file', async () => {
    const { out, exitCode } = await run('validate', FULL);
    expect(out).toMatch(new RegExp(`^${FULL.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: valid, 5 services, 1 credential, 3 batches, version [0-9a-f]{16}\\n$`));
    expect(exitCode).toBeUndefined();
  });

  test('fails with every problem of an invalid file (printed by the CLI, exit 1)', async () => {
    const err = await failure('validate', INVALID);
    expect(err).toBeInstanceOf(RegistryValidationError);
    const lines = (err as Error).message.split('\n');
    expect(lines[0]).toBe(`${INVALID}: 12 problem(s) in registry`);
    expect(lines).toContain(`services[1].dependsOn[0]: unknown service "billing-db" (${INVALID}:9)`);
  });

  test('--json prints the problems as data and sets exit code 1', async () => {
    const { out, exitCode } = await run('validate', INVALID, '--json');
    const result = JSON.parse(out) as { ok: boolean; problems: { path: string; message: string; line: number; text: string }[] };
    expect(exitCode).toBe(1);
    expect(result.ok).toBe(false);
    expect(result.problems).toHaveLength(12);
    expect(result.problems[0]).toEqual({
      path: 'services[1].type',
      message: 'must be one of database, api, webhook, storage, messaging, make; got "apii" (did you mean "api"?)',
      line: 7,
      text: `services[1].type: must be one of database, api, webhook, storage, messaging, make; got "apii" (did you mean "api"?) (${INVALID}:7)`,
    });
    const ok = JSON.parse((await run('validate', FULL, '--json')).out);
    expect(ok).toMatchObject({ ok: true, services: 5, credentials: 1, batches: 3 });
  });
});

describe('plan', () => {
  test('prints batches, rollback order and the critical path for all services', async () => {
    const { out } = await run('plan', FULL);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^plan for all 5 services; registry .*full\.yaml version [0-9a-f]{16}$/);
    expect(lines.slice(1, 5)).toEqual([
      'BATCH  SERVICES',
      '1      auth-service, billing-db',
      '2      billing-api',
      '3      invoice-worker, payments-webhook',
    ]);
    expect(lines[5]).toBe('rollback order: invoice-worker, payments-webhook | billing-api | auth-service, billing-db');
    // auth-service 3s + billing-api 1.5s + invoice-worker 1s (default).
    expect(lines[6]).toBe("critical path: auth-service -> billing-api -> invoice-worker (5s500ms): the lower bound on a parallel run's wall time");
    expect(lines[7]).toBe('batched estimate: 5s500ms (each batch waits for its slowest service)');
  });

  test('--credential plans only the issuer and consumers; --json gives the plan as data', async () => {
    const { out } = await run('plan', FULL, '--credential', 'billing-key', '--json');
    const plan = JSON.parse(out);
    expect(plan).toMatchObject({
      credentialId: 'billing-key',
      serviceIds: ['auth-service', 'billing-api', 'invoice-worker', 'payments-webhook'],
      batches: [['auth-service'], ['billing-api'], ['invoice-worker', 'payments-webhook']],
      rollback: [['invoice-worker', 'payments-webhook'], ['billing-api'], ['auth-service']],
      criticalPath: { path: ['auth-service', 'billing-api', 'invoice-worker'], durationMs: 5500 },
      batchedDurationMs: 5500,
    });
    expect(plan.registryVersion).toMatch(/^[0-9a-f]{16}$/);
  });

  test('an unknown credential is a user error naming the known ones', async () => {
    const err = await failure('plan', FULL, '--credential', 'nope');
    expect(err).toBeInstanceOf(CliError);
    expect((err as Error).message).toBe(`unknown credential "nope" in ${FULL} (known: billing-key)`);
  });
});

describe('graph', () => {
  test('mermaid: one node per service, one arrow per dependency, the credential highlighted', async () => {
    const { out } = await run('graph', FULL, '--credential', 'billing-key');
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toBe('flowchart LR');
    expect(lines.filter((l) => /^ {2}s\d+\["/.test(l))).toHaveLength(5);
    expect(lines).toContain('  s2 --> s1'); // billing-api depends on billing-db
    expect(lines).toContain('  s2 --> s0'); // billing-api depends on auth-service
    expect(lines.filter((l) => l.includes('-->'))).toHaveLength(4);
    expect(lines[lines.length - 1]).toBe('  class s0,s2,s3,s4 scope');
  });

  test('dot: a digraph with quoted ids', async () => {
    const { out } = await run('graph', FULL, '--format', 'dot');
    expect(out).toMatch(/^digraph registry \{\n/);
    expect(out).toContain('  "billing-api" -> "billing-db";\n');
    expect(out).toContain('  "invoice-worker" [label="invoice-worker\\nmessaging"];\n');
    expect(out.trimEnd().endsWith('}')).toBe(true);
    const json = JSON.parse((await run('graph', FULL, '--format', 'dot', '--json')).out);
    expect(json.format).toBe('dot');
    expect(json.text).toBe(out.trimEnd());
  });

  test('an unknown format is refused by the option parser', async () => {
    const err = await failure('graph', FULL, '--format', 'png');
    expect(err).toBeInstanceOf(CommanderError);
    expect((err as CommanderError).message).toContain("Allowed choices are mermaid, dot");
  });
});
