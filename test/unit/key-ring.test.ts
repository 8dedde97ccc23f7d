import { describe, expect, it } from "vitest";
import { KeyRing } from "../../src/fernet/key-ring.js";
import { makeRing } from "./helpers.js";

describe("KeyRing", () => {
  it("orders keys as Keystone does: primary (highest) first, descending, staged 0 last", () => {
    const { ring } = makeRing([3, 0, 5, 4]);
    expect(ring.entries.map((e) => e.index)).toEqual([5, 4, 3, 0]);
    expect(ring.entries.map((e) => e.role)).toEqual([
      "primary",
      "secondary",
      "secondary",
      "staged",
    ]);
    expect(ring.primary.index).toBe(5);
    expect(ring.keys[0]).toBe(ring.primary.key);
  });

  it("treats a lone key 0 as the primary", () => {
    const { ring } = makeRing([0]);
    expect(ring.primary.role).toBe("primary");
  });

  it("refuses an empty ring and duplicate indexes", () => {
    expect(() => KeyRing.from([])).toThrow(/at least one/);
    const { ring } = makeRing([1]);
    const key = ring.primary.key;
    expect(() =>
      KeyRing.from([
        { index: 1, key },
        { index: 1, key },
      ]),
    ).toThrow(/share index 1/);
  });

  it("has a signature that changes with a rotation", () => {
    const a = makeRing([0, 1]);
    const b = KeyRing.from(a.ring.entries.map((e) => ({ index: e.index, key: e.key })));
    expect(b.signature).toBe(a.ring.signature);
    const rotated = KeyRing.from([
      ...a.ring.entries.map((e) => ({ index: e.index === 0 ? 2 : e.index, key: e.key })),
      { index: 0, key: makeRing([0]).ring.primary.key },
    ]);
    expect(rotated.signature).not.toBe(a.ring.signature);
  });

  it("without its primary: the next key takes the role, the rest keep theirs, the ring itself is unchanged; a lone key has no such ring", () => {
    const { ring } = makeRing([0, 4, 5]);
    const lagging = ring.withoutPrimary();
    expect(lagging?.entries.map((e) => [e.index, e.role])).toEqual([
      [4, "primary"],
      [0, "staged"],
    ]);
    expect(lagging?.keys).toEqual([ring.keys[1], ring.keys[2]]);
    expect(ring.primary.index).toBe(5);
    expect(ring.size).toBe(3);
    expect(makeRing([0]).ring.withoutPrimary()).toBeUndefined();
  });
});
