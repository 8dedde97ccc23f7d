import { describe, expect, it } from "vitest";

import type { KeyRingFault } from "../../../src/drill/key-view.js";
import { drillKeyView } from "../../../src/drill/key-view.js";
import type { KeyRing } from "../../../src/fernet/key-ring.js";
import { makeRing } from "../helpers.js";

describe("drillKeyView", () => {
  it("is the repository's ring, but for a key-lag drill's hidden primary; follows reloads; builds the narrowed ring once per ring", () => {
    let ring: KeyRing = makeRing([0, 1, 2]).ring;
    let fault: KeyRingFault = "pass";
    const view = drillKeyView({ current: () => ring }, () => fault);
    expect(view.current()).toBe(ring);
    fault = "primary_hidden";
    const narrowed = view.current();
    expect(narrowed.primary.index).toBe(1);
    expect(narrowed.keys).not.toContain(ring.primary.key);
    expect(view.current()).toBe(narrowed);
    // A rotation synced during the drill: the new ring, less its own primary.
    ring = makeRing([0, 1, 2, 3]).ring;
    expect(view.current().entries.map((e) => e.index)).toEqual([2, 1, 0]);
    fault = "pass";
    expect(view.current()).toBe(ring);
    // A ring shrunk to one key by a reload mid-drill stays whole rather than empty.
    ring = makeRing([0]).ring;
    fault = "primary_hidden";
    expect(view.current()).toBe(ring);
  });
});
