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
 *    else refused (also when the rules cost more than `DEFAULT_RULES_WORK_BUDGET` to try).
 * Paths match as keystonemiddleware's `_path_matches` builds its pattern: `*` one path
 * segment, `**` anything, `{name}` one segment, every other character as written into a
 * Python regular expression (so `.` is any character); path-pattern.ts runs that expression
 * in linear time, within bounds. The path is webob's `request.path` (`requestPathOf`):
 * percent-decoded, then quoted again; a path the services behind could read differently
 * (dot segments, bad escapes, no UTF-8) is refused.
 */
import type { KeystoneToken } from "../token/body.js";
import { compilePathPattern, type PathPattern, type PathPatternLimits } from "./path-pattern.js";

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
  | "no_service_type"
  | "service_not_in_catalog"
  | "no_matching_rule"
  | "malformed_rules"
  /** The path is not one every service reads alike (see `requestPathOf`). */
  | "ambiguous_path"
  /** No rule matched within the work budget (`DEFAULT_RULES_WORK_BUDGET`): patterns built to cost. */
  | "rules_too_costly";

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
  const path = requestPathOf(request.url);
  if (path === undefined) return "ambiguous_path";
  if (serviceType === "identity" && request.method === "GET" && path.endsWith("/v3/auth/tokens")) {
    return undefined;
  }
  if (restriction.catalogTypes?.has(serviceType) !== true) return "service_not_in_catalog";
  if (request.hasServiceToken) return undefined;
  let budget = DEFAULT_RULES_WORK_BUDGET;
  let costly = false;
  for (const rule of restriction.rules) {
    if (rule.method !== request.method || rule.service !== serviceType) continue;
    const { outcome, work } = compiledPattern(rule.path).measure(path, budget);
    if (outcome === "match") return undefined;
    costly ||= outcome === "over_budget";
    budget -= work;
    if (budget <= 0) return "rules_too_costly";
  }
  return costly ? "rules_too_costly" : "no_matching_rule";
}

/**
 * Most work (path-pattern.ts's `measure`: characters read + NFA nodes visited) checking one
 * request against all its rules may take; past it the request is refused. Four patterns
 * built to cost at their own cap (`DEFAULT_MAX_MATCH_WORK`); a realistic rule takes about
 * one unit per path character.
 */
export const DEFAULT_RULES_WORK_BUDGET = 4_000_000;

/** Compiled patterns kept (the oldest dropped first): requests with one credential share them. */
export const COMPILED_PATTERN_CACHE_SIZE = 128;
const compiled = new Map<string, PathPattern>();

/**
 * keystonemiddleware's `_path_matches`: whether `requestPath` matches the access-rule
 * `pattern` (see path-pattern.ts for the semantics and the bounds). Linear in the path;
 * a pattern Python's `re` refuses, one the edge does not run, or one beyond the bounds,
 * matches nothing.
 * @param limits bounds; default those of path-pattern.ts (1024-character pattern, 8 KiB
 *   path, 1,000,000 units of work), and the cache. With `limits`, compiled afresh.
 */
export function pathMatches(
  requestPath: string,
  pattern: string,
  limits?: PathPatternLimits,
): boolean {
  if (limits !== undefined) return compilePathPattern(pattern, limits).matches(requestPath);
  return compiledPattern(pattern).matches(requestPath);
}

/** `pattern` compiled with the default limits, from the cache. */
function compiledPattern(pattern: string): PathPattern {
  let matcher = compiled.get(pattern);
  if (matcher === undefined) {
    matcher = compilePathPattern(pattern);
    if (compiled.size >= COMPILED_PATTERN_CACHE_SIZE) {
      const oldest = compiled.keys().next();
      if (oldest.done !== true) compiled.delete(oldest.value);
    }
    compiled.set(pattern, matcher);
  }
  return matcher;
}

/** RFC 3986 unreserved characters and webob's `PATH_SAFE`: what `urllib.parse.quote` keeps. */
const QUOTE_SAFE = new Uint8Array(0x100);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/!$&'()*+,;=:@") {
  QUOTE_SAFE[c.charCodeAt(0)] = 1;
}
const HEX_DIGITS = "0123456789ABCDEF";
const UTF8 = new TextDecoder("utf-8", { fatal: true });

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/**
 * What keystonemiddleware matches rules against: webob's `request.path`, i.e. the WSGI
 * `PATH_INFO` (percent-decoded by the server), decoded as UTF-8 and percent-quoted again
 * (`urllib.parse.quote`, safe `/~!$&'()*+,;=:@`): ASCII, `%20` for a space, `%25` for `%`.
 * `undefined` when the path is not one every service would see alike, refused: an invalid
 * percent-escape (servers mangle them differently), a `.` or `..` segment (uwsgi resolves
 * them, so the service would route another path than the one checked), bytes that are no
 * UTF-8 (webob raises: keystonemiddleware fails the request), a character beyond Latin-1.
 */
export function requestPathOf(url: string): string | undefined {
  const q = url.indexOf("?");
  const raw = q === -1 ? url : url.slice(0, q);
  let plain = true;
  for (let i = 0; i < raw.length && plain; i++) plain = QUOTE_SAFE[raw.charCodeAt(i)] === 1;
  if (plain && !raw.includes(".")) return raw;
  const bytes = new Uint8Array(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c > 0xff) return undefined;
    if (c === 0x25) {
      const hi = hexValue(raw.charCodeAt(i + 1));
      const lo = hexValue(raw.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return undefined;
      bytes[n++] = hi * 16 + lo;
      i += 2;
    } else {
      bytes[n++] = c;
    }
  }
  const decoded = bytes.subarray(0, n);
  let segmentStart = 0;
  for (let i = 0; i <= n; i++) {
    if (i === n || decoded[i] === 0x2f) {
      const len = i - segmentStart;
      if (
        (len === 1 && decoded[segmentStart] === 0x2e) ||
        (len === 2 && decoded[segmentStart] === 0x2e && decoded[segmentStart + 1] === 0x2e)
      ) {
        return undefined;
      }
      segmentStart = i + 1;
    }
  }
  try {
    UTF8.decode(decoded);
  } catch {
    return undefined;
  }
  let out = "";
  for (const b of decoded) {
    out +=
      QUOTE_SAFE[b] === 1
        ? String.fromCharCode(b)
        : `%${HEX_DIGITS[b >> 4] ?? ""}${HEX_DIGITS[b & 15] ?? ""}`;
  }
  return out;
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
