/**
 * Owns: a second Keystone process for a running harness Keystone — another uwsgi serving
 * the same keystone.conf (same PostgreSQL database, same Fernet key repository) on its own
 * loopback port: a region-local Keystone beside the master, for failover tests. It can be
 * stopped and started again on the same port; it dies with the test process. Given a key
 * repository of its own (`keyRepository`), it signs and reads tokens with that one, which
 * `rotateKeys()` rotates with `keystone-manage fernet_rotate` (rotation tests, without
 * disturbing the shared harness Keystone's keys).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { debianPythonEnv, keystoneManage, type KeystoneInfo } from "./client.js";
import { freePort } from "./net.js";

export interface KeystoneReplica {
  /** Identity v3 URL, e.g. `http://127.0.0.1:41234/v3`. */
  readonly url: string;
  readonly running: boolean;
  /** SIGTERM to the uwsgi group (SIGKILL after 5 s); resolves once it is gone. */
  stop(): Promise<void>;
  /** Starts it again on the same port, resolving once it answers `GET /v3`. */
  start(): Promise<void>;
  /** Stops it for good and removes its directory. */
  close(): Promise<void>;
  /** `keystone-manage fernet_rotate` on its own key repository (only with `keyRepository`). */
  rotateKeys(): Promise<void>;
}

/** Options of {@link startKeystoneReplica}. */
export interface ReplicaOptions {
  /** A Fernet key repository of its own (`max_active_keys` 3). Default: the master's. */
  readonly keyRepository?: string;
  /**
   * Keystone's `[cache]` in this memcached (`host:port`): validations in milliseconds, as
   * production Keystone runs, instead of ~0.7 s. Default: the master's setting.
   */
  readonly cacheServer?: string;
  /**
   * uwsgi threads (one process). Default 8. `--http11-socket` holds a thread on each
   * keep-alive connection while it idles (up to uwsgi's socket timeout, 4 s): a client
   * keeping more connections than there are threads sees some of its requests wait
   * seconds for a thread. Give at least the connections its clients keep.
   */
  readonly threads?: number;
}

const children = new Set<ChildProcess>();
let hooked = false;
function killAll(): void {
  for (const c of children) {
    try {
      if (c.pid !== undefined) process.kill(-c.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

/** Starts a replica of `info`'s Keystone; resolves once it answers. */
export async function startKeystoneReplica(
  info: KeystoneInfo,
  options: ReplicaOptions = {},
): Promise<KeystoneReplica> {
  if (!hooked) {
    hooked = true;
    process.on("exit", killAll);
  }
  const port = await freePort();
  const url = `http://127.0.0.1:${String(port)}/v3`;
  const dir = mkdtempSync(join(tmpdir(), "keystone-edge-replica-"));
  const log = join(dir, "uwsgi.log");
  let child: ChildProcess | undefined;
  const override = join(dir, "override.conf");
  const overrides = [
    ...(options.keyRepository === undefined
      ? []
      : [`[fernet_tokens]\nkey_repository = ${options.keyRepository}\nmax_active_keys = 3\n`]),
    ...(options.cacheServer === undefined
      ? []
      : [
          `[cache]\nenabled = true\nbackend = oslo_cache.memcache_pool\nmemcache_servers = ${options.cacheServer}\n`,
        ]),
  ];
  if (overrides.length > 0) writeFileSync(override, overrides.join("\n"));
  const configFiles = overrides.length === 0 ? info.configFile : `${info.configFile};${override}`;

  const start = async (): Promise<void> => {
    // prettier-ignore
    const args = [
      "--pdeathsig", "SIGKILL", "/usr/bin/uwsgi",
      "--plugin", "python3",
      "--http11-socket", `127.0.0.1:${String(port)}`,
      "--wsgi-file", "/usr/bin/keystone-wsgi-public",
      "--processes", "1", "--threads", String(options.threads ?? 8),
      "--master", "--die-on-term", "--lazy-apps", "--need-app", "--no-orphans",
      "--enable-threads", "--buffer-size", "65535", "--chdir", dir,
    ];
    const c = spawn("/usr/bin/setpriv", args, {
      cwd: dir,
      env: debianPythonEnv({ OS_KEYSTONE_CONFIG_FILES: configFiles }),
      detached: true,
      stdio: ["ignore", openSync(log, "a"), openSync(log, "a")],
    });
    child = c;
    children.add(c);
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (c.exitCode !== null) {
        throw new Error(
          `Keystone replica exited:\n${existsSync(log) ? readFileSync(log, "utf8").slice(-3000) : ""}`,
        );
      }
      const ok = await fetch(url, {
        headers: { connection: "close" },
        signal: AbortSignal.timeout(5_000),
      }).then(
        async (r) => {
          await r.arrayBuffer();
          return r.status === 200;
        },
        () => false,
      );
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`Keystone replica did not answer at ${url}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  };

  const stop = async (): Promise<void> => {
    const c = child;
    if (c?.pid === undefined || c.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
    try {
      process.kill(-c.pid, "SIGTERM");
    } catch {
      // gone
    }
    const timer = setTimeout(() => {
      try {
        if (c.pid !== undefined) process.kill(-c.pid, "SIGKILL");
      } catch {
        // gone
      }
    }, 5_000);
    await exited;
    clearTimeout(timer);
    children.delete(c);
  };

  await start();
  return {
    url,
    get running() {
      return child !== undefined && child.exitCode === null;
    },
    stop,
    start,
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    rotateKeys: async () => {
      if (options.keyRepository === undefined)
        throw new Error("the replica has no key repository of its own");
      await keystoneManage(info, [
        "--config-file",
        override,
        "fernet_rotate",
        "--keystone-user",
        "root",
        "--keystone-group",
        "root",
      ]);
    },
  };
}
