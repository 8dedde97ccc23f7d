/**
 * Which `Host` the admin listener answers to: its defence against DNS rebinding.
 *
 * Owns: the rule that a request to the admin listener names it by an IP literal,
 * `localhost`, or a name the operator listed (`admin_allowed_hosts`). A web page that
 * makes its own name resolve to 127.0.0.1 reaches a loopback admin API only under that
 * name, which is none of these: it gets 421 and learns nothing. Probes, Prometheus and
 * the CLI address the listener by IP or `localhost` and pass untouched.
 */
import { isIP } from "node:net";

/** Whether a `Host` header value names the admin listener acceptably. */
export function adminHostAllowed(
  host: string | undefined,
  allowedNames: ReadonlySet<string>,
): boolean {
  // HTTP/1.0 without Host: no browser sends that, so no rebinding can come that way.
  if (host === undefined || host === "") return true;
  let name: string;
  if (host.startsWith("[")) {
    const close = host.indexOf("]");
    if (close === -1) return false;
    name = host.slice(1, close);
    return isIP(name) === 6 && /^(?::[0-9]{1,5})?$/.test(host.slice(close + 1));
  }
  const colon = host.lastIndexOf(":");
  name = (colon === -1 ? host : host.slice(0, colon)).toLowerCase();
  if (colon !== -1 && !/^[0-9]{1,5}$/.test(host.slice(colon + 1))) return false;
  // A trailing dot names the same host: `localhost.` is still localhost.
  if (name.endsWith(".")) name = name.slice(0, -1);
  return isIP(name) === 4 || name === "localhost" || allowedNames.has(name);
}
