import { describe, expect, it } from "vitest";
import type { KeystoneVerdict } from "../../../src/keystone/validate.js";
import type { Verdict } from "../../../src/validation/pipeline.js";
import {
  differences,
  shadowTier,
  ShadowValidation,
  type ShadowOutcome,
  type ShadowSkipReason,
  type ShadowTier,
} from "../../../src/validation/shadow.js";
import { RecordingLogger, tokenBody } from "../../harness/doubles.js";
import { waitUntil } from "../../harness/wait.js";

const TOKEN = "gAAAAAB-the-token-itself-never-logged";

const valid = (source: "l1" | "context" | "memcached" = "l1", extra = {}): Verdict => ({
  kind: "valid",
  token: tokenBody("u1", extra),
  source,
});
type Answer = Exclude<KeystoneVerdict, { kind: "unavailable" }>;
const masterValid = (extra = {}): Answer => ({
  kind: "valid",
  token: tokenBody("u1", extra),
  endpoint: "master",
});
const masterInvalid: Answer = { kind: "invalid", endpoint: "master" };

interface Harness {
  readonly shadow: ShadowValidation;
  readonly outcomes: [ShadowOutcome, ShadowTier, ShadowSkipReason | undefined][];
  readonly calls: string[];
  readonly logger: RecordingLogger;
}

function harness(
  options: {
    answer?: () => Promise<KeystoneVerdict> | KeystoneVerdict;
    recheck?: () => Verdict;
    healthy?: () => boolean;
    sampleRatio?: number;
    random?: () => number;
    maxPerSecond?: number;
    maxInFlight?: number;
  } = {},
): Harness {
  const outcomes: Harness["outcomes"] = [];
  const calls: string[] = [];
  const logger = new RecordingLogger();
  const shadow = new ShadowValidation({
    master: {
      validate: async (token) => {
        calls.push(token);
        return (options.answer ?? (() => masterValid()))();
      },
    },
    masterHealthy: options.healthy ?? (() => true),
    recheck: () => Promise.resolve((options.recheck ?? (() => valid()))()),
    sampleRatio: options.sampleRatio ?? 1,
    ...(options.random === undefined ? {} : { random: options.random }),
    maxPerSecond: options.maxPerSecond ?? 1000,
    maxInFlight: options.maxInFlight ?? 4,
    confirmAfterMs: 5,
    logger,
    onOutcome: (o, t, s) => outcomes.push([o, t, s]),
  });
  return { shadow, outcomes, calls, logger };
}

describe("shadowTier: which verdicts are the edge's own", () => {
  it("samples cache, context, memcached and local refusals; never Keystone's, degraded or malformed", () => {
    expect(shadowTier(valid("l1"))).toBe("l1");
    expect(shadowTier(valid("context"))).toBe("context");
    expect(shadowTier(valid("memcached"))).toBe("memcached");
    expect(shadowTier({ kind: "valid", token: tokenBody(), source: "keystone" })).toBeUndefined();
    expect(shadowTier({ kind: "valid", token: tokenBody(), source: "degraded" })).toBeUndefined();
    expect(shadowTier({ kind: "invalid", code: "expired", source: "local_reject" })).toBe(
      "local_reject",
    );
    expect(
      shadowTier({ kind: "invalid", code: "malformed", source: "local_reject" }),
    ).toBeUndefined();
    expect(shadowTier({ kind: "invalid", code: "revoked", source: "revocation" })).toBe(
      "revocation",
    );
    expect(shadowTier({ kind: "invalid", code: "not_found", source: "keystone" })).toBeUndefined();
    expect(shadowTier({ kind: "unavailable", reason: "timeout" })).toBeUndefined();
  });
});

describe("differences", () => {
  it("is empty when the edge and the master say the same", () => {
    expect(differences(valid(), masterValid())).toEqual([]);
    expect(
      differences({ kind: "invalid", code: "revoked", source: "revocation" }, masterInvalid),
    ).toEqual([]);
  });

  it("names status, roles, scope and expiry differences with both sides", () => {
    expect(differences(valid(), masterInvalid)).toEqual([
      { field: "status", edge: "valid", master: "invalid" },
    ]);
    expect(
      differences(
        { kind: "invalid", code: "bad_signature", source: "local_reject" },
        masterValid(),
      ),
    ).toEqual([{ field: "status", edge: "invalid (bad_signature)", master: "valid" }]);
    const d = differences(
      valid("context", {
        roles: [
          { id: "r2", name: "admin" },
          { id: "r1", name: "member" },
        ],
      }),
      masterValid({
        project: { id: "p2", name: "other", domain: { id: "default", name: "Default" } },
        expires_at: "2030-03-17T19:46:40.000000Z",
      }),
    );
    expect(d.map((x) => x.field)).toEqual(["project", "roles", "expires_at"]);
    expect(d[1]).toEqual({ field: "roles", edge: "admin,member", master: "member" });
  });

  it("compares expiry to the second and roles as sets", () => {
    expect(
      differences(
        valid("l1", {
          expires_at: "2030-03-17T18:46:40Z",
          roles: [
            { id: "a", name: "b" },
            { id: "c", name: "a" },
          ],
        }),
        masterValid({
          expires_at: "2030-03-17T18:46:40.000000Z",
          roles: [
            { id: "c", name: "a" },
            { id: "a", name: "b" },
          ],
        }),
      ),
    ).toEqual([]);
  });
});

describe("ShadowValidation", () => {
  it("counts agreement when the master says the same", async () => {
    const h = harness();
    h.shadow.offer(TOKEN, valid("context"));
    await waitUntil(() => h.outcomes.length === 1);
    expect(h.outcomes).toEqual([["agree", "context", undefined]]);
    expect(h.calls).toEqual([TOKEN]);
  });

  it("counts a disagreement that outlives the second look, logged without the token", async () => {
    const h = harness({ answer: () => masterInvalid, recheck: () => valid() });
    h.shadow.offer(TOKEN, valid("l1"));
    await waitUntil(() => h.outcomes.length === 1);
    expect(h.outcomes).toEqual([["disagree", "l1", undefined]]);
    const line = h.logger.lines.find((l) => l.level === "error");
    expect(line?.message).toMatch(/disagrees with the master/);
    expect(line?.fields["differences"]).toEqual([
      { field: "status", edge: "valid", master: "invalid" },
    ]);
    expect(JSON.stringify(h.logger.lines)).not.toContain(TOKEN);
    expect(line?.fields["token"]).toMatch(/^[0-9a-f]{8,}$/);
  });

  it("counts a difference the edge has mended by its second look as agreement", async () => {
    // Revoked at the master a moment ago: the edge refuses it within its poll interval.
    const h = harness({
      answer: () => masterInvalid,
      recheck: () => ({ kind: "invalid", code: "revoked", source: "revocation" }),
    });
    h.shadow.offer(TOKEN, valid("l1"));
    await waitUntil(() => h.outcomes.length === 1);
    expect(h.outcomes).toEqual([["agree", "l1", undefined]]);
    expect(h.logger.lines.some((l) => l.message.includes("converged"))).toBe(true);
  });

  it("skips, never asking, while the master is out of rotation or the region degraded", async () => {
    const h = harness({ healthy: () => false });
    h.shadow.offer(TOKEN, valid());
    await waitUntil(() => h.outcomes.length === 1);
    expect(h.outcomes).toEqual([["skipped", "l1", "master_degraded"]]);
    expect(h.calls).toEqual([]);
  });

  it("skips when the master does not answer", async () => {
    const h = harness({ answer: () => ({ kind: "unavailable", reason: "timeout", detail: "x" }) });
    h.shadow.offer(TOKEN, valid());
    await waitUntil(() => h.outcomes.length === 1);
    expect(h.outcomes).toEqual([["skipped", "l1", "master_unavailable"]]);
  });

  it("never asks beyond its rate ceiling or its calls in flight", async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const h = harness({
      answer: async () => {
        await gate;
        return masterValid();
      },
      maxInFlight: 2,
      maxPerSecond: 3,
    });
    for (let i = 0; i < 10; i++) h.shadow.offer(`${TOKEN}${String(i)}`, valid());
    await waitUntil(() => h.outcomes.length === 8);
    expect(h.calls).toHaveLength(2);
    expect(h.outcomes.filter(([, , s]) => s === "busy")).toHaveLength(8);
    release();
    await waitUntil(() => h.outcomes.length === 10);
    // In-flight slots free again, but the one-second bucket (3) has one left.
    for (let i = 0; i < 5; i++) h.shadow.offer(`${TOKEN}x${String(i)}`, valid());
    await waitUntil(() => h.outcomes.length === 15);
    expect(h.calls).toHaveLength(3);
    expect(h.outcomes.filter(([, , s]) => s === "rate")).toHaveLength(4);
  });

  it("samples at its ratio and never Keystone's own verdicts", async () => {
    const draws = [0.5, 0.0005, 0.2, 0.0009, 0.001];
    const h = harness({ sampleRatio: 0.001, random: () => draws.shift() ?? 1 });
    for (let i = 0; i < 5; i++) h.shadow.offer(TOKEN, valid());
    await waitUntil(() => h.outcomes.length === 2);
    const off = harness({ sampleRatio: 0 });
    off.shadow.offer(TOKEN, valid());
    const ks = harness();
    ks.shadow.offer(TOKEN, { kind: "valid", token: tokenBody(), source: "keystone" });
    await new Promise((r) => setImmediate(r));
    expect(off.calls).toEqual([]);
    expect(ks.calls).toEqual([]);
    expect(h.calls).toHaveLength(2);
  });

  it("drops differences awaiting their second look when stopped", async () => {
    const h = harness({ answer: () => masterInvalid });
    const long = new ShadowValidation({
      master: { validate: () => Promise.resolve(masterInvalid) },
      masterHealthy: () => true,
      recheck: () => Promise.resolve(valid()),
      sampleRatio: 1,
      confirmAfterMs: 60_000,
      onOutcome: (o, t, s) => h.outcomes.push([o, t, s]),
    });
    long.offer(TOKEN, valid());
    await waitUntil(() => long.pending === 1);
    long.stop();
    expect(long.pending).toBe(0);
    long.offer(TOKEN, valid());
    expect(long.active).toBe(0);
  });
});
