/**
 * Passive monitoring: real call outcomes from the coordinator feed the
 * health history (src/state) in batches.
 */
import type { CallOutcome } from '../domain/outcome';
import type { HealthHistory } from '../state/types';
import type { OutcomeSink } from './ports';

export interface HealthOutcomeSinkOptions {
  /** Flush buffered outcomes at least this often, ms; default 1000. */
  flushEveryMs?: number;
  /** Flush at once when this many are buffered; default 1000. */
  maxBuffered?: number;
  /** Called with errors from a flush (the sink never throws into the caller). */
  onError?: (err: unknown) => void;
}

/**
 * An {@link OutcomeSink} for the coordinator that buffers real call outcomes
 * and writes them to the health history in batches. `record` never throws or
 * blocks; `flush()` writes what is buffered; `close()` stops the timer, writes
 * everything buffered and flushes the history's histograms.
 * @throws RangeError for a bad option.
 */
export function createHealthOutcomeSink(history: HealthHistory, opts: HealthOutcomeSinkOptions = {}): OutcomeSink & { flush(): Promise<void>; close(): Promise<void> } {
  const every = opts.flushEveryMs ?? 1000;
  const max = opts.maxBuffered ?? 1000;
  if (!(every > 0)) throw new RangeError(`createHealthOutcomeSink: flushEveryMs must be > 0, got ${every}`);
  if (!(max >= 1)) throw new RangeError(`createHealthOutcomeSink: maxBuffered must be >= 1, got ${max}`);
  let buf: CallOutcome[] = [];
  const flush = async () => {
    if (buf.length === 0) return;
    const batch = buf;
    buf = [];
    try {
      await history.recordCalls(batch);
    } catch (err) {
      opts.onError?.(err);
    }
  };
  const timer = setInterval(() => void flush(), every);
  timer.unref();
  return {
    record(outcome) {
      buf.push(outcome);
      if (buf.length === max) setImmediate(() => void flush());
    },
    flush,
    async close() {
      clearInterval(timer);
      await flush();
      try {
        await history.flush();
      } catch (err) {
        opts.onError?.(err);
      }
    },
  };
}
