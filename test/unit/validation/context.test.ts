import { describe, expect, it } from "vitest";

import { staticKeyRing } from "../../../src/fernet/key-ring.js";
import type { KeystoneToken } from "../../../src/token/body.js";
import type { KeystoneVerdict } from "../../../src/keystone/validate.js";
import { parseEvent } from "../../../src/revocation/event.js";
import { RevocationList } from "../../../src/revocation/list.js";
import { CONTEXT_CHANGE_MARGIN_MS, concernsContext } from "../../../src/revocation/matching.js";
import { SealedContextStore } from "../../../src/cache/context-store.js";
import { CountingCacheMetrics } from "../../../src/cache/metrics.js";
import { ManualClock } from "../../harness/doubles.js";
import { CacheKeyer } from "../../../src/cache/token-key.js";
import { TokenDecoder } from "../../../src/token/decoder.js";
import type { TokenPayload } from "../../../src/token/payload.js";
import { fixedClock, type EpochMicros, type EpochMillis } from "../../../src/units.js";
import {
  answerFromContext,
  ContextCache,
  contextKey,
  type ContextCacheOptions,
} from "../../../src/validation/context.js";
import {
  ValidationPipeline,
  type CacheEntry,
  type CachedVerdict,
  type ValidationCache,
} from "../../../src/validation/pipeline.js";
import { MapStore, tokenBody } from "../../harness/doubles.js";
import { makeRing } from "../helpers.js";

const NOW_MS = 1_900_000_000_000;
const { ring } = makeRing([0]);
const clock = fixedClock(NOW_MS);
const decoder = new TokenDecoder({ keys: staticKeyRing(ring), clock });
let auditCounter = 0;

function mint(userId: string, projectId: string, issuedOffsetS = 0): string {
  auditCounter++;
  return decoder.mint(
    {
      kind: "project",
      version: 2,
      userId,
      methods: ["password"],
      auditIds: [`audit${String(auditCounter).padStart(17, "0")}`],
      projectId,
      expiresAtMicros: ((NOW_MS / 1000 + 3600) * 1e6) as EpochMicros,
    },
    { issuedAtSeconds: NOW_MS / 1000 - 60 + issuedOffsetS },
  );
}

/** Keystone's answer for some other token of this user and project (its own fields differ). */
function answer(userId: string, projectId: string): KeystoneToken {
  return tokenBody(userId, {
    methods: ["token"],
    audit_ids: ["from-keystone-xxxxxxxxx"],
    expires_at: "2000-01-01T00:00:00.000000Z",
    issued_at: "2000-01-01T00:00:00.000000Z",
    project: { id: projectId, name: projectId, domain: { id: "default", name: "Default" } },
    roles: [{ id: "r-member", name: "member" }],
    catalog: [],
  });
}

class MapCache implements ValidationCache {
  readonly l1 = new Map<string, CachedVerdict>();
  peek(token: string): CachedVerdict | undefined {
    return this.l1.get(token);
  }
  entry(token: string): CacheEntry {
    return {
      // No revocation markers here (validation/revocation-markers.test.ts has them).
      revoked: () => Promise.resolve(false),
      markRevoked: () => Promise.resolve(),
      peek: () => this.l1.get(token),
      fetch: () => Promise.resolve(undefined),
      storePositive: (value) => {
        this.l1.set(token, { kind: "positive", token: value });
        return Promise.resolve();
      },
      storeNegative: (code) => {
        this.l1.set(token, { kind: "negative", code });
      },
    };
  }
}

function setup(
  revoked: (t: KeystoneToken) => boolean = () => false,
  keystoneUp: () => boolean = () => true,
  clockOf = clock,
  contextOptions: Partial<ContextCacheOptions> = {},
) {
  const asked: string[] = [];
  const pipeline = new ValidationPipeline({
    decoder,
    cache: new MapCache(),
    tokenCacheTimeSeconds: 300,
    clock: clockOf,
    contexts: new ContextCache({
      contextCacheTimeSeconds: 300,
      staleIfErrorSeconds: 900,
      clock: clockOf,
      ...contextOptions,
    }),
    revocations: { isRevoked: revoked },
    keystone: {
      validate: (t): Promise<KeystoneVerdict> => {
        asked.push(t);
        if (!keystoneUp()) {
          return Promise.resolve({ kind: "unavailable", reason: "connection", detail: "down" });
        }
        const d = decoder.decode(t);
        if (d.status !== "valid" || d.token.payload.kind !== "project") {
          return Promise.resolve({ kind: "invalid", endpoint: "k" });
        }
        return Promise.resolve({
          kind: "valid",
          token: answer(d.token.payload.userId, d.token.payload.projectId),
          endpoint: "k",
        });
      },
    },
  });
  return { pipeline, asked };
}

describe("context key", () => {
  const base = {
    userId: "u",
    methods: ["password"],
    auditIds: ["a"],
    expiresAtMicros: 0 as EpochMicros,
  };
  it("tells apart everything that changes Keystone's answer", () => {
    const payloads: TokenPayload[] = [
      { ...base, kind: "unscoped", version: 0 },
      { ...base, kind: "project", version: 2, projectId: "p" },
      { ...base, kind: "project", version: 2, projectId: "q" },
      { ...base, userId: "v", kind: "project", version: 2, projectId: "p" },
      { ...base, kind: "domain", version: 1, domainId: "p" },
      { ...base, kind: "trust", version: 3, projectId: "p", trustId: "t" },
      { ...base, kind: "application-credential", version: 9, projectId: "p", appCredId: "ac" },
      { ...base, kind: "oauth1", version: 7, projectId: "p", accessTokenId: "at" },
      { ...base, kind: "system", version: 8, system: "all" },
      {
        ...base,
        kind: "federated-project",
        version: 5,
        projectId: "p",
        federation: { groupIds: ["g1"], identityProviderId: "idp", protocolId: "saml2" },
      },
      {
        ...base,
        kind: "federated-project",
        version: 5,
        projectId: "p",
        federation: { groupIds: ["g1", "g2"], identityProviderId: "idp", protocolId: "saml2" },
      },
    ];
    const keys = payloads.map(contextKey);
    expect(new Set(keys).size).toBe(payloads.length);
    // the token's own fields do not count
    expect(
      contextKey({
        ...base,
        kind: "project",
        version: 2,
        projectId: "p",
        methods: ["token"],
        auditIds: ["b", "c"],
      }),
    ).toBe(keys[1]);
    expect(
      contextKey({
        ...base,
        kind: "oauth2-credential",
        version: 10,
        projectId: "p",
        domainId: "d",
        thumbprint: "x",
      }),
    ).toBeUndefined();
  });

  it("builds an answer with the token's own methods, audit ids and times", () => {
    const token = decoder.decode(mint("u1", "p1"));
    if (token.status !== "valid") throw new Error("mint");
    const built = answerFromContext(answer("u1", "p1"), token.token);
    expect(built.methods).toEqual(["password"]);
    expect(built.audit_ids).toEqual(token.token.payload.auditIds);
    expect(built.issued_at).toBe(
      new Date(NOW_MS - 60_000).toISOString().replace(".000Z", ".000000Z"),
    );
    expect(built.expires_at).toBe(
      new Date(NOW_MS + 3_600_000).toISOString().replace(".000Z", ".000000Z"),
    );
    expect(built.roles).toEqual(answer("u1", "p1").roles);
  });
});

describe("the pipeline with the context cache", () => {
  it("answers new tokens of a known user and scope with no Keystone call", async () => {
    const s = setup();
    expect(await s.pipeline.validate(mint("u1", "p1"))).toMatchObject({ source: "keystone" });
    for (let i = 0; i < 5; i++) {
      const v = await s.pipeline.validate(mint("u1", "p1"));
      expect(v).toMatchObject({ kind: "valid", source: "context" });
    }
    expect(s.asked).toHaveLength(1);
    // another scope, another user: Keystone
    await s.pipeline.validate(mint("u1", "p2"));
    await s.pipeline.validate(mint("u2", "p1"));
    expect(s.asked).toHaveLength(3);
  });

  it("remembers the built answer per token and checks it against revocation events", async () => {
    const revokedUsers = new Set<string>();
    const s = setup((t) => revokedUsers.has(t.user.id));
    await s.pipeline.validate(mint("u1", "p1"));
    const t = mint("u1", "p1");
    expect(await s.pipeline.validate(t)).toMatchObject({ source: "context" });
    expect(s.pipeline.validateNow(t)).toMatchObject({ source: "l1" });
    revokedUsers.add("u1");
    expect(await s.pipeline.validate(mint("u1", "p1"))).toMatchObject({
      kind: "invalid",
      source: "revocation",
    });
    expect(s.asked).toHaveLength(1);
  });

  it("drops contexts a revocation event bears on, not those it does not", () => {
    const ctx = answer("u1", "p1");
    const ev = (fields: Record<string, unknown>) => {
      const e = parseEvent({ issued_before: "2001-01-01T00:00:00Z", ...fields });
      if (e === undefined) throw new Error("event");
      return e;
    };
    expect(concernsContext(ev({ user_id: "u1" }), ctx)).toBe(true);
    expect(concernsContext(ev({ user_id: "u1", project_id: "p1" }), ctx)).toBe(true);
    expect(concernsContext(ev({ project_id: "p1" }), ctx)).toBe(true);
    expect(concernsContext(ev({ role_id: "r-member" }), ctx)).toBe(true);
    expect(concernsContext(ev({ user_id: "u2" }), ctx)).toBe(false);
    expect(concernsContext(ev({ user_id: "u1", project_id: "p2" }), ctx)).toBe(false);
    expect(concernsContext(ev({ audit_id: "from-keystone-xxxxxxxxx" }), ctx)).toBe(false);
    const cache = new ContextCache({ contextCacheTimeSeconds: 60, clock });
    cache.set("a", ctx, NOW_MS);
    cache.set("b", answer("u2", "p1"), NOW_MS);
    expect(cache.purge((c) => concernsContext(ev({ user_id: "u1" }), c))).toBe(1);
    expect(cache.size).toBe(1);
  });

  it("sweeps out contexts past their stale time, unread, and keeps the rest", () => {
    const manual = new ManualClock(NOW_MS);
    const cache = new ContextCache({
      contextCacheTimeSeconds: 60,
      staleIfErrorSeconds: 30,
      clock: manual,
      sweepIntervalMs: 0,
    });
    for (let i = 0; i < 100; i++)
      cache.set(`old-${String(i)}`, answer(`u${String(i)}`, "p1"), NOW_MS);
    manual.advance(60_000);
    cache.set("young", answer("u-young", "p1"), manual.nowMs());
    // Fresh time over, stale time not: kept for degraded mode.
    expect(cache.sweep()).toBe(0);
    manual.advance(30_000);
    expect(cache.sweep()).toBe(100);
    expect(cache.size).toBe(1);
    expect(cache.getStale("young")).toBeDefined();
    cache.close();
  });

  it("degraded mode: with Keystone down, serves known contexts past their time up to stale_if_error, and nothing else", async () => {
    let nowMs = NOW_MS;
    const moving = { nowMs: () => nowMs as EpochMillis };
    let up = true;
    const s = setup(
      () => false,
      () => up,
      moving,
    );
    await s.pipeline.validate(mint("u1", "p1"));
    up = false;
    // fresh context: answered from it, Keystone not even asked
    expect(await s.pipeline.validate(mint("u1", "p1"))).toMatchObject({ source: "context" });
    nowMs += 400_000; // past context_cache_time (300 s), inside stale_if_error (900 s)
    expect(await s.pipeline.validate(mint("u1", "p1"))).toMatchObject({
      kind: "valid",
      source: "degraded",
    });
    expect(await s.pipeline.validate(mint("u2", "p1"))).toMatchObject({ kind: "unavailable" });
    nowMs += 900_000; // past stale_if_error
    expect(await s.pipeline.validate(mint("u1", "p1"))).toMatchObject({ kind: "unavailable" });
    up = true;
    expect(await s.pipeline.validate(mint("u1", "p1"))).toMatchObject({ source: "keystone" });
  });
});

describe("contexts shared through memcached", () => {
  const SECRET = "shared-secret-of-the-region";
  /** Two nodes of one region: separate processes, one memcached, one secret. */
  function region(options: { keystoneUp?: () => boolean; clockOf?: typeof clock } = {}) {
    const store = new MapStore();
    const metrics = new CountingCacheMetrics();
    const revocations = new RevocationList();
    const node = (secret = SECRET) => {
      const clockOf = options.clockOf ?? clock;
      const shared = new SealedContextStore(store, new CacheKeyer(secret), {
        clock: clockOf,
        metrics,
      });
      return setup((t) => revocations.isRevoked(t), options.keystoneUp ?? (() => true), clockOf, {
        shared,
        metrics,
        superseded: (c, at) => revocations.supersedes(c, at),
      });
    };
    return { store, metrics, revocations, node };
  }

  it("a context one node learnt answers another node's new token with no Keystone call", async () => {
    const r = region();
    const a = r.node();
    const b = r.node();
    expect(await a.pipeline.validate(mint("u1", "p1"))).toMatchObject({ source: "keystone" });
    expect(r.store.values.size).toBe(1);
    const [key] = [...r.store.values.keys()];
    expect(key).toMatch(/^keystone-edge\/v1\/ctx\/[0-9a-f]{64}$/);
    // the user and project ids are not readable in memcached
    const raw = [...r.store.values.values()][0]?.toString("latin1") ?? "";
    expect(raw).not.toContain("u1");
    expect(raw).not.toContain("r-member");

    const token = mint("u1", "p1");
    const verdict = await b.pipeline.validate(token);
    expect(verdict).toMatchObject({ kind: "valid", source: "context" });
    expect(b.asked).toEqual([]);
    expect(r.metrics.get("context_miss")).toBe(2); // node A's first token, node B's
    expect(r.store.gets).toBe(2); // both asked memcached for the context
    // built with the new token's own fields
    const decoded = decoder.decode(token);
    if (decoded.status !== "valid" || verdict.kind !== "valid") throw new Error("decode");
    expect(verdict.token.audit_ids).toEqual(decoded.token.payload.auditIds);
    // another scope is still Keystone's
    await b.pipeline.validate(mint("u1", "p2"));
    expect(b.asked).toHaveLength(1);
  });

  it("an entry written under another secret, or tampered with, is a miss and Keystone is asked", async () => {
    const r = region();
    await r.node("another-secret-entirely").pipeline.validate(mint("u1", "p1"));
    const b = r.node();
    await b.pipeline.validate(mint("u1", "p1"));
    expect(b.asked).toHaveLength(1); // the foreign entry sits under another key: a plain miss

    const c = r.node();
    for (const [k, v] of r.store.values) {
      const flipped = Buffer.from(v);
      flipped[20] = (flipped[20] ?? 0) ^ 1;
      r.store.values.set(k, flipped);
    }
    await c.pipeline.validate(mint("u1", "p1"));
    expect(c.asked).toHaveLength(1);
    expect(r.metrics.get("memcached_auth_failure")).toBeGreaterThanOrEqual(1);
  });

  it("a context learnt before a change Keystone announced is not taken from memcached, nor kept", async () => {
    const r = region();
    await r.node().pipeline.validate(mint("u1", "p1"));
    // Keystone announces a change for u1 on p1 (a role removed) after the context was learnt
    const later = new Date(NOW_MS + 1_000).toISOString();
    const event = parseEvent({ user_id: "u1", project_id: "p1", issued_before: later });
    if (event === undefined) throw new Error("event");
    r.revocations.add([event]);
    const b = r.node();
    await b.pipeline.validate(mint("u1", "p1", 5)); // issued after the event: not revoked itself
    expect(b.asked).toHaveLength(1);
    // Keystone's new answer is itself learnt within the margin after the change: not kept
    await b.pipeline.validate(mint("u1", "p1", 5));
    expect(b.asked).toHaveLength(2);
  });

  it("supersedes only contexts an event bears on, revoked after they were learnt (less the margin)", () => {
    const list = new RevocationList();
    const ctx = answer("u1", "p1");
    const at = (ms: number) => new Date(ms).toISOString();
    const add = (fields: Record<string, unknown>) => {
      const e = parseEvent(fields);
      if (e === undefined) throw new Error("event");
      list.add([e]);
    };
    expect(list.supersedes(ctx, NOW_MS)).toBe(false);
    add({ user_id: "u2", issued_before: at(NOW_MS + 5_000) });
    add({ audit_id: "from-keystone-xxxxxxxxx", issued_before: at(NOW_MS + 5_000) });
    expect(list.supersedes(ctx, NOW_MS)).toBe(false);
    add({ role_id: "r-member", issued_before: at(NOW_MS - CONTEXT_CHANGE_MARGIN_MS - 1_000) });
    expect(list.supersedes(ctx, NOW_MS)).toBe(false); // long before the context was learnt
    expect(list.supersedes(ctx, NOW_MS - CONTEXT_CHANGE_MARGIN_MS)).toBe(true);
    add({ project_id: "p1", issued_before: at(NOW_MS - 10_000) });
    expect(list.supersedes(ctx, NOW_MS)).toBe(true); // within the margin: clocks may differ
  });

  it("degraded mode on a node that never saw the context: the shared one answers past its time", async () => {
    let nowMs = NOW_MS;
    const moving = { nowMs: () => nowMs as EpochMillis };
    let up = true;
    const r = region({ keystoneUp: () => up, clockOf: moving });
    await r.node().pipeline.validate(mint("u1", "p1"));
    up = false;
    nowMs += 400_000; // past context_cache_time, inside stale_if_error
    const b = r.node();
    expect(await b.pipeline.validate(mint("u1", "p1", 400))).toMatchObject({
      kind: "valid",
      source: "degraded",
    });
    expect(await b.pipeline.validate(mint("u2", "p1", 400))).toMatchObject({
      kind: "unavailable",
    });
  });
});
