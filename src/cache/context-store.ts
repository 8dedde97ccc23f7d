/**
 * Contexts shared through memcached: one node learns a user + scope, every node answers it.
 *
 * Owns: the memcached entry of a context (validation/context.ts) — its key, its sealing
 * (sealed.ts: AES-256-GCM, the memcached key as associated data, an absolute expiry), what
 * it carries besides Keystone's answer (until when it is fresh, when it was learnt) and
 * the checks on the way back in. memcached is untrusted storage: an entry that does not
 * open, has expired, or does not have the shape the header contract relies on is a miss,
 * counted like a token entry's (`memcached_auth_failure`, `memcached_expired`,
 * `memcached_malformed`). A context key names a user and a scope, not a secret, so the
 * sealing key comes from `memcache_secret_key` alone (token-key.ts).
 *
 * Entry: sealed `{ c: context, f: freshUntilMs, b: learntAtMs }`, expiring (in the seal and
 * in memcached) at the end of its stale time, so that degraded mode on any node can still
 * use it.
 */
import { isKeystoneToken, type KeystoneToken } from "../token/body.js";
import { systemClock, type Clock } from "../units.js";
import type { SharedStore } from "./memcached.js";
import { noopCacheMetrics, type CacheMetrics } from "./metrics.js";
import { open, seal } from "./sealed.js";
import type { CacheKeyer } from "./token-key.js";

/** One context with its times, as shared between nodes. */
export interface SharedContext {
  /** Keystone's answer the context was learnt from. */
  readonly context: KeystoneToken;
  /** Answers any token of its user and scope until then (epoch ms). */
  readonly freshUntilMs: number;
  /** Answers in degraded mode only, until then (epoch ms); the entry's expiry. */
  readonly staleUntilMs: number;
  /** When the edge asked Keystone for the answer (epoch ms): revocation events after it supersede it. */
  readonly learntAtMs: number;
}

/** Where contexts are shared; {@link SealedContextStore} or a test's stand-in. */
export interface ContextStore {
  /** The context under `contextKey`, authentic and unexpired, or undefined. Never rejects. */
  get(contextKey: string): Promise<SharedContext | undefined>;
  /** Shares `entry` under `contextKey`. Never rejects. */
  set(contextKey: string, entry: SharedContext): Promise<void>;
}

interface SealedShape {
  readonly c: KeystoneToken;
  readonly f: number;
  readonly b: number;
}

function isSealedShape(value: unknown): value is SealedShape {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return isKeystoneToken(v["c"]) && Number.isFinite(v["f"]) && Number.isFinite(v["b"]);
}

/** Options of {@link SealedContextStore}. */
export interface SealedContextStoreOptions {
  /** Time source. Default the system clock. */
  readonly clock?: Clock;
  /** Receives `memcached_*` events. Default: none. */
  readonly metrics?: CacheMetrics;
}

/** Contexts in memcached, sealed. */
export class SealedContextStore implements ContextStore {
  private readonly clock: Clock;
  private readonly metrics: CacheMetrics;

  constructor(
    private readonly shared: SharedStore,
    private readonly keyer: CacheKeyer,
    options: SealedContextStoreOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.metrics = options.metrics ?? noopCacheMetrics;
  }

  async get(contextKey: string): Promise<SharedContext | undefined> {
    const key = this.keyer.contextSealingKey(contextKey);
    let bytes: Buffer | undefined;
    try {
      bytes = await this.shared.get(key.boundKey, "context");
    } catch {
      return undefined; // SharedStore implementations never reject; be safe with any other
    }
    if (bytes === undefined) return undefined;
    const opened = open(key, bytes, this.clock.nowMs(), isSealedShape);
    if ("failure" in opened) {
      this.metrics.count(
        opened.failure === "auth"
          ? "memcached_auth_failure"
          : opened.failure === "expired"
            ? "memcached_expired"
            : "memcached_malformed",
      );
      return undefined;
    }
    const { c, f, b } = opened.value;
    return { context: c, freshUntilMs: f, staleUntilMs: opened.expiresAtMs, learntAtMs: b };
  }

  set(contextKey: string, entry: SharedContext): Promise<void> {
    const ttlMs = entry.staleUntilMs - this.clock.nowMs();
    if (!(ttlMs > 0)) return Promise.resolve();
    const key = this.keyer.contextSealingKey(contextKey);
    let sealed: Buffer;
    try {
      const shape: SealedShape = { c: entry.context, f: entry.freshUntilMs, b: entry.learntAtMs };
      sealed = seal(key, shape, entry.staleUntilMs);
    } catch {
      this.metrics.count("memcached_seal_error");
      return Promise.resolve();
    }
    return this.shared.set(key.boundKey, sealed, ttlMs / 1000).catch(() => undefined);
  }
}
