/**
 * A health sweep with a `type: make` service: it is checked through Make's
 * API (token, connections, scenarios, hooks), after the other services, so a
 * scenario whose connection stands for a failing service reads as impacted.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createActivities } from '../../src/activities';
import { createMakeHealthActivities } from '../../src/activities/make/health';
import { openState } from '../../src/state';
import type { HealthSweepResult } from '../../src/workflows/sweep';
import { startFakeMake, type FakeMake } from '../fixtures/make-server';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';
import { makeRegistryYaml, makeRig, type MakeRig } from './helpers';

let fake: FakeMake;
let rig: MakeRig;
beforeAll(async () => {
  fake = await startFakeMake({ apiLimitPerMinute: 1000 });
  fake.addConnection({ id: 128, data: { apiKey: 'k1' }, accepts: (d) => d.apiKey === 'k1' });
  fake.addScenario({ id: 111 });
  rig = makeRig(
    fake,
    makeRegistryYaml(fake, `
connections:
  - { id: 128, name: CRM, standsFor: crm-api, credential: crm-key, dataField: apiKey }
scenarios:
  - { id: 111, name: Sync orders, connections: [128] }
`),
  );
});
afterAll(async () => {
  await rig.close();
  await fake.close();
  await closeTestClient();
});

test('make services are checked through the Make API, and a scenario over a failing service is impacted', async () => {
  const taskQueue = uniqueTaskQueue('make-sweep');
  // The worker's activities (the sweep reads the registry by reference and probes it in pages),
  // with Make's API clients pointed at the fake.
  const state = await openState({ dataDir: mkdtempSync(join(tmpdir(), 'ia-make-sweep-')) });
  const activities = { ...createActivities({ registry: rig.registry, state }), ...createMakeHealthActivities({}, rig.clients) };
  const client = await testClient();
  const result = await withTestWorker({ taskQueue, activities }, () =>
    client.workflow.execute('healthSweep', { taskQueue, workflowId: `sweep/make-${taskQueue}`, args: [{ publish: false }] }) as Promise<HealthSweepResult>,
  ).finally(() => state.close());
  const byId = Object.fromEntries(result.services.map((s) => [s.id, s]));
  // crm-api (nothing listens on 127.0.0.1:9) fails its plain probe.
  expect(byId['crm-api']!.status).toBe('unhealthy');
  // make-prod went through Make's API, not a plain HTTP GET of its endpoint.
  const calls = fake.requests.map((r) => `${r.method} ${r.path}`);
  expect(calls).toEqual(expect.arrayContaining(['GET /api/v2/users/me', 'POST /api/v2/connections/128/test', 'GET /api/v2/scenarios/111']));
  expect(calls).not.toContain('GET /api/v2');
  expect(byId['make-prod']!.detail).toMatch(/scenario 111.*impacted|impacted.*crm-api/i);
});
