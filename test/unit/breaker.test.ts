import { describe, expect, it } from "vitest";

import { CircuitBreaker, type BreakerState } from "../../src/breaker.js";
import { ManualClock, T0_MS } from "../harness/doubles.js";

function setup(failureThreshold = 3, cooldownMs = 1_000) {
  const clock = new ManualClock();
  const transitions: { from: BreakerState["kind"]; to: BreakerState["kind"]; cause?: string }[] =
    [];
  const breaker = new CircuitBreaker({
    failureThreshold,
    cooldownMs,
    clock,
    onTransition: (from, to, cause) => {
      transitions.push({ from: from.kind, to: to.kind, ...(cause !== undefined ? { cause } : {}) });
    },
  });
  const fail = (cause = "boom") => {
    const a = breaker.admit();
    if (a === undefined) throw new Error("refused");
    breaker.failure(a, cause);
  };
  const succeed = () => {
    const a = breaker.admit();
    if (a === undefined) throw new Error("refused");
    breaker.success(a);
  };
  return { clock, breaker, transitions, fail, succeed };
}

describe("CircuitBreaker", () => {
  it("counts consecutive failures while closed; a success starts over", () => {
    const { breaker, fail, succeed } = setup(3);
    expect(breaker.state()).toEqual({ kind: "closed", failures: 0 });
    fail();
    fail();
    expect(breaker.state()).toEqual({ kind: "closed", failures: 2 });
    succeed();
    expect(breaker.state()).toEqual({ kind: "closed", failures: 0 });
    fail();
    fail();
    expect(breaker.state().kind).toBe("closed");
  });

  it("opens after the threshold, for the cooldown, and refuses calls meanwhile", () => {
    const { clock, breaker, transitions, fail } = setup(3, 1_000);
    fail("a");
    fail("b");
    fail("connect ECONNREFUSED 127.0.0.1:11211");
    expect(breaker.state()).toEqual({ kind: "open", sinceMs: T0_MS, untilMs: T0_MS + 1_000 });
    expect(transitions).toEqual([
      { from: "closed", to: "open", cause: "connect ECONNREFUSED 127.0.0.1:11211" },
    ]);
    clock.advance(999);
    expect(breaker.admit()).toBeUndefined();
    expect(breaker.state().kind).toBe("open");
  });

  it("lets exactly one probe through after the cooldown; its success closes", () => {
    const { clock, breaker, transitions, fail } = setup(1, 1_000);
    fail();
    clock.advance(1_000);
    const probe = breaker.admit();
    expect(probe?.probe).toBe(true);
    expect(breaker.state()).toEqual({ kind: "half-open" });
    expect(breaker.admit()).toBeUndefined();
    expect(breaker.admit()).toBeUndefined();
    if (probe === undefined) throw new Error("no probe");
    breaker.success(probe);
    expect(breaker.state()).toEqual({ kind: "closed", failures: 0 });
    expect(breaker.admit()?.probe).toBe(false);
    expect(transitions.map((t) => t.to)).toEqual(["open", "half-open", "closed"]);
  });

  it("re-opens for another cooldown when the probe fails", () => {
    const { clock, breaker, transitions, fail } = setup(1, 1_000);
    fail();
    clock.advance(5_000);
    const probe = breaker.admit();
    if (probe === undefined) throw new Error("no probe");
    breaker.failure(probe, "still down");
    expect(breaker.state()).toEqual({
      kind: "open",
      sinceMs: T0_MS + 5_000,
      untilMs: T0_MS + 6_000,
    });
    expect(transitions.at(-1)).toEqual({ from: "half-open", to: "open", cause: "still down" });
    clock.advance(999);
    expect(breaker.admit()).toBeUndefined();
    clock.advance(1);
    expect(breaker.admit()?.probe).toBe(true);
  });

  it("ignores outcomes of calls admitted before the latest transition", () => {
    const { clock, breaker, fail } = setup(2, 1_000);
    const early = breaker.admit();
    const early2 = breaker.admit();
    if (early === undefined || early2 === undefined) throw new Error("refused");
    fail();
    fail();
    expect(breaker.state().kind).toBe("open");
    breaker.success(early); // a late success from before does not close it
    expect(breaker.state().kind).toBe("open");
    clock.advance(1_000);
    const probe = breaker.admit();
    if (probe === undefined) throw new Error("no probe");
    breaker.failure(early2, "late"); // a late failure does not decide the probe
    expect(breaker.state()).toEqual({ kind: "half-open" });
    breaker.success(probe);
    expect(breaker.state()).toEqual({ kind: "closed", failures: 0 });
    breaker.failure(probe, "again"); // a probe reporting twice changes nothing
    expect(breaker.state()).toEqual({ kind: "closed", failures: 0 });
  });

  it("survives a transition hook that throws", () => {
    const breaker = new CircuitBreaker({
      failureThreshold: 1,
      onTransition: () => {
        throw new Error("hook");
      },
    });
    const a = breaker.admit();
    if (a === undefined) throw new Error("refused");
    expect(() => {
      breaker.failure(a, "x");
    }).not.toThrow();
    expect(breaker.state().kind).toBe("open");
  });

  it("uses 5 failures and 5 s by default, and refuses nonsense options", () => {
    const clock = new ManualClock();
    const breaker = new CircuitBreaker({ clock });
    for (let i = 0; i < 4; i++) {
      const a = breaker.admit();
      if (a) breaker.failure(a, "x");
    }
    expect(breaker.state()).toEqual({ kind: "closed", failures: 4 });
    const a = breaker.admit();
    if (a) breaker.failure(a, "x");
    expect(breaker.state()).toEqual({ kind: "open", sinceMs: T0_MS, untilMs: T0_MS + 5_000 });
    expect(() => new CircuitBreaker({ failureThreshold: 0 })).toThrow(RangeError);
    expect(() => new CircuitBreaker({ cooldownMs: -1 })).toThrow(RangeError);
  });

  it("with background probing, never makes an ordinary call the probe", () => {
    const clock = new ManualClock();
    const breaker = new CircuitBreaker({
      failureThreshold: 1,
      cooldownMs: 1_000,
      clock,
      probe: "background",
    });
    const first = breaker.admit();
    if (first === undefined) throw new Error("refused");
    expect(breaker.admitProbe()).toBeUndefined(); // closed: nothing to probe
    breaker.failure(first, "down");
    expect(breaker.admitProbe()).toBeUndefined(); // cooldown not over
    clock.advance(5_000);
    expect(breaker.admit()).toBeUndefined(); // still open for requests, however long
    const probe = breaker.admitProbe();
    expect(probe?.probe).toBe(true);
    expect(breaker.state().kind).toBe("half-open");
    expect(breaker.admitProbe()).toBeUndefined(); // one probe at a time
    expect(breaker.admit()).toBeUndefined();
    if (probe === undefined) throw new Error("no probe");
    breaker.failure(probe, "still down");
    expect(breaker.state()).toMatchObject({ kind: "open", untilMs: clock.nowMs() + 1_000 });
    clock.advance(1_000);
    const again = breaker.admitProbe();
    if (again === undefined) throw new Error("no probe");
    breaker.success(again);
    expect(breaker.state()).toEqual({ kind: "closed", failures: 0 });
    expect(breaker.admit()?.probe).toBe(false);
  });

  it("starts where it is told (a reload carrying over an outage); half-open starts due for a probe", () => {
    const clock = new ManualClock();
    const open = new CircuitBreaker({
      clock,
      cooldownMs: 1_000,
      initial: { kind: "open", sinceMs: T0_MS - 500, untilMs: T0_MS + 500 },
    });
    expect(open.admit()).toBeUndefined();
    clock.advance(500);
    expect(open.admit()?.probe).toBe(true);

    const halfOpen = new CircuitBreaker({ clock, initial: { kind: "half-open" } });
    expect(halfOpen.state().kind).toBe("open");
    const probe = halfOpen.admit();
    expect(probe?.probe).toBe(true);
    if (probe === undefined) throw new Error("no probe");
    halfOpen.success(probe);
    expect(halfOpen.state()).toEqual({ kind: "closed", failures: 0 });

    const counting = new CircuitBreaker({
      clock,
      failureThreshold: 3,
      initial: { kind: "closed", failures: 2 },
    });
    const a = counting.admit();
    if (a === undefined) throw new Error("refused");
    counting.failure(a, "third");
    expect(counting.state().kind).toBe("open");
  });
});
