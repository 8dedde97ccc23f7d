/**
 * wireHeaderValue: what Node can send, and what a PEP 3333 WSGI server makes of it.
 */
import { validateHeaderValue } from "node:http";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { wireHeaderValue } from "../../../src/contract/wire.js";

/** What a WSGI server puts in the environ for the bytes Node writes for `wire`. */
function environString(wire: string): string {
  return Buffer.from(wire, "latin1").toString("latin1");
}

describe("wireHeaderValue", () => {
  it("keeps ASCII and ISO-8859-1 values as they are: the service gets keystonemiddleware's string", () => {
    for (const value of ["admin", "", "a\tb", "Jürgen Ñandú", "Acme Ünïcødé", "\u00ff\u0080"]) {
      expect(wireHeaderValue(value)).toBe(value);
      expect(environString(value)).toBe(value);
    }
  });

  it("sends characters above U+00FF as UTF-8 bytes, recoverable by the service", () => {
    const wire = wireHeaderValue("研究 project 😀");
    expect(wire).toBe(Buffer.from("研究 project 😀", "utf8").toString("latin1"));
    expect(Buffer.from(wire ?? "", "latin1").toString("utf8")).toBe("研究 project 😀");
  });

  it("refuses values no HTTP hop can carry (CR, LF, NUL, other controls, DEL)", () => {
    for (const value of ["a\r\nX-Roles: admin", "a\nb", "\0", "\u001b[0m", "x\u007f", "研\n"]) {
      expect(wireHeaderValue(value)).toBeUndefined();
    }
  });

  it("always yields something Node's HTTP stack accepts", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), (value) => {
        const wire = wireHeaderValue(value);
        if (wire !== undefined) expect(() => validateHeaderValue("x-v", wire)).not.toThrow();
      }),
      { numRuns: 2000 },
    );
  });
});
