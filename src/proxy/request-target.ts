/**
 * The one request target a request is judged and forwarded by.
 *
 * Owns: turning what a client wrote on the request line into the origin-form target
 * (`/path?query`) that access rules are checked against and the service receives
 * (RFC 9112 §3.2). Origin-form passes as written: dot segments, `//` and percent-escapes
 * are not normalised away, because a service may rightly hold them in a name (a Swift
 * object `a/../b`); where a path decides something at the edge — a token restricted by
 * access rules — a path with dot segments or bad escapes, which the service's server may
 * resolve differently, is refused instead (contract/access-rules.ts). Absolute-form
 * (`http://host/path`, which a server must accept, §3.2.2) becomes origin-form, its
 * authority replacing `Host`; asterisk-form only with `OPTIONS`; anything else (a relative
 * path, another scheme, userinfo, a fragment) is refused. `CONNECT` (authority-form) never
 * reaches here: the listeners refuse it.
 */

/** What the request line's target comes to. */
export type RequestTarget =
  | {
      readonly kind: "origin";
      /** `/path?query`, never empty, always starting with `/`. */
      readonly target: string;
      /** The authority of an absolute-form target: the request's `Host` from now on. */
      readonly authority: string | undefined;
    }
  /** `OPTIONS *`: a question to the server as a whole. */
  | { readonly kind: "asterisk" }
  | { readonly kind: "invalid"; readonly reason: string };

const ABSOLUTE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s;
/** `host[:port]`: a registered name, IPv4 or a bracketed IPv6 literal (RFC 3986 §3.2.2). */
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]{0,5})?$/;

/** Reads the request target of a request with `method`; `raw` is Node's `req.url`. */
export function readRequestTarget(method: string, raw: string): RequestTarget {
  if (raw.startsWith("/")) {
    if (raw.includes("#")) return invalid("a fragment in the request target");
    return { kind: "origin", target: raw, authority: undefined };
  }
  if (raw === "*") {
    return method === "OPTIONS"
      ? { kind: "asterisk" }
      : invalid("asterisk-form is only for OPTIONS");
  }
  const m = ABSOLUTE.exec(raw);
  if (m === null) return invalid("the request target is not origin-form or absolute-form");
  const scheme = (m[1] ?? "").toLowerCase();
  const authority = m[2] ?? "";
  const rest = m[3] ?? "";
  if (scheme !== "http" && scheme !== "https") return invalid(`scheme ${scheme} is not http(s)`);
  if (authority.includes("@")) return invalid("userinfo in the request target");
  if (!AUTHORITY.test(authority)) return invalid("no valid authority in the request target");
  if (rest.includes("#")) return invalid("a fragment in the request target");
  const target = rest === "" ? "/" : rest.startsWith("?") ? `/${rest}` : rest;
  return { kind: "origin", target, authority };
}

function invalid(reason: string): RequestTarget {
  return { kind: "invalid", reason };
}
