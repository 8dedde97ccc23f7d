/**
 * `npm run bench:access-rules`: the cost of matching one access-rule path pattern, the way
 * checkAccessRules does (`pathMatches`: compiled-pattern cache, then a linear-time match).
 *
 * Cases: realistic rules on realistic paths, and on 1 KiB / 8 KiB paths; the ReDoS pattern
 * of issue 13 on 1 KiB / 8 KiB paths that do not match, with the DFA cache and without it
 * (pure NFA simulation, the worst case the design allows); a pattern built to defeat the DFA
 * cache; and compiling a pattern. Baseline: the RegExp keystone-edge used before (the
 * pattern turned into a backtracking RegExp), on the non-pathological cases only — on the
 * ReDoS pattern it does not return. Prints ns per match (median of interleaved rounds).
 */
import { arch, cpus, platform, release, totalmem } from "node:os";
import { pathMatches } from "../src/contract/access-rules.js";
import { compilePathPattern, type PathPattern } from "../src/contract/path-pattern.js";

const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

/** The matcher keystone-edge had before issue 13, verbatim but for its cache: the baseline. */
const OLD_TOKEN = /(?<tag>\{[^}]*\})|(?<wild>\*(?=$|[^*]))|(?<recWild>\*\*)|(?<literal>[^{}*])/g;
const oldCompiled = new Map<string, RegExp | null>();
function oldPathMatches(requestPath: string, pattern: string): boolean {
  let regex = oldCompiled.get(pattern);
  if (regex === undefined) {
    let source = "";
    for (const m of pattern.matchAll(OLD_TOKEN)) {
      const g = m.groups ?? {};
      if (g["tag"] !== undefined || g["wild"] !== undefined) source += "[^\\/]+";
      if (g["recWild"] !== undefined) source += ".*";
      if (g["literal"] !== undefined) source += g["literal"];
    }
    try {
      regex = new RegExp(`^${source}\\n?$`);
    } catch {
      regex = null;
    }
    oldCompiled.set(pattern, regex);
  }
  return regex !== null && regex.test(requestPath);
}

/** ns per call of `fn` over one round of ROUND_MS. */
function round(fn: () => unknown, batch: number): number {
  let ops = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(ROUND_MS) * 1_000_000n;
  let now = start;
  while (now < end) {
    for (let i = 0; i < batch; i++) fn();
    ops += batch;
    now = process.hrtime.bigint();
  }
  return Number(now - start) / ops;
}

interface Case {
  readonly name: string;
  readonly pattern: string;
  readonly path: string;
  readonly expected: boolean;
  /** Run the old RegExp too (never on a pathological case). */
  readonly baseline: boolean;
  /** A matcher of its own (no DFA, …) instead of `pathMatches`. */
  readonly matcher?: PathPattern;
}

const uuid = "6f70656e-7374-6163-6b00-000000000000";
const kib = (n: number, unit: string, prefix: string): string =>
  (prefix + unit.repeat(Math.ceil((n * 1024) / unit.length))).slice(0, n * 1024);
const REDOS = "/v2.1/**/**/**/**/**/**/**/**/**/**/**/**/zzz";
const DFA_BUSTER = `/**a${".".repeat(40)}`;
const randomAb = (n: number): string => {
  let s = "/";
  let x = 12345;
  while (s.length < n) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    s += x & 0x10000 ? "a" : "b";
  }
  return s;
};

const cases: Case[] = [
  {
    name: "{server_id}, match",
    pattern: "/v2.1/servers/{server_id}",
    path: `/v2.1/servers/${uuid}`,
    expected: true,
    baseline: true,
  },
  {
    name: "servers/*, no match",
    pattern: "/v2.1/servers/*",
    path: `/v2.1/servers/${uuid}/ips`,
    expected: false,
    baseline: true,
  },
  {
    name: "AUTH_*/container/**, match",
    pattern: "/v1/AUTH_*/container/**",
    path: "/v1/AUTH_0123456789abcdef/container/photos/2024/img.jpg",
    expected: true,
    baseline: true,
  },
  {
    name: "AUTH_*/container/**, 1 KiB",
    pattern: "/v1/AUTH_*/container/**",
    path: kib(1, "/seg", "/v1/AUTH_x/container"),
    expected: true,
    baseline: true,
  },
  {
    name: "AUTH_*/container/**, 8 KiB",
    pattern: "/v1/AUTH_*/container/**",
    path: kib(8, "/seg", "/v1/AUTH_x/container"),
    expected: true,
    baseline: true,
  },
  {
    name: "ReDoS pattern, 1 KiB no match",
    pattern: REDOS,
    path: kib(1, "/a", "/v2.1"),
    expected: false,
    baseline: false,
  },
  {
    name: "ReDoS pattern, 8 KiB no match",
    pattern: REDOS,
    path: kib(8, "/a", "/v2.1"),
    expected: false,
    baseline: false,
  },
  {
    name: "ReDoS, 8 KiB, no DFA (worst)",
    pattern: REDOS,
    path: kib(8, "/a", "/v2.1"),
    expected: false,
    baseline: false,
    matcher: compilePathPattern(REDOS, { maxDfaStates: 0 }),
  },
  {
    name: "DFA buster /**a + 40 dots, 8 KiB",
    pattern: DFA_BUSTER,
    path: randomAb(8 * 1024),
    expected: true,
    baseline: false,
  },
];

const edgeFns = new Map<string, () => boolean>(
  cases.map((c) => {
    const { matcher, path, pattern } = c;
    return [c.name, matcher ? () => matcher.matches(path) : () => pathMatches(path, pattern)];
  }),
);

for (const c of cases) {
  const got = edgeFns.get(c.name)?.() ?? !c.expected;
  if (got !== c.expected) throw new Error(`${c.name}: edge says ${got}, expected ${c.expected}`);
  if (c.baseline && oldPathMatches(c.path, c.pattern) !== c.expected) {
    throw new Error(`${c.name}: the old matcher disagrees`);
  }
}

type Fn = { readonly name: string; readonly fn: () => unknown; readonly batch: number };
const fns: Fn[] = [];
for (const c of cases) {
  const batch = c.path.length > 512 ? 10 : 1_000;
  const edge = edgeFns.get(c.name);
  if (edge !== undefined) fns.push({ name: `edge ${c.name}`, fn: edge, batch });
  if (c.baseline) {
    fns.push({ name: `old ${c.name}`, fn: () => oldPathMatches(c.path, c.pattern), batch });
  }
}
fns.push(
  {
    name: "compile /v2.1/servers/{server_id}",
    fn: () => compilePathPattern("/v2.1/servers/{server_id}"),
    batch: 100,
  },
  { name: "compile ReDoS pattern", fn: () => compilePathPattern(REDOS), batch: 100 },
);

for (const f of fns)
  for (let i = 0; i < 2_000 / f.batch + 5; i++) for (let k = 0; k < f.batch; k++) f.fn();
const samples = new Map<string, number[]>(fns.map((f) => [f.name, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const f of fns) samples.get(f.name)?.push(round(f.fn, f.batch));
}
const median = (xs: number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const cpu = cpus()[0]?.model ?? "unknown CPU";
console.log("keystone-edge access-rule path matching benchmark");
console.log(
  `machine: ${cpu}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, ${platform()} ${release()} ${arch()}`,
);
console.log(
  `node ${process.version}, ${ROUNDS} interleaved rounds of ${ROUND_MS} ms per case, median`,
);
console.log("");
console.log(
  `${"case".padEnd(40)} ${"path".padStart(6)}  ${"edge ns".padStart(12)}  ${"old RegExp ns".padStart(14)}`,
);
const fmt = (n: number | undefined): string =>
  n === undefined ? "—" : Math.round(n).toLocaleString("en-US");
for (const c of cases) {
  const edge = median(samples.get(`edge ${c.name}`) ?? []);
  const old = c.baseline ? median(samples.get(`old ${c.name}`) ?? []) : undefined;
  const oldText = c.baseline ? fmt(old) : "(not run)";
  console.log(
    `${c.name.padEnd(40)} ${String(c.path.length).padStart(6)}  ${fmt(edge).padStart(12)}  ${oldText.padStart(14)}`,
  );
}
for (const name of ["compile /v2.1/servers/{server_id}", "compile ReDoS pattern"]) {
  console.log(
    `${name.padEnd(40)} ${"".padStart(6)}  ${fmt(median(samples.get(name) ?? [])).padStart(12)}`,
  );
}
