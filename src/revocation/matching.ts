/**
 * Keystone's revocation matching rules, taken from its code (`revoke/backends/sql.py`
 * `_list_token_events` and `models/revoke_model.py` `matches` / `build_token_values`).
 *
 * Owns: whether an event revokes a token — every field it sets matches and the token was
 * issued before the event:
 * - `issued_before` ≥ the token's `issued_at`;
 * - `user_id` is the token's user, trustor or trustee; `project_id` its project;
 *   `audit_id` its own audit id (`audit_ids[0]`);
 * - `domain_id` is the user's domain or the token's domain scope; `domain_scope_id` the
 *   domain scope; `expires_at` its expiry (to the second); `OS-TRUST:trust_id` its trust;
 *   `OS-OAUTH1:consumer_id` its consumer; `audit_chain_id` its parent audit id
 *   (`audit_ids[1]`); `role_id` one of its roles.
 * Keystone quirk kept: a project-scoped token has no "assignment domain" for `domain_id`
 * (Keystone's `build_token_values` overwrites it with the domain scope, none), so only the
 * user's domain matches there. And whether an event bears on a context (user and scope),
 * whatever its tokens' times: what the context cache must drop.
 */
import type { KeystoneToken } from "../token/body.js";
import { tokenValues, type EventFields, type TokenValues } from "./event.js";

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
export function concernsValues(event: EventFields, values: TokenValues): boolean {
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
export function bearsOnContexts(event: EventFields): boolean {
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
