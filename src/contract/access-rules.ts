/**
 * Application-credential access rules, enforced as keystonemiddleware's
 * `BaseAuthProtocol.validate_allowed_request` enforces them.
 *
 * Owns: whether a request may use a user token whose application credential carries
 * `access_rules` (a list of `{service, method, path}`). Keystone hands such tokens only to a
 * caller that announces access-rule support, and trusts it to refuse every request no rule
 * allows; the edge announces it, so it must refuse them too. The rules, in
 * keystonemiddleware's order:
 * 1. no application credential, or no `access_rules` → allowed;
 * 2. no `service_type` configured → refused (and a warning: the operator must set it);
 * 3. `identity` validating a token (`GET …/v3/auth/tokens`) → allowed;
 * 4. the token's catalog has no service of `service_type` → refused (no catalog counts as
 *    none: keystonemiddleware fails on a missing catalog; the edge refuses);
 * 5. a service token came with the request (a chain of service calls) → allowed;
 * 6. a rule with the request's method, `service_type` and a matching path → allowed;
 *    else refused.
 * Paths match as keystonemiddleware's `_path_matches` builds its pattern: `*` one path
 * segment, `**` anything, `{name}` one segment, every other character as written; against
 * the WSGI path (percent-decoded, Latin-1, no query), which is what webob's `request.path`
 * holds.
 */
import type { KeystoneToken } from "../keystone/token-body.js";

/** One access rule as Keystone renders it. */
export interface AccessRule {
  readonly service: string;
  readonly method: string;
  readonly path: string;
}

/** The access rules of a token's application credential (present and not null). */
export type AccessRestriction =
  | {
      readonly kind: "rules";
      readonly rules: readonly AccessRule[];
      /** Service types in the token's catalog; `undefined` without a catalog. */
      readonly catalogTypes: ReadonlySet<string> | undefined;
    }
  /** Rules that are not a list of `{service, method, path}` strings: nothing satisfies them. */
  | { readonly kind: "malformed" };

/** What a rule check needs of the request. */
export interface RuleRequest {
  readonly method: string;
  /** The request target as the client sent it (`/v2.1/servers?x=1`). */
  readonly url: string;
  /** The request carried a service token (any value, valid or not, as in keystonemiddleware). */
  readonly hasServiceToken: boolean;
}

/** Why a request was refused, for the log. */
export type RuleRefusal =
  "no_service_type" | "service_not_in_catalog" | "no_matching_rule" | "malformed_rules";

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The token's restriction, or `undefined` when it has none (rule 1). Malformed rules (not
 * a list of objects with string fields) become a restriction nothing satisfies.
 */
export function accessRestrictionOf(token: KeystoneToken): AccessRestriction | undefined {
  const appCred = token.application_credential;
  if (!isRecord(appCred) || Object.keys(appCred).length === 0) return undefined;
  const raw = appCred["access_rules"];
  if (raw === undefined || raw === null) return undefined;
  if (!Array.isArray(raw)) return MALFORMED;
  const rules: AccessRule[] = [];
  for (const rule of raw as unknown[]) {
    if (
      !isRecord(rule) ||
      typeof rule["service"] !== "string" ||
      typeof rule["method"] !== "string" ||
      typeof rule["path"] !== "string"
    ) {
      return MALFORMED;
    }
    rules.push({ service: rule["service"], method: rule["method"], path: rule["path"] });
  }
  const catalog: unknown = token.catalog;
  const catalogTypes = Array.isArray(catalog)
    ? new Set((catalog as unknown[]).map((s) => (isRecord(s) ? s["type"] : undefined)))
    : undefined;
  return Object.freeze({
    kind: "rules",
    rules: Object.freeze(rules),
    catalogTypes: catalogTypes as ReadonlySet<string> | undefined,
  });
}

const MALFORMED: AccessRestriction = Object.freeze({ kind: "malformed" });

/**
 * Whether the request may go on with this restricted token (`undefined`), or why not.
 * @param serviceType `auth_token.service_type`, the type of the service behind the edge.
 */
export function checkAccessRules(
  restriction: AccessRestriction,
  request: RuleRequest,
  serviceType: string | undefined,
): RuleRefusal | undefined {
  if (restriction.kind === "malformed") return "malformed_rules";
  if (serviceType === undefined || serviceType === "") return "no_service_type";
  const path = wsgiPath(request.url);
  if (serviceType === "identity" && request.method === "GET" && path.endsWith("/v3/auth/tokens")) {
    return undefined;
  }
  if (restriction.catalogTypes?.has(serviceType) !== true) return "service_not_in_catalog";
  if (request.hasServiceToken) return undefined;
  for (const rule of restriction.rules) {
    if (
      rule.method === request.method &&
      rule.service === serviceType &&
      pathMatches(path, rule.path)
    ) {
      return undefined;
    }
  }
  return "no_matching_rule";
}

const PATTERN_TOKEN =
  /(?<tag>\{[^}]*\})|(?<wild>\*(?=$|[^*]))|(?<recWild>\*\*)|(?<literal>[^{}*])/g;
const compiled = new Map<string, RegExp | null>();
const MAX_COMPILED = 1024;

/**
 * keystonemiddleware's `_path_matches`: the pattern becomes a regular expression piece by
 * piece, literal characters inserted as written (so `.` matches any character there too);
 * a pattern that is no valid expression matches nothing (keystonemiddleware would fail the
 * request).
 */
export function pathMatches(requestPath: string, pattern: string): boolean {
  let regex = compiled.get(pattern);
  if (regex === undefined) {
    let source = "";
    for (const m of pattern.matchAll(PATTERN_TOKEN)) {
      const g = m.groups ?? {};
      if (g["tag"] !== undefined || g["wild"] !== undefined) source += "[^\\/]+";
      if (g["recWild"] !== undefined) source += ".*";
      if (g["literal"] !== undefined) source += g["literal"];
    }
    try {
      // Python's `$` also matches before a final newline.
      regex = new RegExp(`^${source}\\n?$`);
    } catch {
      regex = null;
    }
    if (compiled.size < MAX_COMPILED) compiled.set(pattern, regex);
  }
  return regex !== null && regex.test(requestPath);
}

/** The WSGI `PATH_INFO` of a request target: no query, percent-decoded bytes read as Latin-1. */
export function wsgiPath(url: string): string {
  const q = url.indexOf("?");
  const raw = q === -1 ? url : url.slice(0, q);
  if (!raw.includes("%")) return raw;
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 && i + 2 < raw.length && /^[0-9A-Fa-f]{2}$/.test(raw.slice(i + 1, i + 3))) {
      bytes.push(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(c & 0xff);
    }
  }
  return Buffer.from(bytes).toString("latin1");
}
