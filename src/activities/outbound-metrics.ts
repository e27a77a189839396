/**
 * Prometheus metrics of the calls the API coordinator makes to registry
 * services (prom-client, served on the worker's /metrics):
 *
 * - `integration_agent_outbound_requests_total{service,method,outcome}`
 *   counter: calls that went out (or were refused on the way), one per
 *   `Coordinator.request` that did not hit the cache. `outcome` is the status
 *   class of the final answer (`1xx`..`5xx`) or why there was none:
 *   `timeout`, `network` (refused, reset, DNS, TLS), `breaker_open`,
 *   `rate_limited` (could not be admitted before its deadline), `aborted`
 *   (the caller gave up), `error` (anything else: body too large, bad
 *   redirect, admission store down, worker shutting down);
 * - `integration_agent_outbound_request_duration_seconds{service,method}`
 *   histogram: wall time of those calls as the caller saw it, rate-limit wait,
 *   failover and redirects included;
 * - `integration_agent_outbound_rate_limit_waits_total{service}` counter and
 *   `integration_agent_outbound_rate_limit_wait_seconds_total{service}`
 *   counter: calls that had to wait for the rate limit (or `maxConcurrent`),
 *   and the time they waited;
 * - `integration_agent_outbound_cache_hits_total{service}`,
 *   `integration_agent_outbound_cache_misses_total{service}`,
 *   `integration_agent_outbound_coalesced_requests_total{service}` counters:
 *   cacheable GETs answered from the cache, not answered from it, and (of the
 *   misses) those that joined an identical GET already in flight.
 *
 * Breaker rejections are the `breaker_open` outcome here, and
 * `integration_agent_breaker_rejected_calls_total{service,state}` from the gate.
 *
 * Why not prom-client's `inc(labels)` on each call: prom-client hashes the
 * label set on every increment (a string built per call), and the
 * coordinator's call path allocates nothing it does not need
 * (docs/coordinator.md, Figures). Calls bump plain numbers in a
 * {@link ServiceCallStats} resolved once per service; the numbers become
 * series only when Prometheus scrapes.
 */
import { Counter, type Metric, type Registry } from 'prom-client';

/** The methods the coordinator sends, in index order. */
export const OUTBOUND_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
/** Outcome classes, in index order (see the module comment). */
export const OUTBOUND_OUTCOMES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'timeout', 'network', 'breaker_open', 'rate_limited', 'aborted', 'error'] as const;
export type OutboundOutcome = (typeof OUTBOUND_OUTCOMES)[number];
/** Upper bounds of the latency histogram, seconds. */
export const OUTBOUND_LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;

const METHODS = OUTBOUND_METHODS.length;
const OUTCOMES = OUTBOUND_OUTCOMES.length;
const BUCKETS = OUTBOUND_LATENCY_BUCKETS.length;

/** Index of a method in {@link OUTBOUND_METHODS} (upper case, as the coordinator validated it); unknown ones count as GET. */
export function methodIndex(method: string): number {
  switch (method) {
    case 'HEAD':
      return 1;
    case 'POST':
      return 2;
    case 'PUT':
      return 3;
    case 'PATCH':
      return 4;
    case 'DELETE':
      return 5;
    case 'OPTIONS':
      return 6;
    default:
      return 0;
  }
}

/** Index in {@link OUTBOUND_OUTCOMES} of the status class of an HTTP status (100..599). */
export function statusOutcome(status: number): number {
  const c = Math.floor(status / 100);
  return c < 1 ? 0 : c > 5 ? 4 : c - 1;
}

/** Index in {@link OUTBOUND_OUTCOMES} of a failure without an answer, by the coordinator's failure kind. */
export function failureOutcome(kind: string): number {
  switch (kind) {
    case 'timeout':
      return 5;
    case 'connection_refused':
    case 'connection_reset':
    case 'dns':
    case 'tls':
      return 6;
    case 'breaker_open':
      return 7;
    case 'rate_limited':
      return 8;
    case 'aborted':
      return 9;
    default:
      return 10;
  }
}

/**
 * One service's call figures: plain numbers the call path bumps. Resolved
 * once per service ({@link OutboundMetrics.forService}); nothing here
 * allocates.
 */
export class ServiceCallStats {
  /** Calls by method and outcome: `[method * OUTCOMES + outcome]`. */
  readonly requests = new Float64Array(METHODS * OUTCOMES);
  /** Latency observations per method and bucket, not cumulative: `[method * (BUCKETS + 1) + bucket]`, the last bucket being +Inf. */
  readonly latencyBuckets = new Float64Array(METHODS * (BUCKETS + 1));
  /** Sum of the observed latencies per method, seconds. */
  readonly latencySum = new Float64Array(METHODS);
  rateLimitWaits = 0;
  rateLimitWaitSeconds = 0;
  cacheHits = 0;
  cacheMisses = 0;
  coalesced = 0;

  constructor(
    /** The registry service id (the `service` label). */
    readonly service: string,
  ) {}

  /**
   * Counts one finished call.
   * @param method index from {@link methodIndex}.
   * @param outcome index from {@link statusOutcome} or {@link failureOutcome}.
   * @param seconds its wall time.
   */
  observeCall(method: number, outcome: number, seconds: number): void {
    this.requests[method * OUTCOMES + outcome]!++;
    let b = 0;
    while (b < BUCKETS && seconds > OUTBOUND_LATENCY_BUCKETS[b]!) b++;
    this.latencyBuckets[method * (BUCKETS + 1) + b]!++;
    this.latencySum[method]! += seconds;
  }

  /** Counts one wait for the rate limit (or `maxConcurrent`) that lasted `seconds`. */
  observeRateLimitWait(seconds: number): void {
    this.rateLimitWaits++;
    this.rateLimitWaitSeconds += seconds;
  }
}

/** The coordinator's metrics: per-service figures, published on a prom-client registry. */
export interface OutboundMetrics {
  /** The figures of `serviceId` (the same object for the same id, for the life of the metrics). */
  forService(serviceId: string): ServiceCallStats;
}

/**
 * Registers the outbound-call metrics (see the module comment) on `registry`.
 * @param prefix prepended to every name; default `integration_agent_`.
 * @throws Error from prom-client when metrics of these names are already registered there.
 */
export function registerOutboundMetrics(registry: Registry, prefix = 'integration_agent_'): OutboundMetrics {
  const byService = new Map<string, ServiceCallStats>();

  /** A counter whose values are copied from the figures at each scrape. */
  const counter = (name: string, help: string, labelNames: string[], fill: (c: Counter<string>) => void) =>
    new Counter({
      name: `${prefix}${name}`,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        fill(this);
      },
    });
  const perService = (name: string, help: string, read: (s: ServiceCallStats) => number) =>
    counter(name, help, ['service'], (c) => {
      // Every service called so far has these series, at 0 until something happens (ratios and rates then exist).
      for (const s of byService.values()) c.inc({ service: s.service }, read(s));
    });

  counter('outbound_requests_total', 'Calls to registry services through the API coordinator, by method and outcome (status class, or timeout, network, breaker_open, rate_limited, aborted, error)', ['service', 'method', 'outcome'], (c) => {
    for (const s of byService.values()) {
      for (let m = 0; m < METHODS; m++) {
        for (let o = 0; o < OUTCOMES; o++) {
          const v = s.requests[m * OUTCOMES + o]!;
          if (v > 0) c.inc({ service: s.service, method: OUTBOUND_METHODS[m], outcome: OUTBOUND_OUTCOMES[o] }, v);
        }
      }
    }
  });
  perService('outbound_rate_limit_waits_total', 'Calls that waited for the rate limit or maxConcurrent before being sent', (s) => s.rateLimitWaits);
  perService('outbound_rate_limit_wait_seconds_total', 'Time calls waited for the rate limit or maxConcurrent, seconds', (s) => s.rateLimitWaitSeconds);
  perService('outbound_cache_hits_total', 'Cacheable GETs answered from the coordinator cache', (s) => s.cacheHits);
  perService('outbound_cache_misses_total', 'Cacheable GETs not answered from the coordinator cache', (s) => s.cacheMisses);
  perService('outbound_coalesced_requests_total', 'Cache misses that joined an identical GET already in flight', (s) => s.coalesced);
  registry.registerMetric(latencyHistogram(`${prefix}outbound_request_duration_seconds`, byService));

  return {
    forService(serviceId) {
      let s = byService.get(serviceId);
      if (s === undefined) {
        s = new ServiceCallStats(serviceId);
        byService.set(serviceId, s);
      }
      return s;
    },
  };
}

/**
 * The latency histogram, read from the figures at scrape time. prom-client's
 * `Histogram` can only be fed one observation at a time, so this is a
 * collector of prom-client's metric shape (`get()` returning the series) that
 * its registry serialises like any histogram.
 */
function latencyHistogram(name: string, byService: Map<string, ServiceCallStats>): Metric {
  const collector = {
    name,
    help: 'Wall time of calls to registry services through the API coordinator (rate-limit wait, failover and redirects included), seconds',
    type: 'histogram',
    aggregator: 'sum',
    async get() {
      const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
      for (const s of byService.values()) {
        for (let m = 0; m < METHODS; m++) {
          const base = m * (BUCKETS + 1);
          let count = 0;
          for (let b = 0; b <= BUCKETS; b++) count += s.latencyBuckets[base + b]!;
          if (count === 0) continue;
          const method = OUTBOUND_METHODS[m];
          let acc = 0;
          for (let b = 0; b < BUCKETS; b++) {
            acc += s.latencyBuckets[base + b]!;
            values.push({ labels: { service: s.service, method, le: OUTBOUND_LATENCY_BUCKETS[b]! }, value: acc, metricName: `${name}_bucket` });
          }
          values.push({ labels: { service: s.service, method, le: '+Inf' }, value: count, metricName: `${name}_bucket` });
          values.push({ labels: { service: s.service, method }, value: s.latencySum[m]!, metricName: `${name}_sum` });
          values.push({ labels: { service: s.service, method }, value: count, metricName: `${name}_count` });
        }
      }
      return { name, help: collector.help, type: collector.type, aggregator: collector.aggregator, values };
    },
    reset() {
      for (const s of byService.values()) {
        s.latencyBuckets.fill(0);
        s.latencySum.fill(0);
      }
    },
  };
  return collector as unknown as Metric;
}
