/**
 * The `--admin URL` argument of the commands that talk to a running edge's admin listener
 * (`drill`, `keys status --admin`).
 *
 * Owns: what such a URL must be (http:// or https://, no credentials in it) and the one
 * message a wrong one gets, with an example to copy.
 */
import { UsageError } from "../errors.js";

/** The example every message shows: the default `admin_listen`. */
export const ADMIN_URL_EXAMPLE = "http://127.0.0.1:9464";

/**
 * Checks an admin listener's URL and returns its base: origin and path, without a
 * trailing slash.
 *
 * @param option the option's name for messages (default `--admin`)
 * @throws UsageError `--admin must be a URL such as http://127.0.0.1:9464`; for a bare
 *   `host:port`, adds `(did you mean http://host:port?)`. Credentials in the URL are
 *   refused and never echoed.
 */
export function parseAdminUrl(text: string, option = "--admin"): string {
  let parsed: URL | undefined;
  try {
    parsed = new URL(text);
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) {
    // `127.0.0.1:9464`, `localhost:9464`, `[::1]:9464`: the scheme was left out.
    const hostPort = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):\d{1,5}$/.test(text);
    throw new UsageError(
      `${option} must be a URL such as ${ADMIN_URL_EXAMPLE}` +
        (hostPort ? ` (did you mean http://${text}?)` : ""),
    );
  }
  if (parsed.username !== "" || parsed.password !== "") {
    throw new UsageError(
      `${option}: give no credentials in the URL (the admin listener's reads need none; a drill's secret comes from --secret-file)`,
    );
  }
  return parsed.origin + parsed.pathname.replace(/\/+$/, "");
}
