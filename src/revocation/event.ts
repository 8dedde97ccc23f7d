/**
 * One Keystone revocation event, and the token values it is matched against.
 *
 * Owns: an event's shape as the feed lists it (`GET /v3/OS-REVOKE/events`, parsed here,
 * times as epoch microseconds), Keystone's `build_token_values` for a validated token, and
 * ISO-8601 → epoch µs. The rules that match one against the other are matching.ts.
 */
import type { KeystoneToken } from "../token/body.js";

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
