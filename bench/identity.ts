/**
 * `npm run bench:identity`: token validations per second through keystone-edge's Identity
 * face against the real Keystone directly — same tokens, same caller, same client, same
 * run — printed as a ratio.
 *
 * Keystone runs as the test harness runs it, with its cache on memcached (as production
 * does; without it each validation costs ≈0.8 s here): Debian's Keystone 22 under uwsgi,
 * 2 processes × 4 threads, PostgreSQL. keystone-edge runs as its own process
 * (`keystone-edge serve` with `identity_listen`). The client is this process: undici,
 * keep-alive, CONCURRENCY requests in flight, `GET /v3/auth/tokens` with the service
 * user's token as caller and the subject cycling through TOKENS tokens of every fixture
 * kind plus fresh project tokens (each validated once through the edge before measuring:
 * steady state, the edge's caches warm, Keystone's too). Rounds alternate edge and
 * Keystone; each figure is the median of ROUNDS rounds of DURATION seconds.
 *
 * Knobs (environment): BENCH_DURATION_S (5), BENCH_ROUNDS (3), BENCH_CONCURRENCY (16),
 * BENCH_TOKENS (200).
 */
import { Pool } from "undici";
import { readKeyRepository } from "../src/fernet/key-repository.js";
import { staticKeyRing } from "../src/fernet/key-ring.js";
import { TokenDecoder } from "../src/token/decoder.js";
import { randomAuditId } from "../src/token/payload.js";
import type { EpochMicros } from "../src/units.js";
import { startEchoUpstream } from "../test/harness/echo-upstream.js";
import { startEdgeProcess } from "../test/harness/edge-process.js";
import { createFixtures } from "../test/harness/fixtures.js";
import { ensureDebianDeps } from "../test/harness/global-setup.js";
import { startKeystone } from "../test/harness/keystone.js";
import { freePort } from "../test/harness/net.js";

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const TOKENS = Number(process.env.BENCH_TOKENS ?? 200);

function say(s: string): void {
  process.stdout.write(`${s}\n`);
}

interface Round {
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly failures: number;
}

/** CONCURRENCY loops for DURATION_S seconds against `base`; every answer must be 200. */
async function round(base: string, caller: string, subjects: readonly string[]): Promise<Round> {
  const url = new URL(base);
  const pool = new Pool(url.origin, { connections: CONCURRENCY, pipelining: 1 });
  const path = `${url.pathname.replace(/\/+$/, "")}/auth/tokens?nocatalog`;
  const latencies: number[] = [];
  let failures = 0;
  let next = 0;
  const until = performance.now() + DURATION_S * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) {
        const subject = subjects[next++ % subjects.length] ?? "";
        const t0 = performance.now();
        const res = await pool.request({
          path,
          method: "GET",
          headers: { "x-auth-token": caller, "x-subject-token": subject },
        });
        await res.body.dump();
        latencies.push(performance.now() - t0);
        if (res.statusCode !== 200) failures++;
      }
    }),
  );
  await pool.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { perSecond: latencies.length / DURATION_S, p50Ms: at(0.5), p99Ms: at(0.99), failures };
}

const median = (xs: readonly number[]): number =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

async function main(): Promise<void> {
  ensureDebianDeps();
  say("bench:identity: starting Keystone (its cache on memcached) and fixtures…");
  const keystone = await startKeystone({ cache: "memcached" });
  const echo = await startEchoUpstream();
  let edge: Awaited<ReturnType<typeof startEdgeProcess>> | undefined;
  try {
    const info = keystone.info;
    const fixtures = await createFixtures(info);
    const port = await freePort();
    edge = await startEdgeProcess({
      keystone: info,
      upstream: echo.url,
      serviceUser: fixtures.serviceUser,
      extraYaml: [`identity_listen: "127.0.0.1:${String(port)}"`],
    });
    const edgeIdentity = `http://127.0.0.1:${String(port)}/v3`;
    const decoder = new TokenDecoder({
      keys: staticKeyRing(await readKeyRepository(info.keyRepository)),
      authMethods: info.authMethods,
    });
    const alice = decoder.decode(fixtures.tokens.project);
    if (alice.status !== "valid") throw new Error("the fixture token does not decode");
    const subjects = [...Object.values(fixtures.tokens)];
    while (subjects.length < TOKENS) {
      subjects.push(
        decoder.mint({
          ...alice.token.payload,
          auditIds: [randomAuditId()],
          expiresAtMicros: ((Math.floor(Date.now() / 1000) + 3600) * 1e6) as EpochMicros,
        }),
      );
    }
    const caller = fixtures.tokens.service;
    // Warm both: every token validated once by each side.
    for (const base of [edgeIdentity, info.url]) {
      const warm = await fetch(`${base}/auth/tokens`, {
        headers: { "X-Auth-Token": caller, "X-Subject-Token": caller },
      });
      await warm.arrayBuffer();
      for (const subject of subjects) {
        const res = await fetch(`${base}/auth/tokens?nocatalog`, {
          headers: { "X-Auth-Token": caller, "X-Subject-Token": subject },
        });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`warm-up at ${base}: HTTP ${String(res.status)}`);
      }
    }
    say(
      `${String(subjects.length)} tokens (${String(Object.keys(fixtures.tokens).length)} fixture kinds + fresh project tokens), caller: the service user; ${String(CONCURRENCY)} in flight, ${String(ROUNDS)} rounds of ${String(DURATION_S)} s`,
    );
    const ours: Round[] = [];
    const theirs: Round[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      ours.push(await round(edgeIdentity, caller, subjects));
      theirs.push(await round(info.url, caller, subjects));
      say(
        `  round ${String(r + 1)}: keystone-edge ${Math.round(ours[r]?.perSecond ?? 0).toString()}/s, Keystone ${Math.round(theirs[r]?.perSecond ?? 0).toString()}/s`,
      );
    }
    const show = (label: string, rs: readonly Round[]): void => {
      say(
        `${label.padEnd(16)} ${Math.round(median(rs.map((x) => x.perSecond)))
          .toString()
          .padStart(
            7,
          )} validations/s   p50 ${median(rs.map((x) => x.p50Ms)).toFixed(2)} ms   p99 ${median(rs.map((x) => x.p99Ms)).toFixed(2)} ms   failures ${String(rs.reduce((a, x) => a + x.failures, 0))}`,
      );
    };
    say("");
    show("keystone-edge", ours);
    show("Keystone", theirs);
    const ratio = median(ours.map((x) => x.perSecond)) / median(theirs.map((x) => x.perSecond));
    say(
      `ratio: keystone-edge validates ${ratio.toFixed(1)}× as many tokens per second as Keystone`,
    );
    if ([...ours, ...theirs].some((x) => x.failures > 0))
      throw new Error("some validations failed");
  } finally {
    await edge?.stop();
    await echo.stop();
    await keystone.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench:identity failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
