/**
 * `npm run bench:soak`: keystone-edge under a steady, hostile token mix for a long time
 * (issue 13): a real region — Keystone (PostgreSQL, uwsgi, its cache on memcached), the
 * edge's own memcached, an echo service, and `keystone-edge serve` as its own process — with
 * one memcached restart (at 1/3 of the run) and one Keystone restart (at 2/3) in the middle.
 *
 * Owns: the soak's traffic (an open-loop request schedule at a fixed rate, every request
 * carrying a token whose expected verdict is known when it is sent), the restarts, the
 * sampling of the edge process (RSS from /proc/PID/status, open fds from /proc/PID/fd with
 * each socket classified through /proc/PID/net/tcp*, CPU, and from its /metrics the event
 * loop lag, heap, cache entries and Keystone calls), the report and the verdict.
 *
 * The region. The edge's one Keystone endpoint is a second uwsgi serving the harness
 * Keystone's database and keys (test/harness/keystone-replica.ts): the one that is stopped
 * and started again. The harness's first uwsgi stays up and takes the bench's own admin
 * calls (issuing, revoking), so they never depend on the restart. `[token] expiration` is
 * set to at least the run + 30 min, so no token expires mid-run unless meant to.
 *
 * The token mix (class: what it is — the verdict expected):
 * - valid: a pool of tokens issued by Keystone (one of every fixture kind: project, other
 *   domain, domain, system, unscoped, rescoped, application credential, trust, service; and
 *   project tokens of soak users) and tokens minted with Keystone's keys, one per known user
 *   + project pair, each sent once before the run — 200;
 * - fresh: a token never seen before for a known user + project, minted per request with
 *   Keystone's keys (what `openstack` CLI runs send) — 200;
 * - new-scope: a token for a user + project pair never sent before (the user is known, the
 *   project is not: Keystone must be asked) — 200;
 * - expired: a token for a known user + project whose expiry has passed (fresh or repeated)
 *   — 401;
 * - expiring: tokens that expire during the run, sent throughout — 200 until their expiry,
 *   401 from 1 s after it (either in between);
 * - revoked: Keystone-issued tokens, each deleted at Keystone (`DELETE /v3/auth/tokens`) at
 *   a point of the run — 200 before, 401 from the edge's revocation poll interval (10 s by
 *   default, not changed here) + SOAK_REVOCATION_MARGIN_S after the delete returned (either
 *   in between);
 * - forged: random base64url, random bytes in Fernet's shape, a valid payload sealed with a
 *   foreign key, a valid token with one character changed, a valid token cut short, and a
 *   few of these repeated (negative cache) — 401.
 *
 * The master's own health, measured beside the edge: once every SOAK_PROBE_S the bench asks
 * the edge's Keystone endpoint itself to validate a token it has never seen (minted with
 * Keystone's keys for a known user + project, so Keystone's token cache misses and its
 * role, assignment and catalog caches are used as for the edge's calls) and records how
 * long the answer took. It adds that one call per probe period to the master's load.
 *
 * Verdicts. Wrong: 200 where 401 is expected, or 401 where 200 is. Unavailable: 503 for a
 * class that may need Keystone (all but expired and forged) on a request overlapping the
 * Keystone restart (from the stop until SOAK_RECOVERY_S after it answers again), or
 * overlapping a probe that failed or took SOAK_MASTER_SLOW_MS or more: the master itself
 * was down or slower than the edge's default per-call deadline (`keystone.timeout_ms`,
 * 2 s), so a token that only the master can settle (a new scope, a context whose time is
 * over and has no stale copy) has no answer to give; such 503s are counted apart
 * ("master slow"). Errors: everything else that is neither the expected answer nor allowed
 * (503 while the master answered in time or for a token the edge decides alone, other
 * statuses, connection errors, timeouts).
 *
 * PASS requires: 0 wrong verdicts; 0 errors; both restarts done; the edge's fds at the end
 * ≤ after warm-up + SOAK_FD_SLACK, counting every fd except live connections whose number
 * follows the load (the generator's to the edge, the edge's HTTP pools' to the service and
 * to Keystone, which grow with concurrency and shrink after 30 s idle; they are reported,
 * and a leaked socket is still counted: once its peer closes it sits in CLOSE_WAIT); and,
 * for runs of at least SOAK_RSS_JUDGED_FROM_S, RSS growth (end − after warm-up) / after
 * warm-up < SOAK_RSS_LIMIT_PCT, and no leak: the same growth of the memory outside V8's
 * heap (RSS − V8's reserved heap) and, with `--trace-gc`, of the heap left by full GCs, each
 * below the same limit (shorter runs print them unjudged). The two tell what RSS alone
 * cannot: V8 keeps the free pages of its old space reserved, and under steady load that
 * reservation creeps for the first hour while no object or native allocation accumulates.
 * "After warm-up" and "end" are medians of the samples in a window (10 % of the run, 5 to
 * 30 s) after the warm-up and at the end of the traffic. Exit status 1 on FAIL.
 *
 * Rate: 200 req/s by default. On the 2-core development machine (shared with Keystone,
 * PostgreSQL and the generator) the edge used ≈ 10–12 % of a core and the generator ≈ 10 %
 * at that rate: the run measures the edge over time, not at its limit.
 *
 * Knobs (environment), defaults in brackets:
 * - SOAK_DURATION_S [1800]  length of the timed run;
 * - SOAK_RATE [200]  requests per second, open loop (sent on schedule whatever the answers);
 * - SOAK_TOKEN_CACHE_TIME_S [60], SOAK_STALE_IF_ERROR_S [120]  the edge's `token_cache_time`
 *   (contexts live as long) and `stale_if_error`: shorter than production's (300 s, 900 s)
 *   so that the caches reach their steady size inside the warm-up and the rest of the run
 *   measures leaks, not the caches filling (with production's, contexts fill for 20
 *   minutes); more expiries and more Keystone calls make the run harsher, not easier;
 * - SOAK_WARMUP_S [10 % of the run, at least 60 s and the longest cache lifetime + 30 s, at
 *   most half the run]  the part of the run before the RSS and fd baselines;
 * - SOAK_MIX [valid=48,fresh=20,new-scope=1,expired=8,expiring=3,revoked=5,forged=15]
 *   weights of the classes;
 * - SOAK_USERS [50], SOAK_PROJECTS [10]  known user + project pairs (users × projects);
 *   projects for new scopes are added to cover the run;
 * - SOAK_ISSUED [20]  Keystone-issued project tokens in the valid pool (besides the fixtures);
 * - SOAK_REVOCATIONS [6]  tokens revoked during the run (as many as fit its timeline);
 * - SOAK_EXPIRING [8]  tokens that expire during the run;
 * - SOAK_OUTAGE_S [5]  how long memcached and Keystone stay down at their restart;
 * - SOAK_RECOVERY_S [20]  after Keystone answers again, how long 503s still count as
 *   unavailable (the edge's breaker reopens the endpoint within `open_duration_ms` + a probe);
 * - SOAK_REVOCATION_MARGIN_S [5]  beyond the poll interval, before a revoked token must be
 *   refused;
 * - SOAK_PROBE_S [1], SOAK_MASTER_SLOW_MS [2000]  the master probe's period, and the answer
 *   time from which the master counts as slower than the edge's deadline;
 * - SOAK_KEYSTONE_THREADS [24]  the edge's Keystone's uwsgi threads (one process): at least
 *   the connections its clients keep — the edge's 16, the probe's 4 — because uwsgi's
 *   `--http11-socket` holds a thread on every idle keep-alive connection for up to 4 s, so a
 *   Keystone with fewer threads than connections makes requests on the others wait seconds
 *   (runs 1–8 had 8 threads: their 503 clusters were that, docs/security.md);
 * - SOAK_SAMPLE_S [5], SOAK_PRINT_S [30]  sampling and progress-line periods;
 * - SOAK_CONNECTIONS [32]  the generator's keep-alive connections to the edge;
 * - SOAK_MAX_IN_FLIGHT [512]  requests in flight beyond which scheduled ones are skipped
 *   (counted; so is a schedule more than 1 s behind);
 * - SOAK_FD_SLACK [5], SOAK_RSS_LIMIT_PCT [5], SOAK_RSS_JUDGED_FROM_S [600]  the verdict;
 * - SOAK_SEED [1]  the class sequence and new-scope order;
 * - SOAK_NODE_ARGS [none]  flags for the edge's node, space-separated (e.g.
 *   `--max-old-space-size=256` as a container limit would suggest, or `--trace-gc`: its
 *   mark-compact lines are then summarised — the live heap after each full collection
 *   against V8's reserved size — to tell a leak from the heap's sizing);
 * - SOAK_OUT [none]  a file to write every sample and the summary to, as JSON.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, readdirSync, readlinkSync, writeFileSync } from "node:fs";
import { Pool } from "undici";
import { fernetKeyFromBytes } from "../src/fernet/envelope.js";
import { readKeyRepository } from "../src/fernet/key-repository.js";
import { KeyRing, staticKeyRing } from "../src/fernet/key-ring.js";
import { TokenDecoder } from "../src/token/decoder.js";
import { randomAuditId } from "../src/token/payload.js";
import type { EpochMicros } from "../src/units.js";
import { issueToken, type KeystoneInfo } from "../test/harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../test/harness/echo-upstream.js";
import { startEdgeProcess, type EdgeProcess } from "../test/harness/edge-process.js";
import { api, authenticate, createFixtures } from "../test/harness/fixtures.js";
import { ensureDebianDeps } from "../test/harness/global-setup.js";
import { startKeystoneReplica, type KeystoneReplica } from "../test/harness/keystone-replica.js";
import { startKeystone, type KeystoneHandle } from "../test/harness/keystone.js";
import { startMemcached, type MemcachedHandle } from "../test/harness/memcached.js";

// ---------------------------------------------------------------------------------------
// knobs

function num(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a number ≥ 0`);
  return value;
}

const DURATION_S = num("SOAK_DURATION_S", 1800);
const RATE = num("SOAK_RATE", 200);
const TOKEN_CACHE_TIME_S = num("SOAK_TOKEN_CACHE_TIME_S", 60);
const STALE_IF_ERROR_S = num("SOAK_STALE_IF_ERROR_S", 120);
/** The longest any cache entry lives: after it, the caches hold their steady size. */
const CACHE_LIFETIME_S = TOKEN_CACHE_TIME_S + STALE_IF_ERROR_S;
const WARMUP_S = num(
  "SOAK_WARMUP_S",
  Math.min(Math.max(0.1 * DURATION_S, 60, CACHE_LIFETIME_S + 30), 0.5 * DURATION_S),
);
const USERS = Math.max(1, Math.floor(num("SOAK_USERS", 50)));
const PROJECTS = Math.max(1, Math.floor(num("SOAK_PROJECTS", 10)));
const ISSUED = Math.floor(num("SOAK_ISSUED", 20));
const REVOCATIONS = Math.floor(num("SOAK_REVOCATIONS", 6));
const EXPIRING = Math.floor(num("SOAK_EXPIRING", 8));
const OUTAGE_S = num("SOAK_OUTAGE_S", 5);
const RECOVERY_S = num("SOAK_RECOVERY_S", 20);
const REVOCATION_MARGIN_S = num("SOAK_REVOCATION_MARGIN_S", 5);
const PROBE_S = Math.max(0.1, num("SOAK_PROBE_S", 1));
/** The master probe's connections (it must not queue behind itself while the master is fast). */
const PROBE_CONNECTIONS = 4;
/** The edge's connections to one Keystone endpoint (`keystone.connections`'s default). */
const EDGE_KEYSTONE_CONNECTIONS = 16;
const KEYSTONE_THREADS = Math.max(
  1,
  Math.floor(num("SOAK_KEYSTONE_THREADS", EDGE_KEYSTONE_CONNECTIONS + PROBE_CONNECTIONS + 4)),
);
const MASTER_SLOW_MS = Math.max(1, num("SOAK_MASTER_SLOW_MS", 2000));
const SAMPLE_S = Math.max(1, num("SOAK_SAMPLE_S", 5));
const PRINT_S = Math.max(SAMPLE_S, num("SOAK_PRINT_S", 30));
const NODE_ARGS = (process.env.SOAK_NODE_ARGS ?? "").split(/\s+/).filter((a) => a !== "");
const CONNECTIONS = Math.max(1, Math.floor(num("SOAK_CONNECTIONS", 32)));
const MAX_IN_FLIGHT = Math.max(1, Math.floor(num("SOAK_MAX_IN_FLIGHT", 512)));
const FD_SLACK = num("SOAK_FD_SLACK", 5);
const RSS_LIMIT_PCT = num("SOAK_RSS_LIMIT_PCT", 5);
const RSS_JUDGED_FROM_S = num("SOAK_RSS_JUDGED_FROM_S", 600);
const SEED = Math.floor(num("SOAK_SEED", 1));
const OUT = process.env.SOAK_OUT ?? "";

const CLASSES = [
  "valid",
  "fresh",
  "new-scope",
  "expired",
  "expiring",
  "revoked",
  "forged",
] as const;
type ClassName = (typeof CLASSES)[number];
const DEFAULT_MIX: Readonly<Record<ClassName, number>> = {
  valid: 48,
  fresh: 20,
  "new-scope": 1,
  expired: 8,
  expiring: 3,
  revoked: 5,
  forged: 15,
};

function parseMix(text: string | undefined): Record<ClassName, number> {
  const mix = { ...DEFAULT_MIX };
  if (text === undefined || text.trim() === "") return mix;
  for (const part of text.split(",")) {
    const [name, value] = part.split("=").map((s) => s.trim());
    if (!CLASSES.includes(name as ClassName) || value === undefined || !(Number(value) >= 0)) {
      throw new Error(`SOAK_MIX: "${part}" is not class=weight (classes: ${CLASSES.join(", ")})`);
    }
    mix[name as ClassName] = Number(value);
  }
  return mix;
}
const MIX = parseMix(process.env.SOAK_MIX);

/** The edge's default `keystone.revocation_poll_interval_ms` (this bench leaves it). */
const REVOCATION_POLL_MS = 10_000;
/** A revoked token's deadline: poll interval + margin after the delete returned. */
const REVOCATION_DEADLINE_MS = REVOCATION_POLL_MS + REVOCATION_MARGIN_S * 1000;
/** Around an expiry, this long on either side accepts either answer. */
const EXPIRY_SLACK_MS = 1_000;
/** A revocation needs this much run left after it to be checked. */
const REVOCATION_TAIL_MS = REVOCATION_DEADLINE_MS + 10_000;
const PASSWORD = "soak-password-1";

// ---------------------------------------------------------------------------------------
// small helpers

const fmt = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : "–");
const pad = (s: string | number, width: number): string => String(s).padStart(width);

function say(s: string): void {
  process.stdout.write(`${s}\n`);
}

const benchStart = Date.now();
/** A set-up step, with the time since the bench started. */
function stage(s: string): void {
  say(`[${pad(fmt((Date.now() - benchStart) / 1000, 0), 3)} s] ${s}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs `count` jobs, `concurrency` at a time. */
async function pool(count: number, concurrency: number, job: (i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      for (let i = next++; i < count; i = next++) await job(i);
    }),
  );
}

function pick<T>(items: readonly T[], random: () => number): T {
  const item = items[Math.floor(random() * items.length)];
  if (item === undefined) throw new Error("pick from an empty list");
  return item;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/**
 * Latencies in logarithmic buckets (1 % wide, from 10 µs): constant memory however long
 * the run; quantiles within 1 %, the maximum exact.
 */
class Histogram {
  private static readonly BASE_MS = 0.01;
  private static readonly LOG_GROWTH = Math.log(1.01);
  private static readonly BUCKETS = 2_400; // up to ≈ 4.5 min
  private readonly counts = new Float64Array(Histogram.BUCKETS);
  count = 0;
  max = 0;

  add(ms: number): void {
    const b =
      ms <= Histogram.BASE_MS
        ? 0
        : Math.min(
            Histogram.BUCKETS - 1,
            Math.ceil(Math.log(ms / Histogram.BASE_MS) / Histogram.LOG_GROWTH),
          );
    this.counts[b] = (this.counts[b] ?? 0) + 1;
    this.count++;
    if (ms > this.max) this.max = ms;
  }

  quantile(q: number): number {
    if (this.count === 0) return Number.NaN;
    const target = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let b = 0; b < Histogram.BUCKETS; b++) {
      seen += this.counts[b] ?? 0;
      if (seen >= target)
        return Math.min(this.max, Histogram.BASE_MS * Math.exp(b * Histogram.LOG_GROWTH));
    }
    return this.max;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.max = 0;
  }
}

// ---------------------------------------------------------------------------------------
// the edge process, seen from /proc and /metrics

let clockTicks = 100;
try {
  clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
} catch {
  // Linux's usual value
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${String(pid)}/status`, "utf8"));
  return Number(m?.[1] ?? Number.NaN) / 1024;
}

/** utime + stime of `pid`, seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${String(pid)}/stat`, "utf8");
  // after "pid (comm) ": state is field 3; utime and stime are fields 14 and 15
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

/** Busy and total jiffies of the whole machine (/proc/stat), for its load beside the edge's. */
function machineTicks(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

/** The edge's ports and its peers', to classify its sockets. */
interface Ports {
  readonly listen: readonly number[];
  readonly upstream: number;
  readonly memcached: number;
  readonly keystone: number;
}

interface Fds {
  readonly total: number;
  /** Connections accepted on the edge's listeners (the load generator's and our scrapes). */
  readonly inbound: number;
  readonly listening: number;
  /** Established connections of the edge's HTTP pools: their number follows the load. */
  readonly upstream: number;
  readonly keystone: number;
  /** Established connections to memcached (one per server). */
  readonly memcached: number;
  /** Outbound TCP sockets in CLOSE_WAIT (the peer closed, the edge did not): a leak's mark. */
  readonly closeWait: number;
  /** Everything else: other sockets, pipes, files, epoll, timers… */
  readonly other: number;
  /**
   * The fds judged for flatness: all but the inbound connections and the HTTP pools' live
   * connections, whose numbers follow the load (a pool grows with concurrency and drops a
   * connection after 30 s idle). A leaked socket stays counted here: once its peer closes it
   * sits in CLOSE_WAIT, not ESTABLISHED.
   */
  readonly judged: number;
}

const TCP_ESTABLISHED = "01";
const TCP_CLOSE_WAIT = "08";
const TCP_LISTEN = "0A";

function fds(pid: number, ports: Ports): Fds {
  const dir = `/proc/${String(pid)}/fd`;
  const sockets = new Set<string>();
  let total = 0;
  for (const name of readdirSync(dir)) {
    total++;
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`${dir}/${name}`));
      if (m?.[1] !== undefined) sockets.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  let inbound = 0;
  let listening = 0;
  let upstream = 0;
  let memcached = 0;
  let keystone = 0;
  let closeWait = 0;
  for (const table of ["tcp", "tcp6"]) {
    let text: string;
    try {
      text = readFileSync(`/proc/${String(pid)}/net/${table}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      const [local, remote, state, inode] = [f[1], f[2], f[3], f[9]];
      if (local === undefined || remote === undefined || inode === undefined) continue;
      if (!sockets.has(inode)) continue;
      sockets.delete(inode); // a socket is counted once
      const localPort = parseInt(local.slice(local.lastIndexOf(":") + 1), 16);
      const remotePort = parseInt(remote.slice(remote.lastIndexOf(":") + 1), 16);
      if (state === TCP_LISTEN) listening++;
      else if (ports.listen.includes(localPort)) inbound++;
      else if (state === TCP_CLOSE_WAIT) closeWait++;
      else if (state !== TCP_ESTABLISHED) continue;
      else if (remotePort === ports.upstream) upstream++;
      else if (remotePort === ports.memcached) memcached++;
      else if (remotePort === ports.keystone) keystone++;
    }
  }
  const known = inbound + listening + upstream + memcached + keystone + closeWait;
  return {
    total,
    inbound,
    listening,
    upstream,
    memcached,
    keystone,
    closeWait,
    other: total - known,
    judged: total - inbound - upstream - keystone,
  };
}

interface Series {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

async function scrape(adminUrl: string): Promise<Series[] | undefined> {
  try {
    const res = await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(5_000) });
    const text = await res.text();
    if (res.status !== 200) return undefined;
    const out: Series[] = [];
    for (const line of text.split("\n")) {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
      if (m?.[1] === undefined || m[3] === undefined) continue;
      const labels: Record<string, string> = {};
      for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
        if (l[1] !== undefined) labels[l[1]] = l[2] ?? "";
      }
      out.push({ name: m[1], labels, value: Number(m[3]) });
    }
    return out;
  } catch {
    return undefined;
  }
}

/** V8's reserved bytes per heap space, from prom-client's default metrics, in MiB. */
function heapSpaces(series: readonly Series[] | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of series ?? [])
    if (s.name === "keystone_edge_nodejs_heap_space_size_total_bytes" && s.labels.space)
      out[s.labels.space] = s.value / 2 ** 20;
  return out;
}

function sum(
  series: readonly Series[] | undefined,
  name: string,
  where: (labels: Readonly<Record<string, string>>) => boolean = () => true,
): number {
  if (series === undefined) return Number.NaN;
  let total = 0;
  let found = false;
  for (const s of series) {
    if (s.name === name && where(s.labels)) {
      total += s.value;
      found = true;
    }
  }
  return found ? total : Number.NaN;
}

// ---------------------------------------------------------------------------------------
// requests and verdicts

type Expectation = "accept" | "reject" | "either";

/** One request to send: its token and how to judge the answer. */
interface Planned {
  readonly cls: ClassName;
  readonly sub: string;
  readonly token: string;
  /** What the answer must be, given when the request was sent and answered (wall clock). */
  readonly expect: (sentMs: number, doneMs: number) => Expectation;
  /** Whether the edge may have to ask Keystone (503 allowed during its restart). */
  readonly mayNeedKeystone: boolean;
  readonly revocation?: Revocation;
}

interface Revocation {
  readonly token: string;
  startMs: number | undefined;
  doneMs: number | undefined;
  /** 401s / 200s to requests sent after the deadline. */
  refusedAfterDeadline: number;
  acceptedAfterDeadline: number;
}

interface ClassTally {
  sent: number;
  status: Map<string, number>;
  wrong: number;
  unavailable: number;
  /** Of `unavailable`: 503s while the master probe saw Keystone down or too slow. */
  masterSlow: number;
  errors: number;
  either: number;
  readonly latency: Histogram;
}

const tally = new Map<ClassName, ClassTally>(
  CLASSES.map((c) => [
    c,
    {
      sent: 0,
      status: new Map(),
      wrong: 0,
      unavailable: 0,
      masterSlow: 0,
      errors: 0,
      either: 0,
      latency: new Histogram(),
    },
  ]),
);
const latencyAll = new Histogram();
const latencySteady = new Histogram();
const latencyWindow = new Histogram();
/** A few examples of each failure, for the report. */
const examples: string[] = [];

// ---------------------------------------------------------------------------------------
// timeline

interface Timeline {
  t0: number; // wall clock, ms
  memcachedStop?: number;
  memcachedBack?: number;
  keystoneStop?: number;
  keystoneBack?: number;
}

/** The request [sent, done] overlaps the Keystone restart (stop → back + recovery). */
function inKeystoneWindow(tl: Timeline, sent: number, done: number): boolean {
  if (tl.keystoneStop === undefined) return false;
  const end = tl.keystoneBack === undefined ? Infinity : tl.keystoneBack + RECOVERY_S * 1000;
  return done >= tl.keystoneStop && sent <= end;
}

/** One master probe: a validation of a never-seen token at the edge's Keystone endpoint. */
interface Probe {
  readonly sentMs: number;
  doneMs: number | undefined;
  /** The answer's status, or why there was none. */
  outcome: number | "error" | undefined;
}
const probes: Probe[] = [];
const probeLatency = new Histogram();

/** A probe overlapping [sent, done] found the master down (no 200) or slower than the deadline. */
function masterSlowDuring(sent: number, done: number): boolean {
  for (const p of probes) {
    if (p.sentMs > done) continue;
    const end = p.doneMs ?? Infinity;
    if (end < sent) continue;
    if (p.outcome !== 200 || end - p.sentMs >= MASTER_SLOW_MS) return true;
  }
  return false;
}

/** The request overlaps either restart (for the latency figures outside them). */
function inAnyRestart(tl: Timeline, sent: number, done: number): boolean {
  if (inKeystoneWindow(tl, sent, done)) return true;
  if (tl.memcachedStop === undefined) return false;
  const end = tl.memcachedBack === undefined ? Infinity : tl.memcachedBack + RECOVERY_S * 1000;
  return done >= tl.memcachedStop && sent <= end;
}

/** The status of an answer, its body drained; "error" when none came. */
function statusOf(pending: ReturnType<Pool["request"]>): Promise<number | "error"> {
  return pending.then(
    async (res) => {
      await res.body.dump();
      return res.statusCode;
    },
    () => "error" as const,
  );
}

/** One collection from the edge's `--trace-gc` output. */
interface GcEvent {
  /** Seconds since the run's t0 (from V8's ms since the isolate began, ± the start-up). */
  readonly t: number;
  readonly kind: "Scavenge" | "Minor Mark-Compact" | "Mark-Compact";
  /** The heap in use after it (V8's "MB"), and V8's reserved size after it. */
  readonly afterMB: number;
  readonly afterReservedMB: number;
  readonly pauseMs: number;
}

/**
 * The collections in `--trace-gc` output, e.g.
 * `[4242:0x6e…]   61234 ms: Mark-Compact 52.1 (57.0) -> 44.9 (56.3) MB, 21.40 / 0.00 ms …`.
 */
function gcTrace(output: string, isolateStartFromT0Ms: number): GcEvent[] {
  const events: GcEvent[] = [];
  const line =
    /\]\s+(\d+) ms: (Scavenge|Minor Mark-Compact|Mark-Compact)\b[^\d]*?([\d.]+) \(([\d.]+)\) -> ([\d.]+) \(([\d.]+)\) MB,(?: pooled: [\d.]+ MB,)? ([\d.]+)/g;
  for (const m of output.matchAll(line)) {
    events.push({
      t: (Number(m[1]) + isolateStartFromT0Ms) / 1000,
      kind: m[2] as GcEvent["kind"],
      afterMB: Number(m[5]),
      afterReservedMB: Number(m[6]),
      pauseMs: Number(m[7]),
    });
  }
  return events;
}

// ---------------------------------------------------------------------------------------

interface Sample {
  readonly t: number;
  /** Seconds since the sample before (the rates below are over this). */
  readonly span: number;
  readonly rssMiB: number;
  readonly fds: Fds;
  readonly cpuPct: number;
  /** The whole machine's CPU in use, % of all cores (others' work included). */
  readonly machinePct: number;
  /** This process (the load generator), % of one core. */
  readonly generatorPct: number;
  readonly lagP99Ms: number;
  readonly lagMaxMs: number;
  readonly heapUsedMiB: number;
  /** V8's heap as reserved (used + free pages); growth here without `heapUsedMiB` is fragmentation. */
  readonly heapTotalMiB: number;
  /** Memory outside the V8 heap that V8 knows of (Buffers, TLS and zlib state). */
  readonly externalMiB: number;
  /** V8's reserved size of each heap space (new, old, code, large_object, …), MiB. */
  readonly spacesMiB: Readonly<Record<string, number>>;
  readonly l1Entries: number;
  readonly contextEntries: number;
  readonly keystoneCalls: number;
  readonly degraded: number;
  readonly sent: number;
  readonly inFlight: number;
  readonly windowRps: number;
  readonly windowP99Ms: number;
  /**
   * The master probe since the sample before: how many were sent, how many failed (no 200),
   * and the slowest answer or wait so far (one still unanswered counts as its time so far).
   */
  readonly probes: number;
  readonly probesFailed: number;
  readonly probeMaxMs: number;
}

async function main(): Promise<boolean> {
  if (!(DURATION_S > 0) || !(RATE > 0))
    throw new Error("SOAK_DURATION_S and SOAK_RATE must be > 0");
  const mixTotal = CLASSES.reduce((a, c) => a + MIX[c], 0);
  if (!(mixTotal > 0)) throw new Error("SOAK_MIX: the weights add up to 0");
  ensureDebianDeps();
  say(
    `bench:soak: ${String(DURATION_S)} s at ${String(RATE)} req/s (≈${String(Math.round(DURATION_S * RATE))} requests), warm-up ${fmt(WARMUP_S, 0)} s; edge node flags: ${NODE_ARGS.length > 0 ? NODE_ARGS.join(" ") : "none"}; mix ${CLASSES.map((c) => `${c} ${fmt((100 * MIX[c]) / mixTotal, 0)} %`).join(", ")}`,
  );
  const tokenLifeS = Math.max(3600, Math.ceil(DURATION_S) + 1800);
  stage("starting Keystone (its cache on memcached; about 20 s)…");
  let keystone: KeystoneHandle | undefined;
  let replica: KeystoneReplica | undefined;
  let memcached: MemcachedHandle | undefined;
  let echo: EchoUpstream | undefined;
  let edge: EdgeProcess | undefined;
  try {
    keystone = await startKeystone({ cache: "memcached", tokenExpiration: tokenLifeS });
    const info: KeystoneInfo = keystone.info;
    const ks = keystone;
    [replica, memcached, echo] = await Promise.all([
      startKeystoneReplica(info, {
        cacheServer: `127.0.0.1:${String(ks.memcachedPort)}`,
        threads: KEYSTONE_THREADS,
      }),
      startMemcached(),
      startEchoUpstream(),
    ]);
    stage(`Keystone ready at ${info.url}, the edge's endpoint at ${replica.url}`);
    const fixtures = await createFixtures(info);

    // --- soak users and projects: every user a member of every project, through a group ---
    const t0Setup = Date.now();
    const admin = (await issueToken(info, { kind: "project", name: "admin", domainId: "default" }))
      .token;
    const must = async (method: string, path: string, body?: unknown) => {
      const r = await api(info, admin, method, path, body);
      if (r.status >= 300) throw new Error(`${method} ${path}: HTTP ${String(r.status)}`);
      return r.json;
    };
    const newScopeShare = MIX["new-scope"] / mixTotal;
    const newPairsNeeded = Math.ceil(DURATION_S * RATE * newScopeShare * 1.1) + 20;
    const newProjects = newScopeShare > 0 ? Math.ceil(newPairsNeeded / USERS) : 0;
    const member =
      ((await must("GET", "/roles?name=member")).roles as { id: string }[])[0]?.id ?? "";
    const tag = `soak-${String(Date.now())}`;
    const group = (
      (await must("POST", "/groups", { group: { name: tag, domain_id: "default" } })).group as {
        id: string;
      }
    ).id;
    const projects: string[] = [];
    const users: string[] = [];
    await pool(PROJECTS + newProjects, 4, async (i) => {
      const p = (
        await must("POST", "/projects", {
          project: { name: `${tag}-p${String(i)}`, domain_id: "default" },
        })
      ).project as { id: string };
      projects[i] = p.id;
      await must("PUT", `/projects/${p.id}/groups/${group}/roles/${member}`);
    });
    await pool(USERS, 4, async (i) => {
      const u = (
        await must("POST", "/users", {
          user: { name: `${tag}-u${String(i)}`, domain_id: "default", password: PASSWORD },
        })
      ).user as { id: string };
      users[i] = u.id;
      await must("PUT", `/groups/${group}/users/${u.id}`);
    });
    const userId = (u: number): string => users[u] ?? "";
    const projectId = (p: number): string => projects[p] ?? "";
    const issue = (u: number, p: number): Promise<string> =>
      authenticate(info, {
        identity: {
          methods: ["password"],
          password: { user: { id: userId(u), password: PASSWORD } },
        },
        scope: { project: { id: projectId(p) } },
      });
    const issued: string[] = [];
    await pool(ISSUED, 4, async (i) => {
      issued[i] = await issue(i % USERS, i % PROJECTS);
    });
    const revocations: Revocation[] = [];
    await pool(REVOCATIONS, 4, async (i) => {
      revocations[i] = {
        token: await issue((i * 7 + 3) % USERS, (i + 1) % PROJECTS),
        startMs: undefined,
        doneMs: undefined,
        refusedAfterDeadline: 0,
        acceptedAfterDeadline: 0,
      };
    });
    stage(
      `fixtures: ${String(USERS)} users × ${String(PROJECTS)} known + ${String(newProjects)} new-scope projects, ${String(ISSUED + REVOCATIONS)} tokens issued, in ${fmt((Date.now() - t0Setup) / 1000)} s`,
    );

    // --- the edge: its own process, its own memcached, the replica its one endpoint ---
    const edgeStartedMs = Date.now();
    edge = await startEdgeProcess({
      keystone: { ...info, url: replica.url },
      upstream: echo.url,
      serviceUser: fixtures.serviceUser,
      nodeArgs: NODE_ARGS,
      extraYaml: [
        "cache:",
        `  memcached_servers: ["${memcached.address}"]`,
        '  memcache_secret_key: "soak region secret 0123456789"',
        `  token_cache_time: ${String(TOKEN_CACHE_TIME_S)}`,
        `  stale_if_error: ${String(STALE_IF_ERROR_S)}`,
      ],
    });
    const edgePid = edge.pid;
    const ports: Ports = {
      listen: [Number(new URL(edge.url).port), Number(new URL(edge.adminUrl).port)],
      upstream: echo.port,
      memcached: memcached.port,
      keystone: Number(new URL(replica.url).port),
    };
    stage(`keystone-edge serve: pid ${String(edgePid)}, ${edge.url}, endpoint ${replica.url}`);

    // --- tokens ---
    const decoder = new TokenDecoder({
      keys: staticKeyRing(await readKeyRepository(info.keyRepository)),
      authMethods: info.authMethods,
    });
    const foreign = new TokenDecoder({
      keys: staticKeyRing(KeyRing.from([{ index: 0, key: fernetKeyFromBytes(randomBytes(32)) }])),
      authMethods: info.authMethods,
    });
    const untilS = Math.floor(Date.now() / 1000) + tokenLifeS;
    /** The master probe's own credentials (an admin token, valid for the whole run). */
    const probeAdmin = (
      await issueToken(info, { kind: "project", name: "admin", domainId: "default" })
    ).token;
    const mintFor = (u: number, p: number, expiresAtS: number, d = decoder): string =>
      d.mint({
        kind: "project",
        version: 2,
        userId: userId(u),
        methods: ["password"],
        auditIds: [randomAuditId()],
        projectId: projectId(p),
        expiresAtMicros: (expiresAtS * 1e6) as EpochMicros,
      });
    const knownPairs: { u: number; p: number }[] = [];
    for (let u = 0; u < USERS; u++) for (let p = 0; p < PROJECTS; p++) knownPairs.push({ u, p });
    const random = prng(SEED);
    const newPairs: { u: number; p: number }[] = [];
    for (let p = PROJECTS; p < PROJECTS + newProjects; p++)
      for (let u = 0; u < USERS; u++) newPairs.push({ u, p });
    for (let i = newPairs.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [newPairs[i], newPairs[j]] = [newPairs[j] ?? { u: 0, p: 0 }, newPairs[i] ?? { u: 0, p: 0 }];
    }
    const validPool = [
      ...Object.values(fixtures.tokens),
      ...issued,
      ...knownPairs.map(({ u, p }) => mintFor(u, p, untilS)),
    ];
    const nowS = (): number => Math.floor(Date.now() / 1000);
    const expiredFor = (): string => {
      const { u, p } = pick(knownPairs, random);
      return mintFor(u, p, nowS() - 1 - Math.floor(random() * 7 * 86_400));
    };
    const expiredPool = Array.from({ length: 20 }, expiredFor);
    const fernetShaped = (): string => {
      const blocks = 3 + Math.floor(random() * 6);
      const b = randomBytes(1 + 8 + 16 + 16 * blocks + 32);
      b[0] = 0x80;
      b.writeBigUInt64BE(BigInt(nowS()), 1);
      return b.toString("base64url");
    };
    const tampered = (): string => {
      const t = mintFor(pick(knownPairs, random).u, pick(knownPairs, random).p, untilS);
      const i = 20 + Math.floor(random() * (t.length - 60));
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      let c = t[i] ?? "A";
      while (c === t[i]) c = alphabet[Math.floor(random() * 64)] ?? "A";
      return t.slice(0, i) + c + t.slice(i + 1);
    };
    const forgers: Record<string, () => string> = {
      random: () => randomBytes(100 + Math.floor(random() * 150)).toString("base64url"),
      "fernet-shaped": fernetShaped,
      "foreign-key": () => {
        const { u, p } = pick(knownPairs, random);
        return mintFor(u, p, untilS, foreign);
      },
      tampered,
      truncated: () => {
        const t = mintFor(pick(knownPairs, random).u, pick(knownPairs, random).p, untilS);
        return t.slice(0, t.length - 4 - Math.floor(random() * 40));
      },
    };
    const forgerNames = Object.keys(forgers);
    const forgedPool = Array.from({ length: 20 }, (_, i) => {
      const f = forgers[forgerNames[i % forgerNames.length] ?? "random"];
      return f === undefined ? "" : f();
    });

    const accept = (): Expectation => "accept";
    const reject = (): Expectation => "reject";
    const send = async (token: string): Promise<number> => {
      const res = await fetch(`${edge?.url ?? ""}/v2.1/servers`, {
        headers: { "X-Auth-Token": token },
      });
      await res.arrayBuffer();
      return res.status;
    };

    // --- before the clock: every valid token once (contexts and caches warm), and a check
    // of each class (fail fast on a broken region) ---
    const tPrime = Date.now();
    const primeFailures: string[] = [];
    await pool(validPool.length, 6, async (i) => {
      const s = await send(validPool[i] ?? "");
      if (s !== 200) primeFailures.push(`valid #${String(i)}: HTTP ${String(s)}`);
    });
    for (const r of revocations) {
      const s = await send(r.token);
      if (s !== 200) primeFailures.push(`revocation target: HTTP ${String(s)}`);
    }
    for (const t of [...expiredPool.slice(0, 3), ...forgedPool.slice(0, forgerNames.length)]) {
      const s = await send(t);
      if (s !== 401) primeFailures.push(`a bad token: HTTP ${String(s)} (401 expected)`);
    }
    if (primeFailures.length > 0) {
      throw new Error(
        `the region is not right before the run:\n  ${primeFailures.slice(0, 10).join("\n  ")}`,
      );
    }
    stage(
      `primed: ${String(validPool.length + revocations.length)} valid tokens once each (200) and ${String(3 + forgerNames.length)} bad ones (401) in ${fmt((Date.now() - tPrime) / 1000)} s`,
    );

    // --- the run ---
    const tl: Timeline = { t0: Date.now() };
    const endMs = tl.t0 + DURATION_S * 1000;
    const expiring = Array.from({ length: EXPIRING }, (_, k) => {
      const { u, p } = pick(knownPairs, random);
      const expiresAtS = Math.floor((tl.t0 + ((k + 0.5) / EXPIRING) * DURATION_S * 1000) / 1000);
      return { token: mintFor(u, p, expiresAtS), expiresAtMs: expiresAtS * 1000 };
    });
    let newPairIndex = 0;
    let newScopeExhausted = 0;
    const cumulative: [ClassName, number][] = [];
    {
      let acc = 0;
      for (const c of CLASSES) {
        acc += MIX[c] / mixTotal;
        cumulative.push([c, acc]);
      }
    }
    const chooseClass = (): ClassName => {
      const x = random();
      for (const [c, upTo] of cumulative) if (x < upTo && MIX[c] > 0) return c;
      return "valid";
    };
    const plan = (): Planned => {
      let cls = chooseClass();
      if (cls === "expiring" && expiring.length === 0) cls = "valid";
      if (cls === "revoked" && revocations.length === 0) cls = "valid";
      if (cls === "new-scope" && newPairIndex >= newPairs.length) {
        newScopeExhausted++;
        cls = "fresh";
      }
      switch (cls) {
        case "valid":
          return {
            cls,
            sub: "pool",
            token: pick(validPool, random),
            expect: accept,
            mayNeedKeystone: true,
          };
        case "fresh": {
          const { u, p } = pick(knownPairs, random);
          return {
            cls,
            sub: "minted",
            token: mintFor(u, p, untilS),
            expect: accept,
            mayNeedKeystone: true,
          };
        }
        case "new-scope": {
          const pair = newPairs[newPairIndex++] ?? { u: 0, p: 0 };
          return {
            cls,
            sub: "minted",
            token: mintFor(pair.u, pair.p, untilS),
            expect: accept,
            mayNeedKeystone: true,
          };
        }
        case "expired":
          return random() < 0.5
            ? { cls, sub: "fresh", token: expiredFor(), expect: reject, mayNeedKeystone: false }
            : {
                cls,
                sub: "repeated",
                token: pick(expiredPool, random),
                expect: reject,
                mayNeedKeystone: false,
              };
        case "expiring": {
          const e = pick(expiring, random);
          return {
            cls,
            sub: "minted",
            token: e.token,
            expect: (sent, done) =>
              done < e.expiresAtMs - EXPIRY_SLACK_MS
                ? "accept"
                : sent >= e.expiresAtMs + EXPIRY_SLACK_MS
                  ? "reject"
                  : "either",
            mayNeedKeystone: true,
          };
        }
        case "revoked": {
          const r = pick(revocations, random);
          return {
            cls,
            sub: "issued",
            token: r.token,
            revocation: r,
            expect: (sent) =>
              r.startMs === undefined || sent < r.startMs
                ? "accept"
                : r.doneMs !== undefined && sent >= r.doneMs + REVOCATION_DEADLINE_MS
                  ? "reject"
                  : "either",
            mayNeedKeystone: true,
          };
        }
        case "forged": {
          if (random() < 1 / (forgerNames.length + 1)) {
            return {
              cls,
              sub: "repeated",
              token: pick(forgedPool, random),
              expect: reject,
              mayNeedKeystone: false,
            };
          }
          const name = pick(forgerNames, random);
          const forge = forgers[name] ?? fernetShaped;
          return { cls, sub: name, token: forge(), expect: reject, mayNeedKeystone: false };
        }
      }
    };

    const client = new Pool(edge.url, {
      connections: CONNECTIONS,
      pipelining: 1,
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
      keepAliveTimeout: 60_000,
    });
    let sent = 0;
    let inFlight = 0;
    let skipped = 0;
    let scheduled = 0;
    let windowDone = 0;
    const inFlightRequests = new Set<Promise<void>>();

    const judge = (
      p: Planned,
      status: number | "error",
      sentMs: number,
      doneMs: number,
      ms: number,
    ) => {
      const t = tally.get(p.cls);
      if (t === undefined) return;
      const key = status === "error" ? "error" : String(status);
      t.status.set(key, (t.status.get(key) ?? 0) + 1);
      t.latency.add(ms);
      latencyAll.add(ms);
      latencyWindow.add(ms);
      if (!inAnyRestart(tl, sentMs, doneMs)) latencySteady.add(ms);
      const expected = p.expect(sentMs, doneMs);
      const at = `t=${fmt((sentMs - tl.t0) / 1000)} s`;
      const note = (what: string) => {
        if (examples.length < 30)
          examples.push(`${what}: ${p.cls}/${p.sub} ${at}, HTTP ${key}, expected ${expected}`);
      };
      if (
        p.revocation?.doneMs !== undefined &&
        sentMs >= p.revocation.doneMs + REVOCATION_DEADLINE_MS
      ) {
        if (status === 401) p.revocation.refusedAfterDeadline++;
        if (status === 200) p.revocation.acceptedAfterDeadline++;
      }
      if ((status === 200 && expected === "reject") || (status === 401 && expected === "accept")) {
        t.wrong++;
        note("WRONG");
        return;
      }
      if ((status === 200 || status === 401) && expected === "either") {
        t.either++;
        return;
      }
      if (status === 200 || status === 401) return;
      if (status === 503 && p.mayNeedKeystone && expected !== "reject") {
        if (inKeystoneWindow(tl, sentMs, doneMs)) {
          t.unavailable++;
          return;
        }
        // judged once the probes overlapping it have their answers (at the end of the run)
        maybeMasterSlow.push({
          tally: t,
          sentMs,
          doneMs,
          example: `${p.cls}/${p.sub} ${at}, HTTP ${key}, expected ${expected}`,
        });
        return;
      }
      t.errors++;
      note("ERROR");
    };
    /** 503s outside the restart, to be judged against the master probe at the end. */
    const maybeMasterSlow: {
      tally: ClassTally;
      sentMs: number;
      doneMs: number;
      example: string;
    }[] = [];

    // --- the master probe: Keystone's own answer time for a token it has not seen ---
    const probeClient = new Pool(new URL(replica.url).origin, {
      connections: PROBE_CONNECTIONS,
      pipelining: 1,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    const probePath = `${new URL(replica.url).pathname.replace(/\/$/, "")}/auth/tokens`;
    const probeInFlight = new Set<Promise<void>>();
    const probeRandom = prng(SEED + 1); // apart from the class sequence, which stays seed-stable
    const probeOnce = (): void => {
      const { u, p } = pick(knownPairs, probeRandom);
      const probe: Probe = { sentMs: Date.now(), doneMs: undefined, outcome: undefined };
      probes.push(probe);
      const start = performance.now();
      const job = statusOf(
        probeClient.request({
          path: probePath,
          method: "GET",
          headers: { "x-auth-token": probeAdmin, "x-subject-token": mintFor(u, p, untilS) },
          signal: AbortSignal.timeout(20_000),
        }),
      )
        .then((outcome) => {
          probe.doneMs = Date.now();
          probe.outcome = outcome;
          probeLatency.add(performance.now() - start);
        })
        .finally(() => probeInFlight.delete(job));
      probeInFlight.add(job);
    };

    const fire = (): void => {
      const p = plan();
      const t = tally.get(p.cls);
      if (t !== undefined) t.sent++;
      sent++;
      inFlight++;
      const sentMs = Date.now();
      const start = performance.now();
      const job = statusOf(
        client.request({
          path: "/v2.1/servers",
          method: "GET",
          headers: { "x-auth-token": p.token },
        }),
      )
        .then((status) => {
          judge(p, status, sentMs, Date.now(), performance.now() - start);
        })
        .finally(() => {
          inFlight--;
          windowDone++;
          inFlightRequests.delete(job);
        });
      inFlightRequests.add(job);
    };

    // --- the sampler ---
    const samples: Sample[] = [];
    let lastCpu = cpuSeconds(edgePid);
    let lastMachine = machineTicks();
    let lastGenerator = process.cpuUsage();
    let lastSampleAt = performance.now();
    let lastSampleWall = Date.now();
    /** Probes sent since `fromMs`: how many, how many failed, the slowest answer or wait. */
    const probesSince = (
      fromMs: number,
    ): { probes: number; probesFailed: number; probeMaxMs: number } => {
      const now = Date.now();
      let n = 0;
      let failed = 0;
      let worst = 0;
      for (let i = probes.length - 1; i >= 0; i--) {
        const p = probes[i];
        if (p === undefined || p.sentMs < fromMs) break;
        n++;
        if (p.doneMs !== undefined && p.outcome !== 200) failed++;
        worst = Math.max(worst, (p.doneMs ?? now) - p.sentMs);
      }
      return { probes: n, probesFailed: failed, probeMaxMs: n === 0 ? Number.NaN : worst };
    };
    let lastPrintT = -Infinity;
    let sampling: Promise<unknown> = Promise.resolve();
    /** One sample at a time: each one's rates are over the time since the one before. */
    const takeSample = (): Promise<Sample> => {
      const next = sampling.then(sampleNow, sampleNow);
      sampling = next;
      return next;
    };
    const sampleNow = async (): Promise<Sample> => {
      const metrics = await scrape(edge?.adminUrl ?? "");
      const now = performance.now();
      const cpu = cpuSeconds(edgePid);
      const machine = machineTicks();
      const generator = process.cpuUsage();
      const elapsed = (now - lastSampleAt) / 1000;
      const sample: Sample = {
        t: (Date.now() - tl.t0) / 1000,
        span: elapsed,
        rssMiB: rssMiB(edgePid),
        fds: fds(edgePid, ports),
        cpuPct: elapsed > 0 ? (100 * (cpu - lastCpu)) / elapsed : Number.NaN,
        machinePct:
          machine.total > lastMachine.total
            ? (100 * (machine.busy - lastMachine.busy)) / (machine.total - lastMachine.total)
            : Number.NaN,
        generatorPct:
          elapsed > 0
            ? (generator.user - lastGenerator.user + generator.system - lastGenerator.system) /
              (10_000 * elapsed)
            : Number.NaN,
        lagP99Ms: 1000 * sum(metrics, "keystone_edge_nodejs_eventloop_lag_p99_seconds"),
        lagMaxMs: 1000 * sum(metrics, "keystone_edge_nodejs_eventloop_lag_max_seconds"),
        heapUsedMiB: sum(metrics, "keystone_edge_nodejs_heap_size_used_bytes") / 2 ** 20,
        heapTotalMiB: sum(metrics, "keystone_edge_nodejs_heap_size_total_bytes") / 2 ** 20,
        externalMiB: sum(metrics, "keystone_edge_nodejs_external_memory_bytes") / 2 ** 20,
        spacesMiB: heapSpaces(metrics),
        l1Entries: sum(metrics, "keystone_edge_cache_entries", (l) => l.tier === "l1"),
        contextEntries: sum(metrics, "keystone_edge_cache_entries", (l) => l.tier === "context"),
        keystoneCalls: sum(metrics, "keystone_edge_keystone_call_duration_seconds_count"),
        degraded: sum(metrics, "keystone_edge_degraded_mode"),
        sent,
        inFlight,
        windowRps: elapsed > 0 ? windowDone / elapsed : Number.NaN,
        windowP99Ms: latencyWindow.quantile(0.99),
        ...probesSince(lastSampleWall),
      };
      lastSampleWall = Date.now();
      lastCpu = cpu;
      lastMachine = machine;
      lastGenerator = generator;
      lastSampleAt = now;
      windowDone = 0;
      latencyWindow.reset();
      samples.push(sample);
      if (sample.t - lastPrintT >= PRINT_S - 0.5 * SAMPLE_S) {
        lastPrintT = sample.t;
        say(
          `  t=${pad(fmt(sample.t, 0), 5)} s  rss ${fmt(sample.rssMiB)} MiB  heap ${fmt(sample.heapUsedMiB)}/${fmt(sample.heapTotalMiB)} MiB  ext ${fmt(sample.externalMiB)} MiB (new ${fmt(sample.spacesMiB.new ?? Number.NaN)}, old ${fmt(sample.spacesMiB.old ?? Number.NaN)})  fds ${String(sample.fds.total)} (judged ${String(sample.fds.judged)})  cpu ${fmt(sample.cpuPct, 0)} % (machine ${fmt(sample.machinePct, 0)} %)  lag p99 ${fmt(sample.lagP99Ms)} ms  l1 ${String(sample.l1Entries)}  ctx ${String(sample.contextEntries)}  ks calls ${String(sample.keystoneCalls)}  ${fmt(sample.windowRps, 0)} req/s  p99 ${fmt(sample.windowP99Ms)} ms  in flight ${String(sample.inFlight)}  master ≤ ${fmt(sample.probeMaxMs, 0)} ms${sample.probesFailed > 0 ? ` (${String(sample.probesFailed)} of ${String(sample.probes)} failed)` : ""}`,
        );
      }
      return sample;
    };

    // --- the director: restarts and revocations ---
    const timeOf = (fraction: number) => tl.t0 + fraction * DURATION_S * 1000;
    const revokeAt = async (r: Revocation, atMs: number): Promise<void> => {
      await sleep(atMs - Date.now());
      r.startMs = Date.now();
      const adminToken = (
        await issueToken(info, { kind: "project", name: "admin", domainId: "default" })
      ).token;
      const res = await api(info, adminToken, "DELETE", "/auth/tokens", undefined, r.token);
      if (res.status !== 204) throw new Error(`revoking a token: HTTP ${String(res.status)}`);
      r.doneMs = Date.now();
      say(
        `  t=${pad(fmt((r.doneMs - tl.t0) / 1000, 0), 5)} s  revoked a token at Keystone (must be refused from t=${fmt((r.doneMs + REVOCATION_DEADLINE_MS - tl.t0) / 1000, 0)} s)`,
      );
    };
    const memcachedAt = timeOf(1 / 3);
    const keystoneAt = timeOf(2 / 3);
    // Revocation slots: two before the memcached restart, two between the restarts (their
    // deadlines before Keystone stops), two after Keystone is back; as many as fit.
    const slotsBeforeMc = [0.12, 0.24].map(timeOf);
    const slotsBetween = [0.42, 0.54]
      .map(timeOf)
      .filter((t) => t + REVOCATION_DEADLINE_MS <= keystoneAt);
    const slotsAfter = [0.8, 0.9].map(timeOf);
    const director = async (): Promise<void> => {
      let next = 0;
      const revokeSlots = async (slots: readonly number[]) => {
        for (const at of slots) {
          const r = revocations[next];
          if (r === undefined) return;
          if (at + REVOCATION_TAIL_MS > endMs) continue;
          next++;
          await revokeAt(r, at);
        }
      };
      await revokeSlots(slotsBeforeMc);
      await sleep(memcachedAt - Date.now());
      tl.memcachedStop = Date.now();
      await memcached?.stop();
      say(`  t=${pad(fmt((Date.now() - tl.t0) / 1000, 0), 5)} s  memcached stopped`);
      await sleep(OUTAGE_S * 1000);
      await memcached?.start();
      tl.memcachedBack = Date.now();
      say(
        `  t=${pad(fmt((tl.memcachedBack - tl.t0) / 1000, 0), 5)} s  memcached started again (empty)`,
      );
      await revokeSlots(slotsBetween);
      await sleep(keystoneAt - Date.now());
      tl.keystoneStop = Date.now();
      await replica?.stop();
      say(
        `  t=${pad(fmt((Date.now() - tl.t0) / 1000, 0), 5)} s  Keystone (the edge's endpoint) stopped`,
      );
      await sleep(OUTAGE_S * 1000);
      await replica?.start();
      tl.keystoneBack = Date.now();
      say(`  t=${pad(fmt((tl.keystoneBack - tl.t0) / 1000, 0), 5)} s  Keystone answers again`);
      const back = tl.keystoneBack;
      await revokeSlots(slotsAfter.map((t) => Math.max(t, back + RECOVERY_S * 1000)));
    };

    say(
      `run: ${String(DURATION_S)} s; memcached restart at ${fmt((memcachedAt - tl.t0) / 1000, 0)} s, Keystone restart at ${fmt((keystoneAt - tl.t0) / 1000, 0)} s`,
    );
    const directed = director().then(
      (): string | undefined => undefined,
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );
    const prober = setInterval(probeOnce, PROBE_S * 1000);
    const sampler = setInterval(() => {
      takeSample().catch((error: unknown) => {
        say(`  sample failed: ${error instanceof Error ? error.message : String(error)}`);
      });
    }, SAMPLE_S * 1000);
    const startPerf = performance.now();
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const elapsedMs = performance.now() - startPerf;
        const due = Math.floor((Math.min(elapsedMs, DURATION_S * 1000) * RATE) / 1000);
        if (due - scheduled > RATE) {
          // more than a second behind (the generator was starved): drop, do not burst
          skipped += due - scheduled - RATE;
          scheduled = due - RATE;
        }
        for (; scheduled < due; scheduled++) {
          if (inFlight >= MAX_IN_FLIGHT) skipped++;
          else fire();
        }
        if (elapsedMs >= DURATION_S * 1000) {
          clearInterval(tick);
          resolve();
        }
      }, 5);
    });
    clearInterval(sampler);
    clearInterval(prober);
    const drainStart = Date.now();
    await Promise.race([Promise.allSettled([...inFlightRequests]), sleep(60_000)]);
    await Promise.allSettled([...probeInFlight]);
    await probeClient.close();
    for (const c of maybeMasterSlow) {
      if (masterSlowDuring(c.sentMs, c.doneMs)) {
        c.tally.unavailable++;
        c.tally.masterSlow++;
      } else {
        c.tally.errors++;
        if (examples.length < 30)
          examples.push(`ERROR: ${c.example} (the master answered in time)`);
      }
    }
    const stillInFlight = inFlight;
    const finalSample = await takeSample();
    const directorError = await directed;
    await client.close();
    say(
      `traffic done (${String(sent)} sent; drained in ${fmt((Date.now() - drainStart) / 1000)} s)`,
    );
    const finalMetrics = await scrape(edge.adminUrl);

    // --- report ---
    say("");
    say("== bench:soak report");
    const since = (ms: number | undefined) =>
      ms === undefined ? "–" : `${fmt((ms - tl.t0) / 1000)} s`;
    say(
      `timeline: memcached stopped ${since(tl.memcachedStop)}, back ${since(tl.memcachedBack)}; Keystone stopped ${since(tl.keystoneStop)}, answering again ${since(tl.keystoneBack)} (503s count as unavailable until ${tl.keystoneBack === undefined ? "–" : `${fmt((tl.keystoneBack + RECOVERY_S * 1000 - tl.t0) / 1000)} s`})`,
    );
    const done = revocations.filter((r) => r.doneMs !== undefined);
    say(
      `revocations: ${String(done.length)} of ${String(revocations.length)} done (at ${done.map((r) => since(r.doneMs)).join(", ") || "–"}); refused after their deadline (+${fmt(REVOCATION_DEADLINE_MS / 1000, 0)} s): ${done.map((r) => `${String(r.refusedAfterDeadline)}×401/${String(r.acceptedAfterDeadline)}×200`).join(", ") || "–"}`,
    );
    say("");
    const statuses = [...new Set([...tally.values()].flatMap((t) => [...t.status.keys()]))].sort();
    const header = `${"class".padEnd(10)}${pad("sent", 9)}${statuses.map((s) => pad(s, 9)).join("")}${pad("wrong", 7)}${pad("unavail", 9)}${pad("(slow)", 8)}${pad("errors", 8)}${pad("either", 8)}${pad("p99 ms", 9)}`;
    say(header);
    const totals = { sent: 0, wrong: 0, unavailable: 0, masterSlow: 0, errors: 0, either: 0 };
    const byStatus = new Map<string, number>();
    for (const c of CLASSES) {
      const t = tally.get(c);
      if (t === undefined) continue;
      totals.sent += t.sent;
      totals.wrong += t.wrong;
      totals.unavailable += t.unavailable;
      totals.masterSlow += t.masterSlow;
      totals.errors += t.errors;
      totals.either += t.either;
      for (const [s, n] of t.status) byStatus.set(s, (byStatus.get(s) ?? 0) + n);
      say(
        `${c.padEnd(10)}${pad(t.sent, 9)}${statuses.map((s) => pad(t.status.get(s) ?? 0, 9)).join("")}${pad(t.wrong, 7)}${pad(t.unavailable, 9)}${pad(t.masterSlow, 8)}${pad(t.errors, 8)}${pad(t.either, 8)}${pad(fmt(t.latency.quantile(0.99), 2), 9)}`,
      );
    }
    say(
      `${"total".padEnd(10)}${pad(totals.sent, 9)}${statuses.map((s) => pad(byStatus.get(s) ?? 0, 9)).join("")}${pad(totals.wrong, 7)}${pad(totals.unavailable, 9)}${pad(totals.masterSlow, 8)}${pad(totals.errors, 8)}${pad(totals.either, 8)}${pad(fmt(latencyAll.quantile(0.99), 2), 9)}`,
    );
    say(
      `(unavail: 503 for a token only the master could settle, during the Keystone restart or (slow) while the master probe found Keystone down or ${fmt(MASTER_SLOW_MS / 1000)} s or slower; either: answered inside a revocation's or an expiry's grace, where 200 and 401 are both right; scheduled but not sent: ${String(skipped)}; new-scope pairs used: ${String(newPairIndex)} of ${String(newPairs.length)}${newScopeExhausted > 0 ? `, ${String(newScopeExhausted)} sent as fresh when they ran out` : ""}${stillInFlight > 0 ? `; ${String(stillInFlight)} never answered` : ""})`,
    );
    say("");
    const q = (h: Histogram) =>
      `p50 ${fmt(h.quantile(0.5), 2)}  p90 ${fmt(h.quantile(0.9), 2)}  p99 ${fmt(h.quantile(0.99), 2)}  max ${fmt(h.max, 1)} ms (${String(h.count)} requests)`;
    say(`latency, all:                    ${q(latencyAll)}`);
    say(`latency, outside the restarts:   ${q(latencySteady)}`);
    const achieved = latencyAll.count / DURATION_S;
    say(`achieved rate: ${fmt(achieved)} req/s of ${String(RATE)}`);
    const probesFailed = probes.filter((p) => p.outcome !== 200).length;
    const probesSlow = probes.filter(
      (p) => p.outcome === 200 && p.doneMs !== undefined && p.doneMs - p.sentMs >= MASTER_SLOW_MS,
    );
    const slowSpans = probesSlow.map((p) => (p.sentMs - tl.t0) / 1000);
    say(
      `the master probe (a never-seen token validated at the edge's endpoint every ${fmt(PROBE_S)} s): ${String(probes.length)} probes, ${q(probeLatency).replace(/ \(\d+ requests\)$/, "")}; ${String(probesFailed)} without a 200 (the Keystone restart among them), ${String(probesSlow.length)} answered in ≥ ${fmt(MASTER_SLOW_MS / 1000)} s${slowSpans.length > 0 ? ` (sent from ${fmt(Math.min(...slowSpans), 0)} s to ${fmt(Math.max(...slowSpans), 0)} s)` : ""}`,
    );

    const win = Math.max(SAMPLE_S, Math.min(30, 0.1 * DURATION_S));
    const inWindow = (from: number, to: number) =>
      samples.filter((s) => s.t >= from - 0.5 && s.t <= to + 0.5);
    const afterWarmUp = inWindow(WARMUP_S, WARMUP_S + win);
    const atEnd = [
      ...inWindow(DURATION_S - win, DURATION_S).filter((s) => s !== finalSample),
      finalSample,
    ];
    const rssWarm = median(afterWarmUp.map((s) => s.rssMiB));
    const rssEnd = median(atEnd.map((s) => s.rssMiB));
    const growthPct = (100 * (rssEnd - rssWarm)) / rssWarm;
    const fdWarm = median(afterWarmUp.map((s) => s.fds.judged));
    const fdEnd = median(atEnd.map((s) => s.fds.judged));
    const fdWarmTotal = median(afterWarmUp.map((s) => s.fds.total));
    const fdEndTotal = median(atEnd.map((s) => s.fds.total));
    const rssAll = samples.map((s) => s.rssMiB);
    const lags = samples.map((s) => s.lagP99Ms).filter(Number.isFinite);
    const lagMax = samples.map((s) => s.lagMaxMs).filter(Number.isFinite);
    // rates over a whole sampling period only (the final sample may follow the last one closely)
    const during = (f: (s: Sample) => number) =>
      samples
        .slice(1)
        .filter((s) => s.span >= 0.5 * SAMPLE_S)
        .map(f)
        .filter(Number.isFinite);
    const cpus = during((s) => s.cpuPct);
    const machine = during((s) => s.machinePct);
    const generator = during((s) => s.generatorPct);
    const heapWarm = median(afterWarmUp.map((s) => s.heapUsedMiB));
    const heapEnd = median(atEnd.map((s) => s.heapUsedMiB));
    const heapTotalWarm = median(afterWarmUp.map((s) => s.heapTotalMiB));
    const heapTotalEnd = median(atEnd.map((s) => s.heapTotalMiB));
    const externalWarm = median(afterWarmUp.map((s) => s.externalMiB));
    const externalEnd = median(atEnd.map((s) => s.externalMiB));
    const l1Warm = median(afterWarmUp.map((s) => s.l1Entries));
    const l1End = median(atEnd.map((s) => s.l1Entries));
    const l1Span = median(atEnd.map((s) => s.t)) - median(afterWarmUp.map((s) => s.t));
    const describeFds = (f: Fds) =>
      `${String(f.total)} = ${String(f.inbound)} inbound + ${String(f.listening)} listening + ${String(f.upstream)} upstream + ${String(f.keystone)} Keystone + ${String(f.memcached)} memcached + ${String(f.closeWait)} CLOSE_WAIT + ${String(f.other)} other (files, pipes, epoll…)`;
    const maxOf = (f: (s: Sample) => number) => Math.max(...samples.map(f));
    say("");
    say(
      `edge RSS: after warm-up (${fmt(WARMUP_S, 0)}–${fmt(WARMUP_S + win, 0)} s) ${fmt(rssWarm)} MiB, end ${fmt(rssEnd)} MiB, growth ${fmt(growthPct, 2)} %; min ${fmt(Math.min(...rssAll))}, max ${fmt(Math.max(...rssAll))} MiB over the run`,
    );
    say(
      `edge heap used: after warm-up ${fmt(heapWarm)} MiB, end ${fmt(heapEnd)} MiB (V8 heap reserved ${fmt(heapTotalWarm)} → ${fmt(heapTotalEnd)} MiB, external ${fmt(externalWarm)} → ${fmt(externalEnd)} MiB; the rest of RSS is native: code, malloc arenas, TLS); L1 entries (stale ones included) ${fmt(l1Warm, 0)} → ${fmt(l1End, 0)} (${fmt(l1Span > 0 ? (l1End - l1Warm) / l1Span : Number.NaN)}/s); contexts ${String(samples[0]?.contextEntries ?? "–")} → ${String(finalSample.contextEntries)}`,
    );
    // What a leak would grow: objects (the heap left by full GCs) or memory outside V8's heap
    // (RSS − V8's reserved heap: code, malloc, Buffers). V8's free reserved pages are neither.
    const nativeOf = (s: Sample) => s.rssMiB - s.heapTotalMiB;
    const nativeWarm = median(afterWarmUp.map(nativeOf));
    const nativeEnd = median(atEnd.map(nativeOf));
    const nativeGrowthPct = (100 * (nativeEnd - nativeWarm)) / nativeWarm;
    const fullGcs = gcTrace(edge.output(), edgeStartedMs - tl.t0).filter(
      (e) => e.kind === "Mark-Compact" && e.t >= WARMUP_S,
    );
    const quarter = Math.max(1, Math.floor(fullGcs.length / 4));
    const liveWarm = median(fullGcs.slice(0, quarter).map((e) => e.afterMB));
    const liveEnd = median(fullGcs.slice(-quarter).map((e) => e.afterMB));
    const liveGrowthPct = (100 * (liveEnd - liveWarm)) / liveWarm;
    say(
      `memory outside V8's heap (RSS − V8's reserved heap): after warm-up ${fmt(nativeWarm)} MiB, end ${fmt(nativeEnd)} MiB, growth ${fmt(nativeGrowthPct, 2)} %; ${fullGcs.length >= 4 ? `the heap left by full GCs (--trace-gc; first quarter of them after warm-up → last quarter, medians): ${fmt(liveWarm)} → ${fmt(liveEnd)} MB, growth ${fmt(liveGrowthPct, 2)} %` : "the heap left by full GCs: run with SOAK_NODE_ARGS=--trace-gc to see it"}`,
    );
    const spaceNames = [...new Set(samples.flatMap((s) => Object.keys(s.spacesMiB)))];
    say(
      `V8 heap reserved per space, after warm-up → end (MiB): ${spaceNames
        .map(
          (n) =>
            `${n} ${fmt(median(afterWarmUp.map((s) => s.spacesMiB[n] ?? Number.NaN)))} → ${fmt(median(atEnd.map((s) => s.spacesMiB[n] ?? Number.NaN)))}`,
        )
        .join(", ")}`,
    );
    say(
      `edge fds judged (all but inbound and the HTTP pools' live connections): after warm-up ${fmt(fdWarm, 0)}, end ${fmt(fdEnd, 0)}; all fds ${fmt(fdWarmTotal, 0)} → ${fmt(fdEndTotal, 0)}; at the end: ${describeFds(finalSample.fds)}; most seen: ${String(maxOf((s) => s.fds.upstream))} upstream, ${String(maxOf((s) => s.fds.keystone))} Keystone, ${String(maxOf((s) => s.fds.closeWait))} CLOSE_WAIT`,
    );
    say(
      `event-loop lag p99 per ${String(SAMPLE_S)} s sample (prom-client's figure includes its 10 ms sampling interval: an idle process shows 10–13 ms): median ${fmt(median(lags))} ms, worst ${fmt(Math.max(...lags))} ms; worst single delay ${fmt(Math.max(...lagMax))} ms`,
    );
    say(
      `CPU (median of samples / worst): edge ${fmt(median(cpus), 0)} / ${fmt(Math.max(...cpus), 0)} % of one core; load generator ${fmt(median(generator), 0)} / ${fmt(Math.max(...generator), 0)} % of one core; whole machine ${fmt(median(machine), 0)} / ${fmt(Math.max(...machine), 0)} % of all cores (Keystone, PostgreSQL and anything else running included)`,
    );
    const calls = (outcome?: string) =>
      sum(
        finalMetrics,
        "keystone_edge_keystone_call_duration_seconds_count",
        (l) => outcome === undefined || l.outcome === outcome,
      );
    const outcomes = [
      ...new Set(
        (finalMetrics ?? [])
          .filter((s) => s.name === "keystone_edge_keystone_call_duration_seconds_count")
          .map((s) => s.labels.outcome ?? "?"),
      ),
    ];
    say(
      `Keystone validation calls by the edge: ${String(calls())} (${outcomes.map((o) => `${o} ${String(calls(o))}`).join(", ")})`,
    );
    const sources = (finalMetrics ?? []).filter(
      (s) => s.name === "keystone_edge_validations_total" && s.value > 0,
    );
    say(
      `validations by source/result: ${sources.map((s) => `${s.labels.source ?? "?"}/${s.labels.result ?? "?"} ${String(s.value)}`).join(", ")}`,
    );
    const gc = gcTrace(edge.output(), edgeStartedMs - tl.t0);
    if (gc.length > 0) {
      const full = gc.filter((e) => e.kind === "Mark-Compact" && e.t >= WARMUP_S);
      const live = full.map((e) => e.afterMB);
      const firstFull = full[0];
      const lastFull = full[full.length - 1];
      say(
        `GC trace (--trace-gc): ${String(gc.filter((e) => e.kind !== "Mark-Compact").length)} young-generation collections, ${String(gc.length - gc.filter((e) => e.kind !== "Mark-Compact").length)} mark-compacts; after warm-up ${String(full.length)} mark-compacts, the heap left by each (live objects; MB as V8 prints them): first ${fmt(firstFull?.afterMB ?? Number.NaN)} at ${fmt(firstFull?.t ?? Number.NaN, 0)} s, min ${fmt(Math.min(...live))}, median ${fmt(median(live))}, max ${fmt(Math.max(...live))}, last ${fmt(lastFull?.afterMB ?? Number.NaN)} at ${fmt(lastFull?.t ?? Number.NaN, 0)} s; V8's reserved size after them ${fmt(firstFull?.afterReservedMB ?? Number.NaN)} → ${fmt(lastFull?.afterReservedMB ?? Number.NaN)} MB`,
      );
    }
    if (examples.length > 0) {
      say("examples of failures:");
      for (const e of examples) say(`  ${e}`);
    }

    say("");
    const checks: { text: string; ok: boolean | undefined }[] = [
      { text: `wrong verdicts: ${String(totals.wrong)} (must be 0)`, ok: totals.wrong === 0 },
      {
        text: `errors (503 while the master answered in time or for a token the edge decides alone, other statuses, connection errors): ${String(totals.errors)} (must be 0)`,
        ok: totals.errors === 0,
      },
      {
        text: `fds flat: ${fmt(fdEnd, 0)} at the end ≤ ${fmt(fdWarm, 0)} after warm-up + ${String(FD_SLACK)}`,
        ok: fdEnd <= fdWarm + FD_SLACK,
      },
      {
        text: `RSS growth ${fmt(growthPct, 2)} % < ${String(RSS_LIMIT_PCT)} %${DURATION_S < RSS_JUDGED_FROM_S ? ` (not judged: the run is shorter than ${String(RSS_JUDGED_FROM_S)} s)` : ""}`,
        ok: DURATION_S < RSS_JUDGED_FROM_S ? undefined : growthPct < RSS_LIMIT_PCT,
      },
      {
        text: `no leak: memory outside V8's heap grew ${fmt(nativeGrowthPct, 2)} %${fullGcs.length >= 4 ? `, the heap left by full GCs ${fmt(liveGrowthPct, 2)} %` : ""} (each < ${String(RSS_LIMIT_PCT)} %; RSS's growth beyond these is V8 keeping free pages in its reserved heap)${DURATION_S < RSS_JUDGED_FROM_S ? ` (not judged: the run is shorter than ${String(RSS_JUDGED_FROM_S)} s)` : ""}`,
        ok:
          DURATION_S < RSS_JUDGED_FROM_S
            ? undefined
            : nativeGrowthPct < RSS_LIMIT_PCT &&
              (fullGcs.length < 4 || liveGrowthPct < RSS_LIMIT_PCT),
      },
      {
        text: `restarts done: memcached ${tl.memcachedBack === undefined ? "no" : "yes"}, Keystone ${tl.keystoneBack === undefined ? "no" : "yes"}${directorError === undefined ? "" : ` (${directorError})`}`,
        ok:
          directorError === undefined &&
          tl.memcachedBack !== undefined &&
          tl.keystoneBack !== undefined,
      },
      {
        text: `revoked tokens refused after their deadline: ${String(done.filter((r) => r.refusedAfterDeadline > 0).length)} of ${String(done.length)} revocations seen`,
        ok: done.every((r) => r.acceptedAfterDeadline === 0),
      },
    ];
    for (const c of checks)
      say(`  ${c.ok === undefined ? "----" : c.ok ? "PASS" : "FAIL"}  ${c.text}`);
    const passed = checks.every((c) => c.ok !== false);
    say(`RESULT: ${passed ? "PASS" : "FAIL"}`);
    if (skipped > 0.01 * scheduled) {
      say(
        `note: ${String(skipped)} scheduled requests were not sent (the generator fell behind or hit SOAK_MAX_IN_FLIGHT)`,
      );
    }
    if (OUT !== "") {
      writeFileSync(
        OUT,
        JSON.stringify(
          {
            options: {
              DURATION_S,
              RATE,
              WARMUP_S,
              MIX,
              USERS,
              PROJECTS,
              REVOCATIONS,
              EXPIRING,
              OUTAGE_S,
            },
            timeline: tl,
            classes: Object.fromEntries(
              [...tally].map(([c, t]) => [
                c,
                {
                  ...t,
                  status: Object.fromEntries(t.status),
                  latency: {
                    p50: t.latency.quantile(0.5),
                    p99: t.latency.quantile(0.99),
                    max: t.latency.max,
                  },
                },
              ]),
            ),
            latency: {
              p50: latencyAll.quantile(0.5),
              p90: latencyAll.quantile(0.9),
              p99: latencyAll.quantile(0.99),
              max: latencyAll.max,
            },
            rss: { afterWarmUp: rssWarm, end: rssEnd, growthPct },
            native: { afterWarmUp: nativeWarm, end: nativeEnd, growthPct: nativeGrowthPct },
            liveAfterFullGc: { afterWarmUp: liveWarm, end: liveEnd, growthPct: liveGrowthPct },
            masterProbe: {
              count: probes.length,
              p50: probeLatency.quantile(0.5),
              p99: probeLatency.quantile(0.99),
              max: probeLatency.max,
            },
            gc,
            fds: { afterWarmUp: fdWarm, end: fdEnd },
            passed,
            samples,
          },
          null,
          2,
        ),
      );
      say(`samples and summary written to ${OUT}`);
    }
    return passed;
  } finally {
    stage("stopping the region…");
    const code = await edge?.stop();
    if (code !== undefined && code !== 0)
      say(`note: keystone-edge serve exited with ${String(code)}`);
    await Promise.all([echo?.stop(), memcached?.stop(), replica?.close()]);
    await keystone?.stop();
    stage("stopped");
  }
}

main().then(
  (passed) => {
    process.exitCode = passed ? 0 : 1;
  },
  (error: unknown) => {
    process.stderr.write(
      `bench:soak failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
