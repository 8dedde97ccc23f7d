/**
 * Owns: a throwaway real memcached for integration tests (Debian's /usr/bin/memcached).
 *
 * `startMemcached()` picks a free port on 127.0.0.1, runs memcached there (as the `memcache`
 * user when it exists, else `-u root`; UDP off) and resolves once it answers `version`. The
 * handle can stop it, start it again on the same port, and pause/resume it (SIGSTOP /
 * SIGCONT: connections stay open but nothing is answered), so tests can take memcached
 * away mid-run. The server never outlives the test process: it runs under
 * `setpriv --pdeathsig KILL` when setpriv exists, and is SIGKILLed on process exit.
 *
 * Only node: built-ins are used.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { waitExit } from "./child.js";
import { freePort, memcachedAnswers } from "./net.js";

export { memcachedAnswers };

const MEMCACHED = "/usr/bin/memcached";
const SETPRIV = "/usr/bin/setpriv";
const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 3_000;

/** Options of {@link startMemcached}. */
export interface StartMemcachedOptions {
  /** Port on 127.0.0.1. Default: a free one. */
  readonly port?: number;
  /** Memory limit, MB (`-m`). Default 64. */
  readonly memoryMb?: number;
  /** Largest item, bytes (`-I`). Default memcached's 1 MiB. */
  readonly maxItemBytes?: number;
}

/** A running (or stopped) harness memcached. */
export interface MemcachedHandle {
  readonly host: "127.0.0.1";
  readonly port: number;
  /** `127.0.0.1:<port>`, as `cache.memcached_servers` lists it. */
  readonly address: string;
  /** The server process is alive (paused counts as alive). */
  readonly running: boolean;
  /** Stops it (SIGTERM, SIGKILL after 3 s); the port stays reserved for {@link start}. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty), resolving once it answers. */
  start(): Promise<void>;
  /**
   * SIGSTOP, resolving once the kernel reports the process stopped (signal delivery is
   * asynchronous): connections and the listen socket stay, nothing is answered.
   */
  pause(): Promise<void>;
  /** SIGCONT after {@link pause}, resolving once it runs again. */
  resume(): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of live) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  });
}

function systemUser(name: string): { uid: number; gid: number } | undefined {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f[0] === name && f[2] !== undefined && f[3] !== undefined) {
        return { uid: Number(f[2]), gid: Number(f[3]) };
      }
    }
  } catch {
    // no passwd file: run as ourselves
  }
  return undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Whether /proc says `pid` is stopped (state `T`); undefined when it cannot tell. */
function isStopped(pid: number): boolean | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) S ...": the state follows the last ')' (comm may hold parentheses)
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "T";
  } catch {
    return undefined;
  }
}

/** Waits (up to 2 s) until `pid` is stopped or running, as asked. */
async function waitState(pid: number, stopped: boolean): Promise<void> {
  const deadline = Date.now() + 2_000;
  for (;;) {
    const state = isStopped(pid);
    if (state === undefined || state === stopped) return;
    if (Date.now() > deadline) {
      throw new Error(`memcached (pid ${pid}) did not ${stopped ? "stop" : "resume"}`);
    }
    await sleep(5);
  }
}

/** Starts a private memcached on 127.0.0.1; see the module comment. */
export async function startMemcached(
  options: StartMemcachedOptions = {},
): Promise<MemcachedHandle> {
  installExitHook();
  const port = options.port ?? (await freePort());
  const args = [
    "-l",
    "127.0.0.1",
    "-p",
    String(port),
    "-U",
    "0",
    "-m",
    String(options.memoryMb ?? 64),
  ];
  if (options.maxItemBytes !== undefined) args.push("-I", String(options.maxItemBytes));
  const isRoot = process.getuid?.() === 0;
  const user = isRoot ? systemUser("memcache") : undefined;
  if (isRoot && user === undefined) args.push("-u", "root");

  let child: ChildProcess | undefined;
  let stderr = "";

  const launch = async (): Promise<void> => {
    stderr = "";
    const [file, argv] = existsSync(SETPRIV)
      ? [SETPRIV, ["--pdeathsig", "KILL", "--", MEMCACHED, ...args]]
      : [MEMCACHED, args];
    const proc = spawn(file, argv, {
      stdio: ["ignore", "ignore", "pipe"],
      env: { PATH: "/usr/bin:/bin" },
      ...(user ?? {}),
    });
    proc.stderr.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString("utf8")).slice(-4_000);
    });
    live.add(proc);
    proc.once("exit", () => live.delete(proc));
    child = proc;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!(await memcachedAnswers(port))) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`memcached exited during startup (port ${port}): ${stderr.trim()}`);
      }
      if (Date.now() > deadline) {
        proc.kill("SIGKILL");
        throw new Error(`memcached did not answer on port ${port} within ${READY_TIMEOUT_MS} ms`);
      }
      await sleep(20);
    }
  };

  const alive = (): boolean =>
    child !== undefined && child.exitCode === null && child.signalCode === null;

  await launch();
  return {
    host: "127.0.0.1",
    port,
    address: `127.0.0.1:${port}`,
    get running() {
      return alive();
    },
    async stop() {
      const proc = child;
      if (proc === undefined || !alive()) return;
      proc.kill("SIGCONT"); // a paused server cannot act on SIGTERM
      proc.kill("SIGTERM");
      if (!(await waitExit(proc, STOP_GRACE_MS))) {
        proc.kill("SIGKILL");
        await waitExit(proc, STOP_GRACE_MS);
      }
    },
    async start() {
      if (alive()) return;
      await launch();
    },
    async pause() {
      const pid = child?.pid;
      if (!alive() || pid === undefined) return;
      child?.kill("SIGSTOP");
      await waitState(pid, true);
    },
    async resume() {
      const pid = child?.pid;
      if (!alive() || pid === undefined) return;
      child?.kill("SIGCONT");
      await waitState(pid, false);
    },
  };
}
