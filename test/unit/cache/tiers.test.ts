import { describe, expect, expectTypeOf, it, vi } from "vitest";

import type { SharedStore } from "../../../src/cache/memcached.js";
import { CountingCacheMetrics } from "../../../src/cache/metrics.js";
import { SEALED_VERSION, seal } from "../../../src/cache/sealed.js";
import { TokenCache, createTokenCache } from "../../../src/cache/tiers.js";
import { CacheKeyer } from "../../../src/cache/token-key.js";
import type { Config } from "../../../src/config/schema.js";
import type { KeystoneToken } from "../../../src/token/body.js";
import type { ValidationCache } from "../../../src/validation/pipeline.js";
import {
  MapStore,
  ManualClock,
  RecordingLogger,
  T0_MS,
  fakeToken,
  tokenBody,
} from "../../harness/doubles.js";

const SECRET = "the memcache secret key, shared by all edges";
const HOUR_MS = 3_600_000;
const TOKEN = fakeToken(11);

function setup(shared: SharedStore | undefined = new MapStore(), keyer = new CacheKeyer(SECRET)) {
  const clock = new ManualClock();
  const metrics = new CountingCacheMetrics();
  const logger = new RecordingLogger();
  const cache = new TokenCache({
    keyer,
    shared,
    clock,
    metrics,
    logger,
    tokenCacheTimeSeconds: 300,
  });
  return { clock, metrics, logger, cache, keyer };
}

/** Stores a validated token as the pipeline does: through the token's entry. */
function storeValid(
  cache: TokenCache,
  token: string,
  body: KeystoneToken,
  expiresAtMs: number,
): Promise<void> {
  return cache.entry(token).storePositive(body, expiresAtMs);
}

describe("TokenCache", () => {
  it("misses, then answers from L1 after a positive store, for token_cache_time", async () => {
    const { cache, clock } = setup();
    expect(cache.peek(TOKEN)).toBeUndefined();
    expect(await cache.entry(TOKEN).fetch()).toBeUndefined();
    await storeValid(cache, TOKEN, tokenBody("u1"), T0_MS + HOUR_MS);
    expect(cache.peek(TOKEN)).toEqual({ kind: "positive", token: tokenBody("u1") });
    clock.advance(299_999);
    expect(cache.entry(TOKEN).peek()?.kind).toBe("positive");
    clock.advance(1);
    expect(cache.peek(TOKEN)).toBeUndefined();
  });

  it("remembers rejections in L1 only, for the negative TTL or the one given", async () => {
    const shared = new MapStore();
    const { cache, clock } = setup(shared);
    cache.entry(TOKEN).storeNegative("not_found");
    cache.entry(fakeToken(12)).storeNegative("not_found", 60_000);
    expect(cache.peek(TOKEN)).toEqual({ kind: "negative", code: "not_found" });
    expect(shared.sets).toBe(0);
    clock.advance(10_000);
    expect(cache.peek(TOKEN)).toBeUndefined();
    expect(await cache.entry(TOKEN).fetch()).toBeUndefined();
    expect(cache.peek(fakeToken(12))?.kind).toBe("negative");
    clock.advance(50_000);
    expect(cache.peek(fakeToken(12))).toBeUndefined();
  });

  it("a quiet peek counts neither hit nor miss", () => {
    const { cache, metrics } = setup();
    const entry = cache.entry(TOKEN);
    expect(entry.peek(true)).toBeUndefined();
    entry.storeNegative("malformed");
    expect(entry.peek(true)?.kind).toBe("negative");
    expect(metrics.snapshot()).toEqual({});
    entry.peek();
    expect(metrics.get("l1_negative_hit")).toBe(1);
  });

  it("writes memcached sealed, for min(token_cache_time, expiry), never in the clear", async () => {
    const shared = new MapStore();
    const { cache, keyer } = setup(shared);
    await storeValid(cache, TOKEN, tokenBody("u1"), T0_MS + 42_500);
    const key = keyer.keys(TOKEN).memcachedKey;
    expect([...shared.values.keys()]).toEqual([key]);
    expect(shared.ttls.get(key)).toBe(42.5); // the server rounds up to whole seconds
    const bytes = shared.values.get(key) ?? Buffer.alloc(0);
    expect(bytes[0]).toBe(SEALED_VERSION);
    // Whole plaintext fragments: a two-byte string turns up in random bytes one time in ~700.
    expect(bytes.includes(Buffer.from(JSON.stringify(tokenBody("u1").user)))).toBe(false);
    expect(bytes.includes(Buffer.from('"name":"alice"'))).toBe(false);
    expect(bytes.includes(Buffer.from(TOKEN))).toBe(false);
    await storeValid(cache, fakeToken(12), tokenBody("u2"), T0_MS + HOUR_MS);
    expect(shared.ttls.get(keyer.keys(fakeToken(12)).memcachedKey)).toBe(300);
  });

  it("stores nothing for a token already expired, and drops what it held", async () => {
    const shared = new MapStore();
    const { cache } = setup(shared);
    await storeValid(cache, TOKEN, tokenBody(), T0_MS + HOUR_MS);
    const sets = shared.sets;
    await storeValid(cache, TOKEN, tokenBody(), T0_MS);
    expect(shared.sets).toBe(sets);
    expect(cache.peek(TOKEN)).toBeUndefined();
  });

  it("finds another edge's entry in memcached and promotes it to L1", async () => {
    const shared = new MapStore();
    await storeValid(setup(shared).cache, TOKEN, tokenBody("u1"), T0_MS + HOUR_MS);
    const { cache, metrics } = setup(shared); // another edge: same secret, empty L1
    expect(cache.peek(TOKEN)).toBeUndefined();
    expect(await cache.entry(TOKEN).fetch()).toEqual(tokenBody("u1"));
    const gets = shared.gets;
    expect(cache.peek(TOKEN)).toEqual({ kind: "positive", token: tokenBody("u1") });
    expect(shared.gets).toBe(gets);
    expect(metrics.get("l1_hit")).toBe(1);
  });

  it("keeps a promoted entry no longer than the sealed expiry", async () => {
    const shared = new MapStore();
    await storeValid(setup(shared).cache, TOKEN, tokenBody(), T0_MS + 20_000);
    const { cache, clock } = setup(shared);
    clock.advance(15_000);
    expect(await cache.entry(TOKEN).fetch()).toEqual(tokenBody());
    clock.advance(4_999);
    expect(cache.peek(TOKEN)?.kind).toBe("positive");
    clock.advance(1);
    expect(cache.peek(TOKEN)).toBeUndefined();
    expect(await cache.entry(TOKEN).fetch()).toBeUndefined();
  });

  it("calls an entry sealed for another token, or tampered with, an auth failure and a miss", async () => {
    const shared = new MapStore();
    const { cache, keyer, metrics, logger } = setup(shared);
    const key = keyer.keys(TOKEN).memcachedKey;
    // an attacker with memcached access copies another token's entry under ours
    shared.values.set(
      key,
      seal(keyer.sealingKey(fakeToken(13)), tokenBody("admin"), T0_MS + HOUR_MS),
    );
    expect(await cache.entry(TOKEN).fetch()).toBeUndefined();
    // or writes one with a secret of their own
    const theirs = new CacheKeyer("an attacker's guess at the secret");
    shared.values.set(
      key,
      seal(theirs.sealingKey(TOKEN, key), tokenBody("admin"), T0_MS + HOUR_MS),
    );
    expect(await cache.entry(TOKEN).fetch()).toBeUndefined();
    expect(metrics.get("memcached_auth_failure")).toBe(2);
    expect(cache.size).toBe(0);
    expect(logger.at("warn")).toHaveLength(1); // rate-limited
    expect(logger.text()).not.toContain(TOKEN);
  });

  it("counts expired and malformed entries separately", async () => {
    const shared = new MapStore();
    const { cache, keyer, metrics } = setup(shared);
    const key = keyer.keys(TOKEN).memcachedKey;
    shared.values.set(key, seal(keyer.sealingKey(TOKEN), tokenBody(), T0_MS - 1));
    expect(await cache.entry(TOKEN).fetch()).toBeUndefined();
    shared.values.set(key, Buffer.from(JSON.stringify(tokenBody())));
    expect(await cache.entry(TOKEN).fetch()).toBeUndefined();
    shared.values.set(key, seal(keyer.sealingKey(TOKEN), { not: "a token" }, T0_MS + HOUR_MS));
    expect(await cache.entry(TOKEN).fetch()).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(metrics.snapshot()).toMatchObject({ memcached_expired: 1, memcached_malformed: 2 });
  });

  it("derives only the L1 key on an L1 hit; the memcached and sealing keys once on a miss", async () => {
    const memcached = new MapStore();
    const { cache, keyer } = setup(memcached);
    await storeValid(cache, TOKEN, tokenBody(), T0_MS + HOUR_MS);
    const l1 = vi.spyOn(keyer, "l1Key");
    const shared = vi.spyOn(keyer, "memcachedKey");
    const sealing = vi.spyOn(keyer, "sealingKey");
    expect(cache.entry(TOKEN).peek()?.kind).toBe("positive");
    expect(cache.peek(TOKEN)?.kind).toBe("positive");
    expect(l1).toHaveBeenCalledTimes(2);
    expect(shared).not.toHaveBeenCalled();
    expect(sealing).not.toHaveBeenCalled();

    // An L1 miss that memcached answers: each key derived once for the whole entry.
    const other = fakeToken(42);
    const entry = cache.entry(other);
    expect(entry.peek()).toBeUndefined();
    expect(await entry.fetch()).toBeUndefined();
    await entry.storePositive(tokenBody(), T0_MS + HOUR_MS);
    expect(shared).toHaveBeenCalledTimes(1);
    expect(shared).toHaveBeenCalledWith(other);
    expect(memcached.gets).toBe(1);
    expect(memcached.values.has(keyer.memcachedKey(other))).toBe(true);
  });

  it("works without memcached", async () => {
    // (setup's default would give it a store.)
    const cache = new TokenCache({ keyer: CacheKeyer.random(), clock: new ManualClock() });
    await storeValid(cache, TOKEN, tokenBody(), T0_MS + HOUR_MS);
    expect(cache.peek(TOKEN)?.kind).toBe("positive");
    expect(await cache.entry(fakeToken(99)).fetch()).toBeUndefined();
    expect(cache.contextStore()).toBeUndefined();
    expect(setup().cache.contextStore()).toBeDefined();
  });

  it("does not reach memcached when an unsealable value is stored", async () => {
    const shared = new MapStore();
    const { cache, metrics } = setup(shared);
    await storeValid(cache, TOKEN, tokenBody("u", { weird: 1n }), T0_MS + HOUR_MS);
    expect(shared.sets).toBe(0);
    expect(metrics.get("memcached_seal_error")).toBe(1);
  });

  it("purges L1 entries by predicate (revocation)", async () => {
    const { cache } = setup();
    await storeValid(cache, TOKEN, tokenBody("alice"), T0_MS + HOUR_MS);
    await storeValid(cache, fakeToken(20), tokenBody("bob"), T0_MS + HOUR_MS);
    expect(cache.purge((e) => e.kind === "positive" && e.value.user.id === "alice")).toBe(1);
    expect(cache.peek(TOKEN)).toBeUndefined();
    expect(cache.peek(fakeToken(20))).toMatchObject({ kind: "positive" });
  });

  it("serves the validation pipeline's cache contract (peek / fetch / store)", async () => {
    const store = new MapStore();
    const { cache } = setup(store);
    expectTypeOf(cache).toExtend<ValidationCache & { close(): void }>();
    const asPipelineSees: ValidationCache = cache;
    await asPipelineSees.entry(TOKEN).storePositive(tokenBody("u1"), T0_MS + HOUR_MS);
    asPipelineSees.entry(fakeToken(30)).storeNegative("malformed");
    expect(asPipelineSees.entry(TOKEN).peek()).toEqual({
      kind: "positive",
      token: tokenBody("u1"),
    });
    expect(asPipelineSees.entry(fakeToken(30)).peek()).toEqual({
      kind: "negative",
      code: "malformed",
    });
    // Another edge: the shared tier answers, and the hit is promoted in-process by fetch itself.
    const other = setup(store).cache.entry(TOKEN);
    expect(other.peek()).toBeUndefined();
    expect(await other.fetch()).toEqual(tokenBody("u1"));
    expect(other.peek()).toEqual({ kind: "positive", token: tokenBody("u1") });
    cache.close();
    expect(store.closed).toBe(true);
  });
});

describe("TokenCache revocation markers", () => {
  function edge(store: MapStore, markers = true, keyer = new CacheKeyer(SECRET)) {
    const clock = new ManualClock();
    const metrics = new CountingCacheMetrics();
    const cache = new TokenCache({
      keyer,
      shared: store,
      clock,
      metrics,
      revocationMarkers: markers,
    });
    return { cache, clock, metrics, keyer };
  }

  it("one edge's marker is read by another sharing memcached, until it runs out; sealed, never the token", async () => {
    const store = new MapStore();
    const one = edge(store);
    const two = edge(store);
    expect(two.cache.marksRevocations).toBe(true);
    expect(await two.cache.entry(TOKEN).revoked()).toBe(false);
    await one.cache.entry(TOKEN).markRevoked(T0_MS + 60_000);
    const key = one.keyer.revokedKey(TOKEN);
    expect([...store.values.keys()]).toEqual([key]);
    expect(key.startsWith("keystone-edge/v1/rev/")).toBe(true);
    expect(key).not.toBe(one.keyer.memcachedKey(TOKEN));
    expect(store.ttls.get(key)).toBe(60);
    expect(store.values.get(key)?.includes(Buffer.from(TOKEN))).toBe(false);
    expect(await two.cache.entry(TOKEN).revoked()).toBe(true);
    expect(await two.cache.entry(fakeToken(12)).revoked()).toBe(false);
    expect(store.gets).toBe(3);
    expect(one.metrics.get("revocation_marker_written")).toBe(1);
    expect(two.metrics.get("revocation_marker_found")).toBe(1);
    // Replayed after its time (memcached kept it longer than asked): refused.
    two.clock.advance(60_001);
    expect(await two.cache.entry(TOKEN).revoked()).toBe(false);
    expect(two.metrics.get("memcached_expired")).toBe(1);
  });

  it("a marker not sealed with the secret and the token is ignored (memcached is untrusted): no way to refuse valid tokens by writing to it", async () => {
    const store = new MapStore();
    const forger = edge(store, true, new CacheKeyer("another secret, not the region's"));
    const honest = edge(store);
    // The forger knows the token but not the secret: it cannot even name the marker…
    await forger.cache.entry(TOKEN).markRevoked(T0_MS + 60_000);
    expect(await honest.cache.entry(TOKEN).revoked()).toBe(false);
    // …and bytes put under the right name without the right key fail authentication.
    const key = honest.keyer.revokedKey(TOKEN);
    const forged = store.values.get(forger.keyer.revokedKey(TOKEN)) ?? Buffer.alloc(0);
    expect(forged.length).toBeGreaterThan(0);
    store.values.set(key, forged);
    expect(await honest.cache.entry(TOKEN).revoked()).toBe(false);
    // A token's entry copied to the marker's name does not count either.
    await storeValid(honest.cache, TOKEN, tokenBody("u1"), T0_MS + HOUR_MS);
    store.values.set(key, store.values.get(honest.keyer.memcachedKey(TOKEN)) ?? Buffer.alloc(0));
    expect(await honest.cache.entry(TOKEN).revoked()).toBe(false);
    expect(honest.metrics.get("memcached_auth_failure")).toBe(2);
  });

  it("off (or without memcached): nothing written, nothing read", async () => {
    const store = new MapStore();
    const off = edge(store, false);
    expect(off.cache.marksRevocations).toBe(false);
    await off.cache.entry(TOKEN).markRevoked(T0_MS + 60_000);
    expect(store.sets).toBe(0);
    expect(await off.cache.entry(TOKEN).revoked()).toBe(false);
    const alone = new TokenCache({ keyer: new CacheKeyer(SECRET), revocationMarkers: true });
    expect(alone.marksRevocations).toBe(false);
  });
});

describe("createTokenCache", () => {
  const base: Config["cache"] = {
    memcached_servers: [],
    token_cache_time: 300,
    lru_max_entries: 10,
    stale_if_error: 900,
    revocation_markers: true,
  };

  it("is L1 only without memcached_servers", async () => {
    const cache = createTokenCache(base, {});
    await storeValid(cache, TOKEN, tokenBody(), Date.now() + HOUR_MS);
    expect(cache.peek(TOKEN)?.kind).toBe("positive");
    expect(cache.contextStore()).toBeUndefined();
    expect(cache.marksRevocations).toBe(false);
    expect(cache.clear()).toBe(1);
    expect(cache.peek(TOKEN)).toBeUndefined();
    cache.close();
  });

  it("needs the secret with memcached_servers", () => {
    expect(() => createTokenCache({ ...base, memcached_servers: ["127.0.0.1:1"] }, {})).toThrow(
      RangeError,
    );
    const cache = createTokenCache(
      { ...base, memcached_servers: ["127.0.0.1:1"], memcache_secret_key: SECRET },
      { memcached: { deadlineMs: 10 } },
    );
    cache.close();
  });
});

describe("TokenCache with a shared store that misbehaves", () => {
  it("treats a rejecting store as a miss and never rejects a store", async () => {
    const broken: SharedStore = {
      get: () => Promise.reject(new Error("down")),
      set: () => Promise.reject(new Error("down")),
      close: () => undefined,
    };
    const { cache } = setup(broken);
    const unhandled = vi.fn();
    process.on("unhandledRejection", unhandled);
    try {
      await storeValid(cache, TOKEN, tokenBody(), T0_MS + HOUR_MS);
      await expect(cache.entry(TOKEN).markRevoked(T0_MS + 60_000)).resolves.toBeUndefined();
      expect(await setup(broken).cache.entry(TOKEN).fetch()).toBeUndefined();
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).not.toHaveBeenCalled();
    } finally {
      process.off("unhandledRejection", unhandled);
    }
  });
});
