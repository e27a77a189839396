/**
 * The concurrency holds one limiter instance has taken, renewed together in
 * one batch every `renewEveryMs` while any is alive. The timer exists only
 * while holds do, and never keeps the process alive by itself.
 */
import { randomBytes } from 'node:crypto';

export class LeaseBook {
  /** holdId -> key. */
  readonly holds = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private readonly prefix = randomBytes(6).toString('hex');
  private seq = 0;

  /**
   * @param renewEveryMs interval of renewal, ms.
   * @param renew renews every hold given (holdId -> key); a rejection is passed to `onError` and the next round tries again.
   */
  constructor(
    private readonly renewEveryMs: number,
    private readonly renew: (holds: ReadonlyMap<string, string>) => Promise<void>,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  /** `count` new hold ids, unique across processes (a random prefix per instance, then a counter). */
  newIds(count: number): string[] {
    const ids = new Array<string>(count);
    for (let i = 0; i < count; i++) ids[i] = `${this.prefix}.${(this.seq++).toString(36)}`;
    return ids;
  }

  add(holdId: string, key: string): void {
    this.holds.set(holdId, key);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.renewNow(), this.renewEveryMs);
      this.timer.unref();
    }
  }

  /** Forgets a hold; returns its key (undefined when it was not held). */
  remove(holdId: string): string | undefined {
    const key = this.holds.get(holdId);
    if (key === undefined) return undefined;
    this.holds.delete(holdId);
    if (this.holds.size === 0) this.stop();
    return key;
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private renewNow(): void {
    if (this.holds.size === 0) return;
    this.renew(new Map(this.holds)).catch(this.onError);
  }
}
