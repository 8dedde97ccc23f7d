/**
 * Which request and response headers stop at a proxy.
 *
 * Owns: the hop-by-hop list of RFC 9110 §7.6.1 (plus `proxy-connection` and `keep-alive`
 * seen in the wild, and `expect`, which this hop answers) and the headers a `Connection`
 * header names.
 */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  // Node answers `Expect: 100-continue` itself; undici refuses to send it on.
  "expect",
]);

/** Lower-case names listed in `Connection` header values (`close`, `keep-alive`, custom). */
export function connectionListed(
  value: string | string[] | undefined,
): ReadonlySet<string> | undefined {
  if (value === undefined) return undefined;
  const names = (Array.isArray(value) ? value.join(",") : value)
    .split(",")
    .map((n) => n.trim().toLowerCase())
    .filter((n) => n.length > 0);
  return names.length > 0 ? new Set(names) : undefined;
}

/** Whether `lowerName` must not be forwarded. */
export function isHopByHop(lowerName: string, listed: ReadonlySet<string> | undefined): boolean {
  return HOP_BY_HOP.has(lowerName) || (listed?.has(lowerName) ?? false);
}
