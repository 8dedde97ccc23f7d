/**
 * The in-process cache tier (L1), on lru-cache.
 *
 * Owns: what this process remembers about tokens, by the L1 key of token-key.ts (never the
 * token): validated tokens (a positive entry lives `min(token_cache_time, expires_at − now)`), and recent rejections (a negative entry
 * lives `negativeTtlMs`). Bounded by `lru_max_entries`, least recently used out first.
 * Reads the injected clock (lru-cache's `perf`), so tests advance time without sleeping.
 * Expired entries are swept out unread (expiry-sweep.ts), so memory follows the traffic of
 * the last `token_cache_time`, not the peak. Reports hits, misses, evictions and
 * expirations to the metrics sink; `purge(predicate)` drops entries on demand.
 */
import { LRUCache } from "lru-cache";

import type { KeystoneToken } from "../token/body.js";
import { systemClock, type Clock } from "../units.js";
import { ExpirySweep } from "./expiry-sweep.js";
import { noopCacheMetrics, type CacheMetrics } from "./metrics.js";

import { DEFAULT_L1_MAX_ENTRIES, DEFAULT_TOKEN_CACHE_TIME_SECONDS } from "../config/defaults.js";

/** Default life of a negative entry, ms. */
export const DEFAULT_NEGATIVE_TTL_MS = 10_000;

/** A token Keystone (or local decoding) accepted. */
export interface PositiveEntry {
  readonly kind: "positive";
  readonly value: KeystoneToken;
  /** The entry is served while `now < expiresAtMs`. */
  readonly expiresAtMs: number;
}

/** A token known to be bad, with the code it was refused with (`not_found`, `expired`, …). */
export interface NegativeEntry {
  readonly kind: "negative";
  readonly code: string;
  readonly expiresAtMs: number;
}

/** One L1 entry. */
export type L1Entry = PositiveEntry | NegativeEntry;

/** Options of {@link L1Cache}. */
export interface L1Options {
  /** Most entries held (`cache.lru_max_entries`). Default {@link DEFAULT_L1_MAX_ENTRIES}. */
  readonly maxEntries?: number;
  /**
   * Longest a positive entry lives, seconds (`cache.token_cache_time`); 0 caches no
   * positive answer. Default {@link DEFAULT_TOKEN_CACHE_TIME_SECONDS}.
   */
  readonly tokenCacheTimeSeconds?: number;
  /** Life of a negative entry, ms; 0 caches no rejection. Default {@link DEFAULT_NEGATIVE_TTL_MS}. */
  readonly negativeTtlMs?: number;
  /** Time source for every TTL. Default the system clock. */
  readonly clock?: Clock;
  /** Receives `l1_*` events. Default: none. */
  readonly metrics?: CacheMetrics;
  /**
   * How often expired entries are swept out unread, ms; 0: never by a timer (call
   * `sweep()`). Default 1 000 ms.
   */
  readonly sweepIntervalMs?: number;
}

/** The in-process tier. */
export class L1Cache {
  private readonly lru: LRUCache<string, L1Entry>;
  private readonly clock: Clock;
  private readonly metrics: CacheMetrics;
  private readonly positiveTtlMs: number;
  private readonly negativeTtlMs: number;
  private readonly expiries: ExpirySweep;

  constructor(options: L1Options = {}) {
    const maxEntries = options.maxEntries ?? DEFAULT_L1_MAX_ENTRIES;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError("maxEntries must be a positive integer");
    }
    this.clock = options.clock ?? systemClock;
    this.metrics = options.metrics ?? noopCacheMetrics;
    this.positiveTtlMs = nonNegative(
      (options.tokenCacheTimeSeconds ?? DEFAULT_TOKEN_CACHE_TIME_SECONDS) * 1000,
    );
    this.negativeTtlMs = nonNegative(options.negativeTtlMs ?? DEFAULT_NEGATIVE_TTL_MS);
    const clock = this.clock;
    const metrics = this.metrics;
    this.lru = new LRUCache<string, L1Entry>({
      max: maxEntries,
      // lru-cache's clock: ours, so a fake clock drives expiry in tests.
      perf: { now: () => clock.nowMs() },
      // Read the clock on every check: no cached "now" refreshed by a timer (which would
      // both cost a timer per millisecond and make a fake clock lag).
      ttlResolution: 0,
      allowStale: false,
      updateAgeOnGet: false,
      dispose: (_value, _key, reason) => {
        if (reason === "evict") metrics.count("l1_eviction");
        else if (reason === "expire") metrics.count("l1_expiration");
      },
    });
    this.expiries = new ExpirySweep({
      clock: this.clock,
      ...(options.sweepIntervalMs === undefined ? {} : { intervalMs: options.sweepIntervalMs }),
      expire: (key, nowMs) => {
        // The key may have been replaced by a longer-lived entry, or be gone already.
        const entry = this.lru.peek(key, { allowStale: true });
        if (entry === undefined || nowMs < entry.expiresAtMs) return false;
        this.lru.delete(key);
        metrics.count("l1_expiration");
        return true;
      },
    });
  }

  /**
   * Drops entries whose time has come, unread, looking at `limit` expiry times at most.
   * @returns how many entries were dropped.
   */
  sweep(limit?: number): number {
    return this.expiries.sweep(limit);
  }

  /** Stops the sweep timer. */
  close(): void {
    this.expiries.close();
  }

  /**
   * The live entry under `key`, or undefined. Counts a hit, negative hit or miss, unless
   * `count` is false (a second look within one lookup, already counted).
   */
  get(key: string, count = true): L1Entry | undefined {
    const entry = this.lru.get(key);
    if (entry === undefined) {
      if (count) this.metrics.count("l1_miss");
      return undefined;
    }
    // lru-cache keeps an entry through the millisecond its TTL ends (`age > ttl`); a token
    // must not be served at its expiry instant.
    if (this.clock.nowMs() >= entry.expiresAtMs) {
      this.lru.delete(key);
      this.metrics.count("l1_expiration");
      if (count) this.metrics.count("l1_miss");
      return undefined;
    }
    if (count) this.metrics.count(entry.kind === "positive" ? "l1_hit" : "l1_negative_hit");
    return entry;
  }

  /**
   * Remembers a validated token until `min(now + token_cache_time, expiresAtMs)`.
   * @returns the entry's expiry, or undefined when there is no time left to cache it.
   */
  setPositive(key: string, value: KeystoneToken, expiresAtMs: number): number | undefined {
    const now = this.clock.nowMs();
    const until = Math.min(now + this.positiveTtlMs, expiresAtMs);
    if (!(until > now)) {
      // Nothing to keep; an older entry under the key must not outlive this answer either.
      this.lru.delete(key);
      return undefined;
    }
    this.lru.set(key, { kind: "positive", value, expiresAtMs: until }, { ttl: ttl(until - now) });
    this.expiries.track(key, until);
    return until;
  }

  /**
   * Remembers a rejection for `negativeTtlMs`, or for `ttlMs` when given (a rejection that
   * cost a Keystone call is worth remembering longer); 0 remembers nothing.
   */
  setNegative(key: string, code: string, ttlMs: number = this.negativeTtlMs): void {
    const lifeMs = nonNegative(ttlMs);
    if (lifeMs === 0) return;
    const expiresAtMs = this.clock.nowMs() + lifeMs;
    this.lru.set(key, { kind: "negative", code, expiresAtMs }, { ttl: ttl(lifeMs) });
    this.expiries.track(key, expiresAtMs);
  }

  /** Forgets `key`. */
  delete(key: string): boolean {
    return this.lru.delete(key);
  }

  /**
   * Drops every live entry `predicate` selects (e.g. the tokens a revocation event matches).
   * @returns how many were dropped.
   */
  purge(predicate: (entry: L1Entry) => boolean): number {
    const doomed: string[] = [];
    for (const [key, entry] of this.lru.entries()) {
      if (predicate(entry)) doomed.push(key);
    }
    for (const key of doomed) this.lru.delete(key);
    if (doomed.length > 0) this.metrics.count("l1_purge", doomed.length);
    return doomed.length;
  }

  /** Drops everything. */
  clear(): void {
    this.lru.clear();
  }

  /** Entries held, stale ones not yet dropped included. */
  get size(): number {
    return this.lru.size;
  }
}

function nonNegative(ms: number): number {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError("a cache time must be ≥ 0 and finite");
  return ms;
}

/** lru-cache wants a positive integer TTL in ms. */
function ttl(ms: number): number {
  return Math.max(1, Math.ceil(ms));
}
