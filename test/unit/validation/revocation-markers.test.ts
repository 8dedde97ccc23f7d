/**
 * Read-your-writes revocation in the pipeline (issue 15): a token revoked through one
 * edge's Identity face is refused by that edge at once and, through the region's shared
 * revocation marker, by every other edge from its next validation — whatever tier would
 * have called it valid. In-process fakes of the tiers; the real memcached path is in the
 * cache tests and the two-edge integration test.
 */
import { describe, expect, it } from "vitest";

import { staticKeyRing } from "../../../src/fernet/key-ring.js";
import type { KeystoneToken } from "../../../src/token/body.js";
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

const NOW_MS = 1_900_000_000_000;
const AUDIT_ID = "GGgSgA3DRS-CUo4CYEd1cA";
const { ring } = makeRing([0, 1]);
const decoder = new TokenDecoder({ keys: staticKeyRing(ring), clock: fixedClock(NOW_MS) });
const EXPIRES_S = NOW_MS / 1000 + 3600;
const token = decoder.mint({
  kind: "project",
  version: 2,
  userId: "u1",
  methods: ["password"],
  auditIds: [AUDIT_ID],
  projectId: "p1",
  expiresAtMicros: (EXPIRES_S * 1e6) as EpochMicros,
});
const answer: KeystoneToken = {
  ...tokenBody("u1"),
  expires_at: new Date(EXPIRES_S * 1000).toISOString(),
};

/** The region's memcached, as far as markers go: token → marked until (epoch ms). */
class Region {
  readonly markers = new Map<string, number>();
  reads = 0;
}

/** One edge's tiers: its own L1, the region's markers. */
class EdgeCache implements ValidationCache {
  readonly l1 = new Map<string, CachedVerdict>();
  readonly negativeTtls = new Map<string, number | undefined>();
  constructor(
    private readonly region: Region,
    readonly marksRevocations = true,
  ) {}
  peek(t: string): CachedVerdict | undefined {
    return this.l1.get(t);
  }
  entry(t: string): CacheEntry {
    return {
      peek: () => this.l1.get(t),
      fetch: () => Promise.resolve(undefined),
      storePositive: (value) => {
        this.l1.set(t, { kind: "positive", token: value });
        return Promise.resolve();
      },
      storeNegative: (code, ttlMs) => {
        this.l1.set(t, { kind: "negative", code });
        this.negativeTtls.set(t, ttlMs);
      },
      // As the real tiers do: without markers, never marked and nothing written.
      ...(this.marksRevocations
        ? {
            revoked: () => {
              this.region.reads++;
              return Promise.resolve((this.region.markers.get(t) ?? 0) > NOW_MS);
            },
            markRevoked: (untilMs: number) => {
              this.region.markers.set(t, untilMs);
              return Promise.resolve();
            },
          }
        : { revoked: () => Promise.resolve(false), markRevoked: () => Promise.resolve() }),
    };
  }
}

function edge(region: Region, markers = true) {
  const cache = new EdgeCache(region, markers);
  let calls = 0;
  const pipeline = new ValidationPipeline({
    decoder,
    cache,
    tokenCacheTimeSeconds: 300,
    tokenExpirationSeconds: 7_200,
    clock: fixedClock(NOW_MS),
    keystone: {
      validate: () => {
        calls++;
        return Promise.resolve({ kind: "valid", token: answer, endpoint: "k" });
      },
    },
  });
  return { cache, pipeline, calls: () => calls };
}

describe("read-your-writes revocation", () => {
  it("revoked through edge 1's face: edge 1 and edge 2 refuse the token at their next validation, cached or not", async () => {
    const region = new Region();
    const one = edge(region);
    const two = edge(region);
    const three = edge(region); // has never seen the token
    for (const e of [one, two])
      expect(await e.pipeline.validate(token)).toMatchObject({ kind: "valid" });
    expect(await two.pipeline.validate(token)).toMatchObject({ kind: "valid", source: "l1" });

    const revoked = await one.pipeline.revokeNow(token);
    expect(revoked).toEqual({ auditId: AUDIT_ID, untilMs: EXPIRES_S * 1000 });
    expect(region.markers.get(token)).toBe(EXPIRES_S * 1000);

    const refused = { kind: "invalid", code: "revoked" };
    expect(await one.pipeline.validate(token)).toMatchObject(refused);
    expect(await two.pipeline.validate(token)).toMatchObject(refused);
    expect(await three.pipeline.validate(token)).toMatchObject(refused);
    for (const e of [one, two, three]) {
      expect(await e.pipeline.validateFrom(token, "decrypt")).toMatchObject(refused);
      expect(await e.pipeline.validateFrom(token, "keystone")).toMatchObject(refused);
    }
    // Edge 2 remembers it in-process until the token's expiry: no marker read each time.
    const reads = region.reads;
    expect(await two.pipeline.validate(token)).toMatchObject({ source: "negative" });
    expect(region.reads).toBe(reads);
    expect(two.cache.negativeTtls.get(token)).toBe(3_600_000);
  });

  it("the synchronous hot path never calls a token valid while markers are read; refusals it still answers", async () => {
    const region = new Region();
    const e = edge(region);
    await e.pipeline.validate(token);
    expect(e.pipeline.validateNow(token)).toBeUndefined();
    await e.pipeline.revokeNow(token);
    expect(e.pipeline.validateNow(token)).toMatchObject({ kind: "invalid", code: "revoked" });

    const off = edge(region, false);
    await off.pipeline.validate(token);
    expect(off.pipeline.validateNow(token)).toMatchObject({ kind: "valid", source: "l1" });
  });

  it("without markers only the edge that relayed the revocation refuses at once; a token it cannot decrypt stays refused for the longest token life", async () => {
    const region = new Region();
    const one = edge(region, false);
    const two = edge(region, false);
    await one.pipeline.validate(token);
    await two.pipeline.validate(token);
    await one.pipeline.revokeNow(token);
    expect(await one.pipeline.validate(token)).toMatchObject({ code: "revoked" });
    expect(await two.pipeline.validate(token)).toMatchObject({ kind: "valid" });

    const foreign = "gAAAAABnot-a-token-this-edge-can-decrypt";
    expect(await one.pipeline.revokeNow(foreign)).toEqual({
      auditId: undefined,
      untilMs: NOW_MS + 7_200_000,
    });
    expect(one.cache.negativeTtls.get(foreign)).toBe(7_200_000);
  });
});
