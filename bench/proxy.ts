/**
 * `npm run bench:proxy`: what keystone-edge costs per proxied request, against baselines
 * measured in the same run on this machine.
 *
 * (a) A static upstream (a minimal Node server, own process) reached directly, through an
 *     nginx hop, through a bare pass-through built from keystone-edge's own listener and
 *     forwarder with validation off, and through keystone-edge with a valid cached token.
 * (b) A WSGI echo app under uwsgi, bare and wrapped by Debian's keystonemiddleware
 *     auth_token, and keystone-edge in front of the bare one.
 *
 * Load: wrk (Debian), one thread, fixed connections and duration. Figures: req/s, p50/p99,
 * and the one that holds on a shared 2-core machine: CPU microseconds per request of each
 * proxy's processes over the run, from /proc/<pid>/stat (utime + stime of the process and
 * its children). Runs under tsx (it reuses the test harness for a real Keystone).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startEdgeProcess, type EdgeProcess } from "../test/harness/edge-process.js";
import { createFixtures } from "../test/harness/fixtures.js";
import { ensureDebianDeps } from "../test/harness/global-setup.js";
import { freePort, startKeystone } from "../test/harness/keystone.js";
import { startKeystonemiddleware, type KmwHandle } from "../test/harness/kmw.js";

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const LATENCY_CONNECTIONS = Number(process.env.BENCH_LATENCY_CONNECTIONS ?? 4);
const CLK_TCK = 100;
/** e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the edges under load. */
const EDGE_NODE_ARGS = (process.env.BENCH_EDGE_NODE_ARGS ?? "")
  .split(" ")
  .filter((a) => a.length > 0);
const dist = (f: string): string => fileURLToPath(new URL(`../dist/bench/${f}`, import.meta.url));

function say(s: string): void {
  process.stdout.write(`${s}\n`);
}

/** utime + stime, in clock ticks, of `pid` and all its descendants. */
function cpuTicks(pid: number): number {
  const parents = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parents.set(Number(entry), Number(fields[1]));
      ticks.set(Number(entry), Number(fields[11]) + Number(fields[12]));
    } catch {
      // gone meanwhile
    }
  }
  let total = 0;
  for (const [p, t] of ticks) {
    for (let q: number | undefined = p; q !== undefined && q > 1; q = parents.get(q)) {
      if (q === pid) {
        total += t;
        break;
      }
    }
  }
  return total;
}

interface Run {
  readonly reqPerSec: number;
  readonly requests: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** CPU µs per request of the measured process tree, when one was given. */
  readonly cpuUsPerRequest: number | undefined;
}

function parseMs(text: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(text);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === "us" ? v / 1000 : m[2] === "s" ? v * 1000 : v;
}

function wrk(
  url: string,
  headers: Record<string, string>,
  pid: number | undefined,
  connections = CONNECTIONS,
): Run {
  const args = ["-t1", `-c${connections}`, `-d${DURATION_S}s`, "--latency"];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  execFileSync("wrk", ["-t1", `-c${connections}`, "-d1s", ...args.slice(3), url], {
    stdio: "ignore",
  }); // warm-up
  const before = pid === undefined ? 0 : cpuTicks(pid);
  const out = execFileSync("wrk", [...args, url], { encoding: "utf8" });
  const after = pid === undefined ? 0 : cpuTicks(pid);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  if (requests === 0 || non2xx > 0)
    throw new Error(`wrk ${url}: ${requests} requests, ${non2xx} not 2xx\n${out}`);
  return {
    reqPerSec: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0),
    requests,
    p50Ms: parseMs(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? ""),
    p99Ms: parseMs(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? ""),
    cpuUsPerRequest:
      pid === undefined ? undefined : ((after - before) * (1e6 / CLK_TCK)) / requests,
  };
}

function spawnDaemon(command: string, args: readonly string[]): ChildProcess {
  return spawn(command, args, { stdio: "ignore" });
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

async function main(): Promise<void> {
  ensureDebianDeps();
  ensureTools();
  say("bench:proxy: starting Keystone and fixtures (about 40 s)…");
  const keystone = await startKeystone();
  const dir = mkdtempSync(join(tmpdir(), "ke-bench-proxy-"));
  const children: ChildProcess[] = [];
  const edges: EdgeProcess[] = [];
  const kmws: KmwHandle[] = [];
  try {
    const fixtures = await createFixtures(keystone.info);
    const token = fixtures.tokens.project;
    const auth = { "X-Auth-Token": token };

    // (a) static upstream
    const upstreamPort = await freePort();
    children.push(
      spawnDaemon(process.execPath, [dist("static-upstream.js"), String(upstreamPort)]),
    );
    const upstream = `http://127.0.0.1:${upstreamPort}`;
    await waitHttp(upstream);
    const upstreamPid = children[0]?.pid ?? -1;

    const nginxPort = await freePort();
    writeFileSync(
      join(dir, "nginx.conf"),
      `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 1024; }
http { access_log off;
  upstream up { server 127.0.0.1:${upstreamPort}; keepalive 64; }
  server { listen 127.0.0.1:${nginxPort};
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
`,
    );
    const nginx = spawnDaemon("/usr/sbin/nginx", ["-c", join(dir, "nginx.conf")]);
    children.push(nginx);
    await waitHttp(`http://127.0.0.1:${nginxPort}`);

    const passPort = await freePort();
    const pass = spawnDaemon(process.execPath, [
      dist("passthrough.js"),
      String(passPort),
      upstream,
    ]);
    children.push(pass);
    await waitHttp(`http://127.0.0.1:${passPort}`);

    const edgeA = await startEdgeProcess({
      keystone: keystone.info,
      upstream,
      serviceUser: fixtures.serviceUser,
      nodeArgs: EDGE_NODE_ARGS,
    });
    edges.push(edgeA);

    const edgeNoCatalog = await startEdgeProcess({
      keystone: keystone.info,
      upstream,
      serviceUser: fixtures.serviceUser,
      extraYaml: ["auth_token:", "  include_service_catalog: false"],
    });
    edges.push(edgeNoCatalog);

    say(`bench:proxy: (a) static upstream, wrk -t1 -c${CONNECTIONS} -d${DURATION_S}s per case`);
    const a = {
      direct: wrk(upstream, {}, upstreamPid),
      nginx: wrk(`http://127.0.0.1:${nginxPort}`, {}, nginx.pid),
      passthrough: wrk(`http://127.0.0.1:${passPort}`, {}, pass.pid),
      edge: wrk(edgeA.url, auth, edgeA.pid),
      edgeNoCatalog: wrk(edgeNoCatalog.url, auth, edgeNoCatalog.pid),
    };
    const lowLoad = {
      direct: wrk(upstream, {}, undefined, LATENCY_CONNECTIONS),
      edge: wrk(edgeA.url, auth, undefined, LATENCY_CONNECTIONS),
    };

    // (b) WSGI echo under uwsgi
    const kmwConf = {
      auth_type: "password",
      auth_url: keystone.url,
      www_authenticate_uri: keystone.url,
      username: fixtures.serviceUser.name,
      password: fixtures.serviceUser.password,
      project_name: fixtures.serviceUser.project,
      user_domain_id: "default",
      project_domain_id: "default",
    };
    const bare = await startKeystonemiddleware(kmwConf, 1, { bare: true });
    kmws.push(bare);
    const wrapped = await startKeystonemiddleware(kmwConf, 1);
    kmws.push(wrapped);
    const edgeB = await startEdgeProcess({
      keystone: keystone.info,
      upstream: bare.url,
      serviceUser: fixtures.serviceUser,
    });
    edges.push(edgeB);
    say("bench:proxy: (b) WSGI echo app under uwsgi (1 process, 4 threads)");
    const b = {
      bare: wrk(bare.url, {}, bare.pid),
      wrapped: wrk(wrapped.url, auth, wrapped.pid),
      edge: wrk(edgeB.url, auth, edgeB.pid),
    };

    const row = (name: string, r: Run): string =>
      `${name.padEnd(44)} ${Math.round(r.reqPerSec).toString().padStart(7)}  ${r.p50Ms.toFixed(2).padStart(6)}  ${r.p99Ms
        .toFixed(2)
        .padStart(
          6,
        )}  ${r.cpuUsPerRequest === undefined ? "" : r.cpuUsPerRequest.toFixed(1).padStart(7)}`;
    say("");
    say(
      `machine: ${cpus()[0]?.model ?? "?"}, ${String(cpus().length)} cores; node ${process.version}`,
    );
    say(`${"case".padEnd(44)}   req/s  p50 ms  p99 ms  CPU µs/req (that process tree)`);
    say(row("(a) static upstream, direct", a.direct));
    say(row("(a) through nginx hop", a.nginx));
    say(row("(a) through bare pass-through (no validation)", a.passthrough));
    say(row("(a) through keystone-edge (cached token)", a.edge));
    say(row("(a) the same, include_service_catalog: false", a.edgeNoCatalog));
    say(row(`(a) direct, c=${String(LATENCY_CONNECTIONS)}`, lowLoad.direct));
    say(row(`(a) through keystone-edge, c=${String(LATENCY_CONNECTIONS)}`, lowLoad.edge));
    say(row("(b) uwsgi echo, bare", b.bare));
    say(row("(b) uwsgi echo wrapped by keystonemiddleware", b.wrapped));
    say(row("(b) keystone-edge in front of bare uwsgi echo", b.edge));

    const edgeCpu = a.edge.cpuUsPerRequest ?? NaN;
    const nginxCpu = a.nginx.cpuUsPerRequest ?? NaN;
    const validationUs = edgeCpu - (a.passthrough.cpuUsPerRequest ?? NaN);
    const kmwAuthUs = (b.wrapped.cpuUsPerRequest ?? NaN) - (b.bare.cpuUsPerRequest ?? NaN);
    const edgeWholeUs = b.edge.cpuUsPerRequest ?? NaN;
    const addedP99 = lowLoad.edge.p99Ms - lowLoad.direct.p99Ms;
    const verdict = (ok: boolean): string => (ok ? "met" : "MISSED");
    say("");
    say(
      `keystone-edge CPU per request / nginx hop's:        ${(edgeCpu / nginxCpu).toFixed(2)}×   (target ≤ 4×: ${verdict(edgeCpu <= 4 * nginxCpu)})`,
    );
    say(
      `validation on a cached token (edge − pass-through): ${validationUs.toFixed(1)} µs (target ≤ 15 µs: ${verdict(validationUs <= 15)})`,
    );
    say(
      `keystonemiddleware auth work (wrapped − bare):      ${kmwAuthUs.toFixed(1)} µs = ${(kmwAuthUs / edgeWholeUs).toFixed(1)}× keystone-edge's whole ${edgeWholeUs.toFixed(1)} µs (target ≥ 5×: ${verdict(kmwAuthUs >= 5 * edgeWholeUs)})`,
    );
    say(
      `p99 added latency at c=${String(LATENCY_CONNECTIONS)} (edge − direct):            ${addedP99.toFixed(2)} ms (target ≤ 1 ms: ${verdict(addedP99 <= 1)})`,
    );
  } finally {
    for (const e of edges) await e.stop();
    for (const k of kmws) await k.stop();
    for (const c of children) c.kill("SIGTERM");
    await keystone.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:proxy: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
