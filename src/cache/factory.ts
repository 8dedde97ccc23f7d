/**
 * The pipeline's cache, built from the configuration.
 *
 * Owns: choosing and wiring the cache tiers for `serve`. Interim: the in-process tier only
 * (lru-cache, keyed by a keyed hash of the token, never the token), until the shared
 * memcached tier lands in this folder; the pipeline's `ValidationCache` contract does not
 * change when it does.
 */
import { createHmac, randomBytes } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { EdgeMetrics } from "../admin/metrics.js";
import type { Config } from "../config/schema.js";
import type { CacheFactory } from "../edge.js";
import type { KeystoneToken } from "../keystone/token-body.js";
import type { CachedVerdict, ValidationCache } from "../validation/pipeline.js";

/** How long a refused token is remembered. */
const NEGATIVE_TTL_MS = 10_000;

export function createCacheFactory(): CacheFactory {
  return (config: Readonly<Config>, metrics: EdgeMetrics) => inProcessCache(config, metrics);
}

function inProcessCache(
  config: Readonly<Config>,
  metrics: EdgeMetrics,
): ValidationCache & { close(): void } {
  const secret = randomBytes(32);
  const key = (token: string): string =>
    createHmac("sha256", secret).update(token).digest("base64url");
  const lru = new LRUCache<string, CachedVerdict>({
    max: config.cache.lru_max_entries,
    ttlAutopurge: false,
  });
  return {
    peek(token) {
      const hit = lru.get(key(token));
      metrics.cacheLookups.inc({ tier: "l1", result: hit ? "hit" : "miss" });
      return hit;
    },
    fetch(): Promise<KeystoneToken | undefined> {
      return Promise.resolve(undefined);
    },
    storePositive(token, value, expiresAtMs) {
      const ttl = Math.floor(expiresAtMs - Date.now());
      if (ttl > 0) lru.set(key(token), { kind: "positive", token: value }, { ttl });
    },
    storeNegative(token, code) {
      lru.set(key(token), { kind: "negative", code }, { ttl: NEGATIVE_TTL_MS });
    },
    close() {
      lru.clear();
    },
  };
}
