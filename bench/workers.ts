/**
 * `npm run bench:workers`: throughput of `keystone-edge serve` with 1 and with 2 worker
 * processes (issue 17, item 3), measured in the same run on this machine.
 *
 * Each case: the built binary with `workers: N` in front of the static upstream of
 * bench:proxy (own process), Keystone a stand-in (test/harness/fake-keystone.ts) that is
 * asked once (every request carries the same cached token: the edge's own cost, not
 * Keystone's), wrk (Debian) with 2 threads and 64 keep-alive connections. Nothing is
 * pinned: on a 2-core machine wrk, the upstream and the edge share both cores, which is the
 * point to read the figures against (the projection for bigger hosts is in
 * docs/benchmarks.md, with its reasoning). Cases interleave over rounds; each figure is the
 * median. Prints req/s, p50/p99, the CPU of the edge's process tree per request, and the
 * ratio 2 workers / 1.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { arch, cpus, platform, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { generateFernetKeyText } from "../src/fernet/envelope.js";
import { readKeyRepository } from "../src/fernet/key-repository.js";
import { staticKeyRing } from "../src/fernet/key-ring.js";
import { TokenDecoder } from "../src/token/decoder.js";
import { DEFAULT_AUTH_METHODS } from "../src/token/methods.js";
import { randomAuditId } from "../src/token/payload.js";
import type { EpochMicros } from "../src/units.js";
import { startFakeKeystone } from "../test/harness/fake-keystone.js";
import { freePort } from "../test/harness/net.js";
import { waitUntil } from "../test/harness/wait.js";
import { CLK_TCK, cpuTicks } from "./process-tree.js";

const execFileAsync = promisify(execFile);
const DURATION_S = Number(process.env["BENCH_DURATION_S"] ?? 5);
const ROUNDS = Number(process.env["BENCH_ROUNDS"] ?? 3);
const CONNECTIONS = Number(process.env["BENCH_CONNECTIONS"] ?? 64);
const WORKERS = [1, 2] as const;
const root = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(root, "dist/src/cli/main.js");
const UPSTREAM = join(root, "dist/bench/static-upstream.js");

function say(s: string): void {
  process.stdout.write(`${s}\n`);
}

/** Until `url` answers 200 (the edge's /readyz). */
function waitReady(url: string): Promise<void> {
  const ok = (): Promise<boolean> =>
    fetch(url).then(
      async (r) => {
        await r.arrayBuffer();
        return r.status === 200;
      },
      () => false,
    );
  return waitUntil(ok, 30_000, `${url} to answer 200`, 100);
}

interface Figures {
  readonly reqPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly cpuUsPerRequest: number;
}

function ms(text: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(text);
  if (!m) return Number.NaN;
  const v = Number(m[1]);
  return m[2] === "us" ? v / 1000 : m[2] === "s" ? v * 1000 : v;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

if (!existsSync("/usr/bin/wrk")) {
  say("bench:workers: installing wrk from Debian…");
  execFileSync("apt-get", ["install", "-y", "--no-install-recommends", "wrk"], {
    stdio: "inherit",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
}
const dir = mkdtempSync(join(tmpdir(), "ke-bench-workers-"));
const keys = join(dir, "keys");
mkdirSync(keys, { mode: 0o700 });
for (let i = 0; i < 3; i++)
  writeFileSync(join(keys, String(i)), generateFernetKeyText(), { mode: 0o600 });
const decoder = new TokenDecoder({
  keys: staticKeyRing(await readKeyRepository(keys)),
  authMethods: DEFAULT_AUTH_METHODS,
});
const keystone = await startFakeKeystone((t) => {
  const d = decoder.decode(t);
  return d.status === "valid" ? d.token : undefined;
});
const token = decoder.mint({
  kind: "project",
  version: 2,
  userId: "0".repeat(31) + "1",
  methods: ["password"],
  auditIds: [randomAuditId()],
  projectId: "0".repeat(31) + "2",
  expiresAtMicros: ((Math.floor(Date.now() / 1000) + 7_200) * 1e6) as EpochMicros,
});
const upstreamPort = await freePort();
const upstream = spawn(process.execPath, [UPSTREAM, String(upstreamPort)], { stdio: "ignore" });

async function edgeWith(workers: number): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const admin = await freePort();
  const file = join(dir, `edge-${String(workers)}.yaml`);
  writeFileSync(
    file,
    [
      `listen: "127.0.0.1:${String(port)}"`,
      `upstream: "http://127.0.0.1:${String(upstreamPort)}"`,
      `admin_listen: "127.0.0.1:${String(admin)}"`,
      `workers: ${String(workers)}`,
      "keystone:",
      `  www_authenticate_uri: "${keystone.url}"`,
      "  auth: { type: password, username: u, password: p, user_domain_id: default, project_name: p, project_domain_id: default }",
      "fernet:",
      `  key_repository: ${keys}`,
      "",
    ].join("\n"),
  );
  const child = spawn(process.execPath, [BIN, "serve", "--config", file, "--log-level", "warn"], {
    stdio: "ignore",
  });
  await waitReady(`http://127.0.0.1:${String(admin)}/readyz`);
  return { child, url: `http://127.0.0.1:${String(port)}/v2.1/servers` };
}

async function run(url: string, pid: number): Promise<Figures> {
  const args = ["-t2", `-c${String(CONNECTIONS)}`, "--latency", "-H", `X-Auth-Token: ${token}`];
  await execFileAsync("wrk", [...args, "-d1s", url]); // warm-up: caches, pools, JIT
  const before = cpuTicks(pid);
  const { stdout } = await execFileAsync("wrk", [...args, `-d${String(DURATION_S)}s`, url]);
  const after = cpuTicks(pid);
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  if (requests === 0 || non2xx > 0) throw new Error(`wrk: ${String(non2xx)} not 2xx\n${stdout}`);
  return {
    reqPerSec: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? 0),
    p50Ms: ms(/^\s+50%\s+(\S+)/m.exec(stdout)?.[1] ?? ""),
    p99Ms: ms(/^\s+99%\s+(\S+)/m.exec(stdout)?.[1] ?? ""),
    cpuUsPerRequest: ((after - before) * (1e6 / CLK_TCK)) / requests,
  };
}

try {
  const edges = new Map<number, { child: ChildProcess; url: string }>();
  for (const n of WORKERS) edges.set(n, await edgeWith(n));
  const results = new Map<number, Figures[]>(WORKERS.map((n) => [n, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const n of WORKERS) {
      const e = edges.get(n);
      if (e?.child.pid === undefined) throw new Error("edge not started");
      results.get(n)?.push(await run(e.url, e.child.pid));
    }
  }
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  say(
    `bench:workers — machine: ${cpu}, ${String(cpus().length)} cores, ${String(Math.round(totalmem() / 2 ** 30))} GiB, ${platform()} ${release()} ${arch()}, Node ${process.version}`,
  );
  say(
    `wrk -t2 -c${String(CONNECTIONS)}, ${String(DURATION_S)} s × ${String(ROUNDS)} rounds (medians); a cached token; nothing pinned\n`,
  );
  say("| workers | req/s | p50 | p99 | edge CPU per request |");
  say("| ---: | ---: | ---: | ---: | ---: |");
  const med = new Map<number, Figures>();
  for (const n of WORKERS) {
    const rs = results.get(n) ?? [];
    const f: Figures = {
      reqPerSec: median(rs.map((x) => x.reqPerSec)),
      p50Ms: median(rs.map((x) => x.p50Ms)),
      p99Ms: median(rs.map((x) => x.p99Ms)),
      cpuUsPerRequest: median(rs.map((x) => x.cpuUsPerRequest)),
    };
    med.set(n, f);
    say(
      `| ${String(n)} | ${f.reqPerSec.toFixed(0)} | ${f.p50Ms.toFixed(2)} ms | ${f.p99Ms.toFixed(2)} ms | ${f.cpuUsPerRequest.toFixed(0)} µs |`,
    );
  }
  const one = med.get(1)?.reqPerSec ?? Number.NaN;
  const two = med.get(2)?.reqPerSec ?? Number.NaN;
  say(`\n2 workers / 1: ×${(two / one).toFixed(2)} req/s`);
  for (const e of edges.values()) e.child.kill("SIGTERM");
  await Promise.all([...edges.values()].map((e) => new Promise((r) => e.child.once("exit", r))));
} finally {
  upstream.kill("SIGTERM");
  await keystone.close();
  rmSync(dir, { recursive: true, force: true });
}
