/**
 * The in-place reader against @msgpack/msgpack as the oracle: whatever the library writes,
 * the reader reads back the same value or skips it exactly.
 */
import { encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MsgpackReader, MsgpackShapeError } from "../../src/token/msgpack-reader.js";

const reader = (v: unknown): MsgpackReader => new MsgpackReader(Buffer.from(encode(v)));

describe("MsgpackReader", () => {
  it("reads every integer encoding the library writes", () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), (n) => {
        const r = reader(n);
        expect(r.integer("n")).toBe(n);
        expect(r.atEnd).toBe(true);
      }),
      { numRuns: 2000 },
    );
    for (const n of [
      0,
      127,
      128,
      255,
      256,
      65535,
      65536,
      2 ** 32 - 1,
      2 ** 32,
      -1,
      -32,
      -33,
      -128,
      -129,
      -32768,
      -32769,
      -(2 ** 31),
      -(2 ** 31) - 1,
    ]) {
      expect(reader(n).integer("n")).toBe(n);
    }
  });

  it("refuses 64-bit integers that do not fit a double exactly", () => {
    const big = Buffer.from([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    expect(() => new MsgpackReader(big).integer("n")).toThrow(MsgpackShapeError);
  });

  it("reads floats and integers as numbers", () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true }), (x) => {
        // -0 is written as the integer 0 by the library; equal by ===.
        expect(reader(x).number("x") === x).toBe(true);
      }),
    );
    expect(new MsgpackReader(Buffer.from([0xca, 0x3f, 0xc0, 0, 0])).number("f32")).toBe(1.5);
  });

  it("reads text of every length and script as strict UTF-8", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 300 }), (s) => {
        const r = reader(s);
        expect(r.text("s")).toBe(s);
        expect(r.atEnd).toBe(true);
      }),
    );
    const long = "x".repeat(70_000);
    expect(reader(long).text("s")).toBe(long);
    const invalid = Buffer.from([0xa2, 0xc3, 0x28]);
    expect(() => new MsgpackReader(invalid).text("s")).toThrow(/UTF-8/);
  });

  it("reads 16 bytes as hex and any bytes as base64url, from bin or str", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
        const hex = Buffer.from(b).toString("hex");
        expect(reader(b).uuidHex("id")).toBe(hex);
        const raw = Buffer.concat([Buffer.from([0xb0]), b]); // fixstr of 16: msgpack < 1.0
        expect(new MsgpackReader(raw).uuidHex("id")).toBe(hex);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        expect(reader(b).base64url("a")).toBe(Buffer.from(b).toString("base64url"));
      }),
    );
    expect(() => reader(new Uint8Array(15)).uuidHex("id")).toThrow(/16-byte/);
  });

  it("reads array headers of every size", () => {
    for (const n of [0, 15, 16, 65535, 65536]) {
      const r = reader(new Array(n).fill(0));
      expect(r.arrayLength("a")).toBe(n);
    }
  });

  it("skips exactly one value of any type the library writes", () => {
    fc.assert(
      fc.property(
        fc.anything({
          maxDepth: 4,
          withBigInt: false,
          withTypedArray: true,
          withNullPrototype: false,
        }),
        fc.integer(),
        (value, after) => {
          let bytes: Uint8Array;
          try {
            bytes = encode([value, after]);
          } catch {
            return; // values the library itself cannot encode
          }
          const r = new MsgpackReader(Buffer.from(bytes));
          expect(r.arrayLength("pair")).toBe(2);
          r.skip();
          expect(r.integer("after")).toBe(after);
          expect(r.atEnd).toBe(true);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("only ever throws MsgpackShapeError on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const r = new MsgpackReader(Buffer.from(bytes));
        try {
          r.skip();
          r.arrayLength("a");
        } catch (error) {
          expect(error).toBeInstanceOf(MsgpackShapeError);
        }
      }),
      { numRuns: 5000 },
    );
  });

  it("refuses nesting deeper than it will skip", () => {
    let v: unknown = 1;
    for (let i = 0; i < 40; i++) v = [v];
    expect(() => reader(v).skip()).toThrow(/deeply/);
  });
});
