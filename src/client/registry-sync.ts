/**
 * Keeps what lives in Temporal in step with the registry a worker follows:
 * one rotation Schedule per credential with a `schedule`, and running
 * breakers reconfigured when their options change. Called at worker start and
 * on every valid registry reload; idempotent, so several workers may all call it.
 */
import type { Client } from '@temporalio/client';
import type { Logger } from 'pino';
import type { Registry } from '../domain/registry';
import { reconfigureBreakers } from './breakers';
import { applyRotationSchedules } from './rotation';

/**
 * @param previous the registry before a reload; omit at start.
 * Errors are logged, never thrown: the worker keeps running on the last state.
 */
export async function syncRegistry(client: Client, logger: Logger, next: Registry, previous: Registry | undefined, opts: { taskQueue: string }): Promise<void> {
  try {
    const s = await applyRotationSchedules(client, next, { taskQueue: opts.taskQueue });
    if (s.created.length + s.updated.length + s.deleted.length > 0) logger.info(s, 'rotation schedules applied');
  } catch (err) {
    logger.error({ error: (err as Error).message, version: next.versionHash }, 'could not apply rotation schedules');
  }
  if (!previous) return;
  try {
    const changed = await reconfigureBreakers(client, previous, next);
    if (changed.length > 0) logger.info({ services: changed }, 'breakers reconfigured');
  } catch (err) {
    logger.error({ error: (err as Error).message, version: next.versionHash }, 'could not reconfigure breakers');
  }
}
