import { describe, expect, it } from "vitest";

import { L1Cache, type L1Entry } from "../../../src/cache/l1.js";
import { CountingCacheMetrics } from "../../../src/cache/metrics.js";
import { ManualClock, T0_MS, tokenBody } from "../../harness/doubles.js";
import { waitUntil } from "../helpers.js";

function setup(
  options: { maxEntries?: number; tokenCacheTimeSeconds?: number; negativeTtlMs?: number } = {},
) {
  const clock = new ManualClock();
  const metrics = new CountingCacheMetrics();
  const l1 = new L1Cache({ clock, metrics, ...options });
  return { clock, metrics, l1 };
}

const HOUR_MS = 3_600_000;

describe("L1Cache positive entries", () => {
  it("live min(token_cache_time, expires_at − now): token_cache_time when expiry is far", () => {
    const { clock, l1 } = setup({ tokenCacheTimeSeconds: 300 });
    const until = l1.setPositive("k", tokenBody(), T0_MS + HOUR_MS);
    expect(until).toBe(T0_MS + 300_000);
    clock.advance(299_999);
    expect(l1.get("k")).toMatchObject({ kind: "positive", expiresAtMs: T0_MS + 300_000 });
    clock.advance(1);
    expect(l1.get("k")).toBeUndefined();
  });

  it("live min(token_cache_time, expires_at − now): the token's expiry when nearer", () => {
    const { clock, l1 } = setup({ tokenCacheTimeSeconds: 300 });
    expect(l1.setPositive("k", tokenBody(), T0_MS + 42_000)).toBe(T0_MS + 42_000);
    clock.advance(41_999);
    expect(l1.get("k")?.kind).toBe("positive");
    clock.advance(1); // at expires_at exactly: expired
    expect(l1.get("k")).toBeUndefined();
  });

  it("are not stored when there is no time left, and replace nothing stale", () => {
    const { l1 } = setup();
    l1.setPositive("k", tokenBody(), T0_MS + HOUR_MS);
    expect(l1.setPositive("k", tokenBody(), T0_MS)).toBeUndefined();
    expect(l1.get("k")).toBeUndefined();
    expect(l1.size).toBe(0);
  });

  it("are never stored with token_cache_time 0", () => {
    const { l1 } = setup({ tokenCacheTimeSeconds: 0 });
    expect(l1.setPositive("k", tokenBody(), T0_MS + HOUR_MS)).toBeUndefined();
    expect(l1.get("k")).toBeUndefined();
  });

  it("keep the value as given", () => {
    const { l1 } = setup();
    const body = tokenBody("u9");
    l1.setPositive("k", body, T0_MS + HOUR_MS);
    const entry = l1.get("k");
    expect(entry?.kind === "positive" && entry.value).toBe(body);
  });
});

describe("L1Cache negative entries", () => {
  it("live 10 s by default", () => {
    const { clock, l1 } = setup();
    l1.setNegative("bad", "not_found");
    clock.advance(9_999);
    expect(l1.get("bad")).toEqual({
      kind: "negative",
      code: "not_found",
      expiresAtMs: T0_MS + 10_000,
    });
    clock.advance(1);
    expect(l1.get("bad")).toBeUndefined();
  });

  it("live negativeTtlMs when configured, and not at all with 0", () => {
    const { clock, l1 } = setup({ negativeTtlMs: 1_500 });
    l1.setNegative("bad", "malformed");
    clock.advance(1_499);
    expect(l1.get("bad")?.kind).toBe("negative");
    clock.advance(1);
    expect(l1.get("bad")).toBeUndefined();

    const off = setup({ negativeTtlMs: 0 }).l1;
    off.setNegative("bad", "malformed");
    expect(off.get("bad")).toBeUndefined();
  });

  it("are replaced by a positive answer", () => {
    const { l1 } = setup();
    l1.setNegative("k", "not_found");
    l1.setPositive("k", tokenBody(), T0_MS + HOUR_MS);
    expect(l1.get("k")?.kind).toBe("positive");
  });
});

describe("L1Cache counters", () => {
  it("count hits, negative hits and misses", () => {
    const { metrics, l1 } = setup();
    l1.setPositive("p", tokenBody(), T0_MS + HOUR_MS);
    l1.setNegative("n", "invalid");
    l1.get("p");
    l1.get("p");
    l1.get("n");
    l1.get("absent");
    expect(metrics.snapshot()).toEqual({ l1_hit: 2, l1_negative_hit: 1, l1_miss: 1 });
  });

  it("count evictions past maxEntries, least recently used first", () => {
    const { metrics, l1 } = setup({ maxEntries: 3 });
    for (const k of ["a", "b", "c"]) l1.setNegative(k, "invalid");
    l1.get("a"); // a is now the most recent
    l1.setNegative("d", "invalid"); // evicts b
    l1.setNegative("e", "invalid"); // evicts c
    expect(metrics.get("l1_eviction")).toBe(2);
    expect(l1.size).toBe(3);
    expect(l1.get("a")).toBeDefined();
    expect(l1.get("b")).toBeUndefined();
    expect(l1.get("c")).toBeUndefined();
    expect(l1.get("e")).toBeDefined();
  });

  it("count an expiry found on read as an expiration and a miss, without sleeping", () => {
    const { clock, metrics, l1 } = setup();
    l1.setNegative("x", "invalid");
    l1.setPositive("y", tokenBody(), T0_MS + 5_000);
    clock.advance(HOUR_MS);
    expect(l1.get("x")).toBeUndefined();
    expect(l1.get("y")).toBeUndefined();
    expect(metrics.get("l1_expiration")).toBe(2);
    expect(metrics.get("l1_miss")).toBe(2);
    expect(l1.size).toBe(0);
  });

  it("sweeps expired entries out unread, at most a batch at a time, without sleeping", () => {
    const { clock, metrics, l1 } = setup({ negativeTtlMs: 10_000 });
    for (let i = 0; i < 1_000; i++) l1.setNegative(`forged-${String(i)}`, "invalid");
    l1.setPositive("kept", tokenBody(), T0_MS + HOUR_MS);
    // Replaced by a longer-lived answer: its first expiry time must not drop it.
    clock.advance(1);
    l1.setNegative("replaced", "invalid");
    l1.setPositive("replaced", tokenBody(), T0_MS + HOUR_MS);
    expect(l1.sweep()).toBe(0); // nothing due yet
    clock.advance(9_999);
    expect(l1.sweep(400)).toBe(400);
    expect(l1.sweep()).toBe(600);
    clock.advance(1);
    expect(l1.sweep()).toBe(0); // "replaced" came due, but holds a positive answer now
    expect(l1.size).toBe(2);
    expect(metrics.get("l1_expiration")).toBe(1_000);
    expect(l1.get("kept")?.kind).toBe("positive");
    expect(l1.get("replaced")?.kind).toBe("positive");
    l1.close();
  });

  it("sweeps on its own timer: memory follows recent traffic, not the peak", async () => {
    const metrics = new CountingCacheMetrics();
    const l1 = new L1Cache({
      metrics,
      negativeTtlMs: 30,
      sweepIntervalMs: 20,
    });
    for (let i = 0; i < 1_000; i++) l1.setNegative(`forged-${String(i)}`, "invalid");
    expect(l1.size).toBe(1_000);
    await waitUntil(() => l1.size === 0, 5_000, "the expired entries to be swept out");
    expect(metrics.get("l1_expiration")).toBe(1_000);
    l1.close();
  });

  it("does not count overwrites as evictions", () => {
    const { metrics, l1 } = setup({ maxEntries: 2 });
    l1.setNegative("a", "invalid");
    l1.setNegative("a", "not_found");
    l1.setNegative("a", "malformed");
    expect(metrics.get("l1_eviction")).toBe(0);
  });
});

describe("L1Cache.purge", () => {
  it("drops the entries a predicate selects and counts them", () => {
    const { metrics, l1 } = setup();
    l1.setPositive("alice1", tokenBody("alice"), T0_MS + HOUR_MS);
    l1.setPositive("alice2", tokenBody("alice"), T0_MS + HOUR_MS);
    l1.setPositive("bob", tokenBody("bob"), T0_MS + HOUR_MS);
    l1.setNegative("junk", "malformed");
    const byUser = (id: string) => (e: L1Entry) => e.kind === "positive" && e.value.user.id === id;
    expect(l1.purge(byUser("alice"))).toBe(2);
    expect(l1.get("alice1")).toBeUndefined();
    expect(l1.get("alice2")).toBeUndefined();
    expect(l1.get("bob")?.kind).toBe("positive");
    expect(l1.get("junk")?.kind).toBe("negative");
    expect(metrics.get("l1_purge")).toBe(2);
    expect(l1.purge(byUser("nobody"))).toBe(0);
  });
});

describe("L1Cache options", () => {
  it("refuses nonsense sizes and times", () => {
    expect(() => new L1Cache({ maxEntries: 0 })).toThrow(RangeError);
    expect(() => new L1Cache({ maxEntries: 1.5 })).toThrow(RangeError);
    expect(() => new L1Cache({ negativeTtlMs: -1 })).toThrow(RangeError);
    expect(() => new L1Cache({ tokenCacheTimeSeconds: Number.NaN })).toThrow(RangeError);
  });
});
