/**
 * Owns: running the reference — Debian's unmodified keystonemiddleware auth_token wrapping a
 * header-echo WSGI app (`kmw_echo.py`) under uwsgi `--http11-socket` on a free loopback
 * port — and stopping it. Tests send the same request to it and to keystone-edge (in front
 * of a Node echo server) and compare what the two apps receive.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { KeystoneInfo } from "./client.js";
import { freePort } from "./keystone.js";

const ECHO_APP = fileURLToPath(new URL("./kmw_echo.py", import.meta.url));

/** auth_token options, by their paste.ini names. */
export type KmwConf = Record<string, string | boolean | number | readonly string[]>;

/** auth_token options for Keystone `info`, authenticating as `user` (password, default domain). */
export function kmwPasswordConf(
  info: KeystoneInfo,
  user: { readonly name: string; readonly password: string; readonly project: string },
): KmwConf {
  return {
    auth_type: "password",
    auth_url: info.url,
    www_authenticate_uri: info.url,
    username: user.name,
    password: user.password,
    project_name: user.project,
    user_domain_id: "default",
    project_domain_id: "default",
  };
}

export interface KmwHandle {
  readonly url: string;
  /** The uwsgi master's pid; its workers are its children. */
  readonly pid: number;
  stop(): Promise<void>;
}

/**
 * Starts keystonemiddleware + echo app (or, with `bare`, the echo app alone); resolves once
 * it answers.
 */
export async function startKeystonemiddleware(
  conf: KmwConf,
  processes = 1,
  options: {
    bare?: boolean;
    /** Threads per process. Default 4; a load test needs one per persistent connection. */
    threads?: number;
  } = {},
): Promise<KmwHandle> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "keystone-edge-kmw-"));
  const log = join(dir, "uwsgi.log");
  const env: NodeJS.ProcessEnv = {
    PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
    KMW_BARE: options.bare === true ? "1" : "0",
    KMW_CONF: JSON.stringify(
      Object.fromEntries(
        Object.entries(conf).map(([k, v]) => [k, Array.isArray(v) ? v.join(",") : String(v)]),
      ),
    ),
  };
  const child: ChildProcess = spawn(
    "/usr/bin/setpriv",
    [
      "--pdeathsig",
      "SIGKILL",
      "/usr/bin/uwsgi",
      "--plugin",
      "python3",
      "--http11-socket",
      `127.0.0.1:${port}`,
      "--wsgi-file",
      ECHO_APP,
      "--master",
      "--processes",
      String(processes),
      "--threads",
      String(options.threads ?? 4),
      "--die-on-term",
      "--need-app",
      "--enable-threads",
      "--buffer-size",
      "65535",
    ],
    { env, detached: true, stdio: ["ignore", openSync(log, "a"), openSync(log, "a")] },
  );
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.pid !== undefined) {
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        // already gone
      }
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) {
      const text = readFileSync(log, "utf8");
      await stop();
      throw new Error(`keystonemiddleware echo app exited during start:\n${text.slice(-3000)}`);
    }
    try {
      // Any HTTP answer (401 without a token) means the app is up.
      const res = await fetch(`${url}/`, { headers: { connection: "close" } });
      await res.arrayBuffer();
      break;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`keystonemiddleware echo app did not answer on ${url}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { url, pid: child.pid ?? -1, stop };
}
