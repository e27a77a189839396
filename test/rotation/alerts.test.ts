/**
 * Rotation alerts as a receiver sees them: a run that does not complete sends
 * exactly one alert (through the `deliverAlert` activity, `Idempotency-Key` =
 * alert id) to the ALERT_WEBHOOKS receivers, with the credential, the status,
 * the cause, each service's state and what to do; `needs_attention` is
 * `critical`. Real dev server, real worker with the real activities
 * (createActivities), the loopback contract server and loopback receivers.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { createActivities } from '../../src/activities';
import { staticRegistry } from '../../src/activities/registry';
import { rotate } from '../../src/client/rotation';
import type { Alert } from '../../src/domain/health';
import { rotationAlert } from '../../src/domain/rotation-alert';
import type { RotationResult } from '../../src/domain/rotation';
import { eventually, startReceiver, type Receiver } from '../health/harness';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { rotationFixture, type ConsumerDef, type RotationFixture } from './support';

afterAll(closeTestClient);

let json: Receiver;
let slack: Receiver;
beforeAll(async () => {
  json = await startReceiver();
  slack = await startReceiver();
});
afterAll(async () => {
  await json.close();
  await slack.close();
});

/** A worker built as the real one is (createActivities) with both receivers as its ALERT_WEBHOOKS. */
function withAlertingWorker<T>(fx: RotationFixture, fn: () => Promise<T>, webhooks = [{ url: json.url }, { url: slack.url, format: 'slack' as const }]): Promise<T> {
  return withTestWorker(
    {
      taskQueue: fx.taskQueue,
      activities: createActivities({ registry: staticRegistry(fx.registry), state: fx.state, health: { alertWebhooks: webhooks } }),
    },
    fn,
  );
}

async function withFixture(consumers: ConsumerDef[], fn: (fx: RotationFixture, client: Client) => Promise<void>): Promise<void> {
  const fx = await rotationFixture(consumers);
  try {
    await fn(fx, await testClient());
  } finally {
    await fx.close();
  }
}

const forCredential = (r: Receiver, credentialId: string) => r.alerts.filter((a) => (a as Alert & { credentialId?: string }).credentialId === credentialId);

/** Waits for the run's alert to be delivered (its delivery workflow completed), then returns what the receivers got. */
async function deliveredAlert(client: Client, fx: RotationFixture, result: RotationResult): Promise<{ alert: Alert; slackText: string }> {
  const { runId } = await client.workflow.getHandle(result.workflowId).describe();
  const id = `rotation/${fx.credentialId}#${runId}/${result.status}`;
  await eventually(async () => forCredential(json, fx.credentialId).length > 0, `alert ${id} at the JSON receiver`, 60_000);
  await client.workflow.getHandle(id).result();
  const alerts = forCredential(json, fx.credentialId);
  expect(alerts).toHaveLength(1);
  expect(alerts[0]!.id).toBe(id);
  const slackBodies = slack.alerts.filter((a) => JSON.stringify(a).includes(fx.credentialId));
  expect(slackBodies).toHaveLength(1);
  return { alert: alerts[0]!, slackText: JSON.stringify(slackBodies[0]) };
}

test('rolled_back: one warning alert with the cause, each service state and what to do; a receiver answering 503 then 200 still gets one logical alert', async () => {
  await withFixture([{ id: 'ra' }, { id: 'rb', dependsOn: ['ra'] }], async (fx, client) => {
    fx.server.behaviour('rb').acceptOnly = new Set([fx.initialVersionId]); // refuses the new version, takes CURRENT back
    json.status = 503;
    const first = eventually(() => json.requests.length > 0, 'the first delivery attempt', 60_000).then(() => (json.status = 200));
    const result = await withAlertingWorker(fx, async () => {
      const r = await rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
      await first;
      return { r, delivered: await deliveredAlert(client, fx, r) };
    });
    expect(result.r.status).toBe('rolled_back');
    const { alert, slackText } = result.delivered;
    // Retried after the 503 under the same Idempotency-Key: one logical alert.
    const tries = json.requests.filter((q) => q.key === alert.id);
    expect(tries.length).toBeGreaterThanOrEqual(2);
    expect(new Set(json.requests.filter((q) => JSON.stringify(q.body).includes(fx.credentialId)).map((q) => q.key))).toEqual(new Set([alert.id]));
    expect(alert).toMatchObject({
      kind: 'TRIGGERED',
      source: 'rotation',
      credentialId: fx.credentialId,
      status: 'rolled_back',
      severity: 'warning',
      serviceId: 'issuer',
      schema: 'integration-agent.alert/v1',
    });
    expect((alert as Alert & { cause: string }).cause).toMatch(/rb: .*422/);
    expect((alert as Alert & { services: unknown[] }).services).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ id: 'ra', role: 'consumer', step: 'restore', status: 'ok', holds: 'current' }),
        // rb refused the new version for good (422): it never held it, so it holds CURRENT and is not restored.
        expect.objectContaining({ id: 'rb', role: 'consumer', step: 'install', status: 'failed', holds: 'current' }),
        expect.objectContaining({ id: 'issuer', role: 'issuer', step: 'revoke', status: 'ok' }),
      ]),
    );
    expect((alert as Alert & { action: string }).action).toContain(`integration-agent rotate ${fx.credentialId}`);
    expect(slackText).toContain('WARNING');
    // Alerts never carry a secret.
    for (const s of [...fx.server.secrets(), fx.initialSecret]) expect(JSON.stringify([...json.requests, ...slack.requests])).not.toContain(s);
  });
});

test('needs_attention: one critical alert naming the consumer to check and the command to run', async () => {
  await withFixture([{ id: 'na' }, { id: 'nb', dependsOn: ['na'] }], async (fx, client) => {
    // na takes the new version but then refuses CURRENT back; nb refuses the new version: restore fails.
    fx.server.behaviour('na').rejectVersions = new Set([fx.initialVersionId]);
    fx.server.behaviour('nb').rejectInstall = true;
    const { r, delivered } = await withAlertingWorker(fx, async () => {
      const r = await rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue });
      return { r, delivered: await deliveredAlert(client, fx, r) };
    });
    expect(r.status).toBe('needs_attention');
    const alert = delivered.alert as Alert & { severity: string; services: Array<Record<string, unknown>>; action: string; cause: string };
    expect(alert).toMatchObject({ source: 'rotation', status: 'needs_attention', severity: 'critical', credentialId: fx.credentialId, versionId: r.versionId });
    expect(alert.services).toEqual(expect.arrayContaining([expect.objectContaining({ id: 'na', step: 'restore', status: 'failed' })]));
    expect(alert.action).toContain('na');
    expect(alert.action).toContain(`integration-agent credentials status ${fx.credentialId}`);
    expect(alert.action).toContain(`integration-agent rotate ${fx.credentialId} --force`);
    expect(delivered.slackText).toContain('CRITICAL');
    expect(delivered.slackText).toContain('na');
    if (process.env.IA_CAPTURE_ROTATION_ALERT_HISTORY === '1') {
      // test/histories/rotation-needs-attention-alert.json: a run that started its alert delivery (patched('rotation-alerts')), replayed by test/replay.test.ts.
      const history = await client.workflow.getHandle(r.workflowId).fetchHistory();
      const file = join(__dirname, '..', 'histories', 'rotation-needs-attention-alert.json');
      writeFileSync(file, JSON.stringify({ workflowId: r.workflowId, history: JSON.parse(historyToJSON(history)) }, null, 1) + '\n');
    }
  });
});

test('a completed rotation sends no alert and schedules nothing for one', async () => {
  await withFixture([{ id: 'ok1' }], async (fx, client) => {
    const before = json.requests.length;
    const r = await withAlertingWorker(fx, () => rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue }));
    expect(r).toMatchObject({ status: 'completed', previousRevoked: true });
    const history = await client.workflow.getHandle(r.workflowId).fetchHistory();
    expect(history.events!.filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes)).toHaveLength(0);
    expect(json.requests.length).toBe(before);
  });
});

test('a worker without alert webhooks schedules no delivery for a failed rotation', async () => {
  await withFixture([{ id: 'qa' }, { id: 'qb', dependsOn: ['qa'] }], async (fx, client) => {
    fx.server.behaviour('qb').acceptOnly = new Set([fx.initialVersionId]); // refuses the new version, takes CURRENT back
    const r = await withAlertingWorker(fx, () => rotate(client, { credentialId: fx.credentialId, taskQueue: fx.taskQueue }), []);
    expect(r.status).toBe('rolled_back');
    const history = await client.workflow.getHandle(r.workflowId).fetchHistory();
    expect(history.events!.filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes)).toHaveLength(0);
    expect(forCredential(json, fx.credentialId)).toHaveLength(0);
  });
});

test('a scheduled rotation that rolls back alerts once (from the rotation, not again from scheduledRotation)', async () => {
  await withFixture([{ id: 'sa' }, { id: 'sb', dependsOn: ['sa'] }], async (fx, client) => {
    fx.server.behaviour('sb').acceptOnly = new Set([fx.initialVersionId]); // refuses the new version, takes CURRENT back
    const { parent, delivered } = await withAlertingWorker(fx, async () => {
      const parent = await client.workflow.execute('scheduledRotation', {
        taskQueue: fx.taskQueue,
        workflowId: `rotation-schedule-test/${fx.credentialId}/${uniqueTaskQueue('s')}`,
        args: [{ credentialId: fx.credentialId }],
      });
      return { parent: parent as RotationResult, delivered: await deliveredAlert(client, fx, parent as RotationResult) };
    });
    expect(parent.status).toBe('rolled_back');
    expect(delivered.alert).toMatchObject({ status: 'rolled_back', credentialId: fx.credentialId });
    // Exactly one (deliveredAlert checked it once the delivery finished); the parent started only the rotation.
    expect(forCredential(json, fx.credentialId)).toHaveLength(1);
  });
});

describe('rotationAlert (the pure decision)', () => {
  const base: RotationResult = { credentialId: 'k', workflowId: 'rotation/k', status: 'completed', services: [] };
  const ctx = { runId: 'r1', at: 1, services: [] };
  test('dry runs and completed runs that revoked PREVIOUS (or had none) do not alert', () => {
    expect(rotationAlert({ ...base, status: 'failed', dryRun: true, cause: 'preflight: x' }, ctx)).toBeUndefined();
    expect(rotationAlert({ ...base, previousVersionId: 'v0', previousRevoked: true }, ctx)).toBeUndefined();
    expect(rotationAlert({ ...base, previousRevoked: false }, ctx)).toBeUndefined();
  });
  test('a refusal alerts as a warning carrying the refusal; a completed run that kept PREVIOUS valid alerts too', () => {
    const refused = rotationAlert({ ...base, status: 'failed', cause: 'refused, nothing changed: circuit breaker of consumer c is OPEN (use --force to rotate anyway)' }, ctx)!;
    expect(refused).toMatchObject({ id: 'rotation/k#r1/failed', severity: 'warning', status: 'failed', serviceId: 'k' });
    expect(refused.action).toContain('OPEN');
    const kept = rotationAlert({ ...base, versionId: 'v1', previousVersionId: 'v0', previousRevoked: false, cause: 'PREVIOUS v0 not revoked' }, { ...ctx, issuer: 'iss' })!;
    expect(kept).toMatchObject({ id: 'rotation/k#r1/completed', severity: 'warning', serviceId: 'iss' });
    expect(kept.action).toContain('v0');
  });
});
