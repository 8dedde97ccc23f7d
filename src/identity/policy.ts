/**
 * Who may validate whose token: Keystone's default policy for `GET` and `HEAD
 * /v3/auth/tokens`, reproduced.
 *
 * Owns: the authorization decision of the regional Keystone face. Keystone 22's defaults
 * (`keystone/common/policies/token.py`), with the deprecated rules OR'ed in as oslo.policy
 * does while `enforce_new_defaults` is off (its default):
 *
 * - `identity:validate_token` (GET): `role:admin` or (`role:reader` and `system_scope:all`)
 *   or `role:service` or the caller's user is the subject's (`token_subject`);
 * - `identity:check_token` (HEAD): the same without `role:service`.
 *
 * Role names compare case-insensitively, as oslo.policy's `RoleCheck` does; a token's
 * roles already include the roles its roles imply (Keystone expands them into the token).
 * An operator who changed Keystone's policy must change this too: documented, not guessed.
 */
import type { KeystoneToken } from "../token/body.js";

/** The Identity API operation: `validate` for GET, `check` for HEAD. */
export type TokenApiAction = "validate" | "check";

/** Whether the holder of `caller` may `action` the token whose body is `subject`. */
export function mayInspectToken(
  action: TokenApiAction,
  caller: KeystoneToken,
  subject: KeystoneToken,
): boolean {
  const roles = new Set((caller.roles ?? []).map((r) => r.name.toLowerCase()));
  if (roles.has("admin")) return true;
  if (roles.has("reader") && caller.system?.all === true) return true;
  if (action === "validate" && roles.has("service")) return true;
  return caller.user.id === subject.user.id;
}
