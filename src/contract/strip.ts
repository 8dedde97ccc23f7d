/**
 * The identity headers a client must never be able to send.
 *
 * Owns: the list keystonemiddleware's `_AuthTokenRequest._all_auth_headers()` strips on every
 * request (contract §6), plus `OpenStack-System-Scope`, which keystonemiddleware sets but
 * forgets to strip, and the fast membership test the proxy runs on every client header.
 *
 * keystonemiddleware strips WSGI environ keys (`HTTP_X_ROLES`), i.e. after the WSGI server has
 * folded case and turned `-` into `_`. An HTTP edge sees raw names, and the service's WSGI
 * server behind it maps a client's `X_Roles` to the same `HTTP_X_ROLES` as `X-Roles`. So
 * {@link isIdentityHeader} also matches every `-`/`_` spelling of each name.
 */

/** keystonemiddleware's `_HEADER_TEMPLATE`, `%s` = `""` (user) or `"-Service"` (service token). */
const TEMPLATES = [
  "X%s-Domain-Id",
  "X%s-Domain-Name",
  "X%s-Project-Id",
  "X%s-Project-Name",
  "X%s-Project-Domain-Id",
  "X%s-Project-Domain-Name",
  "X%s-User-Id",
  "X%s-User-Name",
  "X%s-User-Domain-Id",
  "X%s-User-Domain-Name",
] as const;

const PREFIXES = ["", "-Service"] as const;

function allAuthHeaders(): string[] {
  // Same order as _all_auth_headers(): catalog, the two statuses, admin project, the
  // deprecated map, itertools.product(templates, prefixes), then the two roles headers.
  const names = [
    "X-Service-Catalog",
    "X-Identity-Status",
    "X-Service-Identity-Status",
    "X-Is-Admin-Project",
    "X-Role",
    "X-User",
    "X-Tenant-Id",
    "X-Tenant-Name",
    "X-Tenant",
  ];
  for (const template of TEMPLATES) {
    for (const prefix of PREFIXES) names.push(template.replace("%s", prefix));
  }
  for (const prefix of PREFIXES) names.push(`X${prefix}-Roles`);
  return names;
}

/**
 * keystonemiddleware's `_all_auth_headers()`, in its order and casing (31 names): what
 * auth_token removes from every request before it sets anything.
 */
export const KEYSTONEMIDDLEWARE_STRIPPED: readonly string[] = Object.freeze(allAuthHeaders());

/** The header keystonemiddleware sets for system-scoped tokens but never strips. */
export const SYSTEM_SCOPE_HEADER = "OpenStack-System-Scope";

/**
 * Every identity header, lower-case (32 names): {@link KEYSTONEMIDDLEWARE_STRIPPED} plus
 * `openstack-system-scope`.
 */
export const IDENTITY_HEADERS: ReadonlySet<string> = new Set(
  [...KEYSTONEMIDDLEWARE_STRIPPED, SYSTEM_SCOPE_HEADER].map((n) => n.toLowerCase()),
);

/** Every spelling of `name` with each `-` kept or turned into `_`. */
function dashUnderscoreVariants(name: string): string[] {
  let variants = [""];
  for (const ch of name) {
    variants =
      ch === "-" ? variants.flatMap((v) => [`${v}-`, `${v}_`]) : variants.map((v) => v + ch);
  }
  return variants;
}

/** {@link IDENTITY_HEADERS} with all their `-`/`_` spellings (a WSGI server folds them). */
const IDENTITY_SPELLINGS: ReadonlySet<string> = new Set(
  [...IDENTITY_HEADERS].flatMap(dashUnderscoreVariants),
);

/**
 * Whether a client header must be dropped before forwarding: true for every identity header
 * and for any spelling a WSGI server would map onto one (`x_roles`, `x-user_id`).
 * One Set lookup, no allocation.
 *
 * @param lowerCaseName the header name, already lower-cased
 */
export function isIdentityHeader(lowerCaseName: string): boolean {
  return IDENTITY_SPELLINGS.has(lowerCaseName);
}
