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
 * Costs (hostile input: the list may hold a million events, on the loop serving the region):
 * - applying a poll is incremental: each new event is one map insert, one index insert and
 *   one heap push; nothing is rebuilt. Events with the same fields (a user disabled twice,
 *   Keystone's second-truncated duplicates) are held once, with the latest times: an event
 *   revokes a superset of what an earlier one with the same fields revokes.
 * - a token's check reads only the events filed under one of its own values: every event
 *   is filed under its most selective field (audit id, audit chain, user, project, trust,
 *   consumer, domain scope, domain, role, expiry), and the token looks up each of its values
 *   once; O(candidate events), never O(events held). The verdict is remembered per token
 *   object until the list changes (`generation`): a cache hit costs one WeakMap read.
 * - pruning by age and dropping at the cap pop the oldest events off a heap: O(k log n) for
 *   the k removed.
 *
 * Size: Keystone's matching rules, the index by most selective field and incremental
 * application share one representation of an event (to be split along those lines).
 */
import type { KeystoneToken } from "../token/body.js";
import { MinHeap } from "../min-heap.js";

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

/**
 * An event's fields as the rules read them: a parsed {@link RevocationEvent}, or one held
 * by the list (whose absent fields are `undefined`).
 */
export interface EventFields {
  readonly userId?: string | undefined;
  readonly projectId?: string | undefined;
  readonly auditId?: string | undefined;
  readonly auditChainId?: string | undefined;
  readonly domainId?: string | undefined;
  readonly domainScopeId?: string | undefined;
  readonly roleId?: string | undefined;
  readonly trustId?: string | undefined;
  readonly consumerId?: string | undefined;
  readonly expiresAtSeconds?: number | undefined;
  readonly issuedBeforeMicros: number;
  readonly revokedAtMicros: number;
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
export function matches(event: EventFields, values: TokenValues): boolean {
  // Keystone's SQL filter: issued before the event; user, project and audit id.
  if (!(event.issuedBeforeMicros >= values.issuedAtMicros)) return false;
  return fieldsMatch(event, values);
}

/** Whether every field `event` sets matches `values` (its time aside). */
function fieldsMatch(event: EventFields, values: TokenValues): boolean {
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
export function concernsContext(event: EventFields, answer: KeystoneToken): boolean {
  return bearsOnContexts(event) && concernsValues(event, tokenValues(answer));
}

/**
 * {@link concernsContext} for a batch of events, as a predicate over contexts (the feed's
 * purge after a poll): events that bear on no context (token revocations by audit id, the
 * bulk of any feed) are set aside once, and each context's values are computed once, not
 * once per event.
 */
export function concernsAnyContext(
  events: readonly EventFields[],
): (context: KeystoneToken) => boolean {
  const relevant = events.filter(bearsOnContexts);
  if (relevant.length === 0) return () => false;
  return (context) => {
    const values = tokenValues(context);
    return relevant.some((e) => concernsValues(e, values));
  };
}

/** Whether `event` (bearing on contexts) matches a context with `values`, timelessly. */
function concernsValues(event: EventFields, values: TokenValues): boolean {
  return fieldsMatch(event, {
    ...values,
    auditId: event.auditId,
    auditChainId: event.auditChainId,
    expiresAtSeconds: event.expiresAtSeconds ?? values.expiresAtSeconds,
  });
}

/**
 * How far before a context was learnt an event bearing on it still supersedes it, ms: room
 * for the clocks of the edge and Keystone to differ and for Keystone's answer to have been
 * computed before the edge asked. A context learnt within this time after a change is not
 * kept; its tokens are asked of Keystone until the margin has passed.
 */
export const CONTEXT_CHANGE_MARGIN_MS = 30_000;

/** Whether `event` sets a field a context has (not only a token's own audit ids or expiry). */
function bearsOnContexts(event: EventFields): boolean {
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

/** The token fields events are filed under, most selective first. */
const TOKEN_KINDS = [
  "audit",
  "chain",
  "user",
  "project",
  "trust",
  "consumer",
  "domainScope",
  "domain",
  "role",
  "expiry",
] as const;
type FieldKind = (typeof TOKEN_KINDS)[number];
/** The kinds a context (user + scope) has: those `supersedes` looks up. */
const CONTEXT_KINDS: readonly FieldKind[] = [
  "user",
  "project",
  "trust",
  "consumer",
  "domainScope",
  "domain",
  "role",
];

function keyOf(e: EventFields, kind: FieldKind): string | number | undefined {
  switch (kind) {
    case "audit":
      return e.auditId;
    case "chain":
      return e.auditChainId;
    case "user":
      return e.userId;
    case "project":
      return e.projectId;
    case "trust":
      return e.trustId;
    case "consumer":
      return e.consumerId;
    case "domainScope":
      return e.domainScopeId;
    case "domain":
      return e.domainId;
    case "role":
      return e.roleId;
    case "expiry":
      return e.expiresAtSeconds;
  }
}

/** Where an event is filed for token checks: its most selective field; none if it sets none. */
function tokenFiling(e: EventFields): FieldKind | undefined {
  return TOKEN_KINDS.find((kind) => keyOf(e, kind) !== undefined);
}

/**
 * Where an event bearing on contexts is filed for `supersedes` when its token filing is
 * not one a context looks up (an audit chain revoked on a project: filed by chain for
 * tokens, by project for contexts); undefined for every other event.
 */
function contextFiling(e: EventFields): FieldKind | undefined {
  const filed = tokenFiling(e);
  if (filed === undefined || CONTEXT_KINDS.includes(filed)) return undefined;
  return CONTEXT_KINDS.find((kind) => keyOf(e, kind) !== undefined);
}

/**
 * The key of events with the same fields (times aside): length-prefixed, so no value can
 * pass for another field's.
 */
function shapeOf(e: EventFields): string {
  let shape = "";
  TOKEN_KINDS.forEach((kind, tag) => {
    const value = keyOf(e, kind);
    if (value === undefined) return;
    const text = String(value);
    shape += `${String(tag)}.${String(text.length)}:${text}`;
  });
  return shape;
}

/** One held event: its fields, with the latest times of the events sharing them. */
class Held implements EventFields {
  readonly userId: string | undefined;
  readonly projectId: string | undefined;
  readonly auditId: string | undefined;
  readonly auditChainId: string | undefined;
  readonly domainId: string | undefined;
  readonly domainScopeId: string | undefined;
  readonly roleId: string | undefined;
  readonly trustId: string | undefined;
  readonly consumerId: string | undefined;
  readonly expiresAtSeconds: number | undefined;
  issuedBeforeMicros: number;
  revokedAtMicros: number;
  /** Set when pruned or dropped, until its buckets are compacted. */
  removed = false;

  constructor(e: RevocationEvent) {
    // every field assigned, in one order: one hidden class, monomorphic matching
    this.userId = e.userId;
    this.projectId = e.projectId;
    this.auditId = e.auditId;
    this.auditChainId = e.auditChainId;
    this.domainId = e.domainId;
    this.domainScopeId = e.domainScopeId;
    this.roleId = e.roleId;
    this.trustId = e.trustId;
    this.consumerId = e.consumerId;
    this.expiresAtSeconds = e.expiresAtSeconds;
    this.issuedBeforeMicros = e.issuedBeforeMicros;
    this.revokedAtMicros = e.revokedAtMicros;
  }
}

/** The events filed under one value: one (the usual case, no array) or several. */
type Bucket = Held | Held[];
type Index = Record<FieldKind, Map<string | number, Bucket>>;

function newIndex(): Index {
  const index = {} as Record<FieldKind, Map<string | number, Bucket>>;
  for (const kind of TOKEN_KINDS) index[kind] = new Map();
  return index;
}

function file(map: Map<string | number, Bucket>, key: string | number, held: Held): void {
  const bucket = map.get(key);
  if (bucket === undefined) map.set(key, held);
  else if (Array.isArray(bucket)) bucket.push(held);
  else map.set(key, [bucket, held]);
}

/** Drops the removed events from the bucket under `key`. */
function compact(map: Map<string | number, Bucket>, key: string | number): void {
  const bucket = map.get(key);
  if (bucket === undefined) return;
  if (!Array.isArray(bucket)) {
    if (bucket.removed) map.delete(key);
    return;
  }
  const kept = bucket.filter((h) => !h.removed);
  const [first] = kept;
  if (first === undefined) map.delete(key);
  else map.set(key, kept.length === 1 ? first : kept);
}

/**
 * Whether `held` is what a scan looks for: with `sinceMicros` undefined, an event revoking
 * a token with `values`; else an event bearing on a context with `values`, revoked at or
 * after `sinceMicros`. (No closures on this path: one check runs per cached token per poll.)
 */
function hit(held: Held, values: TokenValues, sinceMicros: number | undefined): boolean {
  if (sinceMicros === undefined) return matches(held, values);
  return (
    held.revokedAtMicros >= sinceMicros && bearsOnContexts(held) && concernsValues(held, values)
  );
}

function scanBucket(
  bucket: Bucket | undefined,
  values: TokenValues,
  sinceMicros: number | undefined,
): boolean {
  if (bucket === undefined) return false;
  if (!Array.isArray(bucket)) return hit(bucket, values, sinceMicros);
  for (const held of bucket) if (hit(held, values, sinceMicros)) return true;
  return false;
}

/** Whether an event of `index` filed under `kind` under one of `values`' own values hits. */
function anyFiled(
  index: Index,
  kind: FieldKind,
  values: TokenValues,
  sinceMicros: number | undefined,
): boolean {
  const map = index[kind];
  if (map.size === 0) return false;
  let key: string | number | undefined;
  switch (kind) {
    case "user":
      for (const user of values.userIds) {
        if (scanBucket(map.get(user), values, sinceMicros)) return true;
      }
      return false;
    case "role":
      for (const role of values.roleIds) {
        if (scanBucket(map.get(role), values, sinceMicros)) return true;
      }
      return false;
    case "domain":
      if (
        values.identityDomainId !== undefined &&
        scanBucket(map.get(values.identityDomainId), values, sinceMicros)
      ) {
        return true;
      }
      key =
        values.assignmentDomainId === values.identityDomainId
          ? undefined
          : values.assignmentDomainId;
      break;
    case "audit":
      key = values.auditId;
      break;
    case "chain":
      key = values.auditChainId;
      break;
    case "project":
      key = values.projectId;
      break;
    case "trust":
      key = values.trustId;
      break;
    case "consumer":
      key = values.consumerId;
      break;
    case "domainScope":
      key = values.assignmentDomainId;
      break;
    case "expiry":
      key = values.expiresAtSeconds;
      break;
  }
  return key !== undefined && scanBucket(map.get(key), values, sinceMicros);
}

/**
 * Whether events were ever dropped at the cap, and the newest times among them: a token
 * issued at or before `issuedBeforeMicros` may have been revoked by one, so it is treated as
 * revoked (see {@link RevocationList.capAt}).
 */
export type OverflowState =
  | { readonly kind: "within_cap" }
  | {
      readonly kind: "overflowed";
      /** Events dropped since the list last was within its cap. */
      readonly droppedEvents: number;
      /** The latest `issued_before` dropped, epoch µs. */
      readonly issuedBeforeMicros: number;
      /** The latest `revoked_at` dropped, epoch µs. */
      readonly revokedAtMicros: number;
    };

const WITHIN_CAP: OverflowState = Object.freeze({ kind: "within_cap" });

/** The events known so far, indexed, with a memo of verdicts per token object. */
export class RevocationList {
  private generationCount = 0;
  /** Every held event by its fields (duplicates and repeats fold into one). */
  private readonly shapes = new Map<string, Held>();
  /** Every held event, filed once under its most selective field. */
  private readonly byToken = newIndex();
  /** Events bearing on contexts whose token filing a context does not look up. */
  private readonly byContext = newIndex();
  /** Events that set no field (Keystone writes none): they revoke every older token. */
  private unfiled: Held[] = [];
  /** Oldest `issued_before` first (keys as pushed; a held event's may since have grown). */
  private readonly oldest = new MinHeap<Held>();
  private latestRevokedAt: number | undefined;
  /** Events issued before this were pruned: a late copy of one is not taken back. */
  private prunedBeforeMicros = -Infinity;
  private overflowState: OverflowState = WITHIN_CAP;
  /** `generation * 2 + revoked`, per token object: no allocation per verdict. */
  private readonly memo = new WeakMap<KeystoneToken, number>();

  /** Changes whenever the verdicts may have: an event added, pruned or dropped. */
  get generation(): number {
    return this.generationCount;
  }

  /** Events held (events with the same fields count once). */
  get size(): number {
    return this.shapes.size;
  }

  /** Whether events were dropped at the cap (and which tokens are refused for it). */
  overflow(): OverflowState {
    return this.overflowState;
  }

  /**
   * The latest `revoked_at` ever added, epoch µs (the feed's next `since`); undefined
   * before any. Pruning does not lower it: what came before was fetched already.
   */
  latestRevokedAtMicros(): number | undefined {
    return this.latestRevokedAt;
  }

  /**
   * Applies `events`: each is one insert, nothing is rebuilt. Returns those that changed
   * something (new fields, or later times for fields held); duplicates and events older
   * than the last prune are ignored. `local`: events the edge made itself (a token revoked
   * through its Identity face, ahead of Keystone's own event): their `revoked_at` is the
   * edge's clock, not Keystone's, so it does not move where the feed asks from.
   */
  add(events: readonly RevocationEvent[], { local = false } = {}): RevocationEvent[] {
    const added: RevocationEvent[] = [];
    for (const e of events) {
      if (!(e.issuedBeforeMicros >= this.prunedBeforeMicros)) continue;
      if (
        !local &&
        (this.latestRevokedAt === undefined || e.revokedAtMicros > this.latestRevokedAt)
      ) {
        this.latestRevokedAt = e.revokedAtMicros;
      }
      const shape = shapeOf(e);
      const held = this.shapes.get(shape);
      if (held !== undefined) {
        // Same fields: the later issued_before revokes every token the earlier did. The
        // heap keeps the old key; pruning and the cap re-key it when they reach it.
        let changed = false;
        if (e.issuedBeforeMicros > held.issuedBeforeMicros) {
          held.issuedBeforeMicros = e.issuedBeforeMicros;
          changed = true;
        }
        if (e.revokedAtMicros > held.revokedAtMicros) {
          held.revokedAtMicros = e.revokedAtMicros;
          changed = true;
        }
        if (changed) added.push(e);
        continue;
      }
      const fresh = new Held(e);
      this.shapes.set(shape, fresh);
      const kind = tokenFiling(fresh);
      const key = kind === undefined ? undefined : keyOf(fresh, kind);
      if (kind === undefined || key === undefined) this.unfiled.push(fresh);
      else file(this.byToken[kind], key, fresh);
      const contextKind = contextFiling(fresh);
      const contextKey = contextKind === undefined ? undefined : keyOf(fresh, contextKind);
      if (contextKind !== undefined && contextKey !== undefined) {
        file(this.byContext[contextKind], contextKey, fresh);
      }
      this.oldest.push(fresh.issuedBeforeMicros, fresh);
      added.push(e);
    }
    if (added.length > 0) this.generationCount++;
    return added;
  }

  /**
   * Drops events issued before `cutoffMicros` (no token they could revoke is still alive:
   * see revocation/retention); returns how many. O(k log n) for the k dropped.
   */
  prune(cutoffMicros: number): number {
    if (cutoffMicros > this.prunedBeforeMicros) this.prunedBeforeMicros = cutoffMicros;
    const gone: Held[] = [];
    for (;;) {
      const key = this.oldest.peekKey();
      if (key === undefined || !(key < cutoffMicros)) break;
      const held = this.oldest.pop() as Held;
      if (held.issuedBeforeMicros >= cutoffMicros) this.oldest.push(held.issuedBeforeMicros, held);
      else gone.push(held);
    }
    this.remove(gone);
    let changed = gone.length > 0;
    const overflow = this.overflowState;
    if (overflow.kind === "overflowed" && overflow.issuedBeforeMicros < cutoffMicros) {
      // every token the dropped events could have revoked is past retention too
      this.overflowState = WITHIN_CAP;
      changed = true;
    }
    if (changed) this.generationCount++;
    return gone.length;
  }

  /**
   * Holds at most `maxEvents`, dropping the oldest beyond it; returns how many were dropped.
   *
   * Dropping an event would un-revoke the tokens it revokes, so the list fails closed
   * instead: every token issued at or before the latest `issued_before` dropped is treated
   * as revoked (and every context learnt before the latest `revoked_at` dropped as
   * superseded), until pruning passes that time. Keeping every event instead would let a
   * flood of revocations (any user can revoke their own tokens, one event each) grow the
   * heap until the process dies, taking the region's validation with it; dropping
   * silently would let a revoked token back in. Failing closed touches only the oldest
   * tokens: with the default cap of a million events, a flood must outpace ~280 events/s
   * for an hour before a token of the usual hour's lifetime is refused (the caller logs
   * and counts every drop: alert on it).
   */
  capAt(maxEvents: number): number {
    const gone: Held[] = [];
    let issuedBefore = -Infinity;
    let revokedAt = -Infinity;
    while (this.shapes.size - gone.length > maxEvents) {
      const key = this.oldest.peekKey();
      if (key === undefined) break;
      const held = this.oldest.pop() as Held;
      if (held.issuedBeforeMicros > key) {
        this.oldest.push(held.issuedBeforeMicros, held); // grew since pushed: not the oldest
        continue;
      }
      gone.push(held);
      issuedBefore = Math.max(issuedBefore, held.issuedBeforeMicros);
      revokedAt = Math.max(revokedAt, held.revokedAtMicros);
    }
    if (gone.length === 0) return 0;
    this.remove(gone);
    const before = this.overflowState;
    this.overflowState =
      before.kind === "overflowed"
        ? {
            kind: "overflowed",
            droppedEvents: before.droppedEvents + gone.length,
            issuedBeforeMicros: Math.max(before.issuedBeforeMicros, issuedBefore),
            revokedAtMicros: Math.max(before.revokedAtMicros, revokedAt),
          }
        : {
            kind: "overflowed",
            droppedEvents: gone.length,
            issuedBeforeMicros: issuedBefore,
            revokedAtMicros: revokedAt,
          };
    this.generationCount++;
    return gone.length;
  }

  /** Whether any held event revokes `token`; remembered per token object until the list changes. */
  isRevoked(token: KeystoneToken): boolean {
    if (this.shapes.size === 0 && this.overflowState.kind === "within_cap") return false;
    const base = this.generationCount * 2;
    const m = this.memo.get(token);
    if (m === base) return false;
    if (m === base + 1) return true;
    const revoked = this.check(token);
    this.memo.set(token, base + (revoked ? 1 : 0));
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
    const overflow = this.overflowState;
    if (this.shapes.size === 0 && overflow.kind === "within_cap") return false;
    const sinceMicros = (learntAtMs - CONTEXT_CHANGE_MARGIN_MS) * 1000;
    if (overflow.kind === "overflowed" && overflow.revokedAtMicros >= sinceMicros) return true;
    const values = tokenValues(context);
    // audit-, chain- and expiry-filed events bearing on contexts are in byContext too
    for (const kind of CONTEXT_KINDS) {
      if (anyFiled(this.byToken, kind, values, sinceMicros)) return true;
      if (anyFiled(this.byContext, kind, values, sinceMicros)) return true;
    }
    return false;
  }

  /** Whether a held event revokes `token`, or it is older than an event dropped at the cap (no memo). */
  check(token: KeystoneToken): boolean {
    const values = tokenValues(token);
    const overflow = this.overflowState;
    if (overflow.kind === "overflowed" && values.issuedAtMicros <= overflow.issuedBeforeMicros) {
      return true;
    }
    for (const kind of TOKEN_KINDS)
      if (anyFiled(this.byToken, kind, values, undefined)) return true;
    for (const held of this.unfiled) if (matches(held, values)) return true;
    return false;
  }

  /** Forgets `gone` (already off the heap): its fields' entry and its index buckets. */
  private remove(gone: readonly Held[]): void {
    if (gone.length === 0) return;
    // each bucket touched is compacted once, however many of its events went
    const touched = new Map<Map<string | number, Bucket>, Set<string | number>>();
    const touch = (index: Index, kind: FieldKind | undefined, held: Held): void => {
      const key = kind === undefined ? undefined : keyOf(held, kind);
      if (kind === undefined || key === undefined) return;
      const map = index[kind];
      const keys = touched.get(map);
      if (keys === undefined) touched.set(map, new Set([key]));
      else keys.add(key);
    };
    let unfiled = false;
    for (const held of gone) {
      held.removed = true;
      this.shapes.delete(shapeOf(held));
      const kind = tokenFiling(held);
      if (kind === undefined) unfiled = true;
      touch(this.byToken, kind, held);
      touch(this.byContext, contextFiling(held), held);
    }
    for (const [map, keys] of touched) for (const key of keys) compact(map, key);
    if (unfiled) this.unfiled = this.unfiled.filter((h) => !h.removed);
  }
}
