/**
 * The memcached tier against a real memcached (test/harness/memcached.ts): round trip,
 * entries rewritten without the secret, and memcached going away and coming back.
 */
import { createServer, type Server, type Socket } from "node:net";
import { Client as MemjsClient } from "memjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
  MemcachedPool,
  MemcachedServer,
  memjsClientFactory,
  type MemcachedClientFactory,
  type MemcachedOptions,
} from "../../src/cache/memcached.js";
import { CountingCacheMetrics } from "../../src/cache/metrics.js";
import { TokenCache } from "../../src/cache/tiers.js";
import { CacheKeyer } from "../../src/cache/token-key.js";
import { startMemcached, type MemcachedHandle } from "../harness/memcached.js";
import { ManualClock, RecordingLogger, fakeToken, tokenBody } from "../harness/doubles.js";

const SECRET = "integration memcache secret key";
const HOUR_MS = 3_600_000;
const DEADLINE_MS = 50;
/** Timer and scheduling slack allowed on top of the deadline. */
const SLACK_MS = 40;

let mc: MemcachedHandle;

beforeAll(async () => {
  mc = await startMemcached();
});

afterAll(async () => {
  await mc.stop();
});

/** memjs through our factory, counting the calls that reach it. */
function countingFactory(): { factory: MemcachedClientFactory; calls: () => number } {
  let calls = 0;
  const factory: MemcachedClientFactory = (server, socket) => {
    const client = memjsClientFactory(server, socket);
    return {
      get: (key) => {
        calls++;
        return client.get(key);
      },
      set: (key, value, options) => {
        calls++;
        return client.set(key, value, options);
      },
      close: () => {
        client.close();
      },
    };
  };
  return { factory, calls: () => calls };
}

function edge(options: MemcachedOptions = {}) {
  const clock = new ManualClock(Date.now());
  const metrics = new CountingCacheMetrics();
  const logger = new RecordingLogger();
  const pool = new MemcachedPool([mc.address], {
    clock,
    metrics,
    logger,
    deadlineMs: DEADLINE_MS,
    ...options,
  });
  const cache = new TokenCache({
    keyer: new CacheKeyer(SECRET),
    shared: pool,
    clock,
    metrics,
    logger,
  });
  return { clock, metrics, logger, pool, cache };
}

async function timed<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await run();
  return { value, ms: performance.now() - started };
}

describe("memcached tier, real memcached", () => {
  it("round-trips a sealed token between two edges", async () => {
    const a = edge();
    const b = edge();
    const token = fakeToken(1);
    await a.cache.entry(token).storePositive(tokenBody("u1"), Date.now() + HOUR_MS);
    expect(a.metrics.get("memcached_set")).toBe(1);
    expect(b.cache.peek(token)).toBeUndefined();
    expect(await b.cache.entry(token).fetch()).toEqual(tokenBody("u1"));
    expect(b.cache.peek(token)).toEqual({ kind: "positive", token: tokenBody("u1") });
    expect(b.metrics.get("memcached_hit")).toBe(1);
    // a third edge with another secret does not even find the key
    const c = new TokenCache({
      keyer: new CacheKeyer("some other secret, other keys"),
      shared: new MemcachedPool([mc.address]),
    });
    expect(await c.entry(token).fetch()).toBeUndefined();
    for (const e of [a.cache, b.cache, c]) e.close();
  });

  it("rejects and counts entries rewritten without the secret", async () => {
    const writer = edge();
    const reader = edge();
    const token = fakeToken(2);
    const key = new CacheKeyer(SECRET).keys(token).memcachedKey;
    await writer.cache.entry(token).storePositive(tokenBody("u2"), Date.now() + HOUR_MS);

    // Someone with memcached access but not the secret: a plain memjs client.
    const raw = MemjsClient.create(mc.address, { retries: 1, logger: { log: () => undefined } });
    try {
      await raw.set(key, Buffer.from(JSON.stringify(tokenBody("admin"))), { expires: 300 });
      expect(await reader.cache.entry(token).fetch()).toBeUndefined();

      // flip one bit of the genuine entry
      await writer.cache.entry(token).storePositive(tokenBody("u2"), Date.now() + HOUR_MS);
      const genuine = (await raw.get(key)).value ?? Buffer.alloc(0);
      const flipped = Buffer.from(genuine);
      flipped[flipped.length - 20] = (flipped[flipped.length - 20] ?? 0) ^ 1;
      await raw.set(key, flipped, { expires: 300 });
      expect(await reader.cache.entry(token).fetch()).toBeUndefined();

      // copy another token's genuine entry under this token's key
      const other = fakeToken(3);
      await writer.cache.entry(other).storePositive(tokenBody("admin"), Date.now() + HOUR_MS);
      const otherKey = new CacheKeyer(SECRET).keys(other).memcachedKey;
      const stolen = (await raw.get(otherKey)).value ?? Buffer.alloc(0);
      await raw.set(key, stolen, { expires: 300 });
      expect(await reader.cache.entry(token).fetch()).toBeUndefined();
    } finally {
      raw.close();
    }
    expect(reader.metrics.get("memcached_malformed")).toBe(1); // plaintext: not our format
    expect(reader.metrics.get("memcached_auth_failure")).toBe(2); // bit flip, moved entry
    expect(reader.logger.at("warn")).toHaveLength(1);
    writer.cache.close();
    reader.cache.close();
  });

  it("stopped mid-run: misses within the deadline, breaker opens, a probe closes it after restart", async () => {
    const { factory, calls } = countingFactory();
    const { clock, metrics, logger, pool, cache } = edge({ createClient: factory });
    const server = pool.servers[0];
    if (server === undefined) throw new Error("no server");
    const token = fakeToken(4);
    await cache.entry(token).storePositive(tokenBody("u4"), Date.now() + HOUR_MS);
    expect(await server.get(new CacheKeyer(SECRET).keys(token).memcachedKey)).toBeDefined();

    await mc.stop();
    const key = new CacheKeyer(SECRET).keys(fakeToken(5)).memcachedKey;
    for (let i = 0; i < 5; i++) {
      const get = await timed(() => server.get(key));
      expect(get.value).toBeUndefined();
      expect(get.ms).toBeLessThanOrEqual(DEADLINE_MS + SLACK_MS);
    }
    expect(server.state().kind).toBe("open");
    expect(logger.at("warn")).toHaveLength(1);

    // open: immediate misses, nothing sent
    const before = calls();
    for (let i = 0; i < 50; i++) {
      const get = await timed(() => server.get(key));
      expect(get.value).toBeUndefined();
      expect(get.ms).toBeLessThan(15);
      const set = await timed(() => server.set(key, Buffer.from("x"), 60));
      expect(set.ms).toBeLessThan(15);
    }
    expect(calls()).toBe(before);
    expect(metrics.get("memcached_short_circuit")).toBe(100);

    // still down after the cooldown: the probe fails, the breaker re-opens
    clock.advance(5_000);
    const probe = await timed(() => server.get(key));
    expect(probe.value).toBeUndefined();
    expect(probe.ms).toBeLessThanOrEqual(DEADLINE_MS + SLACK_MS);
    expect(server.state().kind).toBe("open");

    // back: the next probe closes it and hits resume
    await mc.start();
    clock.advance(5_000);
    await cache.entry(token).storePositive(tokenBody("u4"), Date.now() + HOUR_MS); // the probe
    expect(server.state()).toEqual({ kind: "closed", failures: 0 });
    const fresh = edge();
    expect(await fresh.cache.entry(token).fetch()).toEqual(tokenBody("u4"));
    expect(logger.at("info").map((l) => l.message)).toEqual([
      "memcached available again: circuit closed",
    ]);
    expect(metrics.transitions.map((t) => t.state)).toEqual([
      "open",
      "half-open",
      "open",
      "half-open",
      "closed",
    ]);
    cache.close();
    fresh.cache.close();
  });

  it("hung (SIGSTOP): get and set give up at the deadline, and the breaker opens", async () => {
    const { metrics, pool, cache } = edge();
    const server = pool.servers[0];
    if (server === undefined) throw new Error("no server");
    const key = new CacheKeyer(SECRET).keys(fakeToken(6)).memcachedKey;
    await server.set(key, Buffer.from("warm the connection"), 60);
    await mc.pause();
    try {
      for (let i = 0; i < 5; i++) {
        const op: () => Promise<unknown> =
          i % 2 === 0 ? () => server.get(key) : () => server.set(key, Buffer.from("v"), 60);
        const { ms } = await timed(op);
        expect(ms).toBeGreaterThanOrEqual(DEADLINE_MS - 2);
        expect(ms).toBeLessThanOrEqual(DEADLINE_MS + SLACK_MS);
      }
      expect(metrics.get("memcached_timeout")).toBe(5);
      expect(server.state().kind).toBe("open");
    } finally {
      await mc.resume();
    }
    cache.close();
  });

  it("a server that closes connections cleanly (memjs would wait forever) costs one deadline", async () => {
    // Accepts, reads the request, closes with FIN: memjs leaves such a request pending
    // forever. Our deadline answers, and opening the breaker drops the memjs client.
    const sockets = new Set<Socket>();
    const closer: Server = createServer((socket) => {
      sockets.add(socket);
      socket.once("data", () => socket.end());
      socket.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => closer.listen(0, "127.0.0.1", resolve));
    const address = closer.address();
    if (address === null || typeof address === "string") throw new Error("no address");
    const metrics = new CountingCacheMetrics();
    const server = new MemcachedServer(`127.0.0.1:${address.port}`, {
      deadlineMs: DEADLINE_MS,
      failureThreshold: 2,
      metrics,
    });
    try {
      for (let i = 0; i < 2; i++) {
        const { value, ms } = await timed(() => server.get("keystone-edge/v1/ab"));
        expect(value).toBeUndefined();
        expect(ms).toBeLessThanOrEqual(DEADLINE_MS + SLACK_MS);
      }
      expect(metrics.get("memcached_timeout")).toBe(2);
      expect(server.state().kind).toBe("open");
    } finally {
      server.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => closer.close(() => resolve()));
    }
  });
});
