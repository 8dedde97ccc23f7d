/**
 * The relay's two bounds on their own: the in-flight limit (no queue, idempotent release)
 * and the byte budget (growth refused past the cap, released once, nothing after).
 */
import { describe, expect, it } from "vitest";

import { ByteBudget } from "../../../src/identity/byte-budget.js";
import { InFlightLimit } from "../../../src/identity/in-flight-limit.js";

describe("InFlightLimit", () => {
  it("hands out max slots, refuses the next at once, and counts a release once", () => {
    const deltas: number[] = [];
    const limit = new InFlightLimit({ max: 2, onChange: (d) => deltas.push(d) });
    const a = limit.tryAcquire();
    const b = limit.tryAcquire();
    expect(a).toBeDefined();
    expect(b).toBeDefined();
    expect(limit.tryAcquire()).toBeUndefined();
    expect(limit.inFlight).toBe(2);
    a?.release();
    a?.release();
    expect(limit.inFlight).toBe(1);
    expect(limit.tryAcquire()).toBeDefined();
    expect(deltas).toEqual([1, 1, -1, 1]);
  });

  it("refuses a max that is not a positive integer", () => {
    expect(() => new InFlightLimit({ max: 0 })).toThrow(RangeError);
    expect(() => new InFlightLimit({ max: 1.5 })).toThrow(RangeError);
  });
});

describe("ByteBudget", () => {
  it("grows reservations up to the cap, refuses past it without change, and releases once", () => {
    const deltas: number[] = [];
    const budget = new ByteBudget({ maxBytes: 100, onChange: (d) => deltas.push(d) });
    const a = budget.open();
    const b = budget.open();
    expect(a.ensure(60)).toBe(true);
    expect(a.ensure(40)).toBe(true); // holds more already
    expect(b.ensure(50)).toBe(false); // 110 > 100: refused, nothing taken
    expect(b.bytes).toBe(0);
    expect(b.ensure(40)).toBe(true);
    expect(budget.usedBytes).toBe(100);
    a.release();
    a.release();
    expect(a.bytes).toBe(0);
    expect(a.ensure(1)).toBe(false); // released: grows no more
    expect(budget.usedBytes).toBe(40);
    b.release();
    expect(budget.usedBytes).toBe(0);
    expect(deltas).toEqual([60, 40, -60, -40]);
  });

  it("refuses a cap that is not a positive integer", () => {
    expect(() => new ByteBudget({ maxBytes: 0 })).toThrow(RangeError);
  });
});
