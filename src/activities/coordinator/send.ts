/**
 * One HTTP exchange on an undici dispatcher through its low-level `dispatch`
 * API, collecting the body in memory. Compared with `dispatcher.request()`
 * it skips the body stream and the per-call AbortSignal, and — what matters
 * more — it can be abandoned at any moment: `abort()` rejects at once even
 * while undici still waits for a connection (undici 7 only delivers an abort
 * to a request once it reaches a socket, so a host that drops SYNs would
 * hold an aborted `request()` until the connect timeout).
 */
import type { Dispatcher } from 'undici';

/** A complete response. */
export interface Exchanged {
  status: number;
  /** Lower-case names; repeated headers joined with `, `. */
  headers: Record<string, string>;
  /** The body as UTF-8 (after the decompress interceptor). */
  body: string;
}

/** Joins repeated headers with `, `; returns undici's own object (no copy) when nothing repeats. */
function flattenHeaders(h: Record<string, string | string[] | undefined>): Record<string, string> {
  for (const k in h) {
    if (typeof h[k] !== 'string') {
      const out: Record<string, string> = {};
      for (const n in h) {
        const v = h[n];
        if (v !== undefined) out[n] = Array.isArray(v) ? v.join(', ') : v;
      }
      return out;
    }
  }
  return h as Record<string, string>;
}

/** A DispatchHandler (undici's handler API v2) that resolves a promise with the whole response. */
export class Exchange implements Dispatcher.DispatchHandler {
  readonly promise: Promise<Exchanged>;
  /** Set by the promise executor; internal. */
  resolve!: (r: Exchanged) => void;
  reject!: (err: unknown) => void;
  private controller: Dispatcher.DispatchController | undefined;
  private abortReason: Error | undefined;
  private settled = false;
  private status = 0;
  private headers: Record<string, string> = {};
  private chunks: Buffer[] = [];

  constructor() {
    // A module-level executor rather than a closure per exchange (this is the hot path).
    capturing = this;
    this.promise = new Promise<Exchanged>(captureResolvers);
    capturing = undefined;
  }

  /** Starts the exchange on `dispatcher`. */
  start(dispatcher: Dispatcher, opts: Dispatcher.DispatchOptions): Promise<Exchanged> {
    try {
      dispatcher.dispatch(opts, this);
    } catch (err) {
      this.fail(err);
    }
    return this.promise;
  }

  /** Rejects the exchange with `reason` now and tells undici to drop the request (at once, or when it reaches a socket). */
  abort(reason: Error): void {
    if (this.settled) return;
    this.abortReason = reason;
    this.fail(reason);
    this.controller?.abort(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.abortReason) controller.abort(this.abortReason);
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // Called again after a 1xx: only the final response counts.
    this.status = statusCode;
    this.headers = flattenHeaders(headers);
    this.chunks = [];
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.settled) this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    if (this.settled) return;
    this.settled = true;
    const c = this.chunks;
    const body = c.length === 0 ? '' : c.length === 1 ? c[0]!.toString('utf8') : Buffer.concat(c).toString('utf8');
    this.chunks = [];
    this.resolve({ status: this.status, headers: this.headers, body });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.fail(err);
  }

  private fail(err: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.chunks = [];
    this.reject(err);
  }
}

/** The exchange whose promise is being created (the Promise executor runs synchronously). */
let capturing: Exchange | undefined;

function captureResolvers(resolve: (r: Exchanged) => void, reject: (err: unknown) => void): void {
  capturing!.resolve = resolve;
  capturing!.reject = reject;
}
