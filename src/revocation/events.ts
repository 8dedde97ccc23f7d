/**
 * Keystone's revocation events and whether one revokes a validated token.
 *
 * Owns: the event list the feed fills (`GET /v3/OS-REVOKE/events`), and Keystone's matching
 * rules, taken from its code (`revoke/backends/sql.py` `_list_token_events` and
 * `models/revoke_model.py` `matches` / `build_token_values`): an event revokes a token when
 * every field it sets matches and it was issued before the event —
 * - `issued_before` ≥ the token's `issued_at`;
 * - `user_id` is the token's user, trustor or trustee; `project_id` its project;
 *   `audit_id` its own audit id (`audit_ids[0]`);
 * - `domain_id` is the user's domain or the token's domain scope; `domain_scope_id` the
 *   domain scope; `expires_at` its expiry (to the second); `OS-TRUST:trust_id` its trust;
 *   `OS-OAUTH1:consumer_id` its consumer; `audit_chain_id` its parent audit id
 *   (`audit_ids[1]`); `role_id` one of its roles.
 * Keystone quirk kept: a project-scoped token has no "assignment domain" for `domain_id`
 * (Keystone's `build_token_values` overwrites it with the domain scope, none), so only the
 * user's domain matches there.
 *
 * Hot path: events are indexed by user, project and audit id (every event Keystone writes
 * sets at least one of them, or is kept aside as unindexed), and the verdict for a token
 * object is remembered until the event list changes (`generation`): a cache hit costs one
 * WeakMap read.
 */
import type { KeystoneToken } from "../keystone/token-body.js";

/** One event, as the feed lists it; times as epoch microseconds. */
export interface RevocationEvent {
  readonly userId?: string;
  readonly projectId?: string;
  readonly auditId?: string;
  readonly auditChainId?: string;
  readonly domainId?: string;
  readonly domainScopeId?: string;
  readonly roleId?: string;
  readonly trustId?: string;
  readonly consumerId?: string;
  /** Seconds since the epoch (Keystone compares expiry to the second). */
  readonly expiresAtSeconds?: number;
  readonly issuedBeforeMicros: number;
  readonly revokedAtMicros: number;
}

/** A token's fields the rules read (Keystone's `build_token_values`). */
export interface TokenValues {
  readonly userIds: readonly string[];
  readonly identityDomainId: string | undefined;
  readonly assignmentDomainId: string | undefined;
  readonly projectId: string | undefined;
  readonly auditId: string | undefined;
  readonly auditChainId: string | undefined;
  readonly roleIds: readonly string[];
  readonly trustId: string | undefined;
  readonly consumerId: string | undefined;
  readonly expiresAtSeconds: number;
  readonly issuedAtMicros: number;
}

/** ISO-8601 (Keystone's, with or without fraction and zone) → epoch microseconds; NaN if not. */
export function isoToMicros(text: string): number {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d:?\d\d)?$/.exec(text);
  if (!m) return NaN;
  const base = Date.parse(`${m[1] ?? ""}${m[3] === undefined ? "Z" : m[3]}`);
  if (Number.isNaN(base)) return NaN;
  return base * 1000 + Number((m[2] ?? "").padEnd(6, "0"));
}

function str(value: unknown): string | undefined {
  return typeof value === "string" && value.length > 0 ? value : undefined;
}

function rec(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null
    ? (value as Record<string, unknown>)
    : undefined;
}

/** Parses one event of the feed's JSON; undefined when it has no usable `issued_before`. */
export function parseEvent(raw: unknown): RevocationEvent | undefined {
  const e = rec(raw);
  if (!e) return undefined;
  const issuedBefore = isoToMicros(str(e["issued_before"]) ?? "");
  const revokedAt = isoToMicros(str(e["revoked_at"]) ?? "");
  if (Number.isNaN(issuedBefore)) return undefined;
  const expires = isoToMicros(str(e["expires_at"]) ?? "");
  const fields: Record<string, string | number> = {
    issuedBeforeMicros: issuedBefore,
    revokedAtMicros: Number.isNaN(revokedAt) ? issuedBefore : revokedAt,
  };
  const set = (key: string, value: string | undefined): void => {
    if (value !== undefined) fields[key] = value;
  };
  set("userId", str(e["user_id"]));
  set("projectId", str(e["project_id"]));
  set("auditId", str(e["audit_id"]));
  set("auditChainId", str(e["audit_chain_id"]));
  set("domainId", str(e["domain_id"]));
  set("domainScopeId", str(e["domain_scope_id"]));
  set("roleId", str(e["role_id"]));
  set("trustId", str(e["OS-TRUST:trust_id"] ?? e["trust_id"]));
  set("consumerId", str(e["OS-OAUTH1:consumer_id"] ?? e["consumer_id"]));
  if (!Number.isNaN(expires)) fields["expiresAtSeconds"] = Math.floor(expires / 1e6);
  return Object.freeze(fields) as unknown as RevocationEvent;
}

/** Keystone's `build_token_values` for a validated token body. */
export function tokenValues(token: KeystoneToken): TokenValues {
  const trust = rec(token["OS-TRUST:trust"]);
  const oauth = rec(token["OS-OAUTH1"]);
  const userIds = [token.user.id];
  const trustor = str(rec(trust?.["trustor_user"])?.["id"]);
  const trustee = str(rec(trust?.["trustee_user"])?.["id"]);
  if (trustor !== undefined) userIds.push(trustor);
  if (trustee !== undefined) userIds.push(trustee);
  return {
    userIds,
    identityDomainId: str(rec(token.user.domain)?.["id"]),
    // Keystone: the project's domain, then overwritten by the domain scope (none for a
    // project-scoped token).
    assignmentDomainId: str(rec(token.domain)?.["id"]),
    projectId: str(rec(token.project)?.["id"]),
    auditId: token.audit_ids[0],
    auditChainId: token.audit_ids.length > 1 ? token.audit_ids[1] : undefined,
    roleIds: (token.roles ?? []).map((r) => r.id),
    trustId: str(trust?.["id"]),
    consumerId: str(oauth?.["consumer_id"]),
    expiresAtSeconds: Math.floor(isoToMicros(token.expires_at) / 1e6),
    issuedAtMicros: isoToMicros(token.issued_at),
  };
}

/** Whether `event` revokes a token with `values`. */
export function matches(event: RevocationEvent, values: TokenValues): boolean {
  // Keystone's SQL filter: issued before the event; user, project and audit id.
  if (!(event.issuedBeforeMicros >= values.issuedAtMicros)) return false;
  if (event.userId !== undefined && !values.userIds.includes(event.userId)) return false;
  if (event.projectId !== undefined && event.projectId !== values.projectId) return false;
  if (event.auditId !== undefined && event.auditId !== values.auditId) return false;
  // revoke_model.matches
  if (
    event.domainId !== undefined &&
    event.domainId !== values.identityDomainId &&
    event.domainId !== values.assignmentDomainId
  ) {
    return false;
  }
  if (event.domainScopeId !== undefined && event.domainScopeId !== values.assignmentDomainId) {
    return false;
  }
  if (event.expiresAtSeconds !== undefined && event.expiresAtSeconds !== values.expiresAtSeconds) {
    return false;
  }
  if (event.trustId !== undefined && event.trustId !== values.trustId) return false;
  if (event.consumerId !== undefined && event.consumerId !== values.consumerId) return false;
  if (event.auditChainId !== undefined && event.auditChainId !== values.auditChainId) return false;
  if (event.roleId !== undefined && !values.roleIds.includes(event.roleId)) return false;
  return true;
}

/**
 * Whether `event` bears on the context (user and scope) of `answer`, whatever its tokens'
 * times and audit ids: an event naming only token-specific fields (audit id, audit chain,
 * expiry) does not; one naming the user, project, domain, role, trust or consumer that
 * `answer` has does. Contexts it bears on are dropped, so the next token of that user and
 * scope is put to Keystone (a removed role leaves an event, and the context's role list
 * must not outlive it).
 */
export function concernsContext(event: RevocationEvent, answer: KeystoneToken): boolean {
  if (!bearsOnContexts(event)) return false;
  const values = tokenValues(answer);
  const timeless: TokenValues = {
    ...values,
    issuedAtMicros: -Infinity,
    auditId: event.auditId,
    auditChainId: event.auditChainId,
    expiresAtSeconds: event.expiresAtSeconds ?? values.expiresAtSeconds,
  };
  return matches(event, timeless);
}

/**
 * How far before a context was learnt an event bearing on it still supersedes it, ms: room
 * for the clocks of the edge and Keystone to differ and for Keystone's answer to have been
 * computed before the edge asked. A context learnt within this time after a change is not
 * kept; its tokens are asked of Keystone until the margin has passed.
 */
export const CONTEXT_CHANGE_MARGIN_MS = 30_000;

/** Whether `event` sets a field a context has (not only a token's own audit ids or expiry). */
function bearsOnContexts(event: RevocationEvent): boolean {
  return (
    event.userId !== undefined ||
    event.projectId !== undefined ||
    event.domainId !== undefined ||
    event.domainScopeId !== undefined ||
    event.roleId !== undefined ||
    event.trustId !== undefined ||
    event.consumerId !== undefined
  );
}

function eventKey(e: RevocationEvent): string {
  return JSON.stringify(e);
}

/** The events known so far, indexed, with a memo of verdicts per token object. */
export class RevocationList {
  /** Changes whenever an event is added or dropped: memoised verdicts older than it are stale. */
  generation = 0;
  private readonly keys = new Map<string, RevocationEvent>();
  private readonly byUser = new Map<string, RevocationEvent[]>();
  private readonly byProject = new Map<string, RevocationEvent[]>();
  private readonly byAudit = new Map<string, RevocationEvent[]>();
  private unindexed: RevocationEvent[] = [];
  private readonly memo = new WeakMap<KeystoneToken, { generation: number; revoked: boolean }>();

  /** Events held. */
  get size(): number {
    return this.keys.size;
  }

  /** The latest `revoked_at` held, epoch µs (the feed's next `since`); undefined when none. */
  latestRevokedAtMicros(): number | undefined {
    let latest: number | undefined;
    for (const e of this.keys.values()) {
      if (latest === undefined || e.revokedAtMicros > latest) latest = e.revokedAtMicros;
    }
    return latest;
  }

  /** Adds events not held yet; returns those that were new. */
  add(events: readonly RevocationEvent[]): RevocationEvent[] {
    const added: RevocationEvent[] = [];
    for (const e of events) {
      const key = eventKey(e);
      if (this.keys.has(key)) continue;
      this.keys.set(key, e);
      added.push(e);
    }
    if (added.length > 0) {
      this.rebuild();
      this.generation++;
    }
    return added;
  }

  /** Drops events issued before `cutoffMicros` (no token they could revoke is still alive). */
  prune(cutoffMicros: number): number {
    let dropped = 0;
    for (const [key, e] of this.keys) {
      if (e.issuedBeforeMicros < cutoffMicros) {
        this.keys.delete(key);
        dropped++;
      }
    }
    if (dropped > 0) {
      this.rebuild();
      this.generation++;
    }
    return dropped;
  }

  /** Whether any held event revokes `token`; remembered per token object until the list changes. */
  isRevoked(token: KeystoneToken): boolean {
    if (this.keys.size === 0) return false;
    const m = this.memo.get(token);
    if (m !== undefined && m.generation === this.generation) return m.revoked;
    const revoked = this.check(token);
    this.memo.set(token, { generation: this.generation, revoked });
    return revoked;
  }

  /**
   * Whether a held event bears on `context` (see {@link concernsContext}) and was revoked
   * at or after `learntAtMs` − {@link CONTEXT_CHANGE_MARGIN_MS}: Keystone's answer the
   * context was learnt from may predate the change (a role removed, a user disabled), so it
   * must not answer new tokens. Checked when a context is stored and when one comes back
   * from memcached (another node may have learnt it before the change); contexts already
   * held in-process are purged when the event arrives.
   */
  supersedes(context: KeystoneToken, learntAtMs: number): boolean {
    if (this.keys.size === 0) return false;
    const sinceMicros = (learntAtMs - CONTEXT_CHANGE_MARGIN_MS) * 1000;
    // audit-indexed events never bear on contexts (see rebuild)
    for (const list of this.candidates(tokenValues(context), false)) {
      for (const e of list) {
        if (e.revokedAtMicros >= sinceMicros && concernsContext(e, context)) return true;
      }
    }
    return false;
  }

  /** The event that revokes `token`, if one does (no memo: for logs and tests). */
  check(token: KeystoneToken): boolean {
    const values = tokenValues(token);
    for (const list of this.candidates(values, true)) {
      for (const e of list) if (matches(e, values)) return true;
    }
    return false;
  }

  /** The indexed lists an event bearing on `values` can be in, then the unindexed ones. */
  private *candidates(
    values: TokenValues,
    byAudit: boolean,
  ): Generator<readonly RevocationEvent[]> {
    for (const u of values.userIds) {
      const list = this.byUser.get(u);
      if (list) yield list;
    }
    const project =
      values.projectId === undefined ? undefined : this.byProject.get(values.projectId);
    if (project) yield project;
    const audit =
      byAudit && values.auditId !== undefined ? this.byAudit.get(values.auditId) : undefined;
    if (audit) yield audit;
    yield this.unindexed;
  }

  private rebuild(): void {
    this.byUser.clear();
    this.byProject.clear();
    this.byAudit.clear();
    this.unindexed = [];
    const push = (map: Map<string, RevocationEvent[]>, key: string, e: RevocationEvent): void => {
      const list = map.get(key);
      if (list) list.push(e);
      else map.set(key, [e]);
    };
    for (const e of this.keys.values()) {
      // One index is enough: a token is checked against every list it could be in.
      if (e.userId !== undefined) push(this.byUser, e.userId, e);
      else if (e.projectId !== undefined) push(this.byProject, e.projectId, e);
      else if (e.auditId !== undefined && !bearsOnContexts(e)) push(this.byAudit, e.auditId, e);
      else this.unindexed.push(e);
    }
  }
}
