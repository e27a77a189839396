/** Webhook dead letters on PostgreSQL: one row per (workflow, subscriber) whoever records it. */
import type { Pool } from 'pg';
import { toDeadLetter, type DeadLetterRow } from '../rows';
import type { DeadLetterStore, RecordDeadLetterInput, WebhookDeadLetter } from '../types';

export class PostgresDeadLetterStore implements DeadLetterStore {
  constructor(private readonly pool: Pool) {}

  async record(input: RecordDeadLetterInput, now: number): Promise<number> {
    if (input.redeliveryOf !== undefined) {
      const r = await this.pool.query('UPDATE webhook_dead_letters SET attempts = attempts + $1, last_error = $2, updated_at = $3 WHERE id = $4 AND resolved_at IS NULL', [
        input.attempts,
        input.lastError,
        now,
        input.redeliveryOf,
      ]);
      if (r.rowCount === 1 || (await this.get(input.redeliveryOf))) return input.redeliveryOf;
    }
    await this.pool.query(
      `INSERT INTO webhook_dead_letters
         (event_id, subscriber_id, endpoints, payload, idempotency_key, attempts, last_error, workflow_id, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) ON CONFLICT (workflow_id, subscriber_id) DO NOTHING`,
      [input.eventId, input.subscriberId, JSON.stringify(input.endpoints), JSON.stringify(input.payload ?? null), input.idempotencyKey, input.attempts, input.lastError, input.workflowId, now],
    );
    const row = await this.pool.query<{ id: string }>('SELECT id FROM webhook_dead_letters WHERE workflow_id = $1 AND subscriber_id = $2', [input.workflowId, input.subscriberId]);
    return Number(row.rows[0]!.id);
  }

  async get(id: number): Promise<WebhookDeadLetter | undefined> {
    const r = (await this.pool.query<DeadLetterRow>('SELECT * FROM webhook_dead_letters WHERE id = $1', [id])).rows[0];
    return r && toDeadLetter(r);
  }

  async payload(id: number): Promise<unknown> {
    const r = (await this.pool.query<{ payload: string }>('SELECT payload FROM webhook_dead_letters WHERE id = $1', [id])).rows[0];
    return r ? JSON.parse(r.payload) : undefined;
  }

  async resolve(id: number, by: string, now: number): Promise<boolean> {
    const r = await this.pool.query('UPDATE webhook_dead_letters SET resolved_at = COALESCE(resolved_at, $1), resolved_by = COALESCE(resolved_by, $2), updated_at = $1 WHERE id = $3', [now, by, id]);
    return r.rowCount === 1;
  }

  async list(opts: { state?: 'open' | 'resolved' | 'all'; limit?: number } = {}): Promise<WebhookDeadLetter[]> {
    const state = opts.state ?? 'open';
    const where = state === 'open' ? 'WHERE resolved_at IS NULL' : state === 'resolved' ? 'WHERE resolved_at IS NOT NULL' : '';
    return (await this.pool.query<DeadLetterRow>(`SELECT * FROM webhook_dead_letters ${where} ORDER BY id DESC LIMIT $1`, [opts.limit ?? 100])).rows.map(toDeadLetter);
  }
}
