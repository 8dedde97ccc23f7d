/**
 * `npm run sandbox`: a whole region on loopback, for real.
 *
 * Owns: installing what is missing (Debian packages, as root), starting PostgreSQL and a
 * throwaway Keystone, the region's memcached, a sample service that echoes the headers it
 * receives, and `keystone-edge serve` (the built binary, from a generated YAML file) in
 * front of it; issuing tokens through Keystone's API (with a script it writes and prints,
 * `new-tokens.mjs`), sending a request through the edge, printing what the service
 * received, the same request answered from memcached once the in-process caches are
 * flushed, where the metrics and status page are, a ready command for every drill
 * scenario and a reload line; then staying up until Ctrl-C or SIGTERM. Stopping is in
 * order: one SIGTERM to the edge (its own process group, so the terminal's Ctrl-C does not
 * reach it twice), its output piped through until it has exited — its "shutting down" and
 * "stopped" log lines shown — then the echo service, memcached and Keystone. A second
 * Ctrl-C stops everything at once. `--once` runs every printed drill command instead of
 * waiting (CI runs that), then stops the same way.
 *
 * `--regions N` (2 to 4): the multi-region picture instead (test/harness/multi-region.ts):
 * that Keystone as the master behind TLS (a CA generated for the run, which the edges
 * verify with `keystone.cafile`), and N regions, each with its own memcached, its own copy
 * of the key repository, its own echo service and its own edge. It shows a token served in
 * every region, then the master rotating its keys twice with only the first region synced:
 * the others keep serving and say they are behind (`keystone_edge_key_repository_behind`)
 * until they are synced too; and prints the commands that rotate, sync and watch, for
 * trying it by hand. `--regions N --once` stops after that (CI can smoke it).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { adminPasswordAuth } from "./client.js";
import { startEchoUpstream, type EchoUpstream } from "./echo-upstream.js";
import { createFixtures } from "./fixtures.js";
import { ensureDebianDeps } from "./global-setup.js";
import { freePort, startKeystone } from "./keystone.js";
import { startMemcached, type MemcachedHandle } from "./memcached.js";
import { startMultiRegion, type Region } from "./multi-region.js";
import { newTokensScript } from "./sandbox-tokens.js";

const once = process.argv.includes("--once");
/** `--regions N` / `--regions=N`: 1 (default) is the single region above. */
const regionCount = ((): number => {
  const i = process.argv.findIndex((a) => a === "--regions" || a.startsWith("--regions="));
  if (i === -1) return 1;
  const arg = process.argv[i] ?? "";
  const value = arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : (process.argv[i + 1] ?? "");
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 4) {
    process.stderr.write(`sandbox: --regions takes 1 to 4, not '${value}'\n`);
    process.exit(2);
  }
  return n;
})();
const BIN = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));
const SETPRIV = "/usr/bin/setpriv";
/** The checkout: `npm run sandbox` runs here, and so do the commands `--once` runs. */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/**
 * How the printed commands call the command line: the package's own bin, which npx finds
 * anywhere in this tree once built (elsewhere: `node <BIN>`).
 */
const CLI = "npx keystone-edge";
/** Longest the edge may take to drain after its SIGTERM (its `--grace` is 10 s). */
const EDGE_STOP_MS = 30_000;

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** `arg` as a POSIX shell word: as it is when nothing in it is special, else single-quoted. */
function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Thrown when the sandbox was asked to stop before it got to waiting for that. */
class Interrupted extends Error {
  constructor() {
    super("interrupted");
  }
}

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
type StopSignal = (typeof SIGNALS)[number];
type SignalListeners = Map<StopSignal, readonly ((...args: unknown[]) => void)[]>;

let firstSignalAt = 0;
/** Signals this soon after the first are copies of it, not a second Ctrl-C. */
const DUPLICATE_SIGNAL_MS = 1_000;

function signalListeners(): SignalListeners {
  return new Map(
    SIGNALS.map((sig) => [sig, process.listeners(sig) as ((...args: unknown[]) => void)[]]),
  );
}

/**
 * From here on the sandbox alone answers SIGINT, SIGTERM and SIGHUP: the listeners added
 * since `before` (startKeystone's, which stop every Keystone at once on a signal) are
 * removed, so that the edge is stopped and drained first and Keystone last. Their process
 * 'exit' hooks (SIGKILL to whatever is left) stay. The first signal aborts `stopping`; a
 * second exits at once (130), the exit hooks killing what is still running.
 */
function takeOverSignals(before: SignalListeners, stopping: AbortController): void {
  for (const sig of SIGNALS) {
    const old = before.get(sig) ?? [];
    for (const listener of process.listeners(sig) as ((...args: unknown[]) => void)[]) {
      if (!old.includes(listener)) process.removeListener(sig, listener);
    }
    process.on(sig, () => {
      if (stopping.signal.aborted) {
        // One Ctrl-C arrives more than once: the terminal signals npm, tsx and the sandbox
        // alike, and tsx relays its copy. Only a later one is the user's second.
        if (Date.now() - firstSignalAt < DUPLICATE_SIGNAL_MS) return;
        process.stderr.write(`sandbox: ${sig} again: stopping everything at once\n`);
        process.exit(130);
      }
      firstSignalAt = Date.now();
      say(`\nsandbox: ${sig}: stopping (${sig} again stops everything at once)…`);
      stopping.abort();
    });
  }
}

/** `keystone-edge serve` as a child of the sandbox; see {@link spawnEdge}. */
interface EdgeChild {
  readonly pid: number;
  readonly running: boolean;
  /** Resolves true once its admin listener says ready; false if it exited first. */
  ready(adminUrl: string, ms: number, stopping: AbortSignal): Promise<boolean>;
  /** One SIGTERM, then waits for it to exit (SIGKILL after {@link EDGE_STOP_MS}). */
  stop(): Promise<void>;
}

/**
 * Starts `keystone-edge serve --config <config>` in a process group of its own (the
 * terminal's Ctrl-C reaches the sandbox, never the edge: it gets exactly one SIGTERM, from
 * {@link EdgeChild.stop}), its stdout and stderr piped through to the sandbox's, under
 * `setpriv --pdeathsig SIGTERM` when there is one (a SIGKILLed sandbox still stops it).
 */
function spawnEdge(config: string): EdgeChild {
  const argv = [BIN, "serve", "--config", config];
  const [file, args] = existsSync(SETPRIV)
    ? [SETPRIV, ["--pdeathsig", "SIGTERM", "--", process.execPath, ...argv]]
    : [process.execPath, argv];
  const child: ChildProcess = spawn(file, args, {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start ${file}`);
  /** The `msg` of every JSON log line it wrote. */
  const logged = new Set<string>();
  let partial = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    process.stdout.write(chunk);
    partial += chunk.toString("utf8");
    for (let nl = partial.indexOf("\n"); nl !== -1; nl = partial.indexOf("\n")) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      try {
        const { msg } = JSON.parse(line) as { msg?: unknown };
        if (typeof msg === "string") logged.add(msg);
      } catch {
        // not a log line
      }
    }
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    process.stderr.write(chunk);
  });
  let done = false;
  // 'close': exited and its output read to the end.
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("close", (code: number | null, signal: NodeJS.Signals | null) => {
      done = true;
      resolve({ code, signal });
    });
    child.once("error", () => {
      done = true;
      resolve({ code: null, signal: null });
    });
  });
  const killGroup = (): void => {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // already gone
    }
  };
  process.on("exit", () => {
    if (!done) killGroup();
  });
  let stopped: Promise<void> | undefined;
  return {
    pid,
    get running() {
      return !done;
    },
    async ready(adminUrl, ms, stopping) {
      const deadline = Date.now() + ms;
      for (;;) {
        const ok = await fetch(`${adminUrl}/readyz`).then(
          async (r) => {
            await r.arrayBuffer();
            return r.status === 200;
          },
          () => false,
        );
        if (ok) return true;
        if (done) return false;
        if (stopping.aborted) throw new Interrupted();
        if (Date.now() > deadline) throw new Error("keystone-edge did not become ready");
        await sleep(200);
      }
    },
    stop() {
      stopped ??= (async () => {
        if (done) return;
        const t0 = Date.now();
        say(`sandbox: one SIGTERM to keystone-edge (pid ${String(pid)}); waiting for it to drain…`);
        child.kill("SIGTERM");
        let timer: NodeJS.Timeout | undefined;
        const outcome = await Promise.race([
          closed,
          new Promise<undefined>((resolve) => {
            timer = setTimeout(() => {
              resolve(undefined);
            }, EDGE_STOP_MS);
          }),
        ]);
        clearTimeout(timer);
        if (outcome === undefined) {
          say(
            `sandbox: keystone-edge still running after ${String(EDGE_STOP_MS / 1000)} s: SIGKILL`,
          );
          killGroup();
        }
        const { code, signal } = await closed;
        const lines = ["shutting down", "stopped"]
          .map((m) => (logged.has(m) ? `"${m}"` : `no "${m}"`))
          .join(" and ");
        say(
          `sandbox: keystone-edge exited ${signal ?? String(code)} ${String(Date.now() - t0)} ms later; it logged ${lines}`,
        );
      })();
      return stopped;
    },
  };
}

/**
 * Runs `line` with /bin/sh in the checkout, in a process group of its own, output to the
 * sandbox's; a stop request sends that group SIGINT (a drill releases its faults and exits 130).
 */
async function runLine(line: string, stopping: AbortSignal): Promise<number | null> {
  const child = spawn("/bin/sh", ["-c", line], { cwd: ROOT, detached: true, stdio: "inherit" });
  const interrupt = (): void => {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(-child.pid, "SIGINT");
      } catch {
        // gone
      }
    }
  };
  stopping.addEventListener("abort", interrupt);
  try {
    return await new Promise((resolve) => {
      child.once("exit", (code, signal) => resolve(signal === null ? code : 128));
      child.once("error", () => resolve(null));
    });
  } finally {
    stopping.removeEventListener("abort", interrupt);
  }
}

/** `keystone_edge_*` series of the tiers that show the shared tier at work, by name. */
async function sharedTierSeries(adminUrl: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const series = new Map<string, number>();
  for (const m of text.matchAll(
    /^(keystone_edge_(?:cache_lookups_total\{tier="memcached[a-z_]*"|validations_total\{source="memcached")[^}]*\}) (\S+)$/gm,
  )) {
    series.set(m[1] ?? "", Number(m[2]));
  }
  return series;
}

async function main(): Promise<number> {
  return regionCount > 1 ? multiRegion(regionCount) : singleRegion();
}

async function singleRegion(): Promise<number> {
  say("sandbox: checking Debian packages (Keystone, PostgreSQL, uwsgi, memcached)…");
  ensureDebianDeps();
  say("sandbox: starting PostgreSQL and Keystone (about 10 s)…");
  const listeners = signalListeners();
  // Keystone with its memcached cache, as production runs it (validations in ms, not 1 s).
  const keystone = await startKeystone({ cache: "memcached" });
  const stopping = new AbortController();
  takeOverSignals(listeners, stopping);
  const interrupted = (): void => {
    if (stopping.signal.aborted) throw new Interrupted();
  };
  const dir = mkdtempSync(join(tmpdir(), "keystone-edge-sandbox-"));
  process.on("exit", () => {
    rmSync(dir, { recursive: true, force: true }); // also after a second Ctrl-C
  });
  let echo: EchoUpstream | undefined;
  let memcached: MemcachedHandle | undefined;
  let edge: EdgeChild | undefined;
  try {
    echo = await startEchoUpstream();
    say(`sandbox: Keystone ${keystone.url}; creating users, projects and a service user…`);
    const fixtures = await createFixtures(keystone.info);
    interrupted();
    // The region's shared tier: a memcached of its own (Keystone's cache is another one).
    memcached = await startMemcached();
    const port = await freePort();
    const adminPort = await freePort();
    const edgeUrl = `http://127.0.0.1:${String(port)}`;
    const adminUrl = `http://127.0.0.1:${String(adminPort)}`;
    const files = {
      config: join(dir, "edge.yaml"),
      password: join(dir, "service-password"),
      secret: join(dir, "admin-secret"),
      tokens: join(dir, "drill-tokens"),
      revoke: join(dir, "revoke-token"),
      token: join(dir, "token"),
      newTokens: join(dir, "new-tokens.mjs"),
    };
    writeFileSync(files.password, `${fixtures.serviceUser.password}\n`, { mode: 0o600 });
    // The admin API (cache flush, drills) wants a bearer secret; the drills want tokens.
    const secret = randomBytes(24).toString("hex");
    writeFileSync(files.secret, `${secret}\n`, { mode: 0o600 });
    writeFileSync(files.token, fixtures.tokens.project, { mode: 0o600 });
    writeFileSync(
      files.newTokens,
      newTokensScript(keystone.url, [
        {
          path: files.tokens,
          comment: "the drills' traffic: admin's project, domain and system tokens",
          logins: [
            adminPasswordAuth(keystone.info),
            adminPasswordAuth(keystone.info, { kind: "domain", id: "default" }),
            adminPasswordAuth(keystone.info, { kind: "system" }),
          ],
        },
        {
          path: files.revoke,
          comment: "a token of its own for the revocation drill to revoke",
          logins: [adminPasswordAuth(keystone.info)],
        },
      ]),
      { mode: 0o700 },
    );
    const newTokens = `node ${quote(files.newTokens)}`;
    if ((await runLine(newTokens, stopping.signal)) !== 0) {
      interrupted();
      throw new Error(`${newTokens} failed`);
    }
    writeFileSync(
      files.config,
      [
        `listen: "127.0.0.1:${String(port)}"`,
        `upstream: "${echo.url}"`,
        `admin_listen: "127.0.0.1:${String(adminPort)}"`,
        "admin_secret_file: admin-secret",
        "keystone:",
        `  www_authenticate_uri: "${keystone.url}"`,
        "  # One Keystone under two names, so that a master-outage drill has somewhere to go.",
        "  endpoints:",
        `    - { name: regional, url: "${keystone.url}" }`,
        `    - { name: master, url: "${keystone.url}" }`,
        "  # Short, for the revocation drill (default 10 s): refused within 2 s (+2 s allowed).",
        "  revocation_poll_interval_ms: 2000",
        "  auth:",
        "    type: password",
        `    username: ${fixtures.serviceUser.name}`,
        "    password_file: service-password",
        "    user_domain_id: default",
        `    project_name: ${fixtures.serviceUser.project}`,
        "    project_domain_id: default",
        "fernet:",
        "  # Keystone's own repository: a fernet_rotate reaches the edge with no sync.",
        `  key_repository: ${keystone.keyRepository}`,
        "cache:",
        "  # The region's shared tier, sealed with this secret.",
        `  memcached_servers: ["${memcached.address}"]`,
        `  memcache_secret_key: "${randomBytes(24).toString("hex")}"`,
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    say(`sandbox: starting keystone-edge serve --config ${files.config}`);
    edge = spawnEdge(files.config);
    if (!(await edge.ready(adminUrl, 60_000, stopping.signal))) {
      throw new Error("keystone-edge exited during start");
    }

    const token = fixtures.tokens.project;
    const res = await fetch(`${edgeUrl}/v2.1/servers`, {
      headers: { "X-Auth-Token": token, "X-Roles": "admin (spoofed, stripped by the edge)" },
    });
    const seen = (await res.json()) as { headers: Record<string, string> };
    say(`\nsandbox: GET /v2.1/servers through keystone-edge → ${String(res.status)}`);
    say("sandbox: the service received these identity headers:");
    for (const [name, value] of Object.entries(seen.headers).sort()) {
      if (/^(x-|openstack-)/.test(name) && !/^x-(auth-token|forwarded)/.test(name)) {
        say(`  ${name}: ${name === "x-service-catalog" ? `${value.slice(0, 60)}…` : value}`);
      }
    }
    const refused = await fetch(`${edgeUrl}/v2.1/servers`, {
      headers: { "X-Auth-Token": "garbage" },
    });
    await refused.arrayBuffer();
    say(
      `sandbox: the same with a garbage token → ${String(refused.status)} (refused locally, no Keystone call)`,
    );
    if (res.status !== 200 || refused.status !== 401)
      throw new Error("the edge did not behave as expected");

    // The shared tier: the first request left its answer in memcached (written in the
    // background); with the in-process caches flushed, the same request is answered there.
    const before = await sharedTierSeries(adminUrl);
    let flushed: unknown;
    let again = 0;
    let grown: [string, number][] = [];
    for (let attempt = 0; attempt < 10 && grown.length === 0; attempt++) {
      await sleep(200);
      const flush = await fetch(`${adminUrl}/cache/flush`, {
        method: "POST",
        headers: { Authorization: `Bearer ${secret}` },
      });
      flushed = ((await flush.json()) as { flushed?: unknown }).flushed;
      const r = await fetch(`${edgeUrl}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
      await r.arrayBuffer();
      again = r.status;
      const after = await sharedTierSeries(adminUrl);
      grown = [...after].filter(
        ([name, n]) => /result="hit"|valid/.test(name) && n > (before.get(name) ?? 0),
      );
    }
    say(
      `sandbox: POST /cache/flush dropped the in-process caches (${JSON.stringify(flushed)}); ` +
        `the same request again → ${String(again)}, answered by memcached (${memcached.address}):`,
    );
    for (const [name, n] of grown) say(`  ${name} ${String(n)}`);
    if (again !== 200 || grown.length === 0)
      throw new Error("the edge did not answer from memcached after a cache flush");

    const bearer = `-H "Authorization: Bearer $(cat ${quote(files.secret)})"`;
    say(`\nsandbox: keystone-edge   ${edgeUrl}   (in front of ${echo.url})`);
    say(`sandbox: metrics         ${adminUrl}/metrics   /healthz   /readyz`);
    say(`sandbox: status page     ${adminUrl}/   (JSON: /status)`);
    say(`sandbox: Keystone        ${keystone.url}   (admin / ${keystone.adminPassword})`);
    say(`sandbox: memcached       ${memcached.address}   (the region's shared tier)`);
    say(`sandbox: config          ${files.config}`);
    say(
      `sandbox: try it          curl -H "X-Auth-Token: $(cat ${quote(files.token)})" ${edgeUrl}/`,
    );
    say(
      `sandbox: shared tier     curl -X POST ${bearer} ${adminUrl}/cache/flush; then try it again and:`,
    );
    say(
      `                         curl -s ${adminUrl}/metrics | grep -E '^keystone_edge_(cache_lookups_total\\{tier="memcached|validations_total\\{source="memcached)'`,
    );
    say(`sandbox: reload          edit ${files.config}, then kill -HUP ${String(edge.pid)}`);

    // Every drill scenario, ready to paste (the files are real; durations short).
    const base = (scenario: string): string =>
      `${CLI} drill ${scenario} --admin ${adminUrl} --secret-file ${quote(files.secret)} --token-file ${quote(files.tokens)}`;
    const rotate =
      `keystone-manage --config-file ${quote(keystone.configFile)} fernet_rotate ` +
      "--keystone-user root --keystone-group root";
    const drills: { name: string; line: string; note?: string }[] = [
      {
        name: "master-outage",
        line: `${base("master-outage")} --endpoint regional --duration 5s`,
      },
      { name: "keystone-outage", line: `${base("keystone-outage")} --duration 8s` },
      { name: "memcached-outage", line: `${base("memcached-outage")} --duration 5s` },
      {
        name: "key-rotation",
        // The rotation while the drill watches, in one line whose exit status is the
        // drill's. keystone-manage takes 5 to 15 s to start here: the drill lasts 30 s.
        line:
          `${base("key-rotation")} --duration 30s & drill=$!; sleep 3; ` + `${rotate}; wait $drill`,
        note:
          `rotates with: ${rotate}\n` +
          "(Debian's keystone-manage may end with a harmless eventlet traceback: " +
          '"Exception ignored in: <function _removeHandlerRef …>")\n' +
          `the edge reads Keystone's own key repository (${keystone.keyRepository}): nothing to sync here; ` +
          "a region with a copy syncs it (npm run sandbox -- --regions 2 shows how)",
      },
      {
        name: "revocation",
        line: `${base("revocation")} --revoke-token-file ${quote(files.revoke)} --keystone ${keystone.url} --duration 5s`,
        note: `revokes the token in ${files.revoke} at Keystone: once per token (${newTokens} writes another)`,
      },
      {
        name: "key-lag",
        line: `${base("key-lag")} --duration 8s`,
        note: `wants tokens issued since the last rotation: after key-rotation, run ${newTokens} first`,
      },
    ];
    say(
      "\nsandbox: drills (each injects its fault inside the edge, never into Keystone or memcached, " +
        "and ends by itself after --duration; Ctrl-C releases it at once):",
    );
    for (const d of drills) {
      say(`  ${d.name}:`);
      say(`    ${d.line}`);
      for (const n of d.note?.split("\n") ?? []) say(`    # ${n}`);
    }
    say(`sandbox: (npx keystone-edge: this tree's build; from elsewhere: node ${quote(BIN)})`);
    say(
      `sandbox: fresh tokens    ${newTokens}   (rewrites ${files.tokens} and ${files.revoke}; tokens last an hour)`,
    );

    if (!once) {
      say("\nsandbox: up; Ctrl-C (or SIGTERM) stops everything and cleans up.");
      if (!stopping.signal.aborted) {
        await new Promise((resolve) => stopping.signal.addEventListener("abort", resolve));
      }
      return 0;
    }

    // --once: every printed command, as printed (CI proves they work).
    const results: string[] = [];
    const failures: string[] = [];
    const run = async (name: string, line: string): Promise<void> => {
      interrupted();
      say(`\nsandbox: running ${name}: ${line}`);
      const t0 = Date.now();
      const code = await runLine(line, stopping.signal);
      interrupted();
      const summary = `${name} → exit ${String(code)} in ${((Date.now() - t0) / 1000).toFixed(1)} s`;
      say(`sandbox: ${summary}`);
      results.push(summary);
      if (code !== 0) failures.push(name);
    };
    for (const d of drills) {
      if (d.name === "key-lag") await run("fresh tokens", newTokens);
      await run(d.name, d.line);
    }
    say(`\nsandbox: ${results.join("; ")}`);
    if (failures.length > 0)
      throw new Error(`these printed commands failed: ${failures.join(", ")}`);
    return 0;
  } finally {
    // The edge first, alone, and drained; then what it used.
    await edge?.stop();
    say("sandbox: stopping the echo service, memcached and Keystone…");
    await echo?.stop();
    await memcached?.stop();
    await keystone.stop();
    rmSync(dir, { recursive: true, force: true });
    say("sandbox: stopped; cleaned up.");
  }
}

/** Polls `check` every 100 ms until it holds; false if it does not within `ms`. */
async function eventually(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function multiRegion(count: number): Promise<number> {
  say("sandbox: checking Debian packages (Keystone, PostgreSQL, uwsgi, memcached)…");
  ensureDebianDeps();
  say("sandbox: starting PostgreSQL and the master Keystone (about 10 s)…");
  const keystone = await startKeystone({ cache: "memcached" });
  let stopTopology = (): Promise<void> => Promise.resolve();
  try {
    say(`sandbox: Keystone ${keystone.url}; creating users, projects and a service user…`);
    const fixtures = await createFixtures(keystone.info);
    const names = ["region-a", "region-b", "region-c", "region-d"].slice(0, count);
    say(`sandbox: a CA for this run, TLS in front of Keystone, ${String(count)} regions…`);
    const topology = await startMultiRegion({
      keystone: keystone.info,
      serviceUser: fixtures.serviceUser,
      regions: names,
      master: "keystone",
      // each edge checks its keys against a token the master issues now, every 2 s
      lagCheckIntervalMs: 2_000,
    });
    stopTopology = () => topology.close();
    const { master, regions } = topology;
    const [first] = regions as [Region, ...Region[]];
    const lagging = regions.slice(1);
    const problems: string[] = [];
    const expect = (what: string, ok: boolean): void => {
      if (!ok) problems.push(what);
    };
    const statusIn = async (region: Region, token: string): Promise<number> =>
      (await region.request(token)).status;
    const behind = async (region: Region): Promise<string> =>
      String((await region.behind()) ?? "not exported");

    say(`\nsandbox: the master      ${master.url}   (TLS; CA ${master.certificates.caFile})`);
    const token = await master.adminToken();
    for (const region of regions) {
      const res = await region.request(token);
      const seen =
        res.status === 200
          ? (JSON.parse(res.body) as { headers: Record<string, string> }).headers
          : {};
      say(
        `sandbox: ${region.name}: a master token → ${String(res.status)}` +
          `   (the service saw X-User-Name: ${seen["x-user-name"] ?? "-"}, ` +
          `X-Project-Name: ${seen["x-project-name"] ?? "-"})`,
      );
      expect(`${region.name} serves the master's token`, res.status === 200);
      const garbage = await statusIn(region, "garbage");
      expect(`${region.name} refuses garbage`, garbage === 401);
    }
    say(
      `sandbox: the master has relayed ${String(master.frontend.requests)} requests over ` +
        `${String(master.frontend.connections)} TLS connections (the edges pool theirs, kept alive)`,
    );

    say(`\nsandbox: the master rotates its keys twice; only ${first.name}'s copy is synced…`);
    await master.rotateKeys();
    await master.rotateKeys();
    first.sync();
    const rotated = Date.now();
    for (const region of lagging) {
      const known = await eventually(async () => (await region.behind()) === 1, 15_000);
      expect(`${region.name} says it is behind`, known);
      say(
        `sandbox: ${region.name}: found itself behind ${String(Date.now() - rotated)} ms after the rotations`,
      );
    }
    expect(
      `${first.name} does not say it is behind`,
      await eventually(async () => (await first.behind()) === 0, 5_000),
    );
    const fresh = await master.adminToken();
    for (const region of regions) {
      const status = await statusIn(region, fresh);
      expect(`${region.name} serves a token issued after the rotations`, status === 200);
      say(
        `sandbox: ${region.name}: a token issued after the rotations → ${String(status)}; ` +
          `keystone_edge_key_repository_behind ${await behind(region)}`,
      );
    }
    say("sandbox: syncing the others…");
    for (const region of lagging) {
      region.sync();
      const synced = Date.now();
      const cleared = await eventually(async () => (await region.behind()) === 0, 15_000);
      expect(`${region.name} clears its behind gauge after the sync`, cleared);
      say(
        `sandbox: ${region.name}: keystone_edge_key_repository_behind ${await behind(region)} ` +
          `${String(Date.now() - synced)} ms after the sync`,
      );
    }

    say("");
    for (const region of regions) {
      say(`sandbox: ${region.name}   edge ${region.url}   (in front of ${region.echo.url})`);
      say(
        `sandbox: ${region.name}   metrics ${region.adminUrl}/metrics   status page ${region.adminUrl}/`,
      );
      say(`sandbox: ${region.name}   config ${region.configPath}`);
      say(`sandbox: ${region.name}   key copy ${region.keyRepository}`);
    }
    const tokenFile = `${topology.root}/token`;
    writeFileSync(tokenFile, await master.adminToken(), { mode: 0o600 });
    const lag = lagging[0] ?? first;
    say(`\nsandbox: try it          curl -H "X-Auth-Token: $(cat ${tokenFile})" ${first.url}/`);
    say(
      `sandbox: the master      curl --cacert ${master.certificates.caFile} ${master.url}/   (verified TLS)`,
    );
    const auth = JSON.stringify({
      auth: {
        identity: {
          methods: ["password"],
          password: {
            user: { name: "admin", domain: { id: "default" }, password: keystone.adminPassword },
          },
        },
        scope: { project: { name: "admin", domain: { id: "default" } } },
      },
    });
    say(
      `sandbox: a new token     curl -si --cacert ${master.certificates.caFile} -H 'Content-Type: application/json' ` +
        `-d '${auth}' ${master.url}/auth/tokens | grep -i '^x-subject-token'`,
    );
    say(
      "sandbox:                 (two rotations retire the key that signed an older token: Keystone refuses it too)",
    );
    say(`sandbox: make ${lag.name} lag: rotate twice at the master, sync ${first.name} only:`);
    say(`  ${master.rotateCommand}`);
    say(`  ${master.rotateCommand}`);
    say(`  ${first.syncCommand}`);
    say(`sandbox: watch the gauge:`);
    say(
      `  watch -n1 "curl -s ${lag.adminUrl}/metrics | grep -E '^keystone_edge_key_(repository_behind|lag)'"`,
    );
    say(`  ${CLI} keys status --key-repository ${lag.keyRepository} --admin ${lag.adminUrl}`);
    say(
      `  ${CLI} keys check --config ${lag.configPath}   # the rotation gate: non-zero while behind`,
    );
    say(`sandbox: sync ${lag.name} (new key files first, then replaced ones, then removals):`);
    say(`  ${lag.syncCommand}`);
    say(`sandbox: Keystone        ${keystone.url}   (admin / ${keystone.adminPassword})`);
    if (problems.length > 0) throw new Error(`not as expected: ${problems.join("; ")}`);
    if (!once) {
      say("\nsandbox: up; Ctrl-C stops everything and cleans up.");
      await new Promise<void>((resolve) => {
        process.once("SIGINT", () => resolve());
        process.once("SIGTERM", () => resolve());
      });
    }
    say("sandbox: stopping…");
    return 0;
  } finally {
    await stopTopology();
    await keystone.stop();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof Interrupted) {
      process.exitCode = 130;
      return;
    }
    process.stderr.write(`sandbox: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
