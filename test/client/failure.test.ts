/**
 * The one line a user reads when a workflow fails, from real failures on the
 * shared dev server: a result over the payload limit names the activity and
 * says what to do; an activity's own error and a child's are named.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { WorkflowFailedError } from '@temporalio/client';
import { describeWorkflowFailure, WorkflowRunFailedError } from '../../src/client/failure';
import { describeError } from '../../src/client/cli/main';
import { closeTestClient, testClient, uniqueTaskQueue, withTestWorker } from '../helpers/temporal';

const activities = {
  async bigResult(bytes: number): Promise<string> {
    return 'x'.repeat(bytes);
  },
  async refuse(message: string): Promise<void> {
    throw ApplicationFailure.nonRetryable(message, 'RegistryMismatch');
  },
};

async function failureOf(workflowType: string, arg: unknown): Promise<{ err: WorkflowFailedError; workflowId: string }> {
  const client = await testClient();
  const taskQueue = uniqueTaskQueue('failure');
  const workflowId = `failure-test/${taskQueue}`;
  return withTestWorker({ taskQueue, workflowBundle: undefined, workflowsPath: require.resolve('./failure-workflows'), activities }, async () => {
    try {
      await client.workflow.execute(workflowType, { taskQueue, workflowId, args: [arg], workflowExecutionTimeout: '60s' });
    } catch (err) {
      if (err instanceof WorkflowFailedError) return { err, workflowId };
      throw err;
    }
    throw new Error(`${workflowType} did not fail`);
  });
}

afterAll(closeTestClient);

test('a result over the payload limit names the workflow, the activity and what to do', async () => {
  const { err, workflowId } = await failureOf('returnsTooMuch', 3 * 1024 * 1024);
  const line = describeWorkflowFailure(err, workflowId);
  expect(line).toContain(`workflow ${workflowId} failed`);
  expect(line).toContain('activity bigResult');
  expect(line).toMatch(/size limit \(2 MiB by default/);
  expect(line).not.toMatch(/xxxxxxxx/);
  // The CLI prints the same line for the SDK's error and for the facade's wrapper.
  expect(describeError(err)).toContain('activity bigResult');
  expect(describeError(new WorkflowRunFailedError(workflowId, err))).toBe(line);
}, 60_000);

test("an activity's own non-retryable error is the line's end, with its type", async () => {
  const { err, workflowId } = await failureOf('activityRefuses', 'registry version 3f2a is not the one this sweep snapshotted');
  expect(describeWorkflowFailure(err, workflowId)).toBe(
    `workflow ${workflowId} failed: activity refuse: registry version 3f2a is not the one this sweep snapshotted (RegistryMismatch)`,
  );
});

test("a child's failure names the child and its activity", async () => {
  const { err, workflowId } = await failureOf('childRefuses', 'no such credential');
  expect(describeWorkflowFailure(err, workflowId)).toBe(
    `workflow ${workflowId} failed: child workflow activityRefuses ${workflowId}/child: activity refuse: no such credential (RegistryMismatch)`,
  );
});
