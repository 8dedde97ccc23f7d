/**
 * Version discovery that points clients back at the edge.
 *
 * Owns: rewriting Keystone's version documents (`GET /`, `GET /v3`) so that the links in
 * them name the edge's own Identity URL instead of the Keystone endpoint that answered:
 * a client (keystoneauth, keystonemiddleware) follows those links for every later call,
 * and they must keep it on the region's edge. Only `href` values under the endpoint's
 * Identity root are rewritten; a document that is not JSON passes unchanged.
 */

/** Whether `path` (no query) is a version discovery document. */
export function isDiscoveryPath(path: string): boolean {
  return path === "/" || path === "" || path === "/v3" || path === "/v3/";
}

/**
 * Rewrites every `href` under `upstreamRoot` (e.g. `http://keystone:5000` or
 * `https://k.example/identity`) to the same path under `edgeRoot`.
 */
export function rewriteDiscovery(body: string, upstreamRoot: string, edgeRoot: string): string {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    return body;
  }
  const from = upstreamRoot.replace(/\/+$/, "");
  const to = edgeRoot.replace(/\/+$/, "");
  const walk = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(walk);
    if (typeof value !== "object" || value === null) return value;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] =
        k === "href" && typeof v === "string" && (v === from || v.startsWith(`${from}/`))
          ? to + v.slice(from.length)
          : walk(v);
    }
    return out;
  };
  return JSON.stringify(walk(doc));
}
