/**
 * The identity headers keystonemiddleware's auth_token sets on a request.
 *
 * Owns: turning validated tokens into `[name, value]` pairs exactly as
 * `keystonemiddleware.auth_token` (`__init__.py` `process_request`, `_request.py`) and
 * keystoneauth1's `AccessInfoV3` would: names in keystonemiddleware's casing, values byte
 * for byte, and the decision whether a service token counts (`service_token_roles`,
 * `service_token_roles_required`).
 *
 * keystonemiddleware writes some headers with the value `None` (e.g. `X-Project-Id` for a
 * domain-scoped token, `OpenStack-System-Scope` for any non-system token): webob keeps the
 * environ key with a `None` value, which is "no such header" for every service and cannot
 * cross an HTTP hop, so they are simply absent here. The client's copies are stripped first
 * (see `strip.ts`), so absent really means absent.
 *
 * Hot path: a {@link PreparedToken} holds a token's frozen pair lists, built once (the
 * authenticator keeps them per context: validation/prepared-tokens.ts);
 * {@link injectHeaders} for a user token alone returns that frozen list itself.
 */
import type { KeystoneToken } from "../token/body.js";
import { accessRestrictionOf, type AccessRestriction } from "./access-rules.js";
import { serviceCatalogHeaderValue } from "./catalog.js";
import { SYSTEM_SCOPE_HEADER } from "./strip.js";

/** One header: `[name, value]`, name in keystonemiddleware's casing. */
export type HeaderPair = readonly [name: string, value: string];

/** The auth_token options that shape the headers. */
export interface InjectOptions {
  /** `include_service_catalog` (default true): set `X-Service-Catalog`. */
  readonly includeServiceCatalog: boolean;
  /** `service_token_roles` (default `["service"]`). */
  readonly serviceTokenRoles: readonly string[];
  /** `service_token_roles_required` (default false). */
  readonly serviceTokenRolesRequired: boolean;
}

/** A token that was presented but is not valid (Keystone said 404 / expired, or was
 * unreachable under `delay_auth_decision`). */
export const INVALID = "invalid";

const USER_STATUS = "X-Identity-Status";
const SERVICE_STATUS = "X-Service-Identity-Status";
const CONFIRMED = "Confirmed";
const INVALID_STATUS = "Invalid";

/** keystonemiddleware's `_HEADER_TEMPLATE`: header suffix and the AccessInfoV3 attribute. */
const TEMPLATE: readonly (readonly [suffix: string, read: (t: KeystoneToken) => unknown])[] = [
  ["-Domain-Id", (t) => field(t.domain, "id")],
  ["-Domain-Name", (t) => field(t.domain, "name")],
  ["-Project-Id", (t) => field(t.project, "id")],
  ["-Project-Name", (t) => field(t.project, "name")],
  ["-Project-Domain-Id", (t) => field(field(t.project, "domain"), "id")],
  ["-Project-Domain-Name", (t) => field(field(t.project, "domain"), "name")],
  ["-User-Id", (t) => field(t.user, "id")],
  ["-User-Name", (t) => field(t.user, "name")],
  ["-User-Domain-Id", (t) => field(t.user.domain, "id")],
  ["-User-Domain-Name", (t) => field(t.user.domain, "name")],
];

/** `_DEPRECATED_HEADER_MAP`: copy of the value of another user header (or absent with it). */
const DEPRECATED: readonly (readonly [name: string, source: string])[] = [
  ["X-Role", "X-Roles"],
  ["X-User", "X-User-Name"],
  ["X-Tenant-Id", "X-Project-Id"],
  ["X-Tenant-Name", "X-Project-Name"],
  ["X-Tenant", "X-Project-Name"],
];

/** `obj[key]` for a JSON object, else `undefined` (keystoneauth1's `_missingproperty`). */
function field(obj: unknown, key: string): unknown {
  return typeof obj === "object" && obj !== null
    ? (obj as Record<string, unknown>)[key]
    : undefined;
}

/** Python truthiness of a JSON value. */
function pyTruthy(value: unknown): boolean {
  if (value === null || value === undefined || value === false || value === 0 || value === "") {
    return false;
  }
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === "object") return Object.keys(value).length > 0;
  return true;
}

/** A header value as `str(x)` would be for the scalars Keystone sends; `None` → absent. */
function headerValue(value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return value ? "True" : "False";
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  return undefined;
}

/** AccessInfoV3.role_names, in Keystone's order. */
export function roleNames(token: KeystoneToken): string[] {
  const roles: unknown = token.roles;
  if (!Array.isArray(roles)) return [];
  return roles.map((r: unknown) => headerValue(field(r, "name")) ?? "");
}

/**
 * `_get_system_scope`: `"all"` for a token whose `system.all` is truthy, else `undefined`
 * (keystonemiddleware sets `None`).
 */
export function systemScope(token: KeystoneToken): string | undefined {
  return pyTruthy(field(token.system, "all")) ? "all" : undefined;
}

/** `_set_auth_headers` minus OpenStack-System-Scope: the roles header and the ten. */
function authHeaders(token: KeystoneToken, prefix: "" | "-Service"): [string, string][] {
  const out: [string, string][] = [[`X${prefix}-Roles`, roleNames(token).join(",")]];
  for (const [suffix, read] of TEMPLATE) {
    const value = headerValue(read(token));
    if (value !== undefined) out.push([`X${prefix}${suffix}`, value]);
  }
  return out;
}

function freezePairs(pairs: readonly (readonly [string, string])[]): readonly HeaderPair[] {
  return Object.freeze(pairs.map((p) => Object.freeze([p[0], p[1]] as const)));
}

/**
 * The headers keystonemiddleware sets for a valid user token (`set_user_headers`, then
 * `set_service_catalog_headers` when `includeServiceCatalog`), frozen:
 * `X-Identity-Status: Confirmed`, `X-Roles` (role names comma-joined in Keystone's order, `""`
 * when the token has none), `OpenStack-System-Scope: all` for a system-scoped token, each of
 * the ten `X-Domain-*`/`X-Project-*`/`X-User-*` headers that has a value for this scope,
 * `X-Is-Admin-Project` (`True` unless Keystone sent a falsy `is_admin_project`), the
 * deprecated `X-Role`/`X-User`/`X-Tenant-Id`/`X-Tenant-Name`/`X-Tenant` copies, and
 * `X-Service-Catalog` when the token carries a `catalog` (even an empty one: `[]`).
 */
export function userHeaders(
  token: KeystoneToken,
  includeServiceCatalog: boolean,
): readonly HeaderPair[] {
  const pairs: [string, string][] = [[USER_STATUS, CONFIRMED]];
  const auth = authHeaders(token, "");
  const scope = systemScope(token);
  pairs.push(...auth);
  if (scope !== undefined) pairs.push([SYSTEM_SCOPE_HEADER, scope]);
  // AccessInfoV3: token.get('is_admin_project', True): a JSON null is falsy, not "absent"
  const isAdminProject: unknown = token.is_admin_project;
  pairs.push([
    "X-Is-Admin-Project",
    isAdminProject === undefined || pyTruthy(isAdminProject) ? "True" : "False",
  ]);
  for (const [name, source] of DEPRECATED) {
    const found = auth.find((p) => p[0] === source);
    if (found !== undefined) pairs.push([name, found[1]]);
  }
  if (includeServiceCatalog && token.catalog !== undefined) {
    pairs.push(["X-Service-Catalog", serviceCatalogHeaderValue(token.catalog)]);
  }
  return freezePairs(pairs);
}

/**
 * The headers keystonemiddleware sets for a service token that counts (`set_service_headers`),
 * frozen: `X-Service-Identity-Status: Confirmed`, `X-Service-Roles`, the ten `X-Service-*`
 * that have a value, and `OpenStack-System-Scope: all` when the service token is
 * system-scoped. Note keystonemiddleware writes `OpenStack-System-Scope` (no `Service`
 * prefix) for the service token too, over the user's: {@link injectHeaders} reproduces that.
 */
export function serviceHeaders(token: KeystoneToken): readonly HeaderPair[] {
  const pairs: [string, string][] = [
    [SERVICE_STATUS, CONFIRMED],
    ...authHeaders(token, "-Service"),
  ];
  const scope = systemScope(token);
  if (scope !== undefined) pairs.push([SYSTEM_SCOPE_HEADER, scope]);
  return freezePairs(pairs);
}

/**
 * Whether the token holds one of `serviceTokenRoles` (`role_check_passed` in auth_token).
 * With `service_token_roles_required` a service token counts only then; without it any valid
 * service token counts. Either way only a passing token lets keystonemiddleware validate the
 * user token with `allow_expired`.
 */
export function serviceTokenRolesMatch(
  token: KeystoneToken,
  serviceTokenRoles: readonly string[],
): boolean {
  if (serviceTokenRoles.length === 0) return false;
  return roleNames(token).some((name) => serviceTokenRoles.includes(name));
}

/** Everything the header contract needs from one validated token, computed once, frozen. */
export class PreparedToken {
  /** The validated token. */
  readonly token: KeystoneToken;
  /** {@link userHeaders} for the `includeServiceCatalog` it was prepared with. */
  readonly user: readonly HeaderPair[];
  /** {@link serviceHeaders}. */
  readonly service: readonly HeaderPair[];
  /** Role names, Keystone's order. */
  readonly roleNames: readonly string[];
  /** Whether `user` carries `OpenStack-System-Scope`. */
  readonly systemScoped: boolean;
  /** The `includeServiceCatalog` `user` was built with. */
  readonly includeServiceCatalog: boolean;
  /** Its application credential's access rules; `undefined` when it has none (most tokens). */
  readonly accessRestriction: AccessRestriction | undefined;

  /**
   * @param token a token Keystone validated
   * @param includeServiceCatalog auth_token's `include_service_catalog`
   * @param sameHeadersAs a token prepared before whose headers `token`'s are by
   *   construction (one answered from the same context: every field the headers read is
   *   the context's, validation/context.ts); its frozen lists are shared, not rebuilt.
   */
  constructor(token: KeystoneToken, includeServiceCatalog: boolean, sameHeadersAs?: PreparedToken) {
    this.token = token;
    this.includeServiceCatalog = includeServiceCatalog;
    if (
      sameHeadersAs !== undefined &&
      sameHeadersAs.includeServiceCatalog === includeServiceCatalog
    ) {
      this.user = sameHeadersAs.user;
      this.service = sameHeadersAs.service;
      this.roleNames = sameHeadersAs.roleNames;
      this.systemScoped = sameHeadersAs.systemScoped;
      this.accessRestriction = sameHeadersAs.accessRestriction;
    } else {
      this.user = userHeaders(token, includeServiceCatalog);
      this.service = serviceHeaders(token);
      this.roleNames = Object.freeze(roleNames(token));
      this.systemScoped = systemScope(token) !== undefined;
      this.accessRestriction = accessRestrictionOf(token);
    }
    Object.freeze(this);
  }
}

/**
 * What keystonemiddleware made of a presented token: a validated one (raw or prepared),
 * {@link INVALID}, or `null` when the request carried no such token.
 */
export type TokenState = KeystoneToken | PreparedToken | typeof INVALID | null;

/** The outcome of {@link injectHeaders}. */
export interface InjectResult {
  /**
   * keystonemiddleware lets the request through: the user token is valid and the service
   * token, if any, is `Confirmed`. When false it answers 401 unless `delay_auth_decision`, in
   * which case it forwards with {@link InjectResult.headers}.
   */
  readonly authenticated: boolean;
  /** The identity headers to add, after stripping the client's. */
  readonly headers: readonly HeaderPair[];
}

const USER_INVALID: readonly HeaderPair[] = freezePairs([[USER_STATUS, INVALID_STATUS]]);
const USER_AND_SERVICE_INVALID: readonly HeaderPair[] = freezePairs([
  [USER_STATUS, INVALID_STATUS],
  [SERVICE_STATUS, INVALID_STATUS],
]);
const SERVICE_INVALID: HeaderPair = Object.freeze([SERVICE_STATUS, INVALID_STATUS] as const);

/**
 * The headers for a request whose user token is missing or invalid and whose service token is
 * absent (`serviceTokenInvalid` false) or invalid / not counting (true), as forwarded under
 * `delay_auth_decision`: `X-Identity-Status: Invalid` (and `X-Service-Identity-Status:
 * Invalid`). A valid service token with an invalid user token: use {@link injectHeaders}.
 */
export function invalidIdentityHeaders(serviceTokenInvalid = false): readonly HeaderPair[] {
  return serviceTokenInvalid ? USER_AND_SERVICE_INVALID : USER_INVALID;
}

function prepared(
  state: KeystoneToken | PreparedToken,
  includeServiceCatalog: boolean,
): PreparedToken {
  return state instanceof PreparedToken && state.includeServiceCatalog === includeServiceCatalog
    ? state
    : new PreparedToken(
        state instanceof PreparedToken ? state.token : state,
        includeServiceCatalog,
      );
}

/**
 * The identity headers keystonemiddleware's `AuthProtocol.process_request` leaves on a
 * request, for what validation made of its user token (`X-Auth-Token`, else
 * `X-Storage-Token`) and service token (`X-Service-Token`).
 *
 * - `X-Identity-Status`: `Confirmed` for a valid user token, else `Invalid` (also when there
 *   is no user token).
 * - A presented service token: `X-Service-Identity-Status` `Confirmed` when valid and it
 *   counts (any valid one without `serviceTokenRolesRequired`; with it only one holding one
 *   of `serviceTokenRoles`), else `Invalid`, which makes the request unauthenticated even
 *   with a valid user token.
 * - User headers ({@link userHeaders}) when the user token is valid, service headers
 *   ({@link serviceHeaders}) when the service token counts, whatever the other token.
 * - `OpenStack-System-Scope` comes from the service token whenever it counts (keystonemiddleware
 *   sets the shared header again in `set_service_headers`): a system-scoped user with a
 *   project-scoped service token loses it, a project-scoped user with a system-scoped service
 *   token gains it.
 *
 * A user token alone returns its prepared, frozen list without allocating.
 */
export function injectHeaders(
  user: TokenState,
  service: TokenState,
  options: InjectOptions,
): InjectResult {
  const userToken =
    user === null || user === INVALID ? undefined : prepared(user, options.includeServiceCatalog);
  let serviceToken: PreparedToken | undefined;
  let serviceStatus: "none" | "confirmed" | "invalid" = "none";
  if (service === INVALID) {
    serviceStatus = "invalid";
  } else if (service !== null) {
    const p = service instanceof PreparedToken ? service : new PreparedToken(service, false);
    const counts =
      !options.serviceTokenRolesRequired ||
      p.roleNames.some((name) => options.serviceTokenRoles.includes(name));
    serviceStatus = counts ? "confirmed" : "invalid";
    if (counts) serviceToken = p;
  }
  const authenticated = userToken !== undefined && serviceStatus !== "invalid";

  if (serviceToken === undefined) {
    if (userToken === undefined) {
      return { authenticated, headers: invalidIdentityHeaders(serviceStatus === "invalid") };
    }
    if (serviceStatus === "none") return { authenticated, headers: userToken.user };
    return { authenticated, headers: [...userToken.user, SERVICE_INVALID] };
  }
  // A counting service token: its headers, and its OpenStack-System-Scope replaces the user's.
  const headers: HeaderPair[] = [];
  if (userToken === undefined) {
    headers.push(...USER_INVALID);
  } else if (userToken.systemScoped) {
    for (const pair of userToken.user) if (pair[0] !== SYSTEM_SCOPE_HEADER) headers.push(pair);
  } else {
    headers.push(...userToken.user);
  }
  headers.push(...serviceToken.service);
  return { authenticated, headers };
}
