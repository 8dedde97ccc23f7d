import { describe, expect, it } from "vitest";

import { isKeystoneToken } from "../../../src/token/body.js";
import { tokenBody } from "../../harness/doubles.js";

describe("isKeystoneToken", () => {
  it("accepts token bodies and refuses other JSON", () => {
    expect(isKeystoneToken(tokenBody())).toBe(true);
    for (const v of [
      null,
      [],
      "x",
      1,
      {},
      { user: {} },
      { user: { id: 1 }, methods: [], expires_at: "" },
    ]) {
      expect(isKeystoneToken(v)).toBe(false);
    }
  });
});
