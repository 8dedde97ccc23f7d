/**
 * The revocation list's index: every held event filed under its most selective field.
 *
 * Owns: how events are filed and found. Each event is filed once, for token checks, under
 * the first field it sets of audit id, audit chain, user, project, trust, consumer, domain
 * scope, domain, role, expiry (an event setting none is "unfiled": it revokes every older
 * token); an event that bears on contexts but is filed under a field a context does not
 * have (an audit chain revoked on a project) is also filed for contexts. A token looks up
 * each of its own values once: O(candidate events), never O(events held). Events with the
 * same fields share one {@link Held} (their `shapeOf`), with the latest times. A bucket is
 * one event (the usual case, no array) or several.
 */
import type { RevocationEvent, EventFields, TokenValues } from "./event.js";
import { bearsOnContexts, concernsValues, matches } from "./matching.js";

/** The token fields events are filed under, most selective first. */
export const TOKEN_KINDS = [
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
export type FieldKind = (typeof TOKEN_KINDS)[number];
/** The kinds a context (user + scope) has: those `supersedes` looks up. */
export const CONTEXT_KINDS: readonly FieldKind[] = [
  "user",
  "project",
  "trust",
  "consumer",
  "domainScope",
  "domain",
  "role",
];

export function keyOf(e: EventFields, kind: FieldKind): string | number | undefined {
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
export function tokenFiling(e: EventFields): FieldKind | undefined {
  return TOKEN_KINDS.find((kind) => keyOf(e, kind) !== undefined);
}

/**
 * Where an event bearing on contexts is filed for `supersedes` when its token filing is
 * not one a context looks up (an audit chain revoked on a project: filed by chain for
 * tokens, by project for contexts); undefined for every other event.
 */
export function contextFiling(e: EventFields): FieldKind | undefined {
  const filed = tokenFiling(e);
  if (filed === undefined || CONTEXT_KINDS.includes(filed)) return undefined;
  return CONTEXT_KINDS.find((kind) => keyOf(e, kind) !== undefined);
}

/**
 * The key of events with the same fields (times aside): length-prefixed, so no value can
 * pass for another field's.
 */
export function shapeOf(e: EventFields): string {
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
export class Held implements EventFields {
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
export type Bucket = Held | Held[];
export type Index = Record<FieldKind, Map<string | number, Bucket>>;

export function newIndex(): Index {
  const index = {} as Record<FieldKind, Map<string | number, Bucket>>;
  for (const kind of TOKEN_KINDS) index[kind] = new Map();
  return index;
}

export function file(map: Map<string | number, Bucket>, key: string | number, held: Held): void {
  const bucket = map.get(key);
  if (bucket === undefined) map.set(key, held);
  else if (Array.isArray(bucket)) bucket.push(held);
  else map.set(key, [bucket, held]);
}

/** Drops the removed events from the bucket under `key`. */
export function compact(map: Map<string | number, Bucket>, key: string | number): void {
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
export function anyFiled(
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
