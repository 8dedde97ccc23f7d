/**
 * The per-scope context cache: Keystone's answer for a token, minus the token's own fields.
 *
 * Owns: what makes Keystone's answer, and building the answer for a token never seen
 * before. Keystone computes roles, names, the catalog, the trust / application credential /
 * federation blocks from the token's user and scope, not from the token; only `methods`,
 * `audit_ids`, `issued_at` and `expires_at` come from the token itself. So an answer is
 * cached under everything that changes it — payload kind, user, project / domain / system
 * scope, trust, application credential, OAuth access token, federated identity provider +
 * protocol + groups — and a new token of a known context is answered locally with its own
 * fields taken from its (authenticated, unexpired) payload. OpenStack clients fetch new
 * tokens all the time; a per-token cache misses every one of them, this does not.
 *
 * Safety: contexts live `contextCacheTimeSeconds`; the revocation feed is checked on every
 * answer built here (a disabled user, a removed role, a deleted project all emit events),
 * contexts an event bears on are dropped, and one learnt before such an event is neither
 * kept nor taken back from memcached (`superseded`). Contexts are shared through memcached
 * (cache/context-store.ts) so that one node's Keystone call serves the whole region;
 * OAuth 2.0 credential tokens (bound to a client certificate) are never answered from here.
 * A context past even its stale time (`staleIfErrorSeconds` after its fresh time) is swept
 * out unread (cache/expiry-sweep.ts): memory follows the scopes of the last
 * `context_cache_time` + `stale_if_error`, not every scope ever seen.
 */
import { LRUCache } from "lru-cache";

import type { ContextStore, SharedContext } from "../cache/context-store.js";
import { ExpirySweep } from "../cache/expiry-sweep.js";
import { noopCacheMetrics, type CacheMetrics } from "../cache/metrics.js";
import type { KeystoneToken } from "../token/body.js";
import type { Token } from "../token/decoder.js";
import type { TokenPayload } from "../token/payload.js";
import { keystoneTime } from "../token/render.js";
import { systemClock, type Clock } from "../units.js";
import { DEFAULT_L1_MAX_ENTRIES } from "../config/defaults.js";

/** Everything that changes Keystone's answer for a token with this payload; undefined: never cached. */
export function contextKey(p: TokenPayload): string | undefined {
  switch (p.kind) {
    case "unscoped":
      return JSON.stringify([p.kind, p.userId]);
    case "domain":
      return JSON.stringify([p.kind, p.userId, p.domainId]);
    case "project":
      return JSON.stringify([p.kind, p.userId, p.projectId]);
    case "trust":
      return JSON.stringify([p.kind, p.userId, p.projectId, p.trustId]);
    case "system":
      return JSON.stringify([p.kind, p.userId, p.system]);
    case "application-credential":
      return JSON.stringify([p.kind, p.userId, p.projectId, p.appCredId]);
    case "oauth1":
      return JSON.stringify([p.kind, p.userId, p.projectId, p.accessTokenId]);
    case "federated-unscoped":
    case "federated-project":
    case "federated-domain": {
      const f = p.federation;
      const scope =
        p.kind === "federated-project"
          ? p.projectId
          : p.kind === "federated-domain"
            ? p.domainId
            : null;
      const groups = [...f.groupIds].sort();
      return JSON.stringify([p.kind, p.userId, scope, f.identityProviderId, f.protocolId, groups]);
    }
    case "oauth2-credential":
      return undefined;
  }
}

/** The context each answer of {@link answerFromContext} was built from (weak on both). */
const builtFrom = new WeakMap<KeystoneToken, KeystoneToken>();

/** Keystone's answer for `token`, built from a context and the token's own fields. */
export function answerFromContext(context: KeystoneToken, token: Token): KeystoneToken {
  const answer = Object.freeze({
    ...context,
    methods: Object.freeze([...token.payload.methods]),
    audit_ids: Object.freeze([...token.payload.auditIds]),
    issued_at: keystoneTime(token.issuedAtSeconds),
    expires_at: keystoneTime(token.expiresAtSeconds),
  });
  builtFrom.set(answer, context);
  return answer;
}

/**
 * The context `answer` was built from by {@link answerFromContext}, if it was: the two
 * differ only in the token's own fields (methods, audit ids, issue and expiry times), so
 * whatever is derived from the rest — the identity headers — is the same for both.
 */
export function contextOf(answer: KeystoneToken): KeystoneToken | undefined {
  return builtFrom.get(answer);
}

/** Options of {@link ContextCache}. */
export interface ContextCacheOptions {
  /** How long a context is reused, seconds (`cache.context_cache_time`). */
  readonly contextCacheTimeSeconds: number;
  /**
   * How long past that a context may still answer while no Keystone endpoint does
   * (degraded mode), seconds (`cache.stale_if_error`). Default 0.
   */
  readonly staleIfErrorSeconds?: number;
  /** Contexts held in-process at most. Default 100 000. */
  readonly maxEntries?: number;
  /** Where contexts are shared with the region's other nodes (memcached). Default: none. */
  readonly shared?: ContextStore | undefined;
  /**
   * Whether a context learnt at `learntAtMs` is superseded by a change Keystone has since
   * announced (the revocation feed's `supersedes`); such a context is neither kept nor
   * taken from memcached. Default: never.
   */
  readonly superseded?: (context: KeystoneToken, learntAtMs: number) => boolean;
  /** Receives `context_hit` / `context_miss`. Default: none. */
  readonly metrics?: CacheMetrics;
  readonly clock?: Clock;
  /**
   * How often contexts past their stale time are swept out unread, ms; 0: never by a timer.
   * Default 1 000 ms.
   */
  readonly sweepIntervalMs?: number;
}

type Held = Omit<SharedContext, "context"> & { readonly context: KeystoneToken };

/** The context tier: in-process, then (when configured) memcached. */
export class ContextCache {
  private readonly lru: LRUCache<string, Held>;
  private readonly clock: Clock;
  private readonly ttlMs: number;
  private readonly staleMs: number;
  private readonly shared: ContextStore | undefined;
  private readonly superseded: (context: KeystoneToken, learntAtMs: number) => boolean;
  private readonly metrics: CacheMetrics;
  /** Contexts past even their stale time leave unread: memory follows recent scopes. */
  private readonly expiries: ExpirySweep;

  constructor(options: ContextCacheOptions) {
    this.clock = options.clock ?? systemClock;
    this.ttlMs = options.contextCacheTimeSeconds * 1000;
    this.staleMs = (options.staleIfErrorSeconds ?? 0) * 1000;
    this.lru = new LRUCache({ max: options.maxEntries ?? DEFAULT_L1_MAX_ENTRIES });
    this.shared = options.shared;
    this.superseded = options.superseded ?? (() => false);
    this.metrics = options.metrics ?? noopCacheMetrics;
    this.expiries = new ExpirySweep({
      clock: this.clock,
      ...(options.sweepIntervalMs === undefined ? {} : { intervalMs: options.sweepIntervalMs }),
      expire: (key, nowMs) => {
        const entry = this.lru.peek(key);
        if (entry === undefined || nowMs < entry.staleUntilMs) return false;
        this.lru.delete(key);
        return true;
      },
    });
  }

  /** Drops contexts past their stale time, looking at `limit` expiry times at most. */
  sweep(limit?: number): number {
    return this.expiries.sweep(limit);
  }

  /** Stops the sweep timer. */
  close(): void {
    this.expiries.close();
  }

  /** Whether contexts are shared through memcached (then {@link fetch} may find one). */
  get isShared(): boolean {
    return this.shared !== undefined;
  }

  /** The in-process context under `key` while it is fresh. */
  get(key: string): KeystoneToken | undefined {
    const entry = this.live(key);
    const fresh = entry !== undefined && this.clock.nowMs() < entry.freshUntilMs;
    this.metrics.count(fresh ? "context_hit" : "context_miss");
    return fresh ? entry.context : undefined;
  }

  /**
   * The shared context under `key` while it is fresh. Any authentic entry that is not
   * superseded is kept in-process (a stale one still serves degraded mode here).
   */
  async fetch(key: string): Promise<KeystoneToken | undefined> {
    const found = await this.shared?.get(key);
    if (found === undefined || this.superseded(found.context, found.learntAtMs)) return undefined;
    // Another node's times, but never longer than ours.
    const nowMs = this.clock.nowMs();
    const freshUntilMs = Math.min(found.freshUntilMs, nowMs + this.ttlMs);
    const staleUntilMs = Math.min(found.staleUntilMs, freshUntilMs + this.staleMs);
    if (!(nowMs < staleUntilMs)) return undefined;
    this.lru.set(key, { ...found, freshUntilMs, staleUntilMs });
    this.expiries.track(key, staleUntilMs);
    return nowMs < freshUntilMs ? found.context : undefined;
  }

  /**
   * The context under `key` even past its time, up to `staleIfErrorSeconds` more: only for
   * when no Keystone endpoint answers (degraded mode).
   */
  getStale(key: string): KeystoneToken | undefined {
    return this.live(key)?.context;
  }

  /** The entry under `key` unless past even its stale time (then dropped). */
  private live(key: string): Held | undefined {
    const entry = this.lru.get(key);
    if (entry !== undefined && this.clock.nowMs() >= entry.staleUntilMs) {
      this.lru.delete(key);
      return undefined;
    }
    return entry;
  }

  /**
   * Remembers Keystone's answer for a token as the context of `key`, here and in memcached
   * (fire and forget), unless a change announced since `learntAtMs` — when the edge asked
   * Keystone — supersedes it.
   */
  set(key: string, answer: KeystoneToken, learntAtMs: number): void {
    if (this.ttlMs <= 0 || this.superseded(answer, learntAtMs)) return;
    const freshUntilMs = this.clock.nowMs() + this.ttlMs;
    const entry = {
      context: answer,
      freshUntilMs,
      staleUntilMs: freshUntilMs + this.staleMs,
      learntAtMs,
    };
    this.lru.set(key, entry);
    this.expiries.track(key, entry.staleUntilMs);
    void this.shared?.set(key, entry);
  }

  /** Drops the in-process contexts `predicate` selects (revocation); returns how many. */
  purge(predicate: (context: KeystoneToken) => boolean): number {
    let dropped = 0;
    for (const [key, entry] of this.lru.entries()) {
      if (predicate(entry.context)) {
        this.lru.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  /** Drops every in-process context (the admin API's flush); returns how many there were. */
  clear(): number {
    const n = this.lru.size;
    this.lru.clear();
    return n;
  }

  get size(): number {
    return this.lru.size;
  }
}
