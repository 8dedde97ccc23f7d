/**
 * What the cache tiers report.
 *
 * Owns: the metrics sink interface every cache module takes (never a global registry), the
 * closed set of event names it reports, a no-op sink, and a counting sink for tests and
 * diagnostics. Wiring to prom-client belongs to src/admin/metrics.ts: a counter labelled by
 * `event`, a histogram labelled by `op` and `outcome`, a gauge per breaker. Nothing here
 * ever carries a token, a key or a server's answer: only event names, durations and the
 * configured `host:port` of a memcached.
 */
import type { BreakerState } from "../breaker.js";

/** Countable events of the cache tiers. */
export type CacheEvent =
  /** L1 answered with a validated token. */
  | "l1_hit"
  /** L1 answered with a remembered rejection. */
  | "l1_negative_hit"
  /** L1 held nothing (or only an expired entry) for the token. */
  | "l1_miss"
  /** L1 dropped a live-or-stale entry to make room (`lru_max_entries` reached). */
  | "l1_eviction"
  /** L1 dropped an entry whose time was up. */
  | "l1_expiration"
  /** L1 dropped an entry on request (`purge`, e.g. revocation). */
  | "l1_purge"
  /** memcached returned a value for the key (not yet authenticated). */
  | "memcached_hit"
  /** memcached answered that it holds nothing for the key. */
  | "memcached_miss"
  /** memcached returned a value for a context key (not yet authenticated). */
  | "memcached_context_hit"
  /** memcached held nothing for a context key. */
  | "memcached_context_miss"
  /** memcached returned a value for a token's revocation marker (not yet authenticated). */
  | "revocation_marker_hit"
  /** memcached held no revocation marker for the token. */
  | "revocation_marker_miss"
  /** A revocation marker authenticated: the token was revoked through an edge's face. */
  | "revocation_marker_found"
  /** A revocation marker was written (handed to memcached). */
  | "revocation_marker_written"
  /** The in-process context tier answered a new token of a known user and scope. */
  | "context_hit"
  /** The in-process context tier held no fresh context for the token's user and scope. */
  | "context_miss"
  /** A memcached call failed (connection refused, reset, protocol error…). */
  | "memcached_error"
  /** A memcached call missed its deadline. */
  | "memcached_timeout"
  /** The breaker was open (or a probe was out): no call was made. */
  | "memcached_short_circuit"
  /** Too many calls already in flight: no call was made. */
  | "memcached_overload"
  /** A value was written to memcached. */
  | "memcached_set"
  /** A write was not attempted (value too large, no time left to live). */
  | "memcached_set_skipped"
  /** A memcached entry failed authentication: tampered, moved, or written without the secret. */
  | "memcached_auth_failure"
  /** A memcached entry is not in our format (unknown version, truncated, bad contents). */
  | "memcached_malformed"
  /** A memcached entry authenticated but its sealed expiry has passed (a replayed entry). */
  | "memcached_expired"
  /** A value could not be sealed (not JSON-serialisable); nothing was written. */
  | "memcached_seal_error";

/** A memcached operation, for latency observations. */
export type MemcachedOp = "get" | "set";
/** How a memcached call ended. */
export type MemcachedOutcome = "hit" | "miss" | "stored" | "error" | "timeout";

/** Receives the cache tiers' metrics. Implementations must be cheap and must not throw. */
export interface CacheMetrics {
  /** Adds `n` (default 1) to the counter of `event`. */
  count(event: CacheEvent, n?: number): void;
  /** Duration of one memcached call that went out on the network, in seconds. */
  observeMemcached(op: MemcachedOp, outcome: MemcachedOutcome, seconds: number): void;
  /** The circuit breaker of `server` (`host:port`) moved to `state`. */
  breakerChanged(server: string, state: BreakerState["kind"]): void;
}

/** A sink that drops everything. */
export const noopCacheMetrics: CacheMetrics = {
  count: () => undefined,
  observeMemcached: () => undefined,
  breakerChanged: () => undefined,
};

/** One latency observation kept by {@link CountingCacheMetrics}. */
export interface MemcachedObservation {
  readonly op: MemcachedOp;
  readonly outcome: MemcachedOutcome;
  readonly seconds: number;
}

/**
 * A sink that keeps tallies in memory: tests read them, and an admin endpoint may print
 * them. Keeps at most `maxObservations` latency observations (default 10 000), oldest
 * dropped first.
 */
export class CountingCacheMetrics implements CacheMetrics {
  private readonly counts = new Map<CacheEvent, number>();
  readonly observations: MemcachedObservation[] = [];
  readonly transitions: { readonly server: string; readonly state: BreakerState["kind"] }[] = [];

  constructor(private readonly maxObservations = 10_000) {}

  count(event: CacheEvent, n = 1): void {
    this.counts.set(event, (this.counts.get(event) ?? 0) + n);
  }

  observeMemcached(op: MemcachedOp, outcome: MemcachedOutcome, seconds: number): void {
    if (this.observations.length >= this.maxObservations) this.observations.shift();
    this.observations.push({ op, outcome, seconds });
  }

  breakerChanged(server: string, state: BreakerState["kind"]): void {
    this.transitions.push({ server, state });
  }

  /** The tally of `event` (0 when never counted). */
  get(event: CacheEvent): number {
    return this.counts.get(event) ?? 0;
  }

  /** Every non-zero tally. */
  snapshot(): Partial<Record<CacheEvent, number>> {
    return Object.fromEntries(this.counts);
  }
}
