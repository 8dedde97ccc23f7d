/**
 * The key lag monitor: a fresh Keystone token against the region's ring — states and their
 * transitions, what each trigger does and how often, failures that keep the state, hooks
 * and logs. In process: a fake `issue` minting with a master ring, a ring swapped by hand,
 * a clock moved by hand.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { KeyRing, staticKeyRing, type KeyRingSource } from "../../../src/fernet/key-ring.js";
import {
  freshTokenFrom,
  KeyLagMonitor,
  ringVerifies,
  type FreshToken,
  type KeyLagOptions,
  type KeyLagResult,
  type KeyLagState,
  type KeyLagTrigger,
} from "../../../src/keystone/key-lag.js";
import type { ServiceTokenState } from "../../../src/keystone/service-token.js";
import { TokenDecoder } from "../../../src/token/decoder.js";
import type { EpochMicros } from "../../../src/units.js";
import { ManualClock, RecordingLogger, T0_MS } from "../../harness/doubles.js";
import { keyFromText, makeRing, waitUntil } from "../helpers.js";

/** The master rotated twice: key 3 is its primary; the region holds 0, 1, 2. */
const master = makeRing([0, 1, 2, 3]);
function regionRing(indexes: readonly number[]): KeyRing {
  return KeyRing.from(
    indexes.map((index) => ({ index, key: keyFromText(master.texts.get(index) ?? "") })),
  );
}
const lagging = regionRing([0, 1, 2]);
const synced = regionRing([0, 1, 2, 3]);
const masterDecoder = new TokenDecoder({ keys: staticKeyRing(master.ring) });

function freshToken(): string {
  return masterDecoder.mint({
    kind: "project",
    version: 2,
    userId: "edge-service-user",
    methods: ["password"],
    auditIds: ["GGgSgA3DRS-CUo4CYEd1cA"],
    projectId: "service",
    expiresAtMicros: ((T0_MS / 1000 + 3600) * 1e6) as EpochMicros,
  });
}

/** A controllable Keystone: issues fresh master tokens, fails, or holds its answer. */
class FakeIssuer {
  calls = 0;
  mode: "issue" | "fail" | "reject" | "not_fernet" = "issue";
  issued: string[] = [];
  private held: (() => void)[] = [];
  hold = false;
  readonly issue = async (): Promise<FreshToken> => {
    this.calls++;
    if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
    switch (this.mode) {
      case "fail":
        return { kind: "failed", reason: "http://keystone/v3: connection (ECONNREFUSED)" };
      case "reject":
        throw new Error("boom");
      case "not_fernet":
        return { kind: "issued", token: "svc-1" };
      case "issue": {
        const token = freshToken();
        this.issued.push(token);
        return { kind: "issued", token };
      }
    }
  };
  release(): void {
    this.hold = false;
    for (const r of this.held.splice(0)) r();
  }
}

interface Harness {
  readonly monitor: KeyLagMonitor;
  readonly issuer: FakeIssuer;
  readonly clock: ManualClock;
  readonly logger: RecordingLogger;
  readonly keys: KeyRingSource & { ring: KeyRing };
  readonly checks: { trigger: KeyLagTrigger; result: KeyLagResult; state: KeyLagState }[];
  readonly changes: { state: KeyLagState; previous: KeyLagState }[];
}

const monitors: KeyLagMonitor[] = [];
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(monitors.splice(0).map((m) => m.stop()));
});

function harness(ring: KeyRing, options: Partial<KeyLagOptions> = {}): Harness {
  const keys = {
    ring,
    current(): KeyRing {
      return this.ring;
    },
  };
  const issuer = new FakeIssuer();
  const clock = new ManualClock();
  const logger = new RecordingLogger();
  const checks: Harness["checks"] = [];
  const changes: Harness["changes"] = [];
  const monitor = new KeyLagMonitor({
    keys,
    issue: issuer.issue,
    clock,
    logger,
    onCheck: (trigger, result, state) => checks.push({ trigger, result, state }),
    onChange: (state, previous) => changes.push({ state, previous }),
    ...options,
  });
  monitors.push(monitor);
  return { monitor, issuer, clock, logger, keys, checks, changes };
}

async function started(h: Harness): Promise<void> {
  h.monitor.start();
  await waitUntil(() => h.checks.length >= 1, 2_000, "the start check");
}

describe("ringVerifies", () => {
  it("verified by any key of the ring, by none, or not a Fernet token at all", () => {
    const token = freshToken();
    expect(ringVerifies(token, synced)).toBe("verified");
    expect(ringVerifies(token, lagging)).toBe("no_key");
    expect(ringVerifies("svc-1", synced)).toBe("not_fernet");
    expect(ringVerifies("", synced)).toBe("not_fernet");
  });
});

describe("KeyLagMonitor", () => {
  it("starts unknown; a fresh token no local key verifies: behind, logged once, no token logged", async () => {
    const h = harness(lagging);
    expect(h.monitor.state()).toEqual({ kind: "unknown" });
    await started(h);
    expect(h.checks[0]).toMatchObject({ trigger: "start", result: "behind" });
    expect(h.monitor.state()).toEqual({ kind: "behind", sinceMs: T0_MS });
    expect(h.changes).toEqual([{ state: h.monitor.state(), previous: { kind: "unknown" } }]);
    expect(h.monitor.lastCheck()).toEqual({ atMs: T0_MS, trigger: "start", result: "behind" });
    const warnings = h.logger.at("warn");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.message).toMatch(/behind Keystone/);
    expect(warnings[0]?.fields).toMatchObject({ trigger: "start", keys: 3, primary_index: 2 });
    for (const token of h.issuer.issued) expect(h.logger.text()).not.toContain(token);
  });

  it("in sync at start; behind after the master rotates past it (since when, last agreed); back in sync after the ring reloads", async () => {
    const h = harness(synced);
    await started(h);
    expect(h.monitor.state()).toEqual({ kind: "in_sync", sinceMs: T0_MS, agreedAtMs: T0_MS });
    expect(h.logger.at("info").map((l) => l.message)).toEqual(["key ring in sync with Keystone"]);

    // A later agreement moves agreedAtMs, not sinceMs; no transition, no log line.
    h.clock.advance(60_000);
    expect(await h.monitor.check("schedule")).toBe("in_sync");
    expect(h.monitor.state()).toEqual({
      kind: "in_sync",
      sinceMs: T0_MS,
      agreedAtMs: T0_MS + 60_000,
    });
    expect(h.changes).toHaveLength(1);

    // The region's copy goes back to a lagging one (a stale copy restored).
    h.keys.ring = lagging;
    h.clock.advance(1_000);
    h.monitor.ringChanged();
    await waitUntil(() => h.checks.length === 3, 2_000, "the reload check");
    expect(h.checks[2]).toMatchObject({ trigger: "reload", result: "behind" });
    expect(h.monitor.state()).toEqual({
      kind: "behind",
      sinceMs: T0_MS + 61_000,
      lastAgreedAtMs: T0_MS + 60_000,
    });
    expect(h.monitor.lastAgreedAtMs()).toBe(T0_MS + 60_000);
    expect(h.logger.at("warn")[0]?.fields).toMatchObject({
      last_agreed: new Date(T0_MS + 60_000).toISOString(),
    });

    // Still behind: the state keeps its since-when.
    h.clock.advance(60_000);
    expect(await h.monitor.check("schedule")).toBe("behind");
    expect(h.monitor.state()).toMatchObject({ kind: "behind", sinceMs: T0_MS + 61_000 });

    // Synced: the reload trigger clears it.
    h.keys.ring = synced;
    h.clock.advance(9_000);
    h.monitor.ringChanged();
    await waitUntil(() => h.monitor.state().kind === "in_sync", 2_000, "back in sync");
    expect(h.monitor.state()).toEqual({
      kind: "in_sync",
      sinceMs: T0_MS + 130_000,
      agreedAtMs: T0_MS + 130_000,
    });
    const back = h.logger.at("info").at(-1);
    expect(back?.message).toBe(
      "key ring back in sync with Keystone: new tokens decrypt locally again",
    );
    expect(back?.fields).toMatchObject({ trigger: "reload", behind_seconds: 69 });
    expect(h.changes.map((c) => c.state.kind)).toEqual(["in_sync", "behind", "in_sync"]);
  });

  it("Keystone unreachable, a throwing issuer or a token that is not Fernet: the check fails, the state stays, one warning per run of failures", async () => {
    const h = harness(synced);
    await started(h);
    const before = h.monitor.state();
    for (const mode of ["fail", "reject", "not_fernet"] as const) {
      h.issuer.mode = mode;
      h.clock.advance(60_000);
      expect(await h.monitor.check("schedule")).toBe("failed");
      expect(h.monitor.state()).toBe(before);
    }
    expect(h.checks.map((c) => c.result)).toEqual(["in_sync", "failed", "failed", "failed"]);
    expect(h.monitor.lastCheck()).toMatchObject({
      trigger: "schedule",
      result: "failed",
      error: "Keystone issued a token that is not a Fernet token",
    });
    const warnings = h.logger.at("warn");
    expect(warnings).toHaveLength(1);
    expect(String(warnings[0]?.fields["error"])).toMatch(/ECONNREFUSED/);
    expect(h.changes).toHaveLength(1);

    // Behind stays behind through failures too.
    h.issuer.mode = "issue";
    h.keys.ring = lagging;
    expect(await h.monitor.check("schedule")).toBe("behind");
    const behind = h.monitor.state();
    h.issuer.mode = "fail";
    expect(await h.monitor.check("schedule")).toBe("failed");
    expect(h.monitor.state()).toBe(behind);
    expect(h.logger.at("warn")).toHaveLength(3); // behind, then a new run of failures
  });

  it("undecryptable tokens trigger a check at most once per min interval, none while behind, none sooner than the schedule after a failure", async () => {
    const h = harness(synced, { undecryptableMinIntervalMs: 5_000, intervalMs: 60_000 });
    // Before start: nothing.
    void h.monitor.undecryptable();
    expect(h.issuer.calls).toBe(0);
    await started(h);
    expect(h.issuer.calls).toBe(1);

    // Within 5 s of the last check: nothing, however many tokens.
    for (let i = 0; i < 100; i++) void h.monitor.undecryptable();
    h.clock.advance(4_999);
    void h.monitor.undecryptable();
    expect(h.issuer.calls).toBe(1);

    // Past it: one check for a burst of tokens.
    h.clock.advance(1);
    for (let i = 0; i < 100; i++) void h.monitor.undecryptable();
    await waitUntil(() => h.checks.length === 2, 2_000, "the undecryptable check");
    expect(h.issuer.calls).toBe(2);
    expect(h.checks[1]).toMatchObject({ trigger: "undecryptable", result: "in_sync" });

    // A failed check: the next undecryptable check waits the schedule's interval.
    h.issuer.mode = "fail";
    h.clock.advance(5_000);
    void h.monitor.undecryptable();
    await waitUntil(() => h.checks.length === 3, 2_000, "the failing check");
    h.clock.advance(30_000);
    void h.monitor.undecryptable();
    expect(h.issuer.calls).toBe(3);
    h.clock.advance(30_000);
    h.issuer.mode = "issue";
    h.keys.ring = lagging;
    void h.monitor.undecryptable();
    await waitUntil(() => h.checks.length === 4, 2_000, "the check after the back-off");
    expect(h.monitor.state().kind).toBe("behind");

    // Behind: an undecryptable token is what behind predicts; no check.
    h.clock.advance(600_000);
    for (let i = 0; i < 10; i++) void h.monitor.undecryptable();
    expect(h.issuer.calls).toBe(4);
  });

  it("one check at a time: triggers during a check share it; a ring change during one queues exactly one more", async () => {
    const h = harness(lagging);
    h.issuer.hold = true;
    h.monitor.start();
    await waitUntil(() => h.issuer.calls === 1, 2_000, "the start check to begin");
    h.clock.advance(10_000);
    const joined = h.monitor.check("schedule");
    void h.monitor.undecryptable();
    // The ring is synced while the check holds a token minted before: check again after it.
    h.keys.ring = synced;
    h.monitor.ringChanged();
    h.monitor.ringChanged();
    expect(h.issuer.calls).toBe(1);
    h.issuer.release();
    expect(await joined).toBe("in_sync"); // the ring read after the token came back
    await waitUntil(() => h.checks.length === 2, 2_000, "the queued reload check");
    expect(h.checks.map((c) => c.trigger)).toEqual(["start", "reload"]);
    expect(h.issuer.calls).toBe(2);
  });

  it("runs on its schedule with unref'd timers, and stops", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const h = harness(synced, { intervalMs: 60_000 });
    await started(h);
    vi.advanceTimersByTime(60_000);
    await waitUntil(() => h.checks.length === 2, 2_000, "the scheduled check");
    expect(h.checks[1]?.trigger).toBe("schedule");
    await h.monitor.stop();
    vi.advanceTimersByTime(600_000);
    h.monitor.ringChanged();
    void h.monitor.undecryptable();
    expect(await h.monitor.check("schedule")).toBe("failed");
    expect(h.issuer.calls).toBe(2);
  });

  it("unscheduled (a follower worker): checks at start and on its triggers, never on a timer", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const h = harness(synced, { intervalMs: 60_000, scheduled: false });
    await started(h);
    vi.advanceTimersByTime(600_000);
    expect(h.checks.map((c) => c.trigger)).toEqual(["start"]);
    h.monitor.ringChanged();
    await waitUntil(() => h.checks.length === 2, 2_000, "the ring change's check");
    expect(h.checks.map((c) => c.trigger)).toEqual(["start", "reload"]);
    await h.monitor.stop();
  });

  it("a check under way when stopped changes nothing", async () => {
    const h = harness(lagging);
    h.issuer.hold = true;
    h.monitor.start();
    await waitUntil(() => h.issuer.calls === 1, 2_000, "the start check to begin");
    const stopping = h.monitor.stop();
    h.issuer.release();
    await stopping;
    expect(h.monitor.state()).toEqual({ kind: "unknown" });
    expect(h.checks).toEqual([]);
  });

  it("starts from a carried-over state (a configuration reload) and contains hooks and loggers that throw", async () => {
    const initial: KeyLagState = {
      kind: "behind",
      sinceMs: T0_MS - 5_000,
      lastAgreedAtMs: T0_MS - 9_000,
    };
    const throwing = {
      debug: () => undefined,
      info: () => {
        throw new Error("log");
      },
      warn: () => {
        throw new Error("log");
      },
      error: () => {
        throw new Error("log");
      },
    };
    const h = harness(lagging, {
      initialState: initial,
      logger: throwing,
      onCheck: () => {
        throw new Error("hook");
      },
      onChange: () => {
        throw new Error("hook");
      },
    });
    expect(h.monitor.state()).toBe(initial);
    expect(h.monitor.lastAgreedAtMs()).toBe(T0_MS - 9_000);
    expect(await h.monitor.check("start")).toBe("behind");
    expect(h.monitor.state()).toBe(initial);
    h.keys.ring = synced;
    expect(await h.monitor.check("reload")).toBe("in_sync");
    expect(h.monitor.state()).toEqual({ kind: "in_sync", sinceMs: T0_MS, agreedAtMs: T0_MS });
  });
});

describe("freshTokenFrom", () => {
  const clock = new ManualClock();
  function serviceToken(initial: ServiceTokenState, next: ServiceTokenState, ensured?: string) {
    const calls = { refresh: 0, ensure: 0 };
    let state = initial;
    return {
      calls,
      snapshot: () => state,
      refresh: () => {
        calls.refresh++;
        state = next;
        return Promise.resolve(state);
      },
      ensure: () => {
        calls.ensure++;
        return Promise.resolve(ensured);
      },
    };
  }
  const valid = (token: string, obtainedAtMs: number): ServiceTokenState => ({
    kind: "valid",
    token,
    obtainedAtMs,
    expiresAtMs: obtainedAtMs + 3_600_000,
  });

  it("with a token in hand, re-authenticates: a token obtained now is fresh", async () => {
    const s = serviceToken(valid("old", T0_MS - 60_000), valid("new", T0_MS));
    expect(await freshTokenFrom(s, clock)()).toEqual({ kind: "issued", token: "new" });
    expect(s.calls).toEqual({ refresh: 1, ensure: 0 });
  });

  it("a re-authentication that failed leaves the old token: not fresh, a failed check", async () => {
    const old = valid("old", T0_MS - 60_000);
    const s = serviceToken(old, old);
    expect(await freshTokenFrom(s, clock)()).toMatchObject({ kind: "failed" });
    const lost = serviceToken(old, { kind: "none", lastError: "http://k/v3: HTTP 401" });
    expect(await freshTokenFrom(lost, clock)()).toEqual({
      kind: "failed",
      reason: "http://k/v3: HTTP 401",
    });
  });

  it("without a token, waits for ensure() (which keeps the back-off after refused credentials)", async () => {
    const s = serviceToken({ kind: "none" }, { kind: "none" }, "first");
    expect(await freshTokenFrom(s, clock)()).toEqual({ kind: "issued", token: "first" });
    expect(s.calls).toEqual({ refresh: 0, ensure: 1 });
    const backingOff = serviceToken({ kind: "none", lastError: "HTTP 401" }, { kind: "none" });
    expect(await freshTokenFrom(backingOff, clock)()).toEqual({
      kind: "failed",
      reason: "HTTP 401",
    });
  });
});
