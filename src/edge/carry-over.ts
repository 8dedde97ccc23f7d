/**
 * What a reload carries from the configuration it replaces to the new one.
 *
 * Owns: the state that outlives a configuration when it may — the caches' contents (token
 * entries, contexts) and the revocation list, kept when the cache options and whether
 * catalogs are fetched are unchanged, else built anew — and the rule that decides. The
 * breakers' and the key lag monitor's states are carried by the core that builds their
 * successors (core.ts: same endpoint name and URL, same breaker state).
 */
import type { EdgeMetrics } from "../admin/metrics.js";
import { contextCacheTimeSeconds } from "../config/derived.js";
import type { Config } from "../config/schema.js";
import type { FaultInjector } from "../drill/faults.js";
import { silentLogger, type Logger } from "../log.js";
import { RevocationList } from "../revocation/list.js";
import { ContextCache } from "../validation/context.js";
import { cacheMetricsFor, type CacheFactory } from "./cache-factory.js";

/** The caches and the revocation list: what a reload keeps when it may. */
export interface SharedState {
  readonly cache: ReturnType<CacheFactory>;
  readonly contexts: ContextCache | undefined;
  readonly revocations: RevocationList;
}

/** What a configuration's state was built from, to tell whether the next may keep it. */
export interface StateOrigin {
  readonly config: Readonly<Config>;
  readonly includeCatalog: boolean;
  readonly state: SharedState;
}

/**
 * The state for `config`: `previous`'s when the cache options and whether catalogs are
 * fetched are unchanged (entries cached with or without a catalog answer the same
 * questions), else new caches and a new revocation list.
 */
export function stateFor(
  config: Readonly<Config>,
  includeCatalog: boolean,
  previous: StateOrigin | undefined,
  build: {
    readonly cache: CacheFactory;
    readonly metrics: EdgeMetrics;
    readonly drills: FaultInjector;
    readonly logger?: Logger;
  },
): SharedState {
  if (
    previous !== undefined &&
    previous.includeCatalog === includeCatalog &&
    JSON.stringify(previous.config.cache) === JSON.stringify(config.cache)
  ) {
    return previous.state;
  }
  const logger = build.logger ?? silentLogger;
  const cache = build.cache(config, build.metrics, logger, {
    memcachedFault: () => build.drills.memcached(),
  });
  const revocations = new RevocationList();
  const contextCacheTime = contextCacheTimeSeconds(config);
  const contexts =
    contextCacheTime > 0
      ? new ContextCache({
          contextCacheTimeSeconds: contextCacheTime,
          staleIfErrorSeconds: config.cache.stale_if_error,
          maxEntries: config.cache.lru_max_entries,
          shared: cache.contextStore?.(),
          superseded: (context, learntAtMs) => revocations.supersedes(context, learntAtMs),
          metrics: cacheMetricsFor(build.metrics),
        })
      : undefined;
  return { cache, contexts, revocations };
}
