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
 * answer built here (a disabled user, a removed role, a deleted project all emit events);
 * OAuth 2.0 credential tokens (bound to a client certificate) are never answered from here.
 */
import { LRUCache } from "lru-cache";

import type { KeystoneToken } from "../keystone/token-body.js";
import type { Token } from "../token/decoder.js";
import type { TokenPayload } from "../token/payload.js";
import { keystoneTime } from "../token/render.js";
import { systemClock, type Clock } from "../units.js";

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

/** Keystone's answer for `token`, built from a context and the token's own fields. */
export function answerFromContext(context: KeystoneToken, token: Token): KeystoneToken {
  return Object.freeze({
    ...context,
    methods: Object.freeze([...token.payload.methods]),
    audit_ids: Object.freeze([...token.payload.auditIds]),
    issued_at: keystoneTime(token.issuedAtSeconds),
    expires_at: keystoneTime(token.expiresAtSeconds),
  });
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
  /** Contexts held at most. Default 100 000. */
  readonly maxEntries?: number;
  readonly clock?: Clock;
}

/** The in-process context tier. */
export class ContextCache {
  private readonly lru: LRUCache<
    string,
    { readonly context: KeystoneToken; readonly untilMs: number; readonly staleUntilMs: number }
  >;
  private readonly clock: Clock;
  private readonly ttlMs: number;
  private readonly staleMs: number;

  constructor(options: ContextCacheOptions) {
    this.clock = options.clock ?? systemClock;
    this.ttlMs = options.contextCacheTimeSeconds * 1000;
    this.staleMs = (options.staleIfErrorSeconds ?? 0) * 1000;
    this.lru = new LRUCache({ max: options.maxEntries ?? 100_000 });
  }

  /** The context under `key` while it is fresh. */
  get(key: string): KeystoneToken | undefined {
    const entry = this.live(key);
    return entry !== undefined && this.clock.nowMs() < entry.untilMs ? entry.context : undefined;
  }

  /**
   * The context under `key` even past its time, up to `staleIfErrorSeconds` more: only for
   * when no Keystone endpoint answers (degraded mode).
   */
  getStale(key: string): KeystoneToken | undefined {
    return this.live(key)?.context;
  }

  /** The entry under `key` unless past even its stale time (then dropped). */
  private live(key: string) {
    const entry = this.lru.get(key);
    if (entry !== undefined && this.clock.nowMs() >= entry.staleUntilMs) {
      this.lru.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Remembers Keystone's answer for a token as the context of `key`. */
  set(key: string, answer: KeystoneToken): void {
    if (this.ttlMs <= 0) return;
    const untilMs = this.clock.nowMs() + this.ttlMs;
    this.lru.set(key, { context: answer, untilMs, staleUntilMs: untilMs + this.staleMs });
  }

  /** Drops the contexts `predicate` selects (revocation); returns how many. */
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

  get size(): number {
    return this.lru.size;
  }
}
