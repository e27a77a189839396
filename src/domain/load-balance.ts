/**
 * Load balancing across a service's endpoints: smooth weighted round-robin,
 * as in nginx's upstream module (ngx_http_upstream_round_robin.c,
 * `ngx_http_upstream_get_peer`), with passive health: an endpoint that failed
 * at the connection level is skipped for a cool-down.
 *
 * Smooth WRR: on each pick every eligible peer's `current` grows by its
 * weight, the peer with the largest `current` wins and loses the total of the
 * eligible weights. Weights {5, 1, 1} give the sequence a a b a c a a —
 * interleaved, never a run of five — and over any full cycle each peer is
 * chosen exactly `weight` times.
 *
 * Pure: time is an argument; the state lives in the instance.
 */

/** Options of {@link SmoothWeightedRoundRobin}. */
export interface LoadBalancerOptions {
  /** How long an endpoint is skipped after a failure, ms; finite and >= 0. Default 10_000. */
  coolDownMs?: number;
}

interface Peer {
  readonly weight: number;
  current: number;
  /** Skip until this time (ms); -Infinity when healthy. */
  downUntil: number;
}

export class SmoothWeightedRoundRobin {
  private readonly peers: Peer[];
  private readonly coolDownMs: number;

  /**
   * @param weights one positive integer weight per endpoint, in registry order.
   * @throws RangeError naming the value when the list is empty, a weight is not an integer >= 1, or coolDownMs is not finite and >= 0.
   */
  constructor(weights: readonly number[], options: LoadBalancerOptions = {}) {
    if (weights.length === 0) throw new RangeError('load balancer: at least one endpoint weight is required, got none');
    this.peers = weights.map((w, i) => {
      if (!Number.isInteger(w) || w < 1) throw new RangeError(`load balancer: weight of endpoint ${i} must be an integer >= 1, got ${String(w)}`);
      return { weight: w, current: 0, downUntil: -Infinity };
    });
    const coolDownMs = options.coolDownMs ?? 10_000;
    if (typeof coolDownMs !== 'number' || !Number.isFinite(coolDownMs) || coolDownMs < 0) {
      throw new RangeError(`load balancer: coolDownMs must be a finite number >= 0, got ${String(coolDownMs)}`);
    }
    this.coolDownMs = coolDownMs;
  }

  get size(): number {
    return this.peers.length;
  }

  /**
   * Picks the next endpoint.
   *
   * Peers in `exclude` (already tried in this attempt) are never chosen.
   * Peers cooling down are skipped while any other peer is available; when
   * every remaining peer is cooling down, the one whose cool-down ends first
   * is tried anyway (as nginx resets its failure counts when all peers are
   * down): trying beats failing without a call.
   *
   * @param nowMs current time, ms.
   * @param exclude indexes not to pick.
   * @returns the endpoint index, or undefined when every endpoint is excluded.
   */
  pick(nowMs: number, exclude?: { has(index: number): boolean }): number | undefined {
    let best = -1;
    let total = 0;
    for (let i = 0; i < this.peers.length; i++) {
      const p = this.peers[i]!;
      if (exclude?.has(i) || p.downUntil > nowMs) continue;
      p.current += p.weight;
      total += p.weight;
      if (best < 0 || p.current > this.peers[best]!.current) best = i;
    }
    if (best >= 0) {
      this.peers[best]!.current -= total;
      return best;
    }
    let soonest = -1;
    for (let i = 0; i < this.peers.length; i++) {
      if (exclude?.has(i)) continue;
      if (soonest < 0 || this.peers[i]!.downUntil < this.peers[soonest]!.downUntil) soonest = i;
    }
    return soonest >= 0 ? soonest : undefined;
  }

  /** Marks an endpoint failed at `nowMs`: it is skipped until `nowMs + coolDownMs`. */
  reportFailure(index: number, nowMs: number): void {
    const p = this.peers[index];
    if (p) p.downUntil = nowMs + this.coolDownMs;
  }

  /** Marks an endpoint healthy again (a call through it succeeded). */
  reportSuccess(index: number): void {
    const p = this.peers[index];
    if (p) p.downUntil = -Infinity;
  }

  /** Whether the endpoint is cooling down at `nowMs`. */
  isCoolingDown(index: number, nowMs: number): boolean {
    return (this.peers[index]?.downUntil ?? -Infinity) > nowMs;
  }
}
