/**
 * The pipeline's cache, built from the configuration.
 *
 * Owns: choosing and wiring the cache tiers for `serve` — the in-process tier always,
 * memcached (sealed, keyed by `memcache_secret_key`) when `memcached_servers` is set — and
 * translating the tiers' events into the edge's Prometheus metrics. The factory is a
 * dependency of the running edge so that tests can hand it caches of their own.
 */
import type { EdgeMetrics } from "../admin/metrics.js";
import { BREAKER_STATE_KINDS } from "../breaker.js";
import type { ContextStore } from "../cache/context-store.js";
import type { MemcachedFault } from "../cache/memcached.js";
import type { CacheEvent, CacheMetrics } from "../cache/metrics.js";
import { createTokenCache } from "../cache/tiers.js";
import type { Config } from "../config/schema.js";
import type { Logger } from "../log.js";
import type { ValidationCache } from "../validation/pipeline.js";

/** A cache implementation for the pipeline, with a way to let go of its connections. */
export type CacheFactory = (
  config: Readonly<Config>,
  metrics: EdgeMetrics,
  logger: Logger,
  hooks?: {
    /** A drill's memcached fault, asked before every memcached call. */
    readonly memcachedFault?: () => MemcachedFault;
  },
) => ValidationCache & {
  close(): Promise<void> | void;
  /** Where per-scope contexts are shared between nodes (memcached); none by default. */
  contextStore?(): ContextStore | undefined;
  /** Entries held in process (for `keystone_edge_cache_entries`). */
  readonly size?: number;
  /** Drops the in-process entries (admin API); returns how many there were. */
  clear?(): number;
};

/** The cache tiers' metric events, as Prometheus series. */
export function cacheMetricsFor(metrics: EdgeMetrics): CacheMetrics {
  const lookups: Partial<Record<CacheEvent, readonly [tier: string, result: string]>> = {
    l1_hit: ["l1", "hit"],
    l1_negative_hit: ["l1", "negative_hit"],
    l1_miss: ["l1", "miss"],
    memcached_hit: ["memcached", "hit"],
    memcached_miss: ["memcached", "miss"],
    context_hit: ["context", "hit"],
    context_miss: ["context", "miss"],
    memcached_context_hit: ["memcached_context", "hit"],
    memcached_context_miss: ["memcached_context", "miss"],
  };
  const markers: Partial<Record<CacheEvent, string>> = {
    revocation_marker_miss: "absent",
    revocation_marker_found: "found",
    revocation_marker_written: "written",
  };
  const evictions: Partial<Record<CacheEvent, string>> = {
    l1_eviction: "capacity",
    l1_expiration: "expiration",
    l1_purge: "purge",
  };
  const failures: Partial<Record<CacheEvent, string>> = {
    memcached_error: "error",
    memcached_timeout: "timeout",
    memcached_short_circuit: "short_circuit",
    memcached_overload: "overload",
    memcached_auth_failure: "auth_failure",
    memcached_malformed: "malformed",
    memcached_expired: "expired",
    memcached_seal_error: "seal_error",
  };
  return {
    count(event, n = 1) {
      const lookup = lookups[event];
      if (lookup) metrics.countCacheLookup(lookup[0], lookup[1], n);
      const eviction = evictions[event];
      if (eviction) metrics.cacheEvictions.inc({ tier: "l1", reason: eviction }, n);
      const failure = failures[event];
      if (failure) metrics.memcachedErrors.inc({ kind: failure }, n);
      const marker = markers[event];
      if (marker) metrics.revocationMarkers.inc({ event: marker }, n);
    },
    observeMemcached(op, outcome, seconds) {
      metrics.memcachedCalls.observe({ op, outcome }, seconds);
    },
    breakerChanged(server, state) {
      for (const s of BREAKER_STATE_KINDS)
        metrics.memcachedBreaker.set({ server, state: s }, s === state ? 1 : 0);
    },
  };
}

export function createCacheFactory(): CacheFactory {
  return (config, metrics, logger, hooks) => {
    const cacheMetrics = cacheMetricsFor(metrics);
    for (const server of config.cache.memcached_servers)
      cacheMetrics.breakerChanged(server, "closed");
    return createTokenCache(config.cache, {
      metrics: cacheMetrics,
      logger,
      ...(hooks?.memcachedFault === undefined
        ? {}
        : { memcached: { fault: hooks.memcachedFault } }),
    });
  };
}
