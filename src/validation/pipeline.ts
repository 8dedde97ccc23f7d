/**
 * The validation tiers, in order: in-process cache → local Fernet decode → memcached →
 * Keystone.
 *
 * Owns: what a token is worth, and which tier settled it. A malformed, forged or expired
 * token is refused by local decryption and remembered briefly, with no call to Keystone
 * (keystonemiddleware sends every garbage token to Keystone). Concurrent misses for one
 * token share one Keystone call. A positive answer lives `min(token_cache_time,
 * expires_at − now)`; an unreachable Keystone caches nothing.
 */
import { silentLogger, tokenHash, type Logger } from "../log.js";
import type { Token, TokenDecoder } from "../token/decoder.js";
import type { KeystoneToken } from "../keystone/token-body.js";
import type { KeystoneVerdict } from "../keystone/validate.js";
import { systemClock, type Clock } from "../units.js";
import { answerFromContext, contextKey, type ContextCache } from "./context.js";
import { SingleFlight } from "./single-flight.js";

/** What the caches answer for a token. */
export type CachedVerdict =
  | { readonly kind: "positive"; readonly token: KeystoneToken }
  | { readonly kind: "negative"; readonly code: string };

/** One token's place in the cache tiers; its keys are derived once, on `entry()`. */
export interface CacheEntry {
  /** The in-process tier: synchronous, no I/O. `quiet`: a second look, not counted again. */
  peek(quiet?: boolean): CachedVerdict | undefined;
  /** The shared tier (memcached); any failure is a miss; a hit is promoted in-process. */
  fetch(): Promise<KeystoneToken | undefined>;
  storePositive(value: KeystoneToken, expiresAtMs: number): void;
  storeNegative(code: string): void;
}

/** The cache tiers, as the pipeline uses them. */
export interface ValidationCache {
  entry(token: string): CacheEntry;
  /** The in-process tier alone, for the hot path: no entry handle, no memcached key. */
  peek(token: string): CachedVerdict | undefined;
}

/** Where a drill's validation starts (see {@link ValidationPipeline.validateFrom}). */
export const DRILL_TIERS = ["cache", "decrypt", "shared", "keystone", "keystone_only"] as const;
export type DrillTier = (typeof DRILL_TIERS)[number];

/** Who settled a token. */
export type Verdict =
  | {
      readonly kind: "valid";
      readonly token: KeystoneToken;
      readonly source: "l1" | "context" | "memcached" | "keystone" | "degraded";
    }
  | {
      readonly kind: "invalid";
      readonly code: string;
      readonly source: "local_reject" | "negative" | "keystone" | "revocation";
    }
  | { readonly kind: "unavailable"; readonly reason: string };

export interface PipelineOptions {
  readonly decoder: TokenDecoder;
  readonly cache: ValidationCache;
  readonly keystone: { validate(token: string, allowExpired?: boolean): Promise<KeystoneVerdict> };
  /** Longest a positive answer is cached, seconds (`cache.token_cache_time`). */
  readonly tokenCacheTimeSeconds: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Called once per validation with the tier and result. */
  readonly observe?: (verdict: Verdict) => void;
  /**
   * Keystone's revocation events (the feed): checked on every cached answer, in-process and
   * memcached alike — Keystone's own answers already are. Default: none.
   */
  readonly revocations?: { isRevoked(token: KeystoneToken): boolean };
  /**
   * The per-scope context cache: a new token of a known user and scope is answered from it
   * with no Keystone call (see context.ts). Default: none.
   */
  readonly contexts?: ContextCache;
}

/** The answer for `token` from `context`, when there is one and it is the token's own user's. */
function fromContext(context: KeystoneToken | undefined, token: Token): KeystoneToken | undefined {
  return context !== undefined && context.user.id === token.payload.userId
    ? answerFromContext(context, token)
    : undefined;
}

const REVOKED: Verdict = Object.freeze({
  kind: "invalid",
  code: "revoked",
  source: "revocation",
});

export class ValidationPipeline {
  private readonly inFlight = new SingleFlight<string, Verdict>();
  private readonly clock: Clock;
  private readonly logger: Logger;

  constructor(private readonly options: PipelineOptions) {
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
  }

  /**
   * @param peeked the caller already asked {@link validateNow} for this token and got
   *   nothing: the in-process cache is looked at again (a concurrent request may have
   *   filled it) without counting a second lookup.
   */
  async validate(token: string, peeked = false): Promise<Verdict> {
    const entry = this.options.cache.entry(token);
    const verdict = this.settled(entry.peek(peeked)) ?? (await this.settle(token, entry));
    this.options.observe?.(verdict);
    return verdict;
  }

  /**
   * keystonemiddleware's `allow_expired`: a user token that comes with a service token
   * passing the role check may be past its expiry (a long-running operation finishing on
   * the user's behalf). A token that is not expired takes the ordinary path; an expired
   * one, with a good signature, is put to Keystone with `allow_expired=1` — Keystone still
   * checks revocation, the user, the scope and its `allow_expired_window`. Such an answer
   * is not cached (it is rare, and a cached positive entry must never outlive expiry);
   * concurrent requests for it share one call.
   */
  async validateAllowingExpired(token: string): Promise<Verdict> {
    const local = this.options.decoder.decode(token);
    if (local.status !== "expired") return this.validate(token);
    const localUserId = local.token.payload.userId;
    const verdict = await this.inFlight.run(`${token}\u0000allow_expired`, async () => {
      const answer = await this.options.keystone.validate(token, true);
      return this.verdictOf(token, answer, localUserId, undefined);
    });
    this.options.observe?.(verdict);
    return verdict;
  }

  /**
   * The verdict when the in-process cache has one, synchronously (the hot path: no promise,
   * no I/O); undefined when the token needs the slower tiers.
   */
  validateNow(token: string): Verdict | undefined {
    const verdict = this.settled(this.options.cache.peek(token));
    if (verdict) this.options.observe?.(verdict);
    return verdict;
  }

  private settled(cached: CachedVerdict | undefined): Verdict | undefined {
    if (cached?.kind === "positive") {
      return this.unlessRevoked(cached.token, "l1");
    }
    if (cached?.kind === "negative")
      return { kind: "invalid", code: cached.code, source: "negative" };
    return undefined;
  }

  /**
   * Past the in-process cache: local decode, contexts, memcached, Keystone.
   * `inProcessContexts: false` looks contexts up in memcached only (a drill's `shared`).
   */
  private async settle(
    token: string,
    cache: CacheEntry,
    inProcessContexts = true,
  ): Promise<Verdict> {
    const local = this.options.decoder.decode(token);
    if (local.status !== "valid") {
      cache.storeNegative(local.error.code);
      return { kind: "invalid", code: local.error.code, source: "local_reject" };
    }
    const localUserId = local.token.payload.userId;
    const expiresAtMs = local.token.expiresAtSeconds * 1000;
    const contexts = this.options.contexts;
    const ctxKey = contexts === undefined ? undefined : contextKey(local.token.payload);

    if (contexts !== undefined && ctxKey !== undefined) {
      const context =
        (inProcessContexts ? contexts.get(ctxKey) : undefined) ??
        (contexts.isShared ? await contexts.fetch(ctxKey) : undefined);
      const answer = fromContext(context, local.token);
      if (answer !== undefined) {
        const verdict = this.unlessRevoked(answer, "context");
        if (verdict.kind === "valid")
          cache.storePositive(answer, this.positiveUntilMs(expiresAtMs));
        return verdict;
      }
    }

    const shared = await cache.fetch();
    if (shared && shared.user.id === localUserId) return this.unlessRevoked(shared, "memcached");

    return this.inFlight.run(token, () => this.askKeystone(token, local.token, cache, true));
  }

  /**
   * Keystone's answer for a token that decrypted, cached and taught to the context cache.
   * `degrade`: when no Keystone answers, serve the token from its context known even past
   * its time (up to stale_if_error) — degraded mode; otherwise it stays unavailable.
   */
  private async askKeystone(
    token: string,
    local: Token,
    cache: CacheEntry,
    degrade: boolean,
  ): Promise<Verdict> {
    const contexts = this.options.contexts;
    const ctxKey = contexts === undefined ? undefined : contextKey(local.payload);
    const askedAtMs = this.clock.nowMs();
    const answer = await this.options.keystone.validate(token);
    const verdict = this.verdictOf(token, answer, local.payload.userId, {
      cache,
      expiresAtMs: local.expiresAtSeconds * 1000,
    });
    if (contexts !== undefined && ctxKey !== undefined) {
      if (verdict.kind === "valid") contexts.set(ctxKey, verdict.token, askedAtMs);
      if (answer.kind === "unavailable" && degrade) {
        // Degraded mode: no Keystone answers. A token that decrypts, has not expired and
        // is not revoked, of a context known even past its time (up to stale_if_error),
        // is served; anything else stays unavailable. Never cached: every request
        // re-checks until Keystone is back.
        const stale = fromContext(contexts.getStale(ctxKey), local);
        if (stale !== undefined) return this.unlessRevoked(stale, "degraded");
      }
    }
    return verdict;
  }

  /**
   * A drill's validation (admin API), from a chosen tier down, counted like any other:
   * - `cache`: the request path itself;
   * - `decrypt`: past the in-process token cache (local decryption, contexts, memcached,
   *   Keystone) — what a new token of a known scope meets;
   * - `shared`: past every in-process tier (local decryption, then memcached's contexts and
   *   token entries, then Keystone) — what a token meets on an edge that just started;
   * - `keystone`: as if every cached answer had aged out — Keystone, and degraded mode
   *   when none answers — what any token meets once its cache time is over;
   * - `keystone_only`: Keystone or nothing — what a token of an unknown scope meets.
   */
  async validateFrom(token: string, from: DrillTier): Promise<Verdict> {
    if (from === "cache") return this.validate(token);
    const entry = this.options.cache.entry(token);
    let verdict: Verdict;
    if (from === "decrypt" || from === "shared") {
      verdict = await this.settle(token, entry, from === "decrypt");
    } else {
      const local = this.options.decoder.decode(token);
      verdict =
        local.status === "valid"
          ? await this.askKeystone(token, local.token, entry, from === "keystone")
          : { kind: "invalid", code: local.error.code, source: "local_reject" };
    }
    this.options.observe?.(verdict);
    return verdict;
  }

  /** A cached (or locally built) answer, unless the revocation feed has revoked it. */
  private unlessRevoked(
    token: KeystoneToken,
    source: "l1" | "context" | "memcached" | "degraded",
  ): Verdict {
    if (this.options.revocations?.isRevoked(token) === true) return REVOKED;
    return { kind: "valid", token, source };
  }

  /** Keystone's answer as a verdict, cached when `store` is given. */
  private verdictOf(
    token: string,
    answer: KeystoneVerdict,
    localUserId: string,
    store: { readonly cache: CacheEntry; readonly expiresAtMs: number } | undefined,
  ): Verdict {
    switch (answer.kind) {
      case "valid": {
        if (answer.token.user.id !== localUserId) {
          // Keystone and the token disagree on who this is: never trust either blindly.
          this.logger.error("Keystone's answer does not match the token's own user", {
            token: tokenHash(token),
            endpoint: answer.endpoint,
          });
          return { kind: "unavailable", reason: "inconsistent_answer" };
        }
        store?.cache.storePositive(answer.token, this.positiveUntilMs(store.expiresAtMs));
        return { kind: "valid", token: answer.token, source: "keystone" };
      }
      case "invalid":
        store?.cache.storeNegative("not_found");
        return { kind: "invalid", code: "not_found", source: "keystone" };
      case "unavailable":
        return { kind: "unavailable", reason: answer.reason };
    }
  }

  private positiveUntilMs(expiresAtMs: number): number {
    return Math.min(expiresAtMs, this.clock.nowMs() + this.options.tokenCacheTimeSeconds * 1000);
  }
}
