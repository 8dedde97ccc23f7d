/**
 * The validation tiers, in order: in-process cache → local Fernet decode → memcached →
 * Keystone.
 *
 * Owns: what a token is worth, and which tier settled it. A malformed, forged or expired
 * token is refused by local decryption and remembered briefly, with no call to Keystone
 * (keystonemiddleware sends every garbage token to Keystone). Concurrent misses for one
 * token share one Keystone call. A positive answer lives `min(token_cache_time,
 * expires_at − now)`; an unreachable Keystone caches nothing.
 *
 * A well-formed token that no local key verifies (`bad_signature`) is looked at twice: the
 * key repository is re-read first (rate-limited, shared: a sync may have reached the disk
 * before its event reached us). Still unverified, it is forged while the region's key ring
 * is in sync with the master (or not known to lag): refused, remembered, no validation
 * call — the lag monitor (keystone/key-lag.ts) is told, rate-limited. While the ring is
 * known to be behind, it may be a new valid token: asked of memcached, then of Keystone
 * within a budget (validation/fallback-budget.ts); Keystone's 404 is remembered for
 * `token_cache_time`, so a replayed forgery costs at most one call. `malformed` never costs
 * a call.
 *
 * Size: the tier order is the product's core rule and reads best in one place, top to
 * bottom.
 */
import { silentLogger, tokenHash, type Logger } from "../log.js";
import type { DecodeResult, Token, TokenDecoder } from "../token/decoder.js";
import type { KeystoneToken } from "../token/body.js";
import type { KeystoneVerdict } from "../keystone/validate.js";
import type { KeyLagState } from "../keystone/key-lag.js";
import { DEFAULT_NEGATIVE_TTL_MS } from "../cache/l1.js";
import type { CacheEntry, CachedVerdict } from "../cache/tiers.js";

export type { CacheEntry, CachedVerdict } from "../cache/tiers.js";
import { systemClock, type Clock } from "../units.js";
import { noTracing, type Tracing } from "../tracing.js";
import { answerFromContext, contextKey, type ContextCache } from "./context.js";
import { FallbackBudget } from "./fallback-budget.js";
import { SingleFlight } from "./single-flight.js";
import type { DrillTier } from "../protocol/admin.js";

/** The cache tiers, as the pipeline uses them. */
export interface ValidationCache {
  entry(token: string): CacheEntry;
  /** The in-process tier alone, for the hot path: no entry handle, no memcached key. */
  peek(token: string): CachedVerdict | undefined;
  /**
   * Whether revocation markers are read (`cache.revocation_markers` with memcached): then
   * no token is valid before its entry's `revoked()` said no, so the synchronous hot path
   * answers refusals only. Default false.
   */
  readonly marksRevocations?: boolean;
  /**
   * Drops the in-process entries `predicate` selects; returns how many. Optional: without
   * it, refusals the key lag made wrong age out by themselves.
   */
  purge?(
    predicate: (entry: {
      readonly kind: "positive" | "negative";
      readonly code?: string;
    }) => boolean,
  ): number;
}

/** What the pipeline reads of the key lag monitor (keystone/key-lag.ts). */
export interface KeyLagView {
  state(): KeyLagState;
  /**
   * A well-formed token failed every local key (the monitor rate-limits its check); the
   * check under way, if any, to wait for before deciding.
   */
  undecryptable(): Promise<unknown> | undefined;
}

/** How a token no local key decrypts fared while the ring was behind. */
export type FallbackResult = "valid" | "invalid" | "unavailable" | "refused";

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
   * A span per validation past the in-process cache, with a child per tier it tries
   * (decryption, memcached's contexts and entries, the revocation marker; the Keystone call
   * is the validator's). Default {@link noTracing}.
   */
  readonly tracing?: Tracing;
  /**
   * Shadow validation (shadow.ts): offered each verdict of the request path with its token
   * (not a drill's, not a recheck's). Default: none.
   */
  readonly shadow?: { offer(token: string, verdict: Verdict): void };
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
  /**
   * Whether the region's key ring lags the master. Default: none (a token no local key
   * verifies is always forged).
   */
  readonly keyLag?: KeyLagView;
  /**
   * Re-reads the key repository, rate-limited, concurrent callers sharing one read
   * (`KeyRepository.recheck`); awaited — at most {@link LOOK_AGAIN_MAX_WAIT_MS} — before a
   * token no local key verifies is judged. Default: none.
   */
  readonly lookAgain?: () => Promise<unknown>;
  /**
   * Keystone calls for tokens no local key decrypts while the ring is behind. Default a
   * {@link FallbackBudget} of 20 per second, burst 100.
   */
  readonly fallbackBudget?: { take(): boolean };
  /**
   * Life of the negative entry for a token Keystone called invalid in a fallback, ms.
   * Default `max(10 s, token_cache_time)`.
   */
  readonly fallbackNegativeTtlMs?: number;
  /** Called once per fallback (per Keystone call, or per refusal for want of budget). */
  readonly onFallback?: (result: FallbackResult) => void;
  /**
   * Longest life of a token, seconds (`fernet.token_expiration`): how long a token revoked
   * through the Identity face that this edge cannot decrypt (so whose expiry it does not
   * know) stays refused. Default 3 600 (Keystone's default).
   */
  readonly tokenExpirationSeconds?: number;
}

/** What {@link ValidationPipeline.revokeNow} learnt of a token revoked through the face. */
export interface RevokedToken {
  /** The token's own audit ID, when it decrypts here (its revocation event's key). */
  readonly auditId: string | undefined;
  /** Refused until then, epoch ms: the token's expiry, or now + the longest token life. */
  readonly untilMs: number;
}

/** Longest a request waits for the re-read of the key repository before judging, ms. */
export const LOOK_AGAIN_MAX_WAIT_MS = 500;

/** The decoder's code for a well-formed token no local key verifies. */
const BAD_SIGNATURE = "bad_signature";
/** Longest a token no key decrypts waits for a lag check under way before being called forged, ms. */
export const LAG_CHECK_WAIT_MS = 3_000;

/** Resolves when `promise` settles or after `ms`, whichever comes first; never rejects. */
async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    promise.catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
}

/** A token no local key verifies, while the ring is not known to lag: forged. */
const FORGED: Verdict = Object.freeze({
  kind: "invalid",
  code: BAD_SIGNATURE,
  source: "local_reject",
});

/** Every local key failed it: well-formed (not `malformed`), no key's HMAC matches. */
function undecryptable(result: DecodeResult): boolean {
  return result.status === "invalid" && result.error.code === BAD_SIGNATURE;
}

/** `promise` settled, or `ms` passed: whichever first (its outcome is not needed). */
function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  return Promise.race([
    promise.then(
      () => undefined,
      () => undefined,
    ),
    deadline,
  ]).finally(() => {
    clearTimeout(timer);
  });
}

/** The answer for `token` from `context`, when there is one and it is the token's own user's. */
function fromContext(context: KeystoneToken | undefined, token: Token): KeystoneToken | undefined {
  return context !== undefined && context.user.id === token.payload.userId
    ? answerFromContext(context, token)
    : undefined;
}

const REVOKED_CODE = "revoked";
const REVOKED: Verdict = Object.freeze({
  kind: "invalid",
  code: REVOKED_CODE,
  source: "revocation",
});

export class ValidationPipeline {
  private readonly inFlight = new SingleFlight<string, Verdict>();
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly budget: { take(): boolean };
  private readonly fallbackNegativeTtlMs: number;
  private readonly tracing: Tracing;
  /** The re-read of the key repository that requests wait on now. */
  private lookingAgain: Promise<void> | undefined;

  constructor(private readonly options: PipelineOptions) {
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.budget = options.fallbackBudget ?? new FallbackBudget({ clock: this.clock });
    this.tracing = options.tracing ?? noTracing;
    this.fallbackNegativeTtlMs =
      options.fallbackNegativeTtlMs ??
      Math.max(DEFAULT_NEGATIVE_TTL_MS, options.tokenCacheTimeSeconds * 1000);
  }

  /**
   * The region's key ring was just found behind the master's: tokens refused moments ago
   * as forged (`bad_signature`) may be new valid ones, so their in-process refusals go, and
   * their next request is asked of Keystone instead of refused for the rest of 10 s.
   * @returns how many refusals were dropped.
   */
  keysFellBehind(): number {
    return (
      this.options.cache.purge?.((e) => e.kind === "negative" && e.code === BAD_SIGNATURE) ?? 0
    );
  }

  /**
   * @param peeked the caller already asked {@link validateNow} for this token and got
   *   nothing: the in-process cache is looked at again (a concurrent request may have
   *   filled it) without counting a second lookup.
   */
  async validate(token: string, peeked = false): Promise<Verdict> {
    const verdict = this.tracing.enabled
      ? await this.tracing.inSpan("validate", "internal", {}, async (span) => {
          const v = await this.recheck(token, peeked);
          span.setAttribute("keystone_edge.result", v.kind);
          if (v.kind !== "unavailable") span.setAttribute("keystone_edge.tier", v.source);
          else span.setAttribute("keystone_edge.reason", v.reason);
          return v;
        })
      : await this.recheck(token, peeked);
    this.options.observe?.(verdict);
    this.options.shadow?.offer(token, verdict);
    return verdict;
  }

  /**
   * The verdict the request path would give `token` now, neither counted nor offered to
   * shadow validation: shadow validation's second look at a difference.
   */
  async recheck(token: string, peeked = false): Promise<Verdict> {
    const entry = this.options.cache.entry(token);
    return this.unlessMarked(
      entry,
      this.settled(entry.peek(peeked)) ?? (await this.settle(token, entry)),
    );
  }

  /**
   * `verdict`, unless it is valid and the region holds a revocation marker for the token:
   * then revoked, and remembered in-process until the token's expiry (no further marker
   * read for it).
   */
  private async unlessMarked(entry: CacheEntry, verdict: Verdict): Promise<Verdict> {
    // Markers off (the cache's one flag, as validateNow reads it): no promise, no read.
    if (verdict.kind !== "valid" || this.options.cache.marksRevocations !== true) return verdict;
    if (!(await this.traced("revocation marker", () => entry.revoked()))) return verdict;
    this.rememberRevoked(entry, Date.parse(verdict.token.expires_at));
    return REVOKED;
  }

  /** Refused in-process until `untilMs` (at least the usual negative life). */
  private rememberRevoked(entry: CacheEntry, untilMs: number): void {
    const ttlMs = Number.isFinite(untilMs) ? untilMs - this.clock.nowMs() : 0;
    entry.storeNegative(REVOKED_CODE, Math.max(DEFAULT_NEGATIVE_TTL_MS, ttlMs));
  }

  /**
   * A token was revoked through this edge's Identity face (Keystone answered its
   * `DELETE /v3/auth/tokens` with success): refused here from now on — in-process until its
   * expiry — and, with revocation markers, by every edge of the region from their next
   * validation of it. Resolves once the marker is written or abandoned (memcached's
   * deadline); never rejects. The caller adds the token's revocation event locally (by
   * audit ID) and pulls the revocation feed.
   */
  async revokeNow(token: string): Promise<RevokedToken> {
    const local = this.options.decoder.decode(token);
    const decoded = local.status === "invalid" ? undefined : local.token;
    const nowMs = this.clock.nowMs();
    const untilMs =
      decoded === undefined
        ? nowMs + (this.options.tokenExpirationSeconds ?? 3_600) * 1000
        : decoded.expiresAtSeconds * 1000;
    const entry = this.options.cache.entry(token);
    this.rememberRevoked(entry, untilMs);
    await entry.markRevoked(untilMs).catch(() => undefined);
    return { auditId: decoded?.payload.auditIds[0], untilMs };
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
    // With revocation markers, "valid" waits for the marker read: validate() gives it.
    if (verdict?.kind === "valid" && this.options.cache.marksRevocations === true) return undefined;
    if (verdict) {
      this.options.observe?.(verdict);
      this.options.shadow?.offer(token, verdict);
    }
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
   * `inProcessContexts: false` looks contexts up in memcached only (a drill's `shared`);
   * `tokenEntries: false` skips memcached's entry for the token (a drill's `unseen`).
   */
  private async settle(
    token: string,
    cache: CacheEntry,
    { inProcessContexts = true, tokenEntries = true } = {},
  ): Promise<Verdict> {
    let local = this.traced("decrypt", () => this.options.decoder.decode(token));
    if (undecryptable(local) && this.options.lookAgain !== undefined) {
      // Look before deciding: the key that signed it may be on disk, its event not here yet.
      await this.lookAgain(this.options.lookAgain);
      local = this.options.decoder.decode(token);
    }
    if (local.status !== "valid") {
      if (undecryptable(local)) return this.undecrypted(token, cache, tokenEntries);
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
        (contexts.isShared
          ? await this.traced("memcached context", () => contexts.fetch(ctxKey))
          : undefined);
      const answer = fromContext(context, local.token);
      if (answer !== undefined) {
        const verdict = this.unlessRevoked(answer, "context");
        if (verdict.kind === "valid")
          void cache.storePositive(answer, this.positiveUntilMs(expiresAtMs));
        return verdict;
      }
    }

    const shared = tokenEntries
      ? await this.traced("memcached token", () => cache.fetch())
      : undefined;
    if (shared && shared.user.id === localUserId) return this.unlessRevoked(shared, "memcached");

    return this.inFlight.run(token, () => this.askKeystone(token, local.token, cache, true));
  }

  /** `fn` in a child span named `name` when tracing is on. */
  private traced<T>(name: string, fn: () => T): T {
    return this.tracing.enabled ? this.tracing.inSpan(name, "internal", {}, fn) : fn();
  }

  /** One re-read of the key repository at a time, however many requests wait on it. */
  private lookAgain(reread: () => Promise<unknown>): Promise<void> {
    this.lookingAgain ??= settledWithin(reread(), LOOK_AGAIN_MAX_WAIT_MS).finally(() => {
      this.lookingAgain = undefined;
    });
    return this.lookingAgain;
  }

  /**
   * A well-formed token that no local key verifies, even after a second look. In sync (or
   * not known to lag): forged — refused, remembered for the usual 10 s, no validation call;
   * the lag monitor is told (it checks, rate-limited, whether the region fell behind).
   * Behind: maybe a token signed with a key this region lacks. memcached first (another
   * edge may have settled it: its entry is sealed under this token's own key), then
   * Keystone, one call for concurrent requests, within the fallback budget.
   */
  private async undecrypted(
    token: string,
    cache: CacheEntry,
    tokenEntries = true,
  ): Promise<Verdict> {
    const lag = this.options.keyLag;
    const checking = lag?.undecryptable();
    // A check under way may find the region behind: wait for it (bounded) rather than
    // refuse what may be the first valid tokens after a rotation this region missed.
    if (checking !== undefined) await waitAtMost(checking, LAG_CHECK_WAIT_MS);
    if (lag?.state().kind !== "behind") {
      cache.storeNegative(BAD_SIGNATURE);
      return FORGED;
    }
    const shared = tokenEntries ? await cache.fetch() : undefined;
    if (shared !== undefined) return this.unlessRevoked(shared, "memcached");
    return this.inFlight.run(token, () => this.fallback(token, cache));
  }

  /**
   * Keystone's answer for a token no local key decrypts (the ring is behind). Valid: cached
   * in-process and in memcached until `min(token_cache_time, expires_at)`, not taught to
   * the contexts (a context is keyed by the payload, which only decryption gives).
   * Invalid: remembered `fallbackNegativeTtlMs`, so a replayed forgery costs one call.
   * Unavailable: 503, nothing cached. Budget spent: refused (401) as a forgery would be,
   * not remembered, so the token is asked again once the budget refills.
   *
   * Unlike {@link verdictOf}, Keystone's user is not compared with the token's own: there
   * is no decrypted payload to compare with. The check guards against a Keystone answer
   * about some other token; this answer is Keystone's own about this exact token, over the
   * edge's authenticated channel — what keystonemiddleware trusts for every token. Every
   * later cache hit is still checked against the revocation feed.
   */
  private async fallback(token: string, cache: CacheEntry): Promise<Verdict> {
    if (!this.budget.take()) {
      this.reportFallback("refused");
      return FORGED;
    }
    const answer = await this.options.keystone.validate(token);
    this.reportFallback(answer.kind);
    switch (answer.kind) {
      case "valid": {
        const expiresAtMs = Date.parse(answer.token.expires_at);
        if (Number.isFinite(expiresAtMs)) {
          void cache.storePositive(answer.token, this.positiveUntilMs(expiresAtMs));
        }
        return { kind: "valid", token: answer.token, source: "keystone" };
      }
      case "invalid":
        cache.storeNegative("not_found", this.fallbackNegativeTtlMs);
        return { kind: "invalid", code: "not_found", source: "keystone" };
      case "unavailable":
        return { kind: "unavailable", reason: answer.reason };
    }
  }

  private reportFallback(result: FallbackResult): void {
    try {
      this.options.onFallback?.(result);
    } catch (error) {
      this.logger.error("onFallback hook threw", { error: String(error) });
    }
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
   * - `unseen`: past every entry for the token itself, in-process and in memcached (local
   *   decryption, contexts, Keystone) — what a token issued a moment ago meets; in a region
   *   whose ring lags, a Keystone fallback each time (within the fallback budget); a
   *   refusal is not remembered (the token's real requests keep their cached answer);
   * - `shared`: past every in-process tier (local decryption, then memcached's contexts and
   *   token entries, then Keystone) — what a token meets on an edge that just started;
   * - `keystone`: as if every cached answer had aged out — Keystone, and degraded mode
   *   when none answers — what any token meets once its cache time is over;
   * - `keystone_only`: Keystone or nothing — what a token of an unknown scope meets.
   */
  async validateFrom(token: string, from: DrillTier): Promise<Verdict> {
    if (from === "cache") return this.validate(token);
    const real = this.options.cache.entry(token);
    // A probe as of a token never seen leaves no refusal in-process: the same token's real
    // requests, answered from its positive entry, must meet what they met before the drill.
    const entry: CacheEntry =
      from === "unseen" ? { ...real, storeNegative: () => undefined } : real;
    let verdict: Verdict;
    if (from === "decrypt" || from === "shared" || from === "unseen") {
      verdict = await this.settle(token, entry, {
        inProcessContexts: from !== "shared",
        tokenEntries: from !== "unseen",
      });
    } else {
      const local = this.options.decoder.decode(token);
      verdict =
        local.status === "valid"
          ? await this.askKeystone(token, local.token, entry, from === "keystone")
          : { kind: "invalid", code: local.error.code, source: "local_reject" };
    }
    verdict = await this.unlessMarked(entry, verdict);
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
        void store?.cache.storePositive(answer.token, this.positiveUntilMs(store.expiresAtMs));
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
