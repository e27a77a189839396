import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger, PinoSdkLogger } from '../../src/worker/logger';
import { loadConfig, ConfigError, clientConnectionOptions } from '../../src/worker/config';

describe('worker configuration from the environment', () => {
  test('defaults', () => {
    const c = loadConfig({ HOME: '/home/u' });
    expect(c).toMatchObject({ address: 'localhost:7233', namespace: 'default', taskQueue: 'integration-agent', logLevel: 'info' });
    expect(c.dataDir).toBe('/home/u/.local/share/integration-agent');
    expect(c.tls).toBeUndefined();
  });

  test('every bad variable is named with its value; an API key is never echoed', () => {
    let err: Error | undefined;
    try {
      loadConfig({ TEMPORAL_ADDRESS: 'no-port', LOG_LEVEL: 'loud', MAX_CONCURRENT_ACTIVITIES: '0' });
    } catch (e) {
      err = e as Error;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.message).toMatch(/TEMPORAL_ADDRESS="no-port": must be host:port/);
    expect(err!.message).toMatch(/LOG_LEVEL="loud"/);
    expect(err!.message).toMatch(/MAX_CONCURRENT_ACTIVITIES="0"/);
    expect(() => loadConfig({ TEMPORAL_API_KEY: '' , TEMPORAL_TLS: 'maybe'})).toThrow(/TEMPORAL_TLS="maybe"/);
  });

  test('INTEGRATION_AGENT_PROBE_CA_FILE must be a readable PEM file at start', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ia-probe-ca-'));
    const pem = join(dir, 'ca.pem');
    writeFileSync(pem, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    writeFileSync(join(dir, 'notes.txt'), 'not a certificate');
    expect(loadConfig({ HOME: '/home/u', INTEGRATION_AGENT_PROBE_CA_FILE: pem }).probeCaFile).toBe(pem);
    expect(() => loadConfig({ HOME: '/home/u', INTEGRATION_AGENT_PROBE_CA_FILE: join(dir, 'missing.pem') })).toThrow(/cannot read INTEGRATION_AGENT_PROBE_CA_FILE .*missing\.pem/);
    expect(() => loadConfig({ HOME: '/home/u', INTEGRATION_AGENT_PROBE_CA_FILE: join(dir, 'notes.txt') })).toThrow(/INTEGRATION_AGENT_PROBE_CA_FILE=.*notes\.txt holds no PEM certificate/);
  });

  test('INTEGRATION_AGENT_PROBER_CANARIES is a comma-separated list of tcp/http(s) URLs, checked at start', () => {
    expect(loadConfig({ HOME: '/home/u', INTEGRATION_AGENT_PROBER_CANARIES: 'tcp://10.0.0.1:53, https://gw.internal/' }).proberCanaries).toEqual(['tcp://10.0.0.1:53', 'https://gw.internal/']);
    expect(loadConfig({ HOME: '/home/u' }).proberCanaries).toBeUndefined();
    expect(() => loadConfig({ HOME: '/home/u', INTEGRATION_AGENT_PROBER_CANARIES: 'tcp://10.0.0.1' })).toThrow(/INTEGRATION_AGENT_PROBER_CANARIES: "tcp:\/\/10.0.0.1": a tcp canary needs a port/);
    expect(() => loadConfig({ HOME: '/home/u', INTEGRATION_AGENT_PROBER_CANARIES: 'udp://10.0.0.1:53' })).toThrow(/a canary is tcp:\/\/host:port, http:\/\/… or https:\/\/… \(got udp:\)/);
    expect(() => loadConfig({ HOME: '/home/u', INTEGRATION_AGENT_PROBER_CANARIES: 'https://u:s3cr3t@gw/' })).toThrow(/carries no credentials/);
    expect(() => loadConfig({ HOME: '/home/u', INTEGRATION_AGENT_PROBER_CANARIES: 'https://u:s3cr3t@gw/' })).not.toThrow(/s3cr3t/);
  });

  test('ALERT_WEBHOOKS is validated at start: the receiver is named, its URL, key or password never shown', () => {
    const ok = loadConfig({ HOME: '/home/u', ALERT_WEBHOOKS: 'slack=https://hooks.example/T/B/s3cr3t;name=chat;timeout=10s;retryFor=1h' });
    expect(ok.alertWebhooks).toEqual([{ name: 'chat', url: 'https://hooks.example/T/B/s3cr3t', format: 'slack', timeoutMs: 10_000, retryForMs: 3_600_000 }]);
    expect(loadConfig({ HOME: '/home/u' }).alertWebhooks).toBeUndefined();
    let err: Error | undefined;
    try {
      loadConfig({ HOME: '/home/u', ALERT_WEBHOOKS: 'https://ops.example/a, smtp=smtp://u:hunter2@mail.example:587;name=mail;from=a@example.com;to=b@example.com;timeout=2m' });
    } catch (e) {
      err = e as Error;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.message).toBe('invalid configuration: ALERT_WEBHOOKS receiver #2 (mail): timeout= expects a duration from 1ms to 25s such as 10s, got "2m"');
    expect(err!.message).not.toContain('hunter2');
  });

  test('worker tuning: cache size defaults to 1000, eager activities to 32; each knob is validated and named when bad', () => {
    expect(loadConfig({ HOME: '/home/u' }).worker).toEqual({ maxCachedWorkflows: 1000, maxEagerActivityReservationsPerWorkflowTask: 32 });
    expect(
      loadConfig({ HOME: '/home/u', WORKER_MAX_CACHED_WORKFLOWS: '250', WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: '80', WORKER_WORKFLOW_THREADS: '2', WORKER_EAGER_ACTIVITIES: '0' }).worker,
    ).toEqual({
      maxCachedWorkflows: 250,
      maxConcurrentWorkflowTaskExecutions: 80,
      workflowThreadPoolSize: 2,
      maxEagerActivityReservationsPerWorkflowTask: 0,
    });
    expect(() => loadConfig({ WORKER_EAGER_ACTIVITIES: '-1' })).toThrow(/WORKER_EAGER_ACTIVITIES="-1"/);
    expect(() => loadConfig({ WORKER_MAX_CACHED_WORKFLOWS: 'lots' })).toThrow(/WORKER_MAX_CACHED_WORKFLOWS="lots"/);
    expect(() => loadConfig({ WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: '1' })).toThrow(/WORKER_MAX_CONCURRENT_WORKFLOW_TASKS="1"/);
    expect(() => loadConfig({ WORKER_WORKFLOW_THREADS: '0' })).toThrow(/WORKER_WORKFLOW_THREADS="0"/);
  });

  test('mTLS needs both the certificate and the key; missing files are named', () => {
    expect(() => loadConfig({ TEMPORAL_TLS_CERT: '/x.pem' })).toThrow(/TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together/);
    const c = loadConfig({ TEMPORAL_TLS_CERT: '/nope/c.pem', TEMPORAL_TLS_KEY: '/nope/k.pem' });
    expect(() => clientConnectionOptions(c)).toThrow(/cannot read TEMPORAL_TLS_CERT \/nope\/c.pem/);
  });

  test('an API key turns TLS on', () => {
    const c = loadConfig({ TEMPORAL_API_KEY: 'abc', TEMPORAL_ADDRESS: 'x.tmprl.cloud:7233' });
    expect(clientConnectionOptions(c)).toMatchObject({ address: 'x.tmprl.cloud:7233', tls: true, apiKey: 'abc' });
  });
});

describe('logger redaction', () => {
  test('secret-bearing keys and auth headers never reach the log line', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const log = createLogger('info', sink);
    log.info({ secret: 's1', req: { password: 'p1', headers: { authorization: 'Bearer t1', 'x-api-key': 'k1' } }, headers: { 'x-api-key': 'k2' }, serviceId: 'billing-api' }, 'call');
    // Alert receivers (webhook URLs with tokens, PagerDuty routing keys) as a whole config or one event body.
    log.info({ config: { alertWebhooks: [{ url: 'https://hooks.example/T/B/w1' }] }, event: { routing_key: 'r1' }, receiver: { routingKey: 'r2' } }, 'alerts');
    const out = lines.join('');
    for (const s of ['s1', 'p1', 't1', 'k1', 'k2', 'w1', 'r1', 'r2']) expect(out).not.toContain(s);
    expect(out).toContain('billing-api');
    expect(out).toContain('[redacted]');
  });

  test('an SDK failure logged under `error` keeps its type, message and cause (pino alone printed {})', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const failure = new Error('credential c1 version v1 is encrypted under master key 32fde799, which this store was not given', { cause: new Error('lower layer') });
    failure.name = 'ApplicationFailure';
    new PinoSdkLogger(createLogger('info', sink)).warn('Activity failed', { activityType: 'createPending', error: failure });
    const line = JSON.parse(lines.join('')) as { error: unknown };
    expect(line.error).toEqual({ type: 'ApplicationFailure', message: failure.message, cause: 'lower layer' });
  });
});
