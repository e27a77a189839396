/**
 * Alert receivers as users configure them (`ALERT_WEBHOOKS`), against real
 * servers on loopback: per-receiver timeout and retry horizon through a real
 * Temporal retry, PagerDuty Events API v2, Discord, Microsoft Teams and
 * e-mail through SMTP, with secrets kept out of every error.
 */
import { WorkflowFailedError } from '@temporalio/client';
import { createAlertActivities, parseAlertWebhooks } from '../../src/activities/alerts';
import { deliverRotationAlert } from '../../src/workflows/rotation-alert';
import type { Alert } from '../../src/domain/health';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { startDiscord, startPagerDuty, startSmtp, startTeams } from '../fixtures/alert-receivers';
import { startFleet } from './fleet';
import { eventually, healthBench, uniquePrefix } from './harness';

afterAll(closeTestClient);

const ROUTING_KEY = 'R0ut1ngKeyR0ut1ngKeyR0ut1ngKey32';

const trigger: Alert = {
  id: 'health/gw#1',
  kind: 'TRIGGERED',
  source: 'health',
  serviceId: 'gw',
  at: Date.UTC(2026, 5, 1),
  summary: 'gw is unhealthy (timeout); 2 dependent service(s) impacted',
  rootCause: 'gw',
  impacted: ['api', 'web'],
  failureKind: 'timeout',
  detail: 'no answer within 300ms',
};
const resolved: Alert = { id: 'health/gw#2', kind: 'RESOLVED', source: 'health', serviceId: 'gw', at: Date.UTC(2026, 5, 1, 0, 5), summary: 'gw recovered after 300s', rootCause: 'gw', durationMs: 300_000 };

/** Runs the `deliverRotationAlert` workflow (one `deliverAlert` activity under the workflows' retry policy) on a worker with `receivers`. */
async function deliverThroughTemporal(receivers: string, alert: Alert): Promise<{ delivered: number; webhooks: number }> {
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('alert-rx');
  return withTestWorker({ taskQueue, activities: createAlertActivities({ webhooks: parseAlertWebhooks(receivers) }) }, () =>
    client.workflow.execute(deliverRotationAlert, { taskQueue, workflowId: `${taskQueue}/${alert.id}`, args: [alert] }),
  );
}

test('ALERT_WEBHOOKS: formats and per-receiver options; clear errors that never show a URL, key or password', () => {
  expect(
    parseAlertWebhooks(
      `slack=https://hooks.example/T/B/x;name=ops;timeout=10s;retryFor=2h, pagerduty=${ROUTING_KEY};url=http://127.0.0.1:9/v2/enqueue, ` +
        'smtp=smtps://alerts:p%3Bss@mail.example:465;from=alerts@example.com;to=a@example.com;to=b@example.com, discord=https://discord.example/api/webhooks/1/t, https://ops.example/a',
    ),
  ).toEqual([
    { name: 'ops', url: 'https://hooks.example/T/B/x', format: 'slack', timeoutMs: 10_000, retryForMs: 7_200_000 },
    { name: 'webhook-2', url: 'http://127.0.0.1:9/v2/enqueue', format: 'pagerduty', routingKey: ROUTING_KEY },
    { name: 'webhook-3', url: 'smtps://alerts:p%3Bss@mail.example:465', format: 'smtp', from: 'alerts@example.com', to: ['a@example.com', 'b@example.com'] },
    { name: 'webhook-4', url: 'https://discord.example/api/webhooks/1/t', format: 'discord' },
    { name: 'webhook-5', url: 'https://ops.example/a', format: 'json' },
  ]);
  expect(parseAlertWebhooks(`pagerduty=${ROUTING_KEY}`)[0]!.url).toBe('https://events.pagerduty.com/v2/enqueue');
  const error = (text: string) => {
    try {
      parseAlertWebhooks(text);
    } catch (e) {
      return (e as Error).message;
    }
    return 'no error';
  };
  expect(error('https://ops.example/a;timeout=ten')).toBe('ALERT_WEBHOOKS receiver #1: timeout= expects a duration from 1ms to 25s such as 10s, got "ten"');
  expect(error('https://ops.example/a, slack=https://h.example/x;name=ops;timeout=1m')).toBe('ALERT_WEBHOOKS receiver #2 (ops): timeout= expects a duration from 1ms to 25s such as 10s, got "1m"');
  expect(error('https://ops.example/a;retryFor=2d')).toBe('ALERT_WEBHOOKS receiver #1: retryFor= expects a duration from 1ms to 1d such as 10s, got "2d"');
  expect(error('https://ops.example/a;colour=red')).toMatch(/^ALERT_WEBHOOKS receiver #1: unknown option "colour"; options are name=, timeout=, retryFor=/);
  expect(error('https://ops.example/a;from=x@y.z')).toBe('ALERT_WEBHOOKS receiver #1: option from= is for smtp receivers, not json');
  expect(error('pagerduty=short-secret-key')).toBe(
    'ALERT_WEBHOOKS receiver #1: expected pagerduty=<integration key>, the 32-character key of an Events API v2 integration (value not shown: routing keys are secrets)',
  );
  expect(error('smtp=smtp://u:hunter2@mail.example;to=a@example.com')).toBe(`ALERT_WEBHOOKS receiver #1: from= must be the sender's e-mail address, got ""`);
  expect(error('smtp=mail.example:hunter2')).toMatch(/value not shown: it may hold a password/);
  expect(error('slack=notaurl-token')).toMatch(/^ALERT_WEBHOOKS receiver #1: expected \[json=\|slack=\|discord=\|teams=\]http\(s\):\/\/\.\.\./);
  expect(error('https://a.example/x;name=ops, https://b.example/y;name=ops')).toBe('ALERT_WEBHOOKS receiver #2: name=ops is used twice; names must be unique');
  for (const text of ['smtp=mail.example:hunter2', 'pagerduty=short-secret-key', 'slack=notaurl-token']) {
    expect(error(text)).not.toMatch(/hunter2|short-secret-key|notaurl-token/);
  }
});

test('a slow receiver that succeeds gets the alert once; a failing one is retried with the same id until it answers', async () => {
  // A receiver slower than the default 5 s timeout, given 15 s: asked once, even though the
  // other receiver's failure makes Temporal retry the activity meanwhile.
  const slow = await startTeams();
  const flaky = await startTeams();
  slow.delayMs = 6_000;
  flaky.failNext = [503];
  try {
    const r = await deliverThroughTemporal(`teams=${slow.url};name=slow;timeout=15s, teams=${flaky.url};name=flaky`, trigger);
    expect(r).toEqual({ delivered: 2, webhooks: 2 });
    expect(slow.requests.map((q) => q.key)).toEqual(['health/gw#1']);
    expect(flaky.requests.map((q) => [q.key, q.status])).toEqual([
      ['health/gw#1', 503],
      ['health/gw#1', 202],
    ]);
  } finally {
    await slow.close();
    await flaky.close();
  }
}, 30_000);

test('a receiver slower than the activity heartbeat timeout (20 s) but within its timeout= answers once: the delivery heartbeats while it waits', async () => {
  const slow = await startTeams();
  slow.delayMs = 21_000;
  try {
    await expect(deliverThroughTemporal(`teams=${slow.url};name=slow;timeout=25s`, trigger)).resolves.toEqual({ delivered: 1, webhooks: 1 });
    expect(slow.requests.map((q) => q.key)).toEqual(['health/gw#1']);
  } finally {
    await slow.close();
  }
}, 40_000);

test('retry horizon: a receiver still failing after its retryFor is given up, the others get the alert', async () => {
  const down = await startTeams();
  const up = await startTeams();
  down.failNext = Array(100).fill(503);
  try {
    const t0 = Date.now();
    const err = await deliverThroughTemporal(`teams=${down.url};name=down;retryFor=2s, teams=${up.url};name=up`, trigger).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause?.cause as Error & { type?: string };
    expect(cause.type).toBe('AlertGivenUp');
    expect(cause.message).toBe('alert health/gw#1 not delivered to down: HTTP 503; given up after 2s (retryFor)');
    expect(Date.now() - t0).toBeLessThan(10_000); // not a day of retries
    expect(down.requests.length).toBeGreaterThanOrEqual(2);
    expect(up.requests.map((q) => q.status)).toEqual([202]);
  } finally {
    await down.close();
    await up.close();
  }
}, 30_000);

describe('receivers', () => {
  test('PagerDuty Events API v2: trigger then resolve the same incident (dedup_key); a repeat is deduplicated; 400 is not retried', async () => {
    const pd = await startPagerDuty();
    try {
      const { deliverAlert } = createAlertActivities({ webhooks: parseAlertWebhooks(`pagerduty=${ROUTING_KEY};url=${pd.url};name=pager`) });
      await deliverAlert(trigger);
      await deliverAlert(trigger); // a retried attempt whose answer was lost
      expect(pd.requests.map((q) => q.status)).toEqual([202, 202]);
      expect(pd.incidents.get('health/gw#1')).toEqual({ status: 'triggered', triggers: 2, summary: trigger.summary, severity: 'critical' });
      expect(pd.accepted[0]).toMatchObject({
        routing_key: ROUTING_KEY,
        event_action: 'trigger',
        dedup_key: 'health/gw#1',
        payload: { source: 'gw', severity: 'critical', class: 'timeout', custom_details: { alert_id: 'health/gw#1', impacted: 'api, web' } },
      });
      await deliverAlert(resolved);
      expect(pd.accepted[2]).toEqual({ routing_key: ROUTING_KEY, event_action: 'resolve', dedup_key: 'health/gw#1' });
      expect(pd.incidents.get('health/gw#1')!.status).toBe('resolved');
      // A warning is its own incident, severity warning.
      await deliverAlert({ ...trigger, id: 'health/gw/warning#1', kind: 'WARNING', summary: 'gw is degraded: certificate expires in 6 day(s)' });
      expect(pd.incidents.get('health/gw/warning#1')).toMatchObject({ status: 'triggered', severity: 'warning' });
      // The fake is as strict as PagerDuty: a body without a payload is refused with its 400.
      const bad = await fetch(pd.url, { method: 'POST', body: JSON.stringify({ routing_key: ROUTING_KEY, event_action: 'trigger' }) });
      expect(bad.status).toBe(400);
      expect(await bad.json()).toEqual({ status: 'invalid event', message: 'Event object is invalid', errors: ["'payload' is required"] });
      pd.failNext = [400];
      const refused = await deliverAlert(trigger).catch((e: Error & { nonRetryable?: boolean }) => e);
      expect(refused).toMatchObject({ nonRetryable: true, message: 'alert health/gw#1 not delivered to pager: HTTP 400' });
      pd.failNext = [429];
      const limited = await deliverAlert(trigger).catch((e: Error & { nonRetryable?: boolean }) => e);
      expect(limited).toMatchObject({ nonRetryable: false });
      expect(JSON.stringify([refused, limited, (refused as Error).stack])).not.toContain(ROUTING_KEY);
    } finally {
      await pd.close();
    }
  });

  test('Discord and Microsoft Teams: bodies their APIs accept, long alerts cut to their limits, refusals not retried', async () => {
    const discord = await startDiscord();
    const teams = await startTeams();
    try {
      const { deliverAlert } = createAlertActivities({ webhooks: parseAlertWebhooks(`discord=${discord.url}, teams=${teams.url}`) });
      const long: Alert = { ...trigger, summary: 'x'.repeat(3000), detail: 'd'.repeat(5000), impacted: Array.from({ length: 400 }, (_, i) => `svc-${i}`) };
      for (const a of [trigger, resolved, long]) await expect(deliverAlert(a)).resolves.toEqual({ delivered: 2, webhooks: 2 });
      expect(discord.requests.map((q) => q.status)).toEqual([204, 204, 204]);
      expect(teams.requests.map((q) => q.status)).toEqual([202, 202, 202]);
      const d = discord.accepted[0] as { content: string; embeds: { title: string; color: number; footer: { text: string } }[]; allowed_mentions: unknown };
      expect(d.content).toBe('TRIGGERED: gw is unhealthy (timeout); 2 dependent service(s) impacted');
      expect(d.embeds[0]).toMatchObject({ color: 0xd93025, footer: { text: 'Alert health/gw#1' } });
      expect(d.allowed_mentions).toEqual({ parse: [] });
      expect((discord.accepted[1] as typeof d).embeds[0]!.color).toBe(0x1e8e3e);
      const card = (teams.accepted[0] as { attachments: { content: { body: { type: string; text?: string; facts?: { title: string; value: string }[] }[] } }[] }).attachments[0]!.content;
      expect(card.body[0]).toMatchObject({ type: 'TextBlock', text: 'TRIGGERED: gw is unhealthy (timeout); 2 dependent service(s) impacted', color: 'Attention' });
      expect(card.body[1]!.facts).toContainEqual({ title: 'Alert', value: 'health/gw#1' });
      expect(teams.requests[0]!.key).toBe('health/gw#1');
      discord.failNext = [404]; // a deleted webhook: Unknown Webhook
      const gone = await deliverAlert(trigger).catch((e: Error & { nonRetryable?: boolean }) => e);
      expect(gone).toMatchObject({ nonRetryable: true, message: 'alert health/gw#1 not delivered to webhook-1: HTTP 404' });
      expect((gone as Error).message).not.toContain('fake-token');
    } finally {
      await discord.close();
      await teams.close();
    }
  });

  test('e-mail through SMTP: one message per alert with a stable Message-ID, the RESOLVED in the TRIGGERED thread; a wrong password is named, never shown', async () => {
    const smtp = await startSmtp('alerts', 'p;ss,word');
    try {
      const receivers = (password: string) =>
        parseAlertWebhooks(`smtp=smtp://alerts:${encodeURIComponent(password)}@127.0.0.1:${smtp.port};name=mail;from=alerts@example.com;to=oncall@example.com;to=team@example.com`);
      const { deliverAlert } = createAlertActivities({ webhooks: receivers('p;ss,word') });
      await deliverAlert(trigger);
      await deliverAlert(resolved);
      expect(smtp.messages).toHaveLength(2);
      const [t, r] = smtp.messages;
      expect(t!.from).toBe('alerts@example.com');
      expect(t!.to).toEqual(['oncall@example.com', 'team@example.com']);
      expect(t!.headers).toMatchObject({
        subject: '[TRIGGERED] gw is unhealthy (timeout); 2 dependent service(s) impacted',
        'message-id': '<health/gw#1@integration-agent>',
        'x-alert-id': 'health/gw#1',
        'x-incident-id': 'health/gw#1',
      });
      expect(t!.raw).toContain('Impacted (2): api, web');
      expect(r!.headers).toMatchObject({ subject: '[RESOLVED] gw recovered after 300s', 'message-id': '<health/gw#2@integration-agent>', 'in-reply-to': '<health/gw#1@integration-agent>' });
      smtp.failNext = [451];
      await expect(deliverAlert(trigger)).rejects.toMatchObject({ nonRetryable: false, message: 'alert health/gw#1 not delivered to mail: SMTP EMESSAGE 451' });
      smtp.failNext = [550];
      await expect(deliverAlert(trigger)).rejects.toMatchObject({ nonRetryable: true });
      const wrong = createAlertActivities({ webhooks: receivers('hunter2') });
      const err = (await wrong.deliverAlert(trigger).catch((e: unknown) => e)) as Error & { nonRetryable?: boolean };
      expect(err).toMatchObject({ nonRetryable: true, message: 'alert health/gw#1 not delivered to mail: SMTP EAUTH 535' });
      expect(JSON.stringify([err.message, err.stack, err.cause])).not.toMatch(/hunter2|p;ss|p%3Bss/);
      expect(smtp.logins.at(-1)).toEqual({ user: 'alerts', ok: false });
    } finally {
      await smtp.close();
    }
  });
});

test('end to end: an outage and a warning found by sweeps reach PagerDuty as two incidents, each opened and resolved once, and e-mail as two threads', async () => {
  const fleet = await startFleet();
  const pd = await startPagerDuty();
  const smtp = await startSmtp('alerts', 'pw');
  const down = `${uniquePrefix()}-down`;
  const warn = `${uniquePrefix()}-warn`;
  const check = { timeout: '500ms', failureThreshold: 1, successThreshold: 1 };
  try {
    const b = await healthBench(
      [
        { id: down, type: 'api', endpoints: [{ url: `${fleet.url}/${down}` }], healthCheck: check },
        { id: warn, type: 'api', endpoints: [{ url: `${fleet.url}/${warn}` }], healthCheck: check },
      ],
      '',
      { alertWebhooks: parseAlertWebhooks(`pagerduty=${ROUTING_KEY};url=${pd.url}, smtp=smtp://alerts:pw@127.0.0.1:${smtp.port};from=alerts@example.com;to=oncall@example.com`) },
    );
    fleet.set(`/${down}`, { status: 503 });
    fleet.set(`/${warn}`, { body: { status: 'warn' }, contentType: 'application/health+json' });
    await b.run(async () => {
      await b.sweep();
      await eventually(() => pd.incidents.size === 2 && smtp.messages.length === 2, 'TRIGGERED and WARNING at PagerDuty and by mail');
      fleet.set(`/${down}`, { status: 200 });
      fleet.set(`/${warn}`, { body: { status: 'pass' }, contentType: 'application/health+json' });
      await b.sweep();
      await eventually(() => [...pd.incidents.values()].every((i) => i.status === 'resolved') && smtp.messages.length === 4, 'both resolved');
    });
    expect(Object.fromEntries(pd.incidents)).toEqual({
      [`health/${down}#1`]: { status: 'resolved', triggers: 1, summary: `${down} is unhealthy (status)`, severity: 'critical' },
      [`health/${warn}/warning#1`]: { status: 'resolved', triggers: 1, summary: `${warn} is degraded: health+json status "warn"`, severity: 'warning' },
    });
    expect(pd.requests.map((q) => q.status)).toEqual([202, 202, 202, 202]);
    const thread = (id: string) => smtp.messages.filter((m) => m.headers['x-incident-id'] === id).map((m) => [m.headers.subject!.split(']')[0], m.headers['in-reply-to']]);
    expect(thread(`health/${down}#1`)).toEqual([
      ['[TRIGGERED', undefined],
      ['[RESOLVED', `<health/${down}#1@integration-agent>`],
    ]);
    expect(thread(`health/${warn}/warning#1`)).toEqual([
      ['[WARNING', undefined],
      ['[RESOLVED', `<health/${warn}/warning#1@integration-agent>`],
    ]);
  } finally {
    await fleet.close();
    await pd.close();
    await smtp.close();
  }
}, 60_000);
