/**
 * The fault matrix, memcached's side (docs/security.md, "Fault matrix"), for what a real
 * memcached will not do on demand: answering late, or answering garbage at the protocol
 * level (random bytes, random values, other requests' sequence numbers, a body that never
 * comes, a clean close) — against a fake memcached speaking the binary protocol
 * (test/harness/fake-memcached.ts), through a whole in-process edge (region.ts) and through
 * the cache tiers alone. memcached down and hung (SIGSTOP) and entries rewritten in a real
 * memcached are in test/integration/cache-memcached.test.ts and proxy-tiers.test.ts.
 */
import { afterEach, describe, expect, it } from "vitest";
import { MemcachedPool } from "../../../src/cache/memcached.js";
import { CountingCacheMetrics } from "../../../src/cache/metrics.js";
import { TokenCache } from "../../../src/cache/tiers.js";
import { CacheKeyer } from "../../../src/cache/token-key.js";
import { startEchoUpstream, type EchoUpstream } from "../../harness/echo-upstream.js";
import {
  startFakeMemcached,
  type FakeMemcached,
  type FakeMemcachedMode,
} from "../../harness/fake-memcached.js";
import { fakeToken, tokenBody } from "../../harness/doubles.js";
import { waitUntil } from "../helpers.js";
import { startRegion, type Region } from "./region.js";

const SECRET = "fault-matrix memcache secret";
/** The edge's memcached deadline (cache/memcached.ts) and the slack allowed on top. */
const DEADLINE_MS = 50;
const SLACK_MS = 100;

let region: Region | undefined;
let echo: EchoUpstream | undefined;
let memcached: FakeMemcached | undefined;

afterEach(async () => {
  await region?.close();
  await echo?.stop();
  await memcached?.close();
  region = undefined;
  echo = undefined;
  memcached = undefined;
});

async function start(mode: FakeMemcachedMode): Promise<{ r: Region; mc: FakeMemcached }> {
  memcached = await startFakeMemcached();
  memcached.mode = mode;
  echo = await startEchoUpstream();
  // Contexts off: every new token's own memcached entry is looked up.
  region = await startRegion({
    upstream: echo.url,
    cache: {
      memcached_servers: [memcached.address],
      memcache_secret_key: SECRET,
      context_cache_time: 0,
    },
  });
  return { r: region, mc: memcached };
}

/** The user the service was told about, from the echo service's record. */
function forwardedUser(body: string): unknown {
  return (JSON.parse(body) as { headers: Record<string, unknown> }).headers["x-user-id"];
}

describe("fault matrix: memcached slow", () => {
  it("answers 200 ms late: each lookup gives up at the deadline, the breaker opens, Keystone answers, latency stays bounded", async () => {
    const { r, mc } = await start("ok");
    const known = r.mint(1, 1);
    expect((await r.request(known)).status).toBe(200);
    await waitUntil(() => mc.store.size > 0, 2_000, "the first entry in memcached");

    mc.delayMs = 200;
    const keystoneBefore = r.keystone.counts.validations;
    const latencies: number[] = [];
    const knownLatencies: number[] = [];
    for (let i = 0; i < 10; i++) {
      // a token only Keystone can settle, and a known one at the same time
      const [fresh, cached] = await Promise.all([
        r.request(r.mint(10 + i, 10 + i)),
        r.request(known),
      ]);
      expect(fresh.status).toBe(200);
      expect(forwardedUser(fresh.body)).toBe((10 + i).toString(16).padStart(32, "0"));
      expect(cached.status).toBe(200);
      latencies.push(fresh.ms);
      knownLatencies.push(cached.ms);
    }
    expect(r.keystone.counts.validations - keystoneBefore).toBe(10);
    expect(Math.max(...latencies)).toBeLessThan(DEADLINE_MS + 400);
    expect(Math.max(...knownLatencies)).toBeLessThan(DEADLINE_MS + 400);
    expect(
      await r.metric("keystone_edge_memcached_errors_total", { kind: "timeout" }),
    ).toBeGreaterThanOrEqual(5);
    expect(
      await r.metric("keystone_edge_memcached_errors_total", { kind: "short_circuit" }),
    ).toBeGreaterThan(0);
    expect(
      await r.metric("keystone_edge_memcached_breaker_state", {
        server: mc.address,
        state: "open",
      }),
    ).toBe(1);
    expect(r.logger.at("warn").map((l) => l.message)).toContain(
      "memcached unavailable: circuit open, cache reads are misses",
    );

    // Fast again: after the breaker's 5 s, a request's call is the probe and closes it.
    mc.delayMs = 0;
    let n = 100;
    await waitUntil(
      async () => {
        expect((await r.request(r.mint(n, n++))).status).toBe(200);
        return (
          (await r.metric("keystone_edge_memcached_breaker_state", {
            server: mc.address,
            state: "closed",
          })) === 1
        );
      },
      10_000,
      "the memcached breaker to close",
    );
  });
});

describe("fault matrix: memcached returning garbage", () => {
  const modes: FakeMemcachedMode[] = [
    "garbage",
    "garbage-value",
    "wrong-opaque",
    "bad-length",
    "close",
  ];

  it.each(modes)(
    "%s: every answer is a miss within the deadline, Keystone settles the token, no wrong verdict",
    async (mode) => {
      const { r, mc } = await start(mode);
      const revoked = r.mint(3, 3);
      r.keystone.revoke(revoked);
      const keystoneBefore = r.keystone.counts.validations;
      for (let i = 0; i < 8; i++) {
        const user = 20 + i;
        const fresh = await r.request(r.mint(user, user));
        expect(fresh.status).toBe(200);
        expect(forwardedUser(fresh.body)).toBe(user.toString(16).padStart(32, "0"));
        expect(fresh.ms).toBeLessThan(DEADLINE_MS + 400);
      }
      expect((await r.request(revoked)).status).toBe(401);
      expect((await r.request(r.forged())).status).toBe(401);
      expect(r.keystone.counts.validations - keystoneBefore).toBe(9); // 8 valid, 1 revoked
      expect(mc.requests.get).toBeGreaterThan(0);
      expect(await r.metric("keystone_edge_validations_total", { source: "memcached" })).toBe(0);
      const failures = await Promise.all(
        ["error", "timeout", "malformed", "auth_failure"].map((kind) =>
          r.metric("keystone_edge_memcached_errors_total", { kind }),
        ),
      );
      expect(failures.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    },
  );

  it("random bytes for 150 calls through the cache tiers: never a hit, never a rejection, never past the deadline", async () => {
    memcached = await startFakeMemcached();
    memcached.mode = "garbage";
    const metrics = new CountingCacheMetrics();
    // A breaker that opens on every failure and probes 1 ms later: each failure drops the
    // memjs client, so each call meets fresh garbage on a fresh connection.
    const pool = new MemcachedPool([memcached.address], {
      deadlineMs: DEADLINE_MS,
      failureThreshold: 1,
      cooldownMs: 1,
      metrics,
    });
    const cache = new TokenCache({ keyer: new CacheKeyer(SECRET), shared: pool, metrics });
    try {
      for (let i = 0; i < 150; i++) {
        const token = fakeToken(i);
        const started = performance.now();
        if (i % 3 === 0) {
          await cache.entry(token).storePositive(tokenBody(`u${String(i)}`), Date.now() + 60_000);
          cache.clear();
        } else {
          expect(await cache.entry(token).fetch()).toBeUndefined();
        }
        expect(performance.now() - started).toBeLessThan(DEADLINE_MS + SLACK_MS);
        await new Promise((r) => setTimeout(r, 2)); // past the cooldown: the next call probes
      }
      expect(memcached.connections).toBeGreaterThan(100);
      expect(metrics.get("memcached_hit")).toBe(0);
    } finally {
      cache.close();
    }
  });
});
