/**
 * The pipeline while the region's key ring lags the master's (issue 14): tokens no local
 * key verifies are looked at twice (a re-read of the key repository), forged while the
 * ring is in sync, asked of memcached and then Keystone — within a budget, single-flight,
 * 404s remembered long — while it is behind. In process: a key ring swapped by hand, a
 * fake cache, a fake Keystone, a fake lag monitor.
 */
import { describe, expect, it } from "vitest";
import { KeyRing, type KeyRingSource } from "../../../src/fernet/key-ring.js";
import type { KeyLagState } from "../../../src/keystone/key-lag.js";
import type { KeystoneToken } from "../../../src/token/body.js";
import type { KeystoneVerdict } from "../../../src/keystone/validate.js";
import { TokenDecoder } from "../../../src/token/decoder.js";
import type { EpochMicros } from "../../../src/units.js";
import { ContextCache } from "../../../src/validation/context.js";
import { FallbackBudget } from "../../../src/validation/fallback-budget.js";
import {
  ValidationPipeline,
  type CacheEntry,
  type CachedVerdict,
  type FallbackResult,
  type PipelineOptions,
  type ValidationCache,
} from "../../../src/validation/pipeline.js";
import { ManualClock, T0_MS, tokenBody } from "../../harness/doubles.js";
import { keyFromText, makeRing, waitUntil } from "../helpers.js";

/** The master rotated twice: its primary is key 3; the region holds 0, 1, 2. */
const master = makeRing([0, 1, 2, 3]);
const ringOf = (indexes: readonly number[]): KeyRing =>
  KeyRing.from(
    indexes.map((index) => ({ index, key: keyFromText(master.texts.get(index) ?? "") })),
  );
const lagging = ringOf([0, 1, 2]);
const synced = ringOf([0, 1, 2, 3]);
const foreign = makeRing([0]).ring;

const EXPIRES_S = T0_MS / 1000 + 3600;

function minter(ring: KeyRing, clock: ManualClock): (userId: string) => string {
  const decoder = new TokenDecoder({ keys: { current: () => ring }, clock });
  let n = 0;
  return (userId) =>
    decoder.mint({
      kind: "project",
      version: 2,
      userId,
      methods: ["password"],
      auditIds: [`GGgSgA3DRS-CUo4CYEd${String(++n).padStart(3, "0")}`],
      projectId: "p1",
      expiresAtMicros: (EXPIRES_S * 1e6) as EpochMicros,
    });
}

/** Keystone's body for a token expiring at EXPIRES_S. */
const answer = (userId: string): KeystoneToken =>
  tokenBody(userId, { expires_at: new Date(EXPIRES_S * 1000).toISOString() });

interface Stored {
  readonly verdict: CachedVerdict;
  readonly untilMs?: number;
  readonly ttlMs?: number;
}

class FakeCache implements ValidationCache {
  readonly l1 = new Map<string, Stored>();
  readonly shared = new Map<string, KeystoneToken>();
  fetches = 0;
  peek(token: string): CachedVerdict | undefined {
    return this.l1.get(token)?.verdict;
  }
  entry(token: string): CacheEntry {
    return {
      // No revocation markers here (validation/revocation-markers.test.ts has them).
      revoked: () => Promise.resolve(false),
      markRevoked: () => Promise.resolve(),
      peek: () => this.l1.get(token)?.verdict,
      fetch: () => {
        this.fetches++;
        const hit = this.shared.get(token);
        if (hit) this.l1.set(token, { verdict: { kind: "positive", token: hit } });
        return Promise.resolve(hit);
      },
      storePositive: (value, untilMs) => {
        this.l1.set(token, { verdict: { kind: "positive", token: value }, untilMs });
        return Promise.resolve();
      },
      storeNegative: (code, ttlMs) => {
        this.l1.set(token, {
          verdict: { kind: "negative", code },
          ...(ttlMs === undefined ? {} : { ttlMs }),
        });
      },
    };
  }
  purge(
    predicate: (e: { readonly kind: "positive" | "negative"; readonly code?: string }) => boolean,
  ): number {
    let n = 0;
    for (const [token, stored] of this.l1) {
      if (predicate(stored.verdict)) {
        this.l1.delete(token);
        n++;
      }
    }
    return n;
  }
}

class FakeLag {
  state: KeyLagState = { kind: "in_sync", sinceMs: T0_MS, agreedAtMs: T0_MS };
  undecryptables = 0;
  /** A check under way, handed to the pipeline to wait for. */
  checking: Promise<unknown> | undefined;
  view = {
    state: (): KeyLagState => this.state,
    undecryptable: (): Promise<unknown> | undefined => {
      this.undecryptables++;
      return this.checking;
    },
  };
  behind(): void {
    this.state = { kind: "behind", sinceMs: T0_MS, lastAgreedAtMs: T0_MS - 60_000 };
  }
}

function setup(
  options: {
    keystone?: (token: string) => Promise<KeystoneVerdict>;
    budget?: { take(): boolean };
    contexts?: boolean;
    lookAgain?: () => Promise<unknown>;
    revoked?: (t: KeystoneToken) => boolean;
  } = {},
) {
  const clock = new ManualClock();
  const keys: KeyRingSource & { ring: KeyRing } = {
    ring: lagging,
    current() {
      return this.ring;
    },
  };
  const decoder = new TokenDecoder({ keys, clock });
  const cache = new FakeCache();
  const lag = new FakeLag();
  const calls: string[] = [];
  const fallbacks: FallbackResult[] = [];
  let rereads = 0;
  const contexts =
    options.contexts === true
      ? new ContextCache({ contextCacheTimeSeconds: 300, clock })
      : undefined;
  const pipelineOptions: PipelineOptions = {
    decoder,
    cache,
    tokenCacheTimeSeconds: 300,
    clock,
    keyLag: lag.view,
    lookAgain:
      options.lookAgain ??
      (() => {
        rereads++;
        return Promise.resolve(undefined);
      }),
    ...(options.budget === undefined ? {} : { fallbackBudget: options.budget }),
    ...(contexts === undefined ? {} : { contexts }),
    revocations: { isRevoked: options.revoked ?? (() => false) },
    onFallback: (r) => fallbacks.push(r),
    keystone: {
      validate: (t) => {
        calls.push(t);
        return (
          options.keystone?.(t) ??
          Promise.resolve<KeystoneVerdict>({ kind: "valid", token: answer("u1"), endpoint: "k" })
        );
      },
    },
  };
  const pipeline = new ValidationPipeline(pipelineOptions);
  return {
    clock,
    keys,
    cache,
    lag,
    calls,
    fallbacks,
    pipeline,
    rereads: () => rereads,
    fromMaster: minter(master.ring, clock),
    fromRegion: minter(lagging, clock),
    forged: minter(foreign, clock),
  };
}

describe("pipeline: a token no local key verifies, while the ring is in sync or not known to lag", () => {
  it("is forged: 401, remembered, no validation call; the lag monitor is told; malformed costs nothing at all", async () => {
    for (const state of [
      { kind: "unknown" },
      { kind: "in_sync", sinceMs: T0_MS, agreedAtMs: T0_MS },
    ] as const) {
      const s = setup();
      s.lag.state = state;
      const forged = s.forged("u1");
      expect(await s.pipeline.validate(forged)).toEqual({
        kind: "invalid",
        code: "bad_signature",
        source: "local_reject",
      });
      expect(await s.pipeline.validate(forged)).toMatchObject({ source: "negative" });
      expect(s.calls).toEqual([]);
      expect(s.lag.undecryptables).toBe(1);
      expect(s.rereads()).toBe(1);
      expect(s.cache.fetches).toBe(0);

      for (const garbage of ["garbage", "gAAAAA", "x".repeat(200)]) {
        expect(await s.pipeline.validate(garbage)).toMatchObject({
          kind: "invalid",
          code: "malformed",
        });
      }
      expect(s.calls).toEqual([]);
      expect(s.lag.undecryptables).toBe(1);
      expect(s.rereads()).toBe(1);
      expect(s.fallbacks).toEqual([]);
    }
  });

  it("looks before deciding: a re-read that finds the new key makes the just-synced token valid, from its context, with no Keystone call", async () => {
    let reads = 0;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const s = setup({
      contexts: true,
      lookAgain: async () => {
        reads++;
        await gate;
        s.keys.ring = synced; // the sync had landed on disk; its event had not arrived
      },
    });
    // The user + scope is known from a token the region decrypts (one Keystone call).
    expect(await s.pipeline.validate(s.fromRegion("u1"))).toMatchObject({ source: "keystone" });
    expect(s.calls).toHaveLength(1);

    // Fifty concurrent requests with tokens from the master's new key: one re-read.
    const tokens = Array.from({ length: 50 }, () => s.fromMaster("u1"));
    const pending = tokens.map((t) => s.pipeline.validate(t));
    await waitUntil(() => reads === 1, 2_000, "the re-read");
    release();
    const verdicts = await Promise.all(pending);
    expect(reads).toBe(1);
    expect(verdicts.every((v) => v.kind === "valid" && v.source === "context")).toBe(true);
    expect(s.calls).toHaveLength(1);
    expect(s.lag.undecryptables).toBe(0);
  });

  it("does not wait forever for a re-read that hangs (a dead NFS mount)", async () => {
    const s = setup({ lookAgain: () => new Promise(() => undefined) });
    const started = performance.now();
    expect(await s.pipeline.validate(s.forged("u1"))).toMatchObject({ code: "bad_signature" });
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});

describe("pipeline: a token no local key verifies, while the ring is behind", () => {
  it("is asked of Keystone once for concurrent requests; valid is cached until min(token_cache_time, expires_at), memcached too", async () => {
    let release: (v: KeystoneVerdict) => void = () => undefined;
    const s = setup({ keystone: () => new Promise((r) => (release = r)) });
    s.lag.behind();
    const token = s.fromMaster("u1");
    const pending = Array.from({ length: 100 }, () => s.pipeline.validate(token));
    await waitUntil(() => s.calls.length === 1, 2_000, "the fallback call");
    release({ kind: "valid", token: answer("u1"), endpoint: "k" });
    const verdicts = await Promise.all(pending);
    expect(verdicts.every((v) => v.kind === "valid" && v.source === "keystone")).toBe(true);
    expect(s.calls).toHaveLength(1);
    expect(s.fallbacks).toEqual(["valid"]);
    // Cached through the entry: in-process and (the tiers' storePositive) memcached.
    expect(s.cache.l1.get(token)?.untilMs).toBe(T0_MS + 300_000);
    expect(await s.pipeline.validate(token)).toMatchObject({ kind: "valid", source: "l1" });
    expect(s.pipeline.validateNow(token)).toMatchObject({ kind: "valid", source: "l1" });
    expect(s.calls).toHaveLength(1);
    // The monitor is told, per request (it ignores them while behind: key-lag.test.ts).
    expect(s.lag.undecryptables).toBe(100);
  });

  it("the first token after a rotation the region missed waits for the check it set off, and is served", async () => {
    const s = setup({
      keystone: () => Promise.resolve({ kind: "valid", token: answer("u1"), endpoint: "k" }),
    });
    let finish: () => void = () => undefined;
    // In sync as far as anyone knows; the check this token sets off finds the region behind.
    s.lag.checking = new Promise<void>((resolve) => {
      finish = () => {
        s.lag.behind();
        resolve();
      };
    });
    const verdict = s.pipeline.validate(s.fromMaster("u1"));
    await waitUntil(() => s.lag.undecryptables === 1, 2_000, "the lag check to be set off");
    expect(s.calls).toEqual([]);
    finish();
    expect(await verdict).toMatchObject({ kind: "valid", source: "keystone" });
    expect(s.fallbacks).toEqual(["valid"]);
  });

  it("caches a valid answer no longer than Keystone's expires_at", async () => {
    const soon = new Date(T0_MS + 42_000).toISOString();
    const s = setup({
      keystone: () =>
        Promise.resolve({
          kind: "valid",
          token: tokenBody("u1", { expires_at: soon }),
          endpoint: "k",
        }),
    });
    s.lag.behind();
    const token = s.fromMaster("u1");
    await s.pipeline.validate(token);
    expect(s.cache.l1.get(token)?.untilMs).toBe(T0_MS + 42_000);
  });

  it("a forged token replayed costs Keystone one call: its 404 is remembered for token_cache_time", async () => {
    const s = setup({ keystone: () => Promise.resolve({ kind: "invalid", endpoint: "k" }) });
    s.lag.behind();
    const forged = s.forged("u1");
    expect(await s.pipeline.validate(forged)).toEqual({
      kind: "invalid",
      code: "not_found",
      source: "keystone",
    });
    expect(s.cache.l1.get(forged)).toEqual({
      verdict: { kind: "negative", code: "not_found" },
      ttlMs: 300_000,
    });
    for (let i = 0; i < 20; i++) {
      expect(await s.pipeline.validate(forged)).toMatchObject({ source: "negative" });
    }
    expect(s.calls).toHaveLength(1);
    expect(s.fallbacks).toEqual(["invalid"]);
  });

  it("Keystone unavailable: unavailable (503), nothing cached, asked again next time", async () => {
    let up = false;
    const s = setup({
      keystone: () =>
        Promise.resolve(
          up
            ? { kind: "valid", token: answer("u1"), endpoint: "k" }
            : { kind: "unavailable", reason: "connection", detail: "refused" },
        ),
    });
    s.lag.behind();
    const token = s.fromMaster("u1");
    expect(await s.pipeline.validate(token)).toEqual({
      kind: "unavailable",
      reason: "connection",
    });
    expect(s.cache.l1.has(token)).toBe(false);
    up = true;
    expect(await s.pipeline.validate(token)).toMatchObject({ kind: "valid", source: "keystone" });
    expect(s.fallbacks).toEqual(["unavailable", "valid"]);
  });

  it("the budget spent: refused as a forgery is (401), counted, not remembered; asked once the budget refills", async () => {
    const clock = new ManualClock();
    const budget = new FallbackBudget({ perSecond: 1, burst: 2, clock });
    const s = setup({ budget });
    s.lag.behind();
    const tokens = Array.from({ length: 5 }, () => s.fromMaster("u1"));
    const verdicts = [];
    for (const t of tokens) verdicts.push(await s.pipeline.validate(t));
    expect(verdicts.map((v) => v.kind)).toEqual([
      "valid",
      "valid",
      "invalid",
      "invalid",
      "invalid",
    ]);
    expect(verdicts[2]).toEqual({ kind: "invalid", code: "bad_signature", source: "local_reject" });
    expect(s.calls).toHaveLength(2);
    expect(s.fallbacks).toEqual(["valid", "valid", "refused", "refused", "refused"]);
    expect(s.cache.l1.has(tokens[2] ?? "")).toBe(false);
    clock.advance(1_000);
    expect(await s.pipeline.validate(tokens[2] ?? "")).toMatchObject({ kind: "valid" });
    expect(s.calls).toHaveLength(3);
  });

  it("memcached first: another edge's answer serves with no Keystone call and no budget, checked against revocations", async () => {
    const revokedUsers = new Set<string>();
    const s = setup({ revoked: (t) => revokedUsers.has(t.user.id) });
    s.lag.behind();
    const token = s.fromMaster("u1");
    s.cache.shared.set(token, answer("u1"));
    expect(await s.pipeline.validate(token)).toMatchObject({ kind: "valid", source: "memcached" });
    const other = s.fromMaster("u2");
    s.cache.shared.set(other, answer("u2"));
    revokedUsers.add("u2");
    expect(await s.pipeline.validate(other)).toMatchObject({ kind: "invalid", code: "revoked" });
    expect(s.calls).toEqual([]);
    expect(s.fallbacks).toEqual([]);
  });

  it("a drill's `unseen` validation skips the token's own entries (in-process and memcached): a fallback each time; `decrypt` reads memcached", async () => {
    const s = setup();
    s.lag.behind();
    const token = s.fromMaster("u1");
    s.cache.shared.set(token, answer("u1"));
    expect(await s.pipeline.validateFrom(token, "decrypt")).toMatchObject({
      kind: "valid",
      source: "memcached",
    });
    expect(s.calls).toHaveLength(0);
    expect(await s.pipeline.validateFrom(token, "unseen")).toMatchObject({
      kind: "valid",
      source: "keystone",
    });
    expect(await s.pipeline.validateFrom(token, "unseen")).toMatchObject({ source: "keystone" });
    expect(s.calls).toEqual([token, token]);
    expect(s.fallbacks).toEqual(["valid", "valid"]);
    // The request path itself is answered from the cache the fallback filled.
    expect(await s.pipeline.validate(token)).toMatchObject({ kind: "valid", source: "l1" });
    expect(s.calls).toHaveLength(2);
  });

  it("a drill's `unseen` probe refused before the lag is known leaves no refusal behind for the token's real requests", async () => {
    const s = setup();
    const token = s.fromMaster("u1");
    s.cache.l1.set(token, { verdict: { kind: "positive", token: answer("u1") } });
    // In sync (not yet known to lag): the probe is called forged, as a new token would be…
    expect(await s.pipeline.validateFrom(token, "unseen")).toMatchObject({
      kind: "invalid",
      code: "bad_signature",
    });
    // …but the token's own cached answer stands.
    expect(await s.pipeline.validate(token)).toMatchObject({ kind: "valid", source: "l1" });
    expect(s.calls).toHaveLength(0);
  });

  it("a fallback's cached answer is checked against the revocation feed on every hit", async () => {
    const revokedUsers = new Set<string>();
    const s = setup({ revoked: (t) => revokedUsers.has(t.user.id) });
    s.lag.behind();
    const token = s.fromMaster("u1");
    expect(await s.pipeline.validate(token)).toMatchObject({ kind: "valid", source: "keystone" });
    revokedUsers.add("u1");
    expect(await s.pipeline.validate(token)).toMatchObject({ kind: "invalid", code: "revoked" });
    expect(s.pipeline.validateNow(token)).toMatchObject({ kind: "invalid", code: "revoked" });
    expect(s.calls).toHaveLength(1);
  });

  it("falling behind drops the refusals of undecryptable tokens, and only those", async () => {
    const s = setup({ keystone: () => Promise.resolve({ kind: "invalid", endpoint: "k" }) });
    const refusedMoments = s.fromMaster("u1");
    const expired = s.fromRegion("u1");
    await s.pipeline.validate(refusedMoments);
    await s.pipeline.validate("garbage");
    s.clock.set(EXPIRES_S * 1000 + 1);
    await s.pipeline.validate(expired);
    s.clock.set(T0_MS);
    expect(s.pipeline.validateNow(refusedMoments)).toMatchObject({ code: "bad_signature" });
    expect(s.calls).toEqual([]);

    s.lag.behind();
    expect(s.pipeline.keysFellBehind()).toBe(1);
    expect(s.pipeline.validateNow(refusedMoments)).toBeUndefined();
    expect(s.pipeline.validateNow("garbage")).toMatchObject({ code: "malformed" });
    expect(s.pipeline.validateNow(expired)).toMatchObject({ code: "expired" });
    // Its next request is asked of Keystone.
    await s.pipeline.validate(refusedMoments);
    expect(s.calls).toEqual([refusedMoments]);
  });

  it("a token the region does decrypt takes the ordinary path, behind or not", async () => {
    const s = setup();
    s.lag.behind();
    const token = s.fromRegion("u1");
    expect(await s.pipeline.validate(token)).toMatchObject({ kind: "valid", source: "keystone" });
    expect(s.fallbacks).toEqual([]);
    expect(s.rereads()).toBe(0);
  });
});

describe("FallbackBudget", () => {
  it("holds `burst`, refills at `perSecond`, never above `burst`; 0 refuses all", () => {
    const clock = new ManualClock();
    const b = new FallbackBudget({ perSecond: 20, burst: 100, clock });
    let taken = 0;
    while (b.take()) taken++;
    expect(taken).toBe(100);
    clock.advance(50);
    expect(b.take()).toBe(true); // 50 ms at 20/s: one
    expect(b.take()).toBe(false);
    clock.advance(3_600_000);
    expect(b.available).toBe(100);
    clock.advance(-10_000); // a clock stepping back neither refills nor drains
    expect(b.available).toBe(100);
    const none = new FallbackBudget({ perSecond: 0, burst: 0, clock });
    clock.advance(60_000);
    expect(none.take()).toBe(false);
    expect(() => new FallbackBudget({ perSecond: -1 })).toThrow(RangeError);
    expect(() => new FallbackBudget({ burst: Number.NaN })).toThrow(RangeError);
  });
});
