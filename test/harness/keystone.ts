/**
 * Owns: the lifecycle of a throwaway, real Keystone for integration tests.
 *
 * `startKeystone()` creates a temp root (`$TMPDIR/keystone-edge-ks-XXXXXX`), starts a private
 * PostgreSQL cluster (run as the `postgres` user, 127.0.0.1 + a unix socket inside the root) and,
 * optionally, a private memcached (run as `memcache`, 127.0.0.1),
 * writes keystone.conf (Fernet tokens), runs keystone-manage (db_sync, fernet_setup,
 * credential_setup, bootstrap), serves Keystone with uwsgi (`--http11-socket`, keep-alive) on
 * 127.0.0.1, waits for `GET /v3`, and grants the admin user the admin role on the `default`
 * domain so domain-scoped tokens can be issued. `stop()` tears it all down.
 *
 * Processes are never left behind: every server runs in its own process group and is
 * killed on `stop()`, on process exit and on SIGINT/SIGTERM/SIGHUP; in addition each server
 * is exec'd through `setpriv --pdeathsig` so it is signalled even if this process is SIGKILLed.
 *
 * Only node: built-ins and global fetch are used.
 */
import { spawn, execFile } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import {
  debianPythonEnv,
  issueToken,
  keystoneManage,
  validateToken,
  type IssuedToken,
  type KeystoneInfo,
  type TokenScope,
  type ValidateOptions,
  type ValidateResult,
} from "./client.js";
import { freePort, memcachedAnswers } from "./net.js";

/**
 * Keystone 22's default `[auth] methods`. Written out here on purpose rather than imported
 * from src/: the harness configures the real Keystone, and must not inherit a mistake in
 * the code under test.
 */
export const DEFAULT_AUTH_METHODS: readonly string[] = [
  "external",
  "password",
  "token",
  "oauth1",
  "mapped",
  "application_credential",
];

export { freePort };

const UWSGI = "/usr/bin/uwsgi";
const MEMCACHED = "/usr/bin/memcached";
const SETPRIV = "/usr/bin/setpriv";
const KEYSTONE_WSGI = "/usr/bin/keystone-wsgi-public";

/** keystone.conf contents: `{ section: { option: value } }`. */
export type KeystoneConfig = Record<string, Record<string, string | number | boolean>>;

/** Options for {@link startKeystone}. */
export interface StartKeystoneOptions {
  /** `[token] expiration` in seconds. Default 3600. */
  tokenExpiration?: number;
  /** `[auth] methods`. Default {@link DEFAULT_AUTH_METHODS}. */
  authMethods?: readonly string[];
  /** `[fernet_tokens] max_active_keys`. Default 3. */
  maxActiveKeys?: number;
  /** Admin password. Default: random. */
  adminPassword?: string;
  /** uwsgi worker processes. Default 2. */
  processes?: number;
  /**
   * Threads per uwsgi worker. Default 4. With `--http11-socket` an idle keep-alive connection
   * occupies a worker thread until uwsgi's socket timeout (4 s), so 1 thread per worker lets
   * two idle keep-alive clients stall everyone else for seconds.
   */
  threads?: number;
  /**
   * Keystone's `[cache]`. `"disabled"` (default): every validation hits PostgreSQL (~0.7 s per
   * `GET /v3/auth/tokens` on 2 cores). `"memcached"`: also start a private memcached on
   * 127.0.0.1 and use `oslo_cache.memcache_pool`, shared by all workers (~15 ms per validation).
   */
  cache?: "disabled" | "memcached";
  /** Deadline for the whole start sequence, in ms. Default 180 000. */
  startTimeoutMs?: number;
  /**
   * Extra keystone.conf settings, `{ section: { option: value } }`, merged over the
   * harness defaults (e.g. `{ token: { allow_expired_window: 600 } }`). Default none.
   */
  extraConfig?: KeystoneConfig;
  /** PostgreSQL bin directory. Default: newest `/usr/lib/postgresql/<v>/bin`. */
  pgBinDir?: string;
  /** Progress messages (e.g. `console.log`). Default: silent. */
  log?: (msg: string) => void;
}

/** A running harness Keystone. All `KeystoneInfo` fields are available directly. */
export interface KeystoneHandle extends KeystoneInfo {
  /** Plain JSON copy of the connection info (what globalSetup provides to tests). */
  readonly info: KeystoneInfo;
  /** PostgreSQL port on 127.0.0.1 (trust auth, user `postgres`, database `keystone`). */
  readonly postgresPort: number;
  /** memcached port on 127.0.0.1 when `cache: "memcached"`, else `undefined`. */
  readonly memcachedPort: number | undefined;
  /** Log files inside `root`. */
  readonly logFiles: { keystone: string; uwsgi: string; postgres: string; memcached: string };
  /** Milliseconds `startKeystone` took. */
  readonly startupMs: number;
  /** Run `keystone-manage --config-file <configFile> ...args`; resolves to stdout. */
  keystoneManage(args: readonly string[]): Promise<string>;
  /** Password-auth token for the admin user (see {@link issueToken}). */
  issueToken(scope: TokenScope): Promise<IssuedToken>;
  /** `GET /v3/auth/tokens` (see {@link validateToken}). */
  validateToken(
    adminToken: string,
    subjectToken: string,
    opts?: ValidateOptions,
  ): Promise<ValidateResult>;
  /**
   * Stop uwsgi (SIGTERM), memcached (SIGTERM) and PostgreSQL (SIGINT), SIGKILL each process
   * group after 10 s, then remove `root`. Idempotent.
   */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------
// process bookkeeping and emergency cleanup

interface Managed {
  name: string;
  child: ChildProcess;
  exited: Promise<void>;
  hasExited: () => boolean;
}

interface LiveEntry {
  procs: Managed[];
  root: string;
  stop?: () => Promise<void>;
}

/** Everything that must die with this process: process groups and temp dirs. */
const live = new Set<LiveEntry>();
let exitHooksInstalled = false;
/** On a signal, how long graceful stops may take before everything is SIGKILLed. */
const SIGNAL_GRACE_MS = 8_000;
/** Marker file in each root: the pid of the Node process that owns it. */
const OWNER_FILE = "harness.pid";
const ROOT_PREFIX = "keystone-edge-ks-";

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: already gone
  }
}

/** Synchronous last resort (process 'exit'): SIGKILL every process group, remove temp dirs. */
function emergencyCleanup(): void {
  for (const entry of live) {
    for (const p of entry.procs) killGroup(p.child.pid, "SIGKILL");
    try {
      fs.rmSync(entry.root, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // best effort at exit
    }
  }
  live.clear();
}

async function stopAllGracefully(ms: number): Promise<void> {
  const stops = [...live].map((e) => (e.stop ? e.stop() : Promise.resolve()));
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(stops),
    new Promise((resolve) => (timer = setTimeout(resolve, ms))),
  ]);
  clearTimeout(timer);
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on("exit", emergencyCleanup);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = (): void => {
      const othersHandleIt = process.listenerCount(sig) > 1;
      // Graceful first (so servers reap their own workers), then the hard way. If another
      // listener exits the process meanwhile, the 'exit' hook does the hard way.
      void stopAllGracefully(SIGNAL_GRACE_MS).finally(() => {
        emergencyCleanup();
        if (!othersHandleIt) {
          // nobody else handles the signal: restore the default action and re-raise it
          process.removeListener(sig, onSignal);
          process.kill(process.pid, sig);
        }
      });
    };
    process.on(sig, onSignal);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Remove roots left behind by harness processes that died without cleaning up (e.g. SIGKILL;
 * their servers were already stopped by `setpriv --pdeathsig`).
 */
function sweepStaleRoots(): void {
  let names: string[];
  try {
    names = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(ROOT_PREFIX));
  } catch {
    return;
  }
  for (const name of names) {
    const dir = path.join(os.tmpdir(), name);
    try {
      const owner = Number(fs.readFileSync(path.join(dir, OWNER_FILE), "utf8").trim());
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && !isAlive(owner)) {
        fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      }
    } catch {
      // no owner file or unreadable: not ours to judge
    }
  }
}

function manage(name: string, child: ChildProcess): Managed {
  let done = false;
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      done = true;
      resolve();
    });
    child.once("error", () => {
      done = true;
      resolve();
    });
  });
  return { name, child, exited, hasExited: () => done || child.exitCode !== null };
}

async function waitExit(p: Managed, ms: number): Promise<boolean> {
  if (p.hasExited()) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => {
      resolve(false);
    }, ms);
  });
  const result = await Promise.race([p.exited.then(() => true), timeout]);
  clearTimeout(timer);
  return result;
}

/** Graceful signal to the leader; SIGKILL to its whole group after `graceMs`, and at the end. */
async function terminate(p: Managed, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  const pid = p.child.pid;
  if (pid === undefined) return;
  if (!p.hasExited()) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
    if (!(await waitExit(p, graceMs))) {
      killGroup(pid, "SIGKILL");
      await waitExit(p, 5_000);
    }
  }
  // stragglers (uwsgi workers, postgres backends) share the leader's process group
  killGroup(pid, "SIGKILL");
}

// ---------------------------------------------------------------------------
// small helpers

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function tail(file: string, lines = 40): string {
  try {
    const text = fs.readFileSync(file, "utf8");
    return text.split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

function lookupUser(name: string): { uid: number; gid: number } {
  const passwd = fs.readFileSync("/etc/passwd", "utf8");
  for (const line of passwd.split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f[2] !== undefined && f[3] !== undefined) {
      return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  }
  throw new Error(`system user '${name}' not found (is the postgresql package installed?)`);
}

function lookupUserOr(...names: string[]): { uid: number; gid: number } {
  for (const name of names) {
    try {
      return lookupUser(name);
    } catch {
      // try the next one
    }
  }
  throw new Error(`none of the system users ${names.join(", ")} exists`);
}

function countOccurrences(file: string, needle: string): number {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return 0;
  }
  return text.split(needle).length - 1;
}

function findPgBinDir(): string {
  const base = "/usr/lib/postgresql";
  let versions: string[] = [];
  try {
    versions = fs
      .readdirSync(base)
      .filter((v) => fs.existsSync(path.join(base, v, "bin", "postgres")))
      .sort((a, b) => Number(b) - Number(a));
  } catch {
    // fall through
  }
  const newest = versions[0];
  if (newest === undefined) {
    throw new Error(`no PostgreSQL server found under ${base} (run test/harness/install-deps.sh)`);
  }
  return path.join(base, newest, "bin");
}

interface RunOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  uid?: number;
  gid?: number;
  timeoutMs?: number;
}

/** Run a short-lived command; resolve stdout, reject with stderr on failure. */
function run(file: string, args: readonly string[], opts: RunOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        cwd: opts.cwd,
        env: opts.env,
        timeout: opts.timeoutMs ?? 120_000,
        killSignal: "SIGKILL",
        maxBuffer: 64 * 1024 * 1024,
        ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
        ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
      },
      (err, stdout, stderr) => {
        if (err) {
          reject(
            new Error(`${file} ${args.join(" ")} failed: ${err.message}\n${stderr}`, {
              cause: err,
            }),
          );
        } else resolve(stdout);
      },
    );
  });
}

function iniText(conf: KeystoneConfig): string {
  return Object.entries(conf)
    .map(
      ([section, opts]) =>
        `[${section}]\n` +
        Object.entries(opts)
          .map(([k, v]) => `${k} = ${String(v)}\n`)
          .join(""),
    )
    .join("\n");
}

/** Merge `extra` over `base`, section by section. */
function mergeConf(base: KeystoneConfig, extra: KeystoneConfig | undefined): KeystoneConfig {
  const out: KeystoneConfig = {};
  for (const [s, o] of Object.entries(base)) out[s] = { ...o };
  for (const [s, o] of Object.entries(extra ?? {})) out[s] = { ...(out[s] ?? {}), ...o };
  return out;
}

async function apiJson(
  method: string,
  url: string,
  token: string,
  expected: number[],
): Promise<unknown> {
  const res = await fetch(url, {
    method,
    headers: { accept: "application/json", "x-auth-token": token, connection: "close" },
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  if (!expected.includes(res.status)) {
    throw new Error(`${method} ${url} -> ${res.status}: ${text}`);
  }
  return text === "" ? null : (JSON.parse(text) as unknown);
}

// ---------------------------------------------------------------------------

/**
 * Start a private Keystone (Fernet tokens, PostgreSQL backend) listening on 127.0.0.1.
 *
 * Defaults: token expiration 3600 s, Keystone's default auth methods, max_active_keys 3,
 * random admin password, 2 uwsgi workers x 4 threads, cache disabled, 180 s start deadline;
 * the config also sets `[identity] password_hash_rounds = 4` (override via `extraConfig`).
 * On failure everything started so far is torn down and the error carries the tail of the
 * relevant logs.
 * Must run as root (PostgreSQL runs as `postgres`; Keystone and uwsgi as root).
 */
export async function startKeystone(opts: StartKeystoneOptions = {}): Promise<KeystoneHandle> {
  const t0 = Date.now();
  const deadline = t0 + (opts.startTimeoutMs ?? 180_000);
  const log = opts.log ?? ((): void => undefined);
  const authMethods = [...(opts.authMethods ?? DEFAULT_AUTH_METHODS)];
  const adminPassword = opts.adminPassword ?? randomBytes(18).toString("base64url");
  if (process.getuid?.() !== 0) {
    throw new Error("startKeystone must run as root (PostgreSQL is started as the postgres user)");
  }
  const pgBin = opts.pgBinDir ?? findPgBinDir();
  const pgUser = lookupUser("postgres");
  const pdeath = fs.existsSync(SETPRIV);

  sweepStaleRoots();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), ROOT_PREFIX));
  fs.chmodSync(root, 0o755); // the postgres user must traverse into root/pg
  fs.writeFileSync(path.join(root, OWNER_FILE), `${process.pid}\n`);
  const entry: LiveEntry = { procs: [], root };
  live.add(entry);
  installExitHooks();

  const files = {
    config: path.join(root, "keystone.conf"),
    keystoneLog: path.join(root, "keystone.log"),
    uwsgiLog: path.join(root, "uwsgi.log"),
    pgLog: path.join(root, "postgres.log"),
    memcachedLog: path.join(root, "memcached.log"),
  };
  const keyRepository = path.join(root, "fernet-keys");
  const pgDir = path.join(root, "pg");
  const pgData = path.join(pgDir, "data");

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      // reverse start order: uwsgi first (SIGTERM + --die-on-term), then postgres (SIGINT = fast
      // shutdown)
      for (const p of [...entry.procs].reverse()) {
        await terminate(p, p.name === "postgres" ? "SIGINT" : "SIGTERM", 10_000);
      }
      fs.rmSync(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
      live.delete(entry);
    })();
    return stopped;
  };
  entry.stop = stop;

  const checkDeadline = (what: string, logFile: string): void => {
    if (Date.now() > deadline) {
      throw new Error(`startKeystone: timed out ${what}\n--- ${logFile} ---\n${tail(logFile)}`);
    }
  };

  /** Spawn a long-running server in its own process group, with stdout+stderr to `logFile`. */
  const spawnServer = (
    name: string,
    file: string,
    args: string[],
    logFile: string,
    extra: { env: NodeJS.ProcessEnv; cwd: string; uid?: number; gid?: number; deathSig: string },
  ): Managed => {
    const fd = fs.openSync(logFile, "a");
    try {
      const [cmd, argv] = pdeath
        ? [SETPRIV, ["--pdeathsig", extra.deathSig, "--", file, ...args]]
        : [file, args];
      const child = spawn(cmd, argv, {
        cwd: extra.cwd,
        env: extra.env,
        stdio: ["ignore", fd, fd],
        detached: true, // own process group: lets us kill workers/backends together
        ...(extra.uid !== undefined ? { uid: extra.uid } : {}),
        ...(extra.gid !== undefined ? { gid: extra.gid } : {}),
      });
      child.unref(); // never keep the event loop alive; the exit hook kills it
      const m = manage(name, child);
      entry.procs.push(m);
      return m;
    } finally {
      fs.closeSync(fd);
    }
  };

  try {
    // --- PostgreSQL ------------------------------------------------------
    fs.mkdirSync(pgDir, { mode: 0o700 });
    fs.chownSync(pgDir, pgUser.uid, pgUser.gid);
    const pgEnv: NodeJS.ProcessEnv = {
      PATH: `${pgBin}:/usr/sbin:/usr/bin:/sbin:/bin`,
      LANG: "C.UTF-8",
      LC_ALL: "C.UTF-8",
      HOME: pgDir,
    };
    const pgAs = { cwd: pgDir, env: pgEnv, uid: pgUser.uid, gid: pgUser.gid };
    log(`keystone harness: initdb in ${pgData}`);
    await run(
      path.join(pgBin, "initdb"),
      // prettier-ignore
      [
        "-D", pgData, "--auth=trust", "-U", "postgres",
        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
      ],
      pgAs,
    );

    const pgPort = await freePort();
    const pg = spawnServer(
      "postgres",
      path.join(pgBin, "postgres"),
      // prettier-ignore
      [
        "-D", pgData,
        "-p", String(pgPort),
        "-c", "listen_addresses=127.0.0.1",
        "-c", `unix_socket_directories=${pgDir}`,
        "-c", "fsync=off",
        "-c", "synchronous_commit=off",
        "-c", "full_page_writes=off",
      ],
      files.pgLog,
      { ...pgAs, deathSig: "QUIT" },
    );
    for (;;) {
      if (pg.hasExited()) {
        throw new Error(
          `postgres exited during startup\n--- ${files.pgLog} ---\n${tail(files.pgLog)}`,
        );
      }
      const ready = await run(
        path.join(pgBin, "pg_isready"),
        ["-q", "-h", "127.0.0.1", "-p", String(pgPort), "-U", "postgres"],
        { cwd: root, env: pgEnv, timeoutMs: 10_000 },
      ).then(
        () => true,
        () => false,
      );
      if (ready) break;
      checkDeadline("waiting for PostgreSQL", files.pgLog);
      await sleep(100);
    }
    await run(
      path.join(pgBin, "createdb"),
      ["-h", "127.0.0.1", "-p", String(pgPort), "-U", "postgres", "keystone"],
      { cwd: root, env: pgEnv },
    );
    log(`keystone harness: postgres ready on 127.0.0.1:${pgPort}`);

    // --- memcached (optional) ----------------------------------------------
    let memcachedPort: number | undefined;
    if (opts.cache === "memcached") {
      memcachedPort = await freePort();
      const mcUser = lookupUserOr("memcache", "nobody");
      const mc = spawnServer(
        "memcached",
        MEMCACHED,
        ["-l", "127.0.0.1", "-p", String(memcachedPort), "-U", "0", "-m", "64", "-t", "2"],
        files.memcachedLog,
        { cwd: "/", env: { PATH: "/usr/bin:/bin" }, ...mcUser, deathSig: "TERM" },
      );
      while (!(await memcachedAnswers(memcachedPort, 1_000))) {
        if (mc.hasExited()) {
          const logTail = tail(files.memcachedLog);
          throw new Error(
            `memcached exited during startup\n--- ${files.memcachedLog} ---\n${logTail}`,
          );
        }
        checkDeadline("waiting for memcached", files.memcachedLog);
        await sleep(50);
      }
      log(`keystone harness: memcached ready on 127.0.0.1:${memcachedPort}`);
    }

    // --- keystone.conf + keystone-manage ---------------------------------
    let ksPort = await freePort();
    while (ksPort === pgPort || ksPort === memcachedPort) ksPort = await freePort();
    const url = `http://127.0.0.1:${ksPort}/v3`;
    const conf = mergeConf(
      {
        DEFAULT: { log_file: files.keystoneLog, use_stderr: false, debug: false },
        database: { connection: `postgresql+psycopg2://postgres@127.0.0.1:${pgPort}/keystone` },
        token: { provider: "fernet", expiration: opts.tokenExpiration ?? 3600 },
        fernet_tokens: {
          key_repository: keyRepository,
          max_active_keys: opts.maxActiveKeys ?? 3,
        },
        fernet_receipts: { key_repository: path.join(root, "fernet-receipts") },
        credential: { key_repository: path.join(root, "credential-keys") },
        auth: { methods: authMethods.join(",") },
        // bcrypt cost 4 (Keystone's minimum) instead of 12: password auth in ~50 ms, not ~300 ms
        identity: { password_hash_rounds: 4 },
        cache:
          memcachedPort === undefined
            ? { enabled: false }
            : {
                enabled: true,
                backend: "oslo_cache.memcache_pool",
                memcache_servers: `127.0.0.1:${memcachedPort}`,
              },
      },
      opts.extraConfig,
    );
    fs.writeFileSync(files.config, iniText(conf), { mode: 0o600 });

    const mgmt = { configFile: files.config, root };
    const owner = ["--keystone-user", "root", "--keystone-group", "root"];
    log("keystone harness: keystone-manage db_sync / fernet_setup / credential_setup");
    // the key repositories do not touch the database: run them alongside db_sync
    await Promise.all([
      keystoneManage(mgmt, ["db_sync"]),
      keystoneManage(mgmt, ["fernet_setup", ...owner]), // also initialises fernet_receipts
      keystoneManage(mgmt, ["credential_setup", ...owner]),
    ]);
    if (!fs.existsSync(path.join(root, "fernet-receipts", "0"))) {
      await keystoneManage(mgmt, ["receipt_setup", ...owner]);
    }
    checkDeadline("running keystone-manage", files.keystoneLog);
    log("keystone harness: keystone-manage bootstrap");
    // `--opt=value` form: a (random) password may start with "-", which argparse would
    // otherwise take for an option
    await keystoneManage(mgmt, [
      "bootstrap",
      `--bootstrap-password=${adminPassword}`,
      "--bootstrap-username=admin",
      "--bootstrap-project-name=admin",
      "--bootstrap-role-name=admin",
      "--bootstrap-service-name=keystone",
      "--bootstrap-region-id=RegionOne",
      `--bootstrap-public-url=${url}`,
      `--bootstrap-internal-url=${url}`,
    ]);

    // --- uwsgi -------------------------------------------------------------
    log(`keystone harness: starting uwsgi on 127.0.0.1:${ksPort}`);
    const uwsgi = spawnServer(
      "uwsgi",
      UWSGI,
      // prettier-ignore
      [
        "--plugin", "python3",
        "--http11-socket", `127.0.0.1:${ksPort}`,
        "--wsgi-file", KEYSTONE_WSGI,
        "--processes", String(opts.processes ?? 2),
        "--threads", String(opts.threads ?? 4),
        "--master",
        "--die-on-term", // SIGTERM = shut down (uwsgi's default is "reload")
        "--lazy-apps", // load Keystone in each worker, not in the master before fork
        "--need-app",
        "--no-orphans",
        "--enable-threads",
        "--buffer-size", "65535", // large X-Auth-Token/X-Subject-Token headers
        "--chdir", root,
      ],
      files.uwsgiLog,
      {
        cwd: root,
        env: debianPythonEnv({ OS_KEYSTONE_CONFIG_FILES: files.config }),
        deathSig: "TERM",
      },
    );

    const uwsgiFailure = (why: string): Error =>
      new Error(
        `startKeystone: ${why}\n--- ${files.uwsgiLog} ---\n${tail(files.uwsgiLog)}` +
          `\n--- ${files.keystoneLog} ---\n${tail(files.keystoneLog)}`,
      );
    for (;;) {
      if (uwsgi.hasExited()) throw uwsgiFailure("uwsgi exited during startup");
      const status = await fetch(url, {
        headers: { connection: "close" }, // do not pin a uwsgi thread with an idle connection
        signal: AbortSignal.timeout(5_000),
      }).then(
        async (r) => {
          await r.arrayBuffer();
          return r.status;
        },
        () => 0,
      );
      if (status === 200) break;
      if (Date.now() > deadline) {
        throw uwsgiFailure(`timed out waiting for GET ${url} (last status ${status})`);
      }
      await sleep(150);
    }
    // With --lazy-apps each worker imports Keystone itself; the first 200 only proves one did.
    // Give the others a little while so the first test does not pay for their start-up.
    const workers = opts.processes ?? 2;
    const warmDeadline = Math.min(deadline, Date.now() + 30_000);
    while (countOccurrences(files.uwsgiLog, "WSGI app 0 (mountpoint='') ready") < workers) {
      if (uwsgi.hasExited()) throw uwsgiFailure("uwsgi exited during startup");
      if (Date.now() > warmDeadline) break;
      await sleep(100);
    }

    const info: KeystoneInfo = {
      url,
      port: ksPort,
      root,
      configFile: files.config,
      keyRepository,
      adminUsername: "admin",
      adminPassword,
      authMethods,
    };

    // --- admin role on the default domain (for domain-scoped tokens) ---
    const sys = await issueToken(info, { kind: "system" });
    const adminRole = sys.body.token.roles?.find((r) => r.name === "admin");
    if (adminRole === undefined) {
      throw new Error(`system-scoped admin token has no 'admin' role: ${JSON.stringify(sys.body)}`);
    }
    await apiJson(
      "PUT",
      `${url}/domains/default/users/${sys.body.token.user.id}/roles/${adminRole.id}`,
      sys.token,
      [204],
    );

    const startupMs = Date.now() - t0;
    log(`keystone harness: ready at ${url} in ${startupMs} ms (root ${root})`);
    return {
      ...info,
      info: { ...info, authMethods: [...authMethods] },
      postgresPort: pgPort,
      memcachedPort,
      logFiles: {
        keystone: files.keystoneLog,
        uwsgi: files.uwsgiLog,
        postgres: files.pgLog,
        memcached: files.memcachedLog,
      },
      startupMs,
      keystoneManage: (args) => keystoneManage(mgmt, args),
      issueToken: (scope) => issueToken(info, scope),
      validateToken: (adminToken, subjectToken, vopts) =>
        validateToken(info, adminToken, subjectToken, vopts),
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
