/**
 * Fresh namespaces on the run's shared dev server, for tests that need a
 * namespace without this project's search attributes (the dev server
 * registers them in `default` only).
 */
import { randomUUID } from 'node:crypto';
import type { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import { waitFor } from './harness';

/**
 * Registers a namespace (1-day retention) and waits until the frontend serves
 * it (task-queue and search-attribute calls answer, not just the database row).
 * @returns its name, `<prefix>-<8 hex>`.
 */
export async function freshNamespace(connection: Connection, prefix: string): Promise<string> {
  const namespace = `${prefix}-${randomUUID().slice(0, 8)}`;
  await connection.workflowService.registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('1 day') });
  await waitFor(
    `namespace ${namespace} to be served`,
    async () => {
      try {
        await connection.operatorService.listSearchAttributes({ namespace });
        await connection.workflowService.describeTaskQueue({
          namespace,
          taskQueue: { name: 'probe', kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
          taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        });
        await connection.workflowService.countWorkflowExecutions({ namespace, query: '' });
        return true;
      } catch {
        return false;
      }
    },
    { timeoutMs: 30_000, everyMs: 250 },
  );
  return namespace;
}

/** Adds Keyword search attributes to `namespace` and waits until they are listed. */
export async function addKeywordAttributes(connection: Connection, namespace: string, names: string[]): Promise<void> {
  const KEYWORD = temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
  await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: Object.fromEntries(names.map((n) => [n, KEYWORD])) });
  await waitFor(
    `search attributes ${names.join(', ')} in ${namespace}`,
    async () => {
      const r = await connection.operatorService.listSearchAttributes({ namespace });
      return names.every((n) => n in (r.customAttributes ?? {}));
    },
    { timeoutMs: 15_000, everyMs: 200 },
  );
}
