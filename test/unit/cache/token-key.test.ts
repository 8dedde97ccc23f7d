import { inspect } from "node:util";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

import { CacheKeyer, MEMCACHED_KEY_PREFIX } from "../../../src/cache/token-key.js";
import { fakeToken } from "../../harness/doubles.js";

const SECRET = "correct horse battery staple";
const keyer = new CacheKeyer(SECRET);

describe("CacheKeyer", () => {
  it("derives stable keys in the documented shapes", () => {
    const token = fakeToken(1);
    const a = keyer.keys(token);
    const b = new CacheKeyer(SECRET).keys(token);
    expect(a).toEqual(b);
    expect(a.l1Key).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(a.memcachedKey).toMatch(/^keystone-edge\/v1\/[0-9a-f]{64}$/);
    expect(a.memcachedKey.startsWith(MEMCACHED_KEY_PREFIX)).toBe(true);
    expect(Buffer.byteLength(a.memcachedKey)).toBeLessThanOrEqual(250);
    expect(keyer.l1Key(token)).toBe(a.l1Key);
    expect(keyer.memcachedKey(token)).toBe(a.memcachedKey);
    // the two keys are unrelated: the L1 key is not a piece of the public memcached MAC
    expect(a.memcachedKey).not.toContain(Buffer.from(a.l1Key, "base64url").toString("hex"));
  });

  it("gives other keys for another token or another secret", () => {
    const token = fakeToken(2);
    const other = new CacheKeyer(`${SECRET}!`);
    expect(keyer.keys(fakeToken(3)).memcachedKey).not.toBe(keyer.keys(token).memcachedKey);
    expect(other.keys(token).memcachedKey).not.toBe(keyer.keys(token).memcachedKey);
    expect(other.keys(token).l1Key).not.toBe(keyer.keys(token).l1Key);
    expect(CacheKeyer.random().keys(token)).not.toEqual(CacheKeyer.random().keys(token));
  });

  it("never yields the token, in any key, for any token", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 8, maxLength: 300, unit: "binary" }), (token) => {
        const { l1Key, memcachedKey } = keyer.keys(token);
        const { aesKey, boundKey } = keyer.sealingKey(token);
        for (const derived of [l1Key, memcachedKey, boundKey, aesKey.toString("latin1")]) {
          expect(derived).not.toBe(token);
          expect(derived.includes(token)).toBe(false);
        }
      }),
    );
  });

  it("keeps memcached keys memcached-safe for any token (no space, no control byte, ≤ 250)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20_000, unit: "binary" }), (token) => {
        const { memcachedKey } = keyer.keys(token);
        expect(Buffer.byteLength(memcachedKey)).toBeLessThanOrEqual(250);
        expect(memcachedKey).toMatch(/^[\x21-\x7e]+$/);
      }),
    );
  });

  it("derives a sealing key that needs the secret and the token, unrelated to the public MAC", () => {
    const token = fakeToken(4);
    const { memcachedKey } = keyer.keys(token);
    const sk = keyer.sealingKey(token, memcachedKey);
    expect(sk.aesKey).toHaveLength(32);
    expect(sk.boundKey).toBe(memcachedKey);
    expect(keyer.sealingKey(token)).toEqual(sk);
    const mac = Buffer.from(memcachedKey.slice(MEMCACHED_KEY_PREFIX.length), "hex");
    expect(sk.aesKey.equals(mac)).toBe(false);
    expect(keyer.sealingKey(fakeToken(5)).aesKey.equals(sk.aesKey)).toBe(false);
    expect(new CacheKeyer(`${SECRET}?`).sealingKey(token).aesKey.equals(sk.aesKey)).toBe(false);
  });

  it("does not show its secret when printed or serialised", () => {
    const k = new CacheKeyer(SECRET);
    expect(JSON.stringify({ k })).not.toContain(SECRET);
    expect(inspect(k, { showHidden: true, depth: 5 })).not.toContain(SECRET);
  });

  it("refuses a secret shorter than 16 bytes", () => {
    expect(() => new CacheKeyer("short")).toThrow(RangeError);
    expect(() => new CacheKeyer(new Uint8Array(15))).toThrow(RangeError);
    expect(() => new CacheKeyer(new Uint8Array(16))).not.toThrow();
  });
});
