/**
 * The cache tiers of the request path, put together: token → cached validation result.
 *
 * Owns: the order of the tiers and what moves between them. A lookup derives the token's
 * L1 key (one SHA-256), asks the in-process tier (L1), then — deriving the memcached key
 * only now — memcached; a memcached entry
 * that opens (authentic, unexpired, well-formed) is promoted to L1, one that does not is a
 * miss, counted by reason (`memcached_auth_failure`, `memcached_expired`,
 * `memcached_malformed`). A positive answer is stored in both tiers, sealed for memcached,
 * for `min(token_cache_time, expires_at − now)`; a rejection only in L1 (`negativeTtlMs`),
 * since every node rejects garbage locally for free and a shared negative entry would let
 * one node's mistake spread. The token itself is never stored or logged.
 *
 * Size: L1 → memcached with sealing, promotion, markers and counting is one read/write
 * path; split, the keyed-token handle would be passed between files for no reader's gain.
 */
import type { Config } from "../config/schema.js";
import { isKeystoneToken, type KeystoneToken } from "../token/body.js";
import { silentLogger, type Logger } from "../log.js";
import { systemClock, type Clock } from "../units.js";
import { SealedContextStore, type ContextStore } from "./context-store.js";
import { L1Cache, type L1Entry } from "./l1.js";
import {
  MemcachedPool,
  type MemcachedOptions,
  type SharedEntryKind,
  type SharedStore,
} from "./memcached.js";
import { noopCacheMetrics, type CacheMetrics } from "./metrics.js";
import { open, seal } from "./sealed.js";
import { CacheKeyer } from "./token-key.js";
import { DEFAULT_TOKEN_CACHE_TIME_SECONDS } from "../config/defaults.js";

/**
 * One token's place in the cache tiers (see {@link TokenCache.entry}): its keys are
 * derived once, when the entry is made. The validation pipeline reads the tiers through it.
 */
export interface CacheEntry {
  /** L1; `quiet`: a second look already counted (no hit or miss counted). */
  peek(quiet?: boolean): CachedVerdict | undefined;
  /** memcached; a good entry is promoted to L1 here, so callers need not store it again. */
  fetch(): Promise<KeystoneToken | undefined>;
  /**
   * In L1 and memcached until `min(now + token_cache_time, expiresAtMs)`. The memcached
   * write is not waited for on the request path: the promise settles when it is done or
   * abandoned, and never rejects.
   */
  storePositive(value: KeystoneToken, expiresAtMs: number): Promise<void>;
  /** In L1 for `negativeTtlMs`, or `ttlMs` when given. */
  storeNegative(code: string, ttlMs?: number): void;
  /**
   * Whether memcached holds a revocation marker for the token (an edge of the region saw
   * it revoked through its Identity face). False without markers (see
   * {@link TokenCache.marksRevocations}), on a miss, and on any failure: memcached is a
   * cache, and the revocation feed catches up.
   */
  revoked(): Promise<boolean>;
  /**
   * Leaves a revocation marker in memcached until `untilMs` (epoch ms). Resolves when it is
   * written or abandoned; never rejects.
   */
  markRevoked(untilMs: number): Promise<void>;
}

/** What the in-process tier answers for a token, synchronously. */
export type CachedVerdict =
  | { readonly kind: "positive"; readonly token: KeystoneToken }
  | { readonly kind: "negative"; readonly code: string };

/** Options of {@link TokenCache}. */
export interface TokenCacheOptions {
  /** Derives the keys; its secret must be `memcache_secret_key` when memcached is shared. */
  readonly keyer: CacheKeyer;
  /** The shared tier (a {@link MemcachedPool}). Default: none, L1 only. */
  readonly shared?: SharedStore | undefined;
  /** Longest a positive answer is cached, seconds (`token_cache_time`). Default 300. */
  readonly tokenCacheTimeSeconds?: number;
  /** L1 size, entries (`lru_max_entries`). Default 100 000. */
  readonly maxEntries?: number;
  /** Life of a negative entry, ms. Default 10 000. */
  readonly negativeTtlMs?: number;
  /** Time source. Default the system clock. */
  readonly clock?: Clock;
  /** Receives every cache event. Default: none. */
  readonly metrics?: CacheMetrics;
  /** Receives a warning when memcached entries fail authentication (once a minute at most). */
  readonly logger?: Logger;
  /**
   * Whether revocation markers are written and read (`cache.revocation_markers`); only
   * with a shared tier. Default `false`.
   */
  readonly revocationMarkers?: boolean;
}

/** A token with its L1 key; the memcached key is derived on first use (an L1 hit never needs it). */
class KeyedToken {
  #memcachedKey: string | undefined;
  #revokedKey: string | undefined;
  constructor(
    readonly token: string,
    readonly l1Key: string,
    private readonly keyer: CacheKeyer,
  ) {}
  get memcachedKey(): string {
    return (this.#memcachedKey ??= this.keyer.memcachedKey(this.token));
  }
  get revokedKey(): string {
    return (this.#revokedKey ??= this.keyer.revokedKey(this.token));
  }
}

/** A revocation marker's sealed value. */
interface RevocationMarker {
  readonly revoked: true;
}
const MARKER: RevocationMarker = Object.freeze({ revoked: true });
function isMarker(value: unknown): value is RevocationMarker {
  return (
    typeof value === "object" && value !== null && (value as { revoked?: unknown }).revoked === true
  );
}
const AUTH_WARNING_INTERVAL_MS = 60_000;

/** The token cache of the request path. */
export class TokenCache {
  private readonly keyer: CacheKeyer;
  private readonly shared: SharedStore | undefined;
  /** The shared tier, when revocation markers are on. */
  private readonly markers: SharedStore | undefined;
  private readonly l1: L1Cache;
  private readonly clock: Clock;
  private readonly metrics: CacheMetrics;
  private readonly logger: Logger;
  private lastAuthWarningMs = -Infinity;
  private authFailuresSinceWarning = 0;

  constructor(options: TokenCacheOptions) {
    this.keyer = options.keyer;
    this.shared = options.shared;
    this.markers = options.revocationMarkers === true ? options.shared : undefined;
    this.clock = options.clock ?? systemClock;
    this.metrics = options.metrics ?? noopCacheMetrics;
    this.logger = options.logger ?? silentLogger;
    const tokenCacheTimeSeconds = options.tokenCacheTimeSeconds ?? DEFAULT_TOKEN_CACHE_TIME_SECONDS;
    this.l1 = new L1Cache({
      tokenCacheTimeSeconds,
      clock: this.clock,
      metrics: this.metrics,
      ...(options.maxEntries !== undefined ? { maxEntries: options.maxEntries } : {}),
      ...(options.negativeTtlMs !== undefined ? { negativeTtlMs: options.negativeTtlMs } : {}),
    });
  }

  /**
   * One token's entries, its keys derived once for every step that follows (the memcached
   * key only if a step needs it): the validation pipeline's view of the cache.
   */
  entry(token: string): CacheEntry {
    const keyed = this.keyed(token);
    return {
      peek: (quiet) => this.peekKey(keyed.l1Key, quiet === true),
      fetch: () => this.fromShared(keyed),
      storePositive: (value, expiresAtMs) => this.storeWith(keyed, value, expiresAtMs),
      storeNegative: (code, ttlMs) => {
        this.l1.setNegative(keyed.l1Key, code, ttlMs);
      },
      revoked: () => this.markedRevoked(keyed),
      markRevoked: (untilMs) => this.markRevoked(keyed, untilMs),
    };
  }

  /** Whether revocation markers are read and written (memcached and the option on). */
  get marksRevocations(): boolean {
    return this.markers !== undefined;
  }

  private async markedRevoked(keyed: KeyedToken): Promise<boolean> {
    if (this.markers === undefined) return false;
    const found = await this.readSealed(
      this.markers,
      keyed,
      keyed.revokedKey,
      "revocation",
      isMarker,
    );
    if (found !== undefined) this.metrics.count("revocation_marker_found");
    return found !== undefined;
  }

  /**
   * `key`'s value in `store`, opened with `keyed`'s token (sealed.ts) and accepted by
   * `accept`; undefined on a miss, any store failure, or an entry that does not open
   * (counted by reason).
   */
  private async readSealed<T>(
    store: SharedStore,
    keyed: KeyedToken,
    key: string,
    kind: SharedEntryKind,
    accept: (value: unknown) => value is T,
  ): Promise<{ readonly value: T; readonly expiresAtMs: number } | undefined> {
    let bytes: Buffer | undefined;
    try {
      bytes = await store.get(key, kind);
    } catch {
      return undefined; // SharedStore implementations never reject; be safe with any other
    }
    if (bytes === undefined) return undefined;
    const opened = open(this.keyer.sealingKey(keyed.token, key), bytes, this.clock.nowMs(), accept);
    if (!("failure" in opened)) return opened;
    this.countFailure(opened.failure);
    return undefined;
  }

  private markRevoked(keyed: KeyedToken, untilMs: number): Promise<void> {
    const markers = this.markers;
    const ttlMs = untilMs - this.clock.nowMs();
    if (markers === undefined || !(ttlMs > 0)) return Promise.resolve();
    let sealed: Buffer;
    try {
      sealed = seal(this.keyer.sealingKey(keyed.token, keyed.revokedKey), MARKER, untilMs);
    } catch {
      this.metrics.count("memcached_seal_error");
      return Promise.resolve();
    }
    this.metrics.count("revocation_marker_written");
    // At least a second: memcached's TTL unit.
    return markers.set(keyed.revokedKey, sealed, Math.max(1, ttlMs / 1000)).catch(() => undefined);
  }

  /** L1 only, synchronously: the hot path (one SHA-256, one LRU read). */
  peek(token: string): CachedVerdict | undefined {
    return this.peekKey(this.keyer.l1Key(token));
  }

  private keyed(token: string): KeyedToken {
    return new KeyedToken(token, this.keyer.l1Key(token), this.keyer);
  }

  private peekKey(l1Key: string, quiet = false): CachedVerdict | undefined {
    const entry = this.l1.get(l1Key, !quiet);
    if (entry === undefined) return undefined;
    return entry.kind === "positive"
      ? { kind: "positive", token: entry.value }
      : { kind: "negative", code: entry.code };
  }

  /**
   * Caches a validated token in L1 and memcached until `min(now + token_cache_time,
   * expiresAtMs)`. The memcached write is fire-and-forget: the returned promise settles
   * when it is done or abandoned and never rejects.
   */
  private storeWith(keyed: KeyedToken, value: KeystoneToken, expiresAtMs: number): Promise<void> {
    const until = this.l1.setPositive(keyed.l1Key, value, expiresAtMs);
    const shared = this.shared;
    if (until === undefined || shared === undefined) return Promise.resolve();
    const ttlMs = until - this.clock.nowMs();
    let sealed: Buffer;
    try {
      sealed = seal(this.keyer.sealingKey(keyed.token, keyed.memcachedKey), value, until);
    } catch {
      this.metrics.count("memcached_seal_error");
      return Promise.resolve();
    }
    // SharedStore implementations never reject; a stand-in that does must not turn an
    // ignored promise into an unhandled rejection.
    return shared.set(keyed.memcachedKey, sealed, ttlMs / 1000).catch(() => undefined);
  }

  /**
   * Drops the L1 entries `predicate` selects (revocation). memcached entries cannot be
   * enumerated: they run out with their TTL, so a revocation check must also run on
   * memcached hits.
   * @returns how many were dropped.
   */
  purge(predicate: (entry: L1Entry) => boolean): number {
    return this.l1.purge(predicate);
  }

  /**
   * The memcached store of per-scope contexts, on the same servers and secret as the token
   * entries; undefined when memcached is off.
   */
  contextStore(): ContextStore | undefined {
    return this.shared === undefined
      ? undefined
      : new SealedContextStore(this.shared, this.keyer, {
          clock: this.clock,
          metrics: this.metrics,
        });
  }

  /** Drops every L1 entry (the admin API's flush); returns how many there were. */
  clear(): number {
    const n = this.l1.size;
    this.l1.clear();
    return n;
  }

  /** L1 entries held. */
  get size(): number {
    return this.l1.size;
  }

  /** Stops the in-process sweep and closes memcached connections. */
  close(): void {
    this.l1.close();
    this.shared?.close();
  }

  /** memcached, promoting a good entry to L1. */
  private async fromShared(keyed: KeyedToken): Promise<KeystoneToken | undefined> {
    if (this.shared === undefined) return undefined;
    const opened = await this.readSealed(
      this.shared,
      keyed,
      keyed.memcachedKey,
      "token",
      isKeystoneToken,
    );
    if (opened === undefined) return undefined;
    this.l1.setPositive(keyed.l1Key, opened.value, opened.expiresAtMs);
    return opened.value;
  }

  private countFailure(failure: "auth" | "expired" | "malformed"): void {
    switch (failure) {
      case "auth":
        this.metrics.count("memcached_auth_failure");
        this.warnAuthFailure();
        break;
      case "expired":
        this.metrics.count("memcached_expired");
        break;
      case "malformed":
        this.metrics.count("memcached_malformed");
        break;
    }
  }

  /** Entries that fail authentication mean tampering or a foreign writer: say so, rarely. */
  private warnAuthFailure(): void {
    this.authFailuresSinceWarning++;
    const now = this.clock.nowMs();
    if (now - this.lastAuthWarningMs < AUTH_WARNING_INTERVAL_MS) return;
    this.logger.warn(
      "memcached entries failed authentication (tampered, or written without our secret)",
      { count: this.authFailuresSinceWarning },
    );
    this.lastAuthWarningMs = now;
    this.authFailuresSinceWarning = 0;
  }
}

/** Options of {@link createTokenCache} beyond the configuration. */
export type CreateTokenCacheOptions = Omit<TokenCacheOptions, "keyer" | "shared"> & {
  /** memcached tuning (deadline, breaker…); `clock`, `logger`, `metrics` default to ours. */
  readonly memcached?: MemcachedOptions;
};

/**
 * The token cache a configuration describes: memcached (a {@link MemcachedPool} keyed by
 * `memcache_secret_key`) when `memcached_servers` is set, else L1 only with a random
 * per-process secret.
 */
export function createTokenCache(
  cache: Config["cache"],
  options: CreateTokenCacheOptions,
): TokenCache {
  const { memcached, ...rest } = options;
  const useMemcached = cache.memcached_servers.length > 0;
  const secret = cache.memcache_secret_key;
  if (useMemcached && secret === undefined) {
    throw new RangeError("memcache_secret_key is required with memcached_servers");
  }
  const keyer = useMemcached && secret !== undefined ? new CacheKeyer(secret) : CacheKeyer.random();
  const shared = useMemcached
    ? new MemcachedPool(cache.memcached_servers, {
        ...withDefined({ clock: rest.clock, logger: rest.logger, metrics: rest.metrics }),
        ...memcached,
      })
    : undefined;
  return new TokenCache({
    ...rest,
    keyer,
    shared,
    tokenCacheTimeSeconds: cache.token_cache_time,
    maxEntries: cache.lru_max_entries,
    revocationMarkers: cache.revocation_markers,
  });
}

function withDefined<T extends Record<string, unknown>>(
  fields: T,
): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}
