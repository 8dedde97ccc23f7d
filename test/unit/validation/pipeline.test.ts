import { describe, expect, it } from "vitest";
import { staticKeyRing } from "../../../src/fernet/key-ring.js";
import type { KeystoneToken } from "../../../src/token/body.js";
import type { KeystoneVerdict } from "../../../src/keystone/validate.js";
import { TokenDecoder } from "../../../src/token/decoder.js";
import { fixedClock, type EpochMicros } from "../../../src/units.js";
import {
  ValidationPipeline,
  type CacheEntry,
  type CachedVerdict,
  type ValidationCache,
} from "../../../src/validation/pipeline.js";
import { tokenBody } from "../../harness/doubles.js";
import { makeRing } from "../helpers.js";
import { waitUntil } from "../../harness/wait.js";

const NOW_MS = 1_900_000_000_000;
const { ring } = makeRing([0, 1]);
const decoder = new TokenDecoder({ keys: staticKeyRing(ring), clock: fixedClock(NOW_MS) });

function mint(userId: string, expiresInSeconds = 3600): string {
  return decoder.mint({
    kind: "project",
    version: 2,
    userId,
    methods: ["password"],
    auditIds: ["GGgSgA3DRS-CUo4CYEd1cA"],
    projectId: "p1",
    expiresAtMicros: ((NOW_MS / 1000 + expiresInSeconds) * 1e6) as EpochMicros,
  });
}

const body = (userId: string): KeystoneToken => tokenBody(userId);

class FakeCache implements ValidationCache {
  readonly l1 = new Map<string, CachedVerdict>();
  readonly shared = new Map<string, KeystoneToken>();
  readonly positiveUntil = new Map<string, number>();
  entries = 0;
  peeks = 0;
  peek(token: string): CachedVerdict | undefined {
    this.peeks++;
    return this.l1.get(token);
  }
  entry(token: string): CacheEntry {
    this.entries++;
    return {
      // No revocation markers here (validation/revocation-markers.test.ts has them).
      revoked: () => Promise.resolve(false),
      markRevoked: () => Promise.resolve(),
      peek: () => this.l1.get(token),
      fetch: () => {
        // As the real tiers do: a shared hit is promoted in-process by fetch itself.
        const hit = this.shared.get(token);
        if (hit) this.l1.set(token, { kind: "positive", token: hit });
        return Promise.resolve(hit);
      },
      storePositive: (value, expiresAtMs) => {
        this.l1.set(token, { kind: "positive", token: value });
        this.positiveUntil.set(token, expiresAtMs);
        return Promise.resolve();
      },
      storeNegative: (code) => {
        this.l1.set(token, { kind: "negative", code });
      },
    };
  }
}

function setup(
  answer: (token: string, allowExpired?: boolean) => Promise<KeystoneVerdict>,
  revoked: (token: KeystoneToken) => boolean = () => false,
) {
  const cache = new FakeCache();
  let calls = 0;
  const pipeline = new ValidationPipeline({
    decoder,
    cache,
    tokenCacheTimeSeconds: 300,
    clock: fixedClock(NOW_MS),
    revocations: { isRevoked: revoked },
    keystone: {
      validate: (t, allowExpired) => {
        calls++;
        return answer(t, allowExpired);
      },
    },
  });
  return { cache, pipeline, calls: () => calls };
}

describe("ValidationPipeline", () => {
  it("refuses garbage and forged tokens locally, then from the negative cache, never asking Keystone", async () => {
    const s = setup(() => Promise.reject(new Error("must not be called")));
    const forged = new TokenDecoder({ keys: staticKeyRing(makeRing([7]).ring) }).mint({
      kind: "unscoped",
      version: 0,
      userId: "u",
      methods: [],
      auditIds: ["GGgSgA3DRS-CUo4CYEd1cA"],
      expiresAtMicros: ((NOW_MS / 1000 + 60) * 1e6) as EpochMicros,
    });
    for (const token of ["garbage", forged, mint("u", -10)]) {
      const first = await s.pipeline.validate(token);
      expect(first).toMatchObject({ kind: "invalid", source: "local_reject" });
      expect(await s.pipeline.validate(token)).toMatchObject({
        kind: "invalid",
        source: "negative",
      });
    }
    expect(s.calls()).toBe(0);
  });

  it("asks Keystone once for a hundred concurrent requests with one new token, then serves from cache", async () => {
    let release: (v: KeystoneVerdict) => void = () => undefined;
    const s = setup(() => new Promise((r) => (release = r)));
    const token = mint("u1");
    const pending = Array.from({ length: 100 }, () => s.pipeline.validate(token));
    await waitUntil(() => s.calls() === 1, 5_000, "the one Keystone call");
    release({ kind: "valid", token: body("u1"), endpoint: "k" });
    const verdicts = await Promise.all(pending);
    expect(s.calls()).toBe(1);
    expect(verdicts.every((v) => v.kind === "valid" && v.source === "keystone")).toBe(true);
    expect(await s.pipeline.validate(token)).toMatchObject({ kind: "valid", source: "l1" });
    expect(s.calls()).toBe(1);
    // One cache entry (one key derivation) per validation, whichever tiers it visits.
    expect(s.cache.entries).toBe(101);
  });

  it("answers synchronously only what the in-process cache knows", async () => {
    const s = setup(() => Promise.resolve({ kind: "valid", token: body("u9"), endpoint: "k" }));
    const token = mint("u9");
    expect(s.pipeline.validateNow(token)).toBeUndefined();
    expect(s.pipeline.validateNow("garbage")).toBeUndefined();
    await s.pipeline.validate(token);
    await s.pipeline.validate("garbage");
    expect(s.pipeline.validateNow(token)).toMatchObject({ kind: "valid", source: "l1" });
    expect(s.pipeline.validateNow("garbage")).toMatchObject({
      kind: "invalid",
      source: "negative",
    });
    expect(s.calls()).toBe(1);
    // The hot path reads the in-process tier alone: no entry handle (no memcached key).
    const entries = s.cache.entries;
    s.pipeline.validateNow(token);
    expect(s.cache.entries).toBe(entries);
    expect(s.cache.peeks).toBe(5);
  });

  it("caches a positive answer for min(token_cache_time, expires_at - now)", async () => {
    const s = setup((t) =>
      Promise.resolve({ kind: "valid", token: body(t === long ? "u" : "u"), endpoint: "k" }),
    );
    const long = mint("u", 3600);
    const short = mint("u", 60);
    await s.pipeline.validate(long);
    await s.pipeline.validate(short);
    expect(s.cache.positiveUntil.get(long)).toBe(NOW_MS + 300_000);
    expect(s.cache.positiveUntil.get(short)).toBe(NOW_MS + 60_000);
  });

  it("takes a memcached hit without asking Keystone", async () => {
    const s = setup(() => Promise.reject(new Error("must not be called")));
    const token = mint("u2");
    s.cache.shared.set(token, body("u2"));
    expect(await s.pipeline.validate(token)).toMatchObject({ kind: "valid", source: "memcached" });
    // The tier promoted it; the pipeline writes nothing back to memcached.
    expect(s.cache.positiveUntil.has(token)).toBe(false);
    expect(await s.pipeline.validate(token)).toMatchObject({ kind: "valid", source: "l1" });
  });

  it("ignores a memcached entry for another user", async () => {
    const s = setup(() => Promise.resolve({ kind: "valid", token: body("u3"), endpoint: "k" }));
    const token = mint("u3");
    s.cache.shared.set(token, body("someone-else"));
    expect(await s.pipeline.validate(token)).toMatchObject({ kind: "valid", source: "keystone" });
  });

  it("remembers Keystone's 'not found' and caches nothing when Keystone is away", async () => {
    const invalid = setup(() => Promise.resolve({ kind: "invalid", endpoint: "k" }));
    const revoked = mint("u4");
    expect(await invalid.pipeline.validate(revoked)).toMatchObject({
      kind: "invalid",
      source: "keystone",
    });
    expect(await invalid.pipeline.validate(revoked)).toMatchObject({
      kind: "invalid",
      source: "negative",
    });
    expect(invalid.calls()).toBe(1);

    const away = setup(() =>
      Promise.resolve({ kind: "unavailable", reason: "timeout", detail: "" }),
    );
    const token = mint("u5");
    expect(await away.pipeline.validate(token)).toMatchObject({
      kind: "unavailable",
      reason: "timeout",
    });
    expect(await away.pipeline.validate(token)).toMatchObject({ kind: "unavailable" });
    expect(away.calls()).toBe(2);
    expect(away.cache.l1.size).toBe(0);
  });

  it("refuses to trust a Keystone answer about another user", async () => {
    const s = setup(() =>
      Promise.resolve({ kind: "valid", token: body("mallory"), endpoint: "k" }),
    );
    expect(await s.pipeline.validate(mint("alice"))).toMatchObject({
      kind: "unavailable",
      reason: "inconsistent_answer",
    });
    expect(s.cache.l1.size).toBe(0);
  });

  describe("validateAllowingExpired", () => {
    it("puts an expired, authentic token to Keystone with allow_expired, caching nothing", async () => {
      const asked: (boolean | undefined)[] = [];
      const s = setup((_t, allowExpired) => {
        asked.push(allowExpired);
        return Promise.resolve({ kind: "valid", token: body("u1"), endpoint: "k" });
      });
      const old = mint("u1", -60);
      // The ordinary path refuses it locally.
      expect(await s.pipeline.validate(old)).toMatchObject({ kind: "invalid", code: "expired" });
      expect(await s.pipeline.validateAllowingExpired(old)).toMatchObject({
        kind: "valid",
        source: "keystone",
      });
      expect(await s.pipeline.validateAllowingExpired(old)).toMatchObject({ kind: "valid" });
      expect(asked).toEqual([true, true]);
      // Nothing positive was cached for it: the ordinary path still refuses it.
      expect(s.pipeline.validateNow(old)).toMatchObject({ kind: "invalid", code: "expired" });
    });

    it("takes the ordinary (cached) path for a token that has not expired, and refuses garbage locally", async () => {
      const asked: (boolean | undefined)[] = [];
      const s = setup((_t, allowExpired) => {
        asked.push(allowExpired);
        return Promise.resolve({ kind: "valid", token: body("u1"), endpoint: "k" });
      });
      const fresh = mint("u1");
      expect(await s.pipeline.validateAllowingExpired(fresh)).toMatchObject({ kind: "valid" });
      expect(await s.pipeline.validateAllowingExpired(fresh)).toMatchObject({ source: "l1" });
      expect(await s.pipeline.validateAllowingExpired("garbage")).toMatchObject({
        kind: "invalid",
        source: "local_reject",
      });
      expect(asked).toEqual([undefined]);
    });

    it("refuses Keystone's answer for another user, and shares one call among concurrent requests", async () => {
      let release: (v: KeystoneVerdict) => void = () => undefined;
      const s = setup(() => new Promise((r) => (release = r)));
      const old = mint("u1", -60);
      const pending = Array.from({ length: 10 }, () => s.pipeline.validateAllowingExpired(old));
      await waitUntil(() => s.calls() === 1, 5_000, "the one Keystone call");
      release({ kind: "valid", token: body("someone-else"), endpoint: "k" });
      const verdicts = await Promise.all(pending);
      expect(s.calls()).toBe(1);
      expect(verdicts.every((v) => v.kind === "unavailable")).toBe(true);
    });
  });

  it("refuses a cached token that a revocation event matches, in-process or from memcached", async () => {
    const revokedUsers = new Set<string>();
    const s = setup(
      (t) => Promise.resolve({ kind: "valid", token: body(t === a ? "ua" : "ub"), endpoint: "k" }),
      (token) => revokedUsers.has(token.user.id),
    );
    const a = mint("ua");
    const b = mint("ub");
    expect(await s.pipeline.validate(a)).toMatchObject({ kind: "valid", source: "keystone" });
    expect(s.pipeline.validateNow(a)).toMatchObject({ kind: "valid", source: "l1" });
    revokedUsers.add("ua");
    expect(s.pipeline.validateNow(a)).toMatchObject({
      kind: "invalid",
      code: "revoked",
      source: "revocation",
    });
    expect(await s.pipeline.validate(a)).toMatchObject({ kind: "invalid", source: "revocation" });
    // a memcached hit is checked too
    s.cache.shared.set(b, body("ub"));
    revokedUsers.add("ub");
    expect(await s.pipeline.validate(b)).toMatchObject({ kind: "invalid", source: "revocation" });
    expect(s.calls()).toBe(1);
  });
});
