/**
 * `npm run bench:proxy`: what keystone-edge costs per proxied request, against baselines
 * measured in the same run on this machine.
 *
 * (a) A static upstream (a minimal Node server, own process) reached directly, through an
 *     nginx hop, through a bare pass-through built from keystone-edge's own listener and
 *     forwarder with validation off, through that pass-through adding the edge's identity
 *     headers (the cost of the header bytes alone), and through keystone-edge with a valid
 *     cached token — alone, and with a region's memcached, revocation markers off and on
 *     (the markers' price: one memcached read per request).
 * (b) A WSGI echo app under uwsgi, bare, wrapped by Debian's keystonemiddleware auth_token
 *     (in-process token cache, and memcached with ENCRYPT as multi-worker deployments run
 *     it), and keystone-edge in front of the bare one.
 *
 * Method, for a shared 2-core machine: the process being measured runs pinned to the last
 * core, the load generator and every other process to core 0, so they do not steal its
 * time; the cases are interleaved over several rounds and each figure is the median of
 * its rounds. Load: wrk (Debian), one thread, fixed connections and duration. Figures:
 * req/s, p50/p99, and CPU microseconds per request of the measured process tree (utime +
 * stime from /proc/<pid>/stat, children included). Added latency is measured at a fixed
 * offered load of half the edge's throughput (hey, Debian), edge against direct, in
 * BENCH_LATENCY_ROUNDS interleaved pairs: the upstream (and the edge in front of it) on
 * the measured core, hey alone on the other, so the generator's own scheduling is the
 * same in both and the difference is the edge's. Runs under tsx (it reuses the test
 * harness for a real Keystone).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { CLK_TCK, cpuTicks, processTree } from "./process-tree.js";
import { startEchoUpstream } from "../test/harness/echo-upstream.js";
import { startEdgeProcess, type EdgeProcess } from "../test/harness/edge-process.js";
import { createFixtures } from "../test/harness/fixtures.js";
import { ensureDebianDeps } from "../test/harness/global-setup.js";
import { freePort, startKeystone } from "../test/harness/keystone.js";
import { kmwPasswordConf, startKeystonemiddleware, type KmwHandle } from "../test/harness/kmw.js";
import { startMemcached, type MemcachedHandle } from "../test/harness/memcached.js";

const execFileAsync = promisify(execFile);
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const LATENCY_DURATION_S = Number(process.env.BENCH_LATENCY_DURATION_S ?? 10);
/** Interleaved direct / through-the-edge pairs at half load (BENCH_LATENCY_ROUNDS, default 3). */
const LATENCY_ROUNDS = Math.max(1, Number(process.env.BENCH_LATENCY_ROUNDS ?? 3));
/** e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the edges under load. */
const EDGE_NODE_ARGS = (process.env.BENCH_EDGE_NODE_ARGS ?? "")
  .split(" ")
  .filter((a) => a.length > 0);
/**
 * Another build's `dist/src/cli/main.js` (e.g. a worktree at an earlier commit): measured
 * as one more case, so that a change's cost is a difference within one run.
 */
const BASELINE_BIN = process.env.BENCH_BASELINE_BIN;
const dist = (f: string): string => fileURLToPath(new URL(`../dist/bench/${f}`, import.meta.url));
/** Core of the measured process; every other process runs on core 0. */
const MEASURED_CORE = cpus().length >= 2 ? cpus().length - 1 : undefined;
const OTHER_CORES = "0";

function say(s: string): void {
  process.stdout.write(`${s}\n`);
}

/** Pins every thread of `pid`'s process tree to `cores` (a taskset list); no-op on one core. */
function pin(pid: number, cores: string): void {
  if (MEASURED_CORE === undefined) return;
  for (const p of processTree(pid)) {
    try {
      execFileSync("taskset", ["-a", "-cp", cores, String(p)], { stdio: "ignore" });
    } catch {
      // gone meanwhile
    }
  }
}

/** Runs a command on the load generator's core. */
function onOtherCores(command: string, args: readonly string[]): [string, string[]] {
  return MEASURED_CORE === undefined
    ? [command, [...args]]
    : ["taskset", ["-c", OTHER_CORES, command, ...args]];
}

interface Run {
  readonly reqPerSec: number;
  readonly requests: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** CPU µs per request of the measured process tree. */
  readonly cpuUsPerRequest: number;
}

function parseMs(text: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(text);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === "us" ? v / 1000 : m[2] === "s" ? v * 1000 : v;
}

/** One wrk run against `url` with the process tree `pid` pinned to the measured core. */
async function wrk(url: string, headers: Record<string, string>, pid: number): Promise<Run> {
  const args = ["-t1", `-c${String(CONNECTIONS)}`, `-d${String(DURATION_S)}s`, "--latency"];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  pin(pid, String(MEASURED_CORE ?? 0));
  try {
    // warm-up
    await execFileAsync(
      ...onOtherCores("wrk", ["-t1", `-c${String(CONNECTIONS)}`, "-d1s", ...args.slice(3), url]),
    );
    const before = cpuTicks(pid);
    const { stdout: out } = await execFileAsync(...onOtherCores("wrk", [...args, url]));
    const after = cpuTicks(pid);
    const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
    if (requests === 0 || non2xx > 0)
      throw new Error(
        `wrk ${url}: ${String(requests)} requests, ${String(non2xx)} not 2xx\n${out}`,
      );
    return {
      reqPerSec: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
      requests,
      p50Ms: parseMs(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? ""),
      p99Ms: parseMs(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? ""),
      cpuUsPerRequest: ((after - before) * (1e6 / CLK_TCK)) / requests,
    };
  } finally {
    pin(pid, OTHER_CORES);
  }
}

/**
 * p99 latency (ms) at a fixed offered load, with the trees of `pids` on the measured core
 * (the edge and the upstream it forwards to, or the upstream alone) and the load generator
 * alone on the other: the difference between two such runs is what the edge adds, not
 * the generator's scheduling.
 */
async function p99AtRate(
  url: string,
  headers: Record<string, string>,
  pids: readonly number[],
  reqPerSec: number,
): Promise<{ p99Ms: number; p50Ms: number; achieved: number }> {
  const workers = 8;
  const args = [
    "-z",
    `${String(LATENCY_DURATION_S)}s`,
    "-c",
    String(workers),
    "-q",
    String(Math.max(1, Math.round(reqPerSec / workers))),
  ];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  for (const pid of pids) pin(pid, String(MEASURED_CORE ?? 0));
  try {
    const { stdout: out } = await execFileAsync(...onOtherCores("hey", [...args, url]));
    const ok = Number(/\[200\]\s+(\d+) responses/.exec(out)?.[1] ?? 0);
    const pct = (p: number): number =>
      Number(new RegExp(`\\s${String(p)}% in ([\\d.]+) secs`).exec(out)?.[1] ?? NaN) * 1000;
    if (ok === 0 || /Error distribution/.test(out)) throw new Error(`hey ${url}: errors\n${out}`);
    return { p99Ms: pct(99), p50Ms: pct(50), achieved: ok / LATENCY_DURATION_S };
  } finally {
    for (const pid of pids) pin(pid, OTHER_CORES);
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** The median of each figure over the rounds. */
function medianRun(runs: readonly Run[]): Run {
  return {
    reqPerSec: median(runs.map((r) => r.reqPerSec)),
    requests: median(runs.map((r) => r.requests)),
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    cpuUsPerRequest: median(runs.map((r) => r.cpuUsPerRequest)),
  };
}

function spawnDaemon(command: string, args: readonly string[]): ChildProcess {
  const child = spawn(command, args, { stdio: "ignore" });
  if (child.pid !== undefined) pin(child.pid, OTHER_CORES);
  return child;
}

async function waitHttp(url: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await fetch(url).then(
      async (r) => {
        await r.arrayBuffer();
        return true;
      },
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${url} did not answer`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function ensureTools(): void {
  const missing = [
    ["wrk", "/usr/bin/wrk"],
    ["hey", "/usr/bin/hey"],
    ["nginx-light", "/usr/sbin/nginx"],
  ].filter(([, path]) => !existsSync(path as string));
  if (missing.length === 0) return;
  say(`bench:proxy: installing ${missing.map(([p]) => p).join(", ")} from Debian…`);
  execFileSync(
    "apt-get",
    ["install", "-y", "--no-install-recommends", ...missing.map(([p]) => p as string)],
    {
      stdio: "inherit",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    },
  );
}

interface Case {
  readonly label: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  /** The measured process tree. */
  readonly pid: number;
}

async function main(): Promise<void> {
  ensureDebianDeps();
  ensureTools();
  say("bench:proxy: starting Keystone and fixtures (about 40 s)…");
  const keystone = await startKeystone();
  const dir = mkdtempSync(join(tmpdir(), "ke-bench-proxy-"));
  const children: ChildProcess[] = [];
  const edges: EdgeProcess[] = [];
  const kmws: KmwHandle[] = [];
  let memcached: MemcachedHandle | undefined;
  try {
    const fixtures = await createFixtures(keystone.info);
    const token = fixtures.tokens.project;
    const auth = { "X-Auth-Token": token };
    // Shadow validation at its production default (1 in 1,000 verdicts), not the harness's
    // off: the figures are what an operator's edge costs.
    const edgeOptions = {
      keystone: keystone.info,
      serviceUser: fixtures.serviceUser,
      shadowYaml: [],
    };

    // The identity headers the edge adds for this token, for the header-cost case.
    const echo = await startEchoUpstream();
    const probe = await startEdgeProcess({ ...edgeOptions, upstream: echo.url });
    const seen = (await (await fetch(`${probe.url}/probe`, { headers: auth })).json()) as {
      headers: Record<string, string>;
    };
    await probe.stop();
    await echo.stop();
    const identity = Object.entries(seen.headers).filter(
      ([n]) => n.startsWith("x-") && !n.startsWith("x-forwarded-") && n !== "x-auth-token",
    );
    const headersFile = join(dir, "identity-headers.json");
    writeFileSync(headersFile, JSON.stringify(identity));

    // (a) static upstream
    const upstreamPort = await freePort();
    const upstreamProcess = spawnDaemon(process.execPath, [
      dist("static-upstream.js"),
      String(upstreamPort),
    ]);
    children.push(upstreamProcess);
    const upstream = `http://127.0.0.1:${String(upstreamPort)}`;
    await waitHttp(upstream);

    const nginxPort = await freePort();
    writeFileSync(
      join(dir, "nginx.conf"),
      `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 1024; }
http { access_log off;
  upstream up { server 127.0.0.1:${String(upstreamPort)}; keepalive 64; }
  server { listen 127.0.0.1:${String(nginxPort)};
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
`,
    );
    const nginx = spawnDaemon("/usr/sbin/nginx", ["-c", join(dir, "nginx.conf")]);
    children.push(nginx);
    await waitHttp(`http://127.0.0.1:${String(nginxPort)}`);

    const passPort = await freePort();
    const pass = spawnDaemon(process.execPath, [
      dist("passthrough.js"),
      String(passPort),
      upstream,
    ]);
    children.push(pass);
    const passHeadersPort = await freePort();
    const passHeaders = spawnDaemon(process.execPath, [
      dist("passthrough.js"),
      String(passHeadersPort),
      upstream,
      headersFile,
    ]);
    children.push(passHeaders);
    await waitHttp(`http://127.0.0.1:${String(passPort)}`);
    await waitHttp(`http://127.0.0.1:${String(passHeadersPort)}`);

    const edgeA = await startEdgeProcess({ ...edgeOptions, upstream, nodeArgs: EDGE_NODE_ARGS });
    edges.push(edgeA);
    pin(edgeA.pid, OTHER_CORES);
    // The same with a region's memcached, with and without revocation markers (one
    // memcached read per request before "valid": read-your-writes across the region).
    memcached = await startMemcached();
    const memcachedAddress = memcached.address;
    const withMemcached = (markers: boolean): string[] => [
      "cache:",
      `  memcached_servers: ["${memcachedAddress}"]`,
      '  memcache_secret_key: "bench region memcache secret"',
      `  revocation_markers: ${String(markers)}`,
    ];
    const edgeMarkers = await startEdgeProcess({
      ...edgeOptions,
      upstream,
      nodeArgs: EDGE_NODE_ARGS,
      extraYaml: withMemcached(true),
    });
    const edgeNoMarkers = await startEdgeProcess({
      ...edgeOptions,
      upstream,
      nodeArgs: EDGE_NODE_ARGS,
      extraYaml: withMemcached(false),
    });
    edges.push(edgeMarkers, edgeNoMarkers);
    pin(edgeMarkers.pid, OTHER_CORES);
    pin(edgeNoMarkers.pid, OTHER_CORES);
    // Tracing on, spans exported to a collector stand-in that drains and acknowledges them
    // (on the other core): 1 % of requests sampled (the default), and every one.
    const otlpPort = await freePort();
    const otlp = spawnDaemon(process.execPath, [
      "-e",
      `require("node:http").createServer((q, s) => { q.resume(); q.on("end", () => s.writeHead(200, { "content-type": "application/json" }).end("{}")); }).listen(${String(otlpPort)}, "127.0.0.1")`,
    ]);
    children.push(otlp);
    const withTracing = (ratio: number): string[] => [
      "tracing:",
      `  otlp_endpoint: "http://127.0.0.1:${String(otlpPort)}"`,
      `  sample_ratio: ${String(ratio)}`,
    ];
    const edgeTraced = await startEdgeProcess({
      ...edgeOptions,
      upstream,
      nodeArgs: EDGE_NODE_ARGS,
      extraYaml: withTracing(0.01),
    });
    const edgeTracedAll = await startEdgeProcess({
      ...edgeOptions,
      upstream,
      nodeArgs: EDGE_NODE_ARGS,
      extraYaml: withTracing(1),
    });
    edges.push(edgeTraced, edgeTracedAll);
    const edgeBaseline =
      BASELINE_BIN === undefined
        ? undefined
        : await startEdgeProcess({ ...edgeOptions, upstream, bin: BASELINE_BIN });
    if (edgeBaseline !== undefined) {
      edges.push(edgeBaseline);
      pin(edgeBaseline.pid, OTHER_CORES);
    }
    pin(edgeTraced.pid, OTHER_CORES);
    pin(edgeTracedAll.pid, OTHER_CORES);

    // (b) WSGI echo under uwsgi
    const kmwConf = kmwPasswordConf(keystone.info, fixtures.serviceUser);
    // One uwsgi thread per persistent connection: uwsgi serves a keep-alive connection on
    // one thread until it closes, so fewer threads would leave connections unserved.
    const threads = CONNECTIONS + 8;
    const bare = await startKeystonemiddleware(kmwConf, 1, { bare: true, threads });
    kmws.push(bare);
    const wrapped = await startKeystonemiddleware(kmwConf, 1, { threads });
    kmws.push(wrapped);
    const wrappedMemcached = await startKeystonemiddleware(
      {
        ...kmwConf,
        memcached_servers: memcached.address,
        memcache_security_strategy: "ENCRYPT",
        memcache_secret_key: "bench-memcache-secret-key",
      },
      1,
      { threads },
    );
    kmws.push(wrappedMemcached);
    const edgeB = await startEdgeProcess({ ...edgeOptions, upstream: bare.url });
    edges.push(edgeB);
    for (const pid of [bare.pid, wrapped.pid, wrappedMemcached.pid, edgeB.pid]) {
      pin(pid, OTHER_CORES);
    }

    const a = {
      direct: {
        label: "(a) static upstream, direct",
        url: upstream,
        headers: {},
        pid: upstreamProcess.pid ?? -1,
      },
      nginx: {
        label: "(a) through an nginx hop",
        url: `http://127.0.0.1:${String(nginxPort)}`,
        headers: {},
        pid: nginx.pid ?? -1,
      },
      pass: {
        label: "(a) through the bare pass-through",
        url: `http://127.0.0.1:${String(passPort)}`,
        headers: auth,
        pid: pass.pid ?? -1,
      },
      passHeaders: {
        label: `(a) pass-through + the ${String(identity.length)} identity headers`,
        url: `http://127.0.0.1:${String(passHeadersPort)}`,
        headers: auth,
        pid: passHeaders.pid ?? -1,
      },
      edge: {
        label: "(a) through keystone-edge (cached token)",
        url: edgeA.url,
        headers: auth,
        pid: edgeA.pid,
      },
      edgeMemcached: {
        label: "(a) keystone-edge + memcached, markers off",
        url: edgeNoMarkers.url,
        headers: auth,
        pid: edgeNoMarkers.pid,
      },
      edgeMarkers: {
        label: "(a) keystone-edge + memcached, revocation markers",
        url: edgeMarkers.url,
        headers: auth,
        pid: edgeMarkers.pid,
      },
      edgeTraced: {
        label: "(a) keystone-edge, tracing on (1 % sampled)",
        url: edgeTraced.url,
        headers: auth,
        pid: edgeTraced.pid,
      },
      edgeTracedAll: {
        label: "(a) keystone-edge, tracing on (every request)",
        url: edgeTracedAll.url,
        headers: auth,
        pid: edgeTracedAll.pid,
      },
    } satisfies Record<string, Case>;
    const b = {
      bare: { label: "(b) uwsgi echo, bare", url: bare.url, headers: {}, pid: bare.pid },
      kmw: {
        label: "(b) echo + keystonemiddleware (in-process cache)",
        url: wrapped.url,
        headers: auth,
        pid: wrapped.pid,
      },
      kmwMemcached: {
        label: "(b) echo + keystonemiddleware (memcached, ENCRYPT)",
        url: wrappedMemcached.url,
        headers: auth,
        pid: wrappedMemcached.pid,
      },
      edge: {
        label: "(b) keystone-edge in front of the bare echo",
        url: edgeB.url,
        headers: auth,
        pid: edgeB.pid,
      },
    } satisfies Record<string, Case>;
    const baseline: Case | undefined =
      edgeBaseline === undefined
        ? undefined
        : {
            label: "(a) keystone-edge, baseline build",
            url: edgeBaseline.url,
            headers: auth,
            pid: edgeBaseline.pid,
          };
    const cases: Case[] = [
      ...Object.values(a),
      ...(baseline === undefined ? [] : [baseline]),
      ...Object.values(b),
    ];

    say(
      `bench:proxy: ${String(cases.length)} cases × ${String(ROUNDS)} rounds, wrk -t1 -c${String(CONNECTIONS)} -d${String(DURATION_S)}s each` +
        (MEASURED_CORE === undefined
          ? " (one core: no pinning)"
          : `; measured process on core ${String(MEASURED_CORE)}, the rest on core ${OTHER_CORES}`),
    );
    // One request each first, so every cache holds the token before any load (32 cold
    // requests at once would each go to Keystone: keystonemiddleware has no single-flight).
    for (const c of cases) {
      const res = await fetch(c.url, { headers: c.headers });
      await res.arrayBuffer();
      if (res.status !== 200)
        throw new Error(`${c.label}: HTTP ${String(res.status)} before the load`);
    }
    const runs = new Map<Case, Run[]>(cases.map((c) => [c, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      const line: string[] = [];
      for (const c of cases) {
        const r = await wrk(c.url, c.headers, c.pid);
        runs.get(c)?.push(r);
        line.push(r.cpuUsPerRequest.toFixed(0));
      }
      say(`  round ${String(round)}: CPU µs/req ${line.join(" ")}`);
    }
    const result = new Map<Case, Run>(cases.map((c) => [c, medianRun(runs.get(c) ?? [])]));
    const get = (c: Case): Run => result.get(c) as Run;

    // Added latency at half the edge's throughput, same offered load direct and through it.
    const rate = Math.round(get(a.edge).reqPerSec / 2);
    say(
      `bench:proxy: p99 at a fixed ${String(rate)} req/s (hey, ${String(LATENCY_DURATION_S)} s each)`,
    );
    // Interleaved rounds, direct then through the edge; medians, and the added p99 paired
    // per round (the machine's state moves between rounds more than within one).
    const directRuns: Awaited<ReturnType<typeof p99AtRate>>[] = [];
    const edgeRuns: Awaited<ReturnType<typeof p99AtRate>>[] = [];
    for (let round = 1; round <= LATENCY_ROUNDS; round++) {
      const d = await p99AtRate(a.direct.url, {}, [a.direct.pid], rate);
      const e = await p99AtRate(a.edge.url, auth, [a.edge.pid, a.direct.pid], rate);
      directRuns.push(d);
      edgeRuns.push(e);
      say(
        `  round ${String(round)}: p99 direct ${d.p99Ms.toFixed(2)} ms, through the edge ${e.p99Ms.toFixed(2)} ms (added ${(e.p99Ms - d.p99Ms).toFixed(2)} ms; achieved ${Math.round(d.achieved).toString()} / ${Math.round(e.achieved).toString()} req/s)`,
      );
    }
    const medianOf = (runs: readonly { p99Ms: number; p50Ms: number; achieved: number }[]) => ({
      p99Ms: median(runs.map((r) => r.p99Ms)),
      p50Ms: median(runs.map((r) => r.p50Ms)),
      achieved: median(runs.map((r) => r.achieved)),
    });
    const latDirect = medianOf(directRuns);
    const latEdge = medianOf(edgeRuns);
    const addedP99 = median(edgeRuns.map((e, i) => e.p99Ms - (directRuns[i]?.p99Ms ?? NaN)));

    const row = (c: Case): string => {
      const r = get(c);
      return `${c.label.padEnd(52)} ${Math.round(r.reqPerSec).toString().padStart(7)}  ${r.p50Ms.toFixed(2).padStart(6)}  ${r.p99Ms.toFixed(2).padStart(6)}  ${r.cpuUsPerRequest.toFixed(1).padStart(7)}`;
    };
    say("");
    say(
      `machine: ${cpus()[0]?.model ?? "?"}, ${String(cpus().length)} cores; node ${process.version}`,
    );
    say(`${"case (medians of the rounds)".padEnd(52)}   req/s  p50 ms  p99 ms  CPU µs/req`);
    for (const c of cases) say(row(c));
    say(
      `${`p99 at ${String(rate)} req/s: direct / through keystone-edge`.padEnd(52)} ${latDirect.p99Ms.toFixed(2)} / ${latEdge.p99Ms.toFixed(2)} ms (p50 ${latDirect.p50Ms.toFixed(2)} / ${latEdge.p50Ms.toFixed(2)}; achieved ${Math.round(latDirect.achieved).toString()} / ${Math.round(latEdge.achieved).toString()} req/s)`,
    );

    const edgeCpu = get(a.edge).cpuUsPerRequest;
    const nginxCpu = get(a.nginx).cpuUsPerRequest;
    // Differences are taken within each round (the cases of a round ran minutes apart at
    // most), then the median over the rounds: steadier than a difference of medians.
    const pairedUs = (x: Case, y: Case): number => {
      const xs = runs.get(x) ?? [];
      const ys = runs.get(y) ?? [];
      return median(xs.map((r, i) => r.cpuUsPerRequest - (ys[i]?.cpuUsPerRequest ?? NaN)));
    };
    const validationUs = pairedUs(a.edge, a.pass);
    const markersUs = pairedUs(a.edgeMarkers, a.edgeMemcached);
    const markersP50Ms = get(a.edgeMarkers).p50Ms - get(a.edgeMemcached).p50Ms;
    const headerBytesUs = pairedUs(a.passHeaders, a.pass);
    const tracingUs = pairedUs(a.edgeTraced, a.edge);
    const tracingAllUs = pairedUs(a.edgeTracedAll, a.edge);
    const kmwAuthUs = pairedUs(b.kmw, b.bare);
    const kmwMemcachedAuthUs = pairedUs(b.kmwMemcached, b.bare);
    const edgeWholeUs = get(b.edge).cpuUsPerRequest;
    const verdict = (ok: boolean): string => (ok ? "met" : "MISSED");
    say("");
    say(
      `keystone-edge CPU per request / nginx hop's:         ${(edgeCpu / nginxCpu).toFixed(2)}×   (target ≤ 4×: ${verdict(edgeCpu <= 4 * nginxCpu)})`,
    );
    say(
      `validation on a cached token (edge − pass-through, per round):  ${validationUs.toFixed(1)} µs (target ≤ 15 µs: ${verdict(validationUs <= 15)}), of which the identity header bytes ${headerBytesUs.toFixed(1)} µs`,
    );
    say(
      `revocation markers (one memcached read per request): ${markersUs.toFixed(1)} µs CPU per request, ${markersP50Ms.toFixed(2)} ms p50 at ${String(CONNECTIONS)} connections; ${Math.round(get(a.edgeMarkers).reqPerSec).toString()} vs ${Math.round(get(a.edgeMemcached).reqPerSec).toString()} req/s`,
    );
    if (baseline !== undefined) {
      say(
        `this build − the baseline build (per round):          ${pairedUs(a.edge, baseline).toFixed(1)} µs CPU per request; ${Math.round(get(a.edge).reqPerSec).toString()} vs ${Math.round(get(baseline).reqPerSec).toString()} req/s`,
      );
    }
    say(
      `tracing on (− tracing off, per round):               ${tracingUs.toFixed(1)} µs CPU per request at 1 % sampled, ${tracingAllUs.toFixed(1)} µs with every request traced and exported`,
    );
    say(
      `keystonemiddleware auth work (wrapped − bare):       ${kmwAuthUs.toFixed(1)} µs in-process cache, ${kmwMemcachedAuthUs.toFixed(1)} µs memcached+ENCRYPT`,
    );
    say(
      `  vs keystone-edge's whole ${edgeWholeUs.toFixed(1)} µs: ${(kmwAuthUs / edgeWholeUs).toFixed(1)}× / ${(kmwMemcachedAuthUs / edgeWholeUs).toFixed(1)}× (target ≥ 5×: ${verdict(kmwAuthUs >= 5 * edgeWholeUs)} / ${verdict(kmwMemcachedAuthUs >= 5 * edgeWholeUs)})`,
    );
    say(
      `p99 added latency at half load (edge − direct, median of ${String(LATENCY_ROUNDS)} paired rounds; the generator alone on its core): ${addedP99.toFixed(2)} ms (target ≤ 1 ms: ${verdict(addedP99 <= 1)})`,
    );
  } finally {
    for (const e of edges) await e.stop();
    for (const k of kmws) await k.stop();
    await memcached?.stop();
    for (const c of children) c.kill("SIGTERM");
    await keystone.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:proxy: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
