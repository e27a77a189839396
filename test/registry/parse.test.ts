/**
 * Registry parsing and validation: the fixture folder of invalid files (each
 * with the exact error it must produce), valid files, and normalisation.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_EXPECTED_DURATION_MS, credentialServiceIds, expectedDurationMs, getService } from '../../src/domain/registry';
import { RegistryValidationError, didYouMean, formatProblem, parseRegistry } from '../../src/domain/registry-parse';
import type { Registry } from '../../src/domain/registry';

const FIXTURES = join(__dirname, '../fixtures/registries');
const invalidDir = join(FIXTURES, 'invalid');
const invalidFiles = readdirSync(invalidDir).filter((f) => /\.(ya?ml|json)$/.test(f)).sort();

function parseOk(text: string, source = 'test.yaml'): Registry {
  const r = parseRegistry(text, source);
  if (!r.ok) throw new RegistryValidationError(source, r.problems);
  return r.registry;
}

function problems(text: string, source = 'test.yaml'): string[] {
  const r = parseRegistry(text, source);
  if (r.ok) throw new Error('expected the registry to be invalid');
  return r.problems.map((p) => formatProblem(p, source));
}

const svc = (id: string, extra = '') => `  - id: ${id}\n    type: api\n    endpoints: [{ url: "http://127.0.0.1:7001" }]\n${extra}`;

test('the fixture folder covers the problems the registry must catch', () => {
  expect(invalidFiles.length).toBeGreaterThanOrEqual(20);
});

describe.each(invalidFiles)('invalid registry %s', (file) => {
  test('produces exactly the expected problems, in file order, with path and line', () => {
    const expected = readFileSync(join(invalidDir, file.replace(/\.(ya?ml|json)$/, '.expected')), 'utf8').trimEnd().split('\n');
    expect(problems(readFileSync(join(invalidDir, file), 'utf8'), file)).toEqual(expected);
  });
});

test('the issue example: an unknown dependency is reported with its path and line', () => {
  const text = readFileSync(join(invalidDir, 'unknown-dependency.yaml'), 'utf8');
  expect(problems(text, 'services.yaml')).toEqual(['services[3].dependsOn[0]: unknown service "billing-db" (services.yaml:15)']);
});

test('every problem is reported in one run, schema and references together', () => {
  const text = readFileSync(join(invalidDir, 'every-problem-at-once.yaml'), 'utf8');
  const found = problems(text);
  expect(found.length).toBe(12);
  expect(found.some((p) => p.includes('unknown key "dependson"'))).toBe(true);
  expect(found.some((p) => p.includes('dependency cycle: billing-api -> invoice-worker -> billing-api'))).toBe(true);
  expect(found.some((p) => p.includes('duplicate service id "auth-service"'))).toBe(true);
  const lines = found.map((p) => Number(/:(\d+)\)$/.exec(p)![1]));
  expect(lines).toEqual([...lines].sort((a, b) => a - b));
});

test('RegistryValidationError lists every problem, one per line, after a summary', () => {
  const r = parseRegistry('services:\n' + svc('a', '    dependsOn: [b, c]\n'), 'fleet.yaml');
  expect(r.ok).toBe(false);
  const err = new RegistryValidationError('fleet.yaml', (r as unknown as { problems: never[] }).problems);
  expect(err.message).toBe(
    'fleet.yaml: 2 problem(s) in registry\n' +
      'services[0].dependsOn[0]: unknown service "b" (fleet.yaml:5)\n' +
      'services[0].dependsOn[1]: unknown service "c" (fleet.yaml:5)',
  );
});

describe('valid registries', () => {
  test('the full reference file parses, with durations in ms and defaults filled', () => {
    const registry = parseOk(readFileSync(join(FIXTURES, 'valid/full.yaml'), 'utf8'), 'full.yaml');
    expect(registry.services.map((s) => s.id)).toEqual(['auth-service', 'billing-db', 'billing-api', 'invoice-worker', 'payments-webhook']);
    const auth = getService(registry, 'auth-service');
    expect(auth.healthCheck).toMatchObject({ path: '/health', interval: 30_000, timeout: 2_000, method: 'GET', failureThreshold: 3, successThreshold: 2 });
    expect(auth.healthCheck!.expect).toEqual({
      status: [200, '2xx', '200-204'],
      maxResponseTime: 500,
      body: [{ path: '$.status', equals: 'ok' }],
      certificateExpiresAfter: 14 * 86_400_000,
    });
    const api = getService(registry, 'billing-api');
    expect(api.endpoints).toEqual([
      { url: 'http://127.0.0.1:7001', weight: 2 },
      { url: 'http://127.0.0.1:7011', weight: 1 },
    ]);
    expect(api.healthCheck).toMatchObject({ path: '/health', interval: 30_000 }); // from the x- anchor
    expect(api.sla).toEqual({ availability: 99.9, latencyP95: 300 });
    expect(expectedDurationMs(api)).toBe(1500);
    expect(expectedDurationMs(getService(registry, 'invoice-worker'))).toBe(DEFAULT_EXPECTED_DURATION_MS);
    expect(registry.credentials[0]).toMatchObject({ id: 'billing-key', gracePeriod: 3_600_000, schedule: 30 * 86_400_000 });
    expect(credentialServiceIds(registry, 'billing-key')).toEqual(['auth-service', 'billing-api', 'invoice-worker', 'payments-webhook']);
    expect(() => credentialServiceIds(registry, 'nope')).toThrow('unknown credential "nope" in registry full.yaml (known: billing-key)');
    expect(registry).not.toHaveProperty('x-probe');
  });

  test('JSON is accepted', () => {
    const registry = parseOk(readFileSync(join(FIXTURES, 'valid/small.json'), 'utf8'), 'small.json');
    expect(registry.credentials[0]).toMatchObject({ issuer: 'db', consumers: ['api'], provider: 'postgres' });
  });

  test('the demo fleet in examples/ is valid', () => {
    const registry = parseOk(readFileSync(join(__dirname, '../../examples/services.yaml'), 'utf8'), 'services.yaml');
    expect(registry.services.length).toBeGreaterThan(0);
  });

  test('the version is a content hash: same text, same version; any edit, a new one', () => {
    const text = 'services:\n' + svc('a');
    const v1 = parseOk(text).versionHash;
    expect(v1).toMatch(/^[0-9a-f]{16}$/);
    expect(parseOk(text).versionHash).toBe(v1);
    expect(parseOk(text + '# comment\n').versionHash).not.toBe(v1);
  });

  test('an empty fleet is valid; an empty file is not', () => {
    expect(parseOk('services: []\n').services).toEqual([]);
    expect(problems('')).toEqual(['the registry is empty: expected a mapping with "services:" and "credentials:" (test.yaml)']);
  });
});

describe('messages', () => {
  test('a bare number is not a duration; 0 is', () => {
    expect(problems('services:\n' + svc('a', '    expectedDuration: 30\n'))).toEqual([
      'services[0].expectedDuration: invalid duration 30: a duration needs a unit: write 30s or 30ms (test.yaml:5)',
    ]);
    expect(parseOk('services:\n' + svc('a', '    expectedDuration: 0\n')).services[0]!.expectedDuration).toBe(0);
  });

  test('did-you-mean suggests close names only', () => {
    expect(didYouMean('dependOn', ['dependsOn', 'credential'])).toBe('dependsOn');
    expect(didYouMean('healthcheck', ['healthCheck'])).toBe('healthCheck');
    expect(didYouMean('billing-db', ['billing-api', 'auth-service'])).toBeUndefined();
    expect(didYouMean('colour', ['id', 'type'])).toBeUndefined();
  });

  test('no secret-looking values are needed: unknown keys such as "password" are refused, naming only the key', () => {
    const found = problems('services:\n' + svc('a', '    password: hunter2\n'));
    expect(found).toEqual([expect.stringMatching(/^services\[0\]\.password: unknown key "password"/)]);
    expect(found.join('\n')).not.toContain('hunter2');
  });
});
