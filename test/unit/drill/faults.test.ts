import { afterEach, describe, expect, it, vi } from "vitest";

import { FaultInjector, type DrillState } from "../../../src/drill/faults.js";
import type { EpochMillis } from "../../../src/units.js";

function injector(memcached = true) {
  let now = 1_000_000;
  const changes: DrillState["kind"][] = [];
  const faults = new FaultInjector({
    endpoints: ["regional", "master"],
    memcached,
    clock: { nowMs: () => now as EpochMillis },
    onChange: (s) => changes.push(s.kind),
  });
  return {
    faults,
    changes,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("FaultInjector", () => {
  it("master-outage blackholes the named endpoint only, or the first by default", () => {
    const { faults } = injector();
    expect(faults.start({ scenario: "master-outage", durationSeconds: 5 }).kind).toBe("started");
    expect(faults.keystone("regional")).toBe("blackhole");
    expect(faults.keystone("master")).toBe("pass");
    expect(faults.memcached()).toBe("pass");
    faults.stop();
    faults.start({ scenario: "master-outage", durationSeconds: 5, endpoint: "master" });
    expect([faults.keystone("regional"), faults.keystone("master")]).toEqual(["pass", "blackhole"]);
    faults.close();
  });

  it("keystone-outage blackholes every endpoint; memcached-outage only memcached; watch drills nothing", () => {
    const { faults } = injector();
    faults.start({ scenario: "keystone-outage", durationSeconds: 5 });
    expect([faults.keystone("regional"), faults.keystone("master")]).toEqual([
      "blackhole",
      "blackhole",
    ]);
    faults.stop();
    faults.start({ scenario: "memcached-outage", durationSeconds: 5 });
    expect([faults.keystone("regional"), faults.memcached()]).toEqual(["pass", "unreachable"]);
    faults.stop();
    for (const scenario of ["key-rotation", "revocation"] as const) {
      faults.start({ scenario, durationSeconds: 5 });
      expect(faults.current().kind).toBe("active");
      expect([faults.keystone("regional"), faults.memcached()]).toEqual(["pass", "pass"]);
      faults.stop();
    }
  });

  it("a drill expires by itself at its time, even before its timer fires (clock checked on every call)", () => {
    const { faults, changes, advance } = injector();
    faults.start({ scenario: "keystone-outage", durationSeconds: 2 });
    advance(1_999);
    expect(faults.keystone("master")).toBe("blackhole");
    advance(1);
    expect(faults.keystone("master")).toBe("pass");
    expect(faults.current().kind).toBe("idle");
    expect(changes).toEqual(["active", "idle"]);
  });

  it("the expiry timer ends a drill nobody asks about", () => {
    vi.useFakeTimers();
    const faults = new FaultInjector({ endpoints: ["a"], memcached: false });
    faults.start({ scenario: "master-outage", durationSeconds: 3 });
    vi.advanceTimersByTime(3_000);
    expect(faults.current().kind).toBe("idle");
  });

  it("refuses a second drill, an unknown endpoint, a memcached drill without memcached, a bad duration", () => {
    const { faults } = injector(false);
    const first = faults.start({ scenario: "revocation", durationSeconds: 5 });
    expect(faults.start({ scenario: "keystone-outage", durationSeconds: 5 })).toMatchObject({
      kind: "busy",
      drill: { scenario: "revocation" },
    });
    if (first.kind !== "started") throw new Error("not started");
    expect(faults.stop("someone-else")).toBeUndefined();
    expect(faults.stop(first.drill.id)?.id).toBe(first.drill.id);
    expect(
      faults.start({ scenario: "master-outage", durationSeconds: 5, endpoint: "nowhere" }),
    ).toEqual({ kind: "unknown_endpoint", endpoint: "nowhere", known: ["regional", "master"] });
    expect(faults.start({ scenario: "memcached-outage", durationSeconds: 5 }).kind).toBe(
      "no_memcached",
    );
    for (const durationSeconds of [0, -1, Number.NaN, 3_601]) {
      expect(faults.start({ scenario: "revocation", durationSeconds }).kind).toBe("bad_duration");
    }
    expect(faults.current().kind).toBe("idle");
  });

  it("key-lag hides the primary key until the drill ends, and only then; a ring of one key cannot lose it", () => {
    let keys = 2;
    let now = 0;
    const faults = new FaultInjector({
      endpoints: ["master"],
      memcached: false,
      keyCount: () => keys,
      clock: { nowMs: () => now as EpochMillis },
    });
    expect(faults.keyRing()).toBe("pass");
    expect(faults.start({ scenario: "key-lag", durationSeconds: 5 }).kind).toBe("started");
    expect([faults.keyRing(), faults.keystone("master"), faults.memcached()]).toEqual([
      "primary_hidden",
      "pass",
      "pass",
    ]);
    now += 5_000;
    expect(faults.keyRing()).toBe("pass");
    faults.start({ scenario: "key-rotation", durationSeconds: 5 });
    expect(faults.keyRing()).toBe("pass");
    faults.stop();
    keys = 1;
    expect(faults.start({ scenario: "key-lag", durationSeconds: 5 })).toEqual({
      kind: "single_key",
    });
    expect(faults.current().kind).toBe("idle");
  });
});
