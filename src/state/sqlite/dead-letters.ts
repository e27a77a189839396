/** Webhook dead letters on the embedded database. */
import { toDeadLetter, type DeadLetterRow } from '../rows';
import type { DeadLetterStore, RecordDeadLetterInput, WebhookDeadLetter } from '../types';
import type { Db } from './database';

export class SqliteDeadLetterStore implements DeadLetterStore {
  constructor(private readonly db: Db) {}

  async record(input: RecordDeadLetterInput, now: number): Promise<number> {
    if (input.redeliveryOf !== undefined) {
      const r = this.db
        .prepare('UPDATE webhook_dead_letters SET attempts = attempts + ?, last_error = ?, updated_at = ? WHERE id = ? AND resolved_at IS NULL')
        .run(input.attempts, input.lastError, now, input.redeliveryOf);
      if (r.changes === 1 || this.row(input.redeliveryOf)) return input.redeliveryOf;
    }
    this.db
      .prepare(
        `INSERT OR IGNORE INTO webhook_dead_letters
           (event_id, subscriber_id, endpoints, payload, idempotency_key, attempts, last_error, workflow_id, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(input.eventId, input.subscriberId, JSON.stringify(input.endpoints), JSON.stringify(input.payload ?? null), input.idempotencyKey, input.attempts, input.lastError, input.workflowId, now, now);
    const row = this.db.prepare('SELECT id FROM webhook_dead_letters WHERE workflow_id = ? AND subscriber_id = ?').get(input.workflowId, input.subscriberId) as { id: number };
    return row.id;
  }

  private row(id: number): DeadLetterRow | undefined {
    return this.db.prepare('SELECT * FROM webhook_dead_letters WHERE id = ?').get(id) as DeadLetterRow | undefined;
  }

  async get(id: number): Promise<WebhookDeadLetter | undefined> {
    const r = this.row(id);
    return r && toDeadLetter(r);
  }

  async payload(id: number): Promise<unknown> {
    const r = this.db.prepare('SELECT payload FROM webhook_dead_letters WHERE id = ?').get(id) as { payload: string } | undefined;
    return r ? JSON.parse(r.payload) : undefined;
  }

  async resolve(id: number, by: string, now: number): Promise<boolean> {
    const r = this.db.prepare('UPDATE webhook_dead_letters SET resolved_at = COALESCE(resolved_at, ?), resolved_by = COALESCE(resolved_by, ?), updated_at = ? WHERE id = ?').run(now, by, now, id);
    return r.changes === 1;
  }

  async list(opts: { state?: 'open' | 'resolved' | 'all'; limit?: number } = {}): Promise<WebhookDeadLetter[]> {
    const state = opts.state ?? 'open';
    const where = state === 'open' ? 'WHERE resolved_at IS NULL' : state === 'resolved' ? 'WHERE resolved_at IS NOT NULL' : '';
    return (this.db.prepare(`SELECT * FROM webhook_dead_letters ${where} ORDER BY id DESC LIMIT ?`).all(opts.limit ?? 100) as DeadLetterRow[]).map(toDeadLetter);
  }
}
