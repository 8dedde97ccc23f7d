/**
 * `npm run bench:cache-memory`: what a cached token costs in memory (issue 17, item 3) —
 * N distinct tokens in the in-process cache, each stored as the request path stores it
 * (`TokenCache.entry(token).storePositive`, the L1 key derived from the token, never the
 * token) with the header lists the authenticator keeps per answer (`PreparedTokens`, as
 * `EdgeAuthenticator` holds them: one set per context, shared by its tokens' answers).
 *
 * Shapes of answer, each a real Keystone project-token body (user, project, domain names,
 * three roles):
 * - `keystone, no catalog`: each token validated by Keystone, `include_service_catalog:
 *   false` (or an edge without `identity_listen`, whose validations use `?nocatalog`);
 * - `keystone + catalog`: each validated by Keystone with an 8-service catalog (3
 *   interfaces each), each answer parsed on its own (the worst case: nothing shared);
 * - `context + catalog`: each a new token of a known user and scope answered from the
 *   context cache (the common case for CLI-style traffic): the context's objects shared,
 *   the token's own fields its own.
 *
 * Method: each shape and size in a process of its own (`--expose-gc`): a cache is filled,
 * with a full GC every BENCH_GC_EVERY entries [100 000] (an edge fills its cache over
 * minutes, collecting as it goes: filling a million entries in one go would instead leave
 * the garbage made on the way — request bodies, JSON text, random bytes — in RSS as a
 * high-water mark no edge reaches; 0: no GC until the end, the earlier method), then a
 * full GC. Printed: the process's RSS then; the growth over the empty cache of the V8 heap
 * in use (external and array buffers included: what the entries retain), of V8's reserved
 * heap and of RSS, each divided by N; the fill time; the machine. Then, for sizing
 * memcached, what one token of each shape costs there: its sealed entry (what the edge
 * writes: AES-GCM over the answer's JSON) and the item memcached stores (+ the 81-byte
 * key and memcached 1.6's 56-byte item header with CAS, before slab rounding). The goal in
 * docs/benchmarks.md: ≤ 200 MB RSS at 100k cached tokens (for the edge's whole process:
 * add its RSS with an empty cache, in the sizing guide there).
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { arch, cpus, platform, release, totalmem } from "node:os";
import { fileURLToPath } from "node:url";

import { seal } from "../src/cache/sealed.js";
import { createTokenCache, type TokenCache } from "../src/cache/tiers.js";
import { CacheKeyer } from "../src/cache/token-key.js";
import type { PreparedToken } from "../src/contract/inject.js";
import type { KeystoneToken } from "../src/token/body.js";
import type { Token } from "../src/token/decoder.js";
import { answerFromContext } from "../src/validation/context.js";
import { PreparedTokens } from "../src/validation/prepared-tokens.js";

const SIZES = (process.env.BENCH_SIZES ?? "100000,1000000")
  .split(",")
  .map((s) => Number(s.trim()))
  .filter((n) => Number.isSafeInteger(n) && n > 0);
/** Past this many entries the shapes with a catalog of their own are not run (memory). */
const OWN_CATALOG_MAX = Number(process.env.BENCH_OWN_CATALOG_MAX ?? 100_000);
/** A full GC every this many entries while filling (0: only at the end). */
const GC_EVERY = Number(process.env.BENCH_GC_EVERY ?? 100_000);

const gc = (globalThis as { gc?: () => void }).gc;

const hex = (bytes = 16): string => randomBytes(bytes).toString("hex");
const HOUR_MS = 3_600_000;

function catalog(): unknown[] {
  const services = [
    "compute",
    "image",
    "volumev3",
    "network",
    "identity",
    "placement",
    "object-store",
    "orchestration",
  ];
  return services.map((type) => ({
    id: hex(),
    type,
    name: type === "volumev3" ? "cinderv3" : type,
    endpoints: ["public", "internal", "admin"].map((iface) => ({
      id: hex(),
      interface: iface,
      region_id: "RegionOne",
      region: "RegionOne",
      url: `https://${iface === "public" ? "api" : "internal"}.region-one.example.org:8774/v2.1/${type}`,
    })),
  }));
}

function body(withCatalog: boolean): KeystoneToken {
  const now = Date.now();
  return {
    methods: ["password"],
    user: {
      id: hex(),
      name: `user-${hex(4)}`,
      domain: { id: "default", name: "Default" },
      password_expires_at: null,
    },
    audit_ids: [randomBytes(16).toString("base64url")],
    expires_at: new Date(now + HOUR_MS).toISOString().replace("Z", "000Z"),
    issued_at: new Date(now).toISOString().replace("Z", "000Z"),
    project: { id: hex(), name: `project-${hex(4)}`, domain: { id: "default", name: "Default" } },
    is_domain: false,
    roles: [
      { id: hex(), name: "member" },
      { id: hex(), name: "reader" },
      { id: hex(), name: "load-balancer_member" },
    ],
    ...(withCatalog ? { catalog: catalog() } : {}),
  } as KeystoneToken;
}

type Shape = "keystone, no catalog" | "keystone + catalog" | "context + catalog";

/** The answer for the i-th token of a shape. */
function answers(shape: Shape): (i: number) => KeystoneToken {
  switch (shape) {
    case "keystone, no catalog":
      return () => JSON.parse(JSON.stringify(body(false))) as KeystoneToken;
    case "keystone + catalog":
      return () => JSON.parse(JSON.stringify(body(true))) as KeystoneToken;
    case "context + catalog": {
      // 20 contexts (users × scopes), each answering many tokens (answerFromContext's shape).
      const contexts = Array.from({ length: 20 }, () => Object.freeze(body(true)));
      return (i) => {
        const context = contexts[i % contexts.length] as KeystoneToken;
        const nowS = Math.floor(Date.now() / 1000);
        // what the context cache answers for a new token of this context (its own fields)
        const token = {
          payload: { methods: ["password"], auditIds: [randomBytes(16).toString("base64url")] },
          issuedAtSeconds: nowS,
          expiresAtSeconds: nowS + 3600,
        } as unknown as Token;
        return answerFromContext(context, token);
      };
    }
  }
}

interface Figures {
  /** V8's heap in use + external + array buffers: what is retained. */
  readonly heapBytes: number;
  /** V8's reserved heap (used and free pages). */
  readonly reservedBytes: number;
  readonly rssBytes: number;
}

function settle(): Figures {
  if (gc === undefined) throw new Error("run with --expose-gc (npm run bench:cache-memory does)");
  for (let i = 0; i < 3; i++) gc();
  const m = process.memoryUsage();
  return {
    heapBytes: m.heapUsed + m.external + m.arrayBuffers,
    reservedBytes: m.heapTotal,
    rssBytes: m.rss,
  };
}

async function measure(
  shape: Shape,
  n: number,
): Promise<Figures & { cache: TokenCache; fillSeconds: number }> {
  const cache = createTokenCache(
    {
      memcached_servers: [],
      token_cache_time: 300,
      lru_max_entries: n,
      stale_if_error: 0,
      revocation_markers: false,
    },
    {},
  );
  const withCatalog = shape !== "keystone, no catalog";
  const prepared = new PreparedTokens(withCatalog);
  const held: PreparedToken[] = [];
  const before = settle();
  const next = answers(shape);
  let lastAnswer: KeystoneToken | undefined;
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    if (GC_EVERY > 0 && i > 0 && i % GC_EVERY === 0) gc?.();
    // A token's bytes as Keystone issues them (≈ 180 characters); dropped once keyed.
    const token = `gAAAAA${randomBytes(132).toString("base64url")}`;
    const answer = next(i);
    await cache.entry(token).storePositive(answer, Date.now() + HOUR_MS);
    prepared.of(answer);
    lastAnswer = answer;
  }
  const fillSeconds = (performance.now() - start) / 1000;
  const after = settle();
  if (cache.size !== n)
    throw new Error(`expected ${String(n)} entries, held ${String(cache.size)}`);
  // The prepared headers live as long as their answers, as in the authenticator: used
  // after the measure, or V8 may drop the map once the loop is done with it (it did:
  // earlier figures left out every token's X-Service-Catalog value).
  if (lastAnswer === undefined) throw new Error("nothing was cached");
  held.push(prepared.of(lastAnswer)); // the map, used after the measure (see above)
  return {
    heapBytes: after.heapBytes - before.heapBytes,
    reservedBytes: after.reservedBytes - before.reservedBytes,
    rssBytes: after.rssBytes - before.rssBytes,
    cache,
    fillSeconds,
  };
}

const MiB = 2 ** 20;
/** memcached 1.6's item header with CAS on 64-bit, before the key and the value. */
const MEMCACHED_ITEM_HEADER_BYTES = 56;
const ALL_SHAPES: readonly Shape[] = [
  "keystone, no catalog",
  "context + catalog",
  "keystone + catalog",
];
/** BENCH_SHAPES: a comma-separated subset of the shapes (default all). */
const SHAPES: readonly Shape[] =
  process.env.BENCH_SHAPES === undefined || process.env.BENCH_SHAPES === ""
    ? ALL_SHAPES
    : ALL_SHAPES.filter((s) =>
        (process.env.BENCH_SHAPES ?? "").split(",").some((x) => x.trim() === s),
      );

/** One case in this process (a child): prints its figures as one JSON line. */
async function one(shape: Shape, n: number): Promise<void> {
  const f = await measure(shape, n);
  process.stdout.write(
    JSON.stringify({
      heapBytes: f.heapBytes,
      reservedBytes: f.reservedBytes,
      rssBytes: f.rssBytes,
      totalRss: process.memoryUsage().rss,
      fillSeconds: f.fillSeconds,
    } satisfies Result) + "\n",
  );
  f.cache.close();
}

type Result = Figures & { totalRss: number; fillSeconds: number };

/** Each case in a process of its own: RSS does not shrink back between cases. */
function child(shape: Shape, n: number): Promise<Result> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["--expose-gc", fileURLToPath(import.meta.url), "--one", shape, String(n)],
      { maxBuffer: 1 << 20 },
      (error, stdout) => {
        if (error !== null) reject(new Error(`${shape} × ${String(n)}: ${error.message}`));
        else resolve(JSON.parse(stdout.trim()) as Result);
      },
    );
  });
}

const [flag, shapeArg, sizeArg] = process.argv.slice(2);
if (flag === "--one") {
  if (!ALL_SHAPES.includes(shapeArg as Shape)) throw new Error(`unknown shape ${String(shapeArg)}`);
  await one(shapeArg as Shape, Number(sizeArg));
} else {
  const cpu = cpus()[0]?.model ?? "unknown CPU";
  process.stdout.write(
    `bench:cache-memory — machine: ${cpu}, ${String(cpus().length)} cores, ${String(Math.round(totalmem() / 2 ** 30))} GiB, ${platform()} ${release()} ${arch()}, Node ${process.version}; a full GC every ${GC_EVERY > 0 ? GC_EVERY.toLocaleString("en") : "–"} entries while filling\n\n`,
  );
  process.stdout.write(
    "\n| shape | sealed entry | memcached item (before slab rounding) |\n| --- | ---: | ---: |\n",
  );
  const keyer = CacheKeyer.random();
  for (const shape of SHAPES) {
    const token = `gAAAAA${randomBytes(132).toString("base64url")}`;
    const keys = keyer.keys(token);
    const sealed = seal(
      keyer.sealingKey(token, keys.memcachedKey),
      answers(shape)(0),
      Date.now() + HOUR_MS,
    );
    const item = sealed.length + Buffer.byteLength(keys.memcachedKey) + MEMCACHED_ITEM_HEADER_BYTES;
    process.stdout.write(
      `| ${shape} | ${sealed.length.toLocaleString("en")} B | ${item.toLocaleString("en")} B |\n`,
    );
  }
  process.stdout.write(
    "\n| shape | tokens | process RSS | retained (heap) growth | V8 reserved growth | RSS growth | retained per token | RSS per token | fill |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
  );
  for (const n of SIZES) {
    for (const shape of SHAPES) {
      if (shape === "keystone + catalog" && n > OWN_CATALOG_MAX) continue;
      const f = await child(shape, n);
      process.stdout.write(
        `| ${shape} | ${n.toLocaleString("en")} | ${(f.totalRss / MiB).toFixed(0)} MiB | ${(f.heapBytes / MiB).toFixed(1)} MiB | ${(f.reservedBytes / MiB).toFixed(1)} MiB | ${(f.rssBytes / MiB).toFixed(1)} MiB | ${String(Math.round(f.heapBytes / n))} B | ${String(Math.round(f.rssBytes / n))} B | ${f.fillSeconds.toFixed(1)} s |\n`,
      );
    }
  }
}
