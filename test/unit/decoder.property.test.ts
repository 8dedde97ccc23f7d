/**
 * Property tests: whatever the input, the decoder answers with a typed verdict and never
 * throws. Mutations and truncations of a valid token never verify.
 */
import { encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { TokenErrorCode } from "../../src/errors.js";
import { sealEnvelope } from "../../src/fernet/envelope.js";
import { staticKeyRing } from "../../src/fernet/key-ring.js";
import { TokenDecoder, type DecodeResult } from "../../src/token/decoder.js";
import { fixedClock, type EpochMicros } from "../../src/units.js";
import { makeRing } from "./helpers.js";

const CODES: readonly TokenErrorCode[] = [
  "malformed",
  "bad_signature",
  "bad_payload",
  "unsupported_version",
  "expired",
];

const { ring } = makeRing([0, 1, 2]);
const decoder = new TokenDecoder({
  keys: staticKeyRing(ring),
  clock: fixedClock(1_800_000_000_000),
});
const valid = decoder.mint({
  kind: "project",
  version: 2,
  userId: "3ec3164f750146be97f21559ee4d9c51",
  methods: ["password"],
  auditIds: ["GGgSgA3DRS-CUo4CYEd1cA"],
  projectId: "9438ea8b15eb47a2a2a29269380c8c38",
  expiresAtMicros: 1_900_000_000_000_000 as EpochMicros,
});

function decodeSafely(token: string): DecodeResult {
  let result: DecodeResult | undefined;
  expect(() => {
    result = decoder.decode(token);
  }).not.toThrow();
  if (!result) throw new Error("no result");
  if (result.status !== "valid") expect(CODES).toContain(result.error.code);
  return result;
}

const B64 = Array.from(
  { length: 64 },
  (_, i) => "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[i] as string,
);

describe("decoder properties", () => {
  it("the unmodified token is valid (sanity for the properties below)", () => {
    expect(decoder.decode(valid).status).toBe("valid");
  });

  it("any single-character substitution is rejected", () => {
    fc.assert(
      fc.property(
        fc.nat({ max: valid.length - 1 }),
        fc.constantFrom(...B64, "=", "+", "/", " ", "\u00e9", "\0"),
        (at, ch) => {
          fc.pre(valid[at] !== ch);
          const mutated = valid.slice(0, at) + ch + valid.slice(at + 1);
          // The last character carries 2 unused bits in base64: changing only those can leave
          // the bytes identical. Such a string is the same token, so it may verify.
          const same =
            Buffer.from(mutated, "base64url").equals(Buffer.from(valid, "base64url")) &&
            /^[A-Za-z0-9_-]+$/.test(mutated);
          const result = decodeSafely(mutated);
          if (!same) expect(result.status).toBe("invalid");
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("any bit flip in the token's bytes is rejected", () => {
    const bytes = Buffer.from(valid, "base64url");
    fc.assert(
      fc.property(fc.nat({ max: bytes.length - 1 }), fc.nat({ max: 7 }), (at, bit) => {
        const copy = Buffer.from(bytes);
        copy[at] = (copy[at] as number) ^ (1 << bit);
        expect(decodeSafely(copy.toString("base64url")).status).toBe("invalid");
      }),
      { numRuns: 2000 },
    );
  });

  it("any truncation or extension is rejected", () => {
    fc.assert(
      fc.property(fc.nat({ max: valid.length - 1 }), fc.string({ maxLength: 40 }), (cut, tail) => {
        expect(decodeSafely(valid.slice(0, cut)).status).toBe("invalid");
        if (tail.length > 0 && !/^=*$/.test(tail)) {
          expect(decodeSafely(valid + tail).status).toBe("invalid");
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("arbitrary strings, of any length and any characters, get a typed error", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 400 }),
          fc.string({ unit: "binary", maxLength: 400 }),
          fc.stringMatching(/^gAAAAA[A-Za-z0-9_-]{60,300}$/),
          fc
            .uint8Array({ minLength: 0, maxLength: 400 })
            .map((b) => Buffer.from(b).toString("base64url")),
        ),
        (input) => {
          expect(decodeSafely(input).status).toBe("invalid");
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("any bytes or any msgpack value, correctly signed, never crash the payload reader", () => {
    const key = ring.primary.key;
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc
            .anything({
              maxDepth: 3,
              withNullPrototype: false,
              withBigInt: false,
              withTypedArray: true,
            })
            .map((v) => {
              try {
                return encode(v);
              } catch {
                return new Uint8Array([0xc0]);
              }
            }),
          fc
            .tuple(
              fc.integer({ min: -2, max: 12 }),
              fc.array(
                fc.oneof(
                  fc.boolean(),
                  fc.integer(),
                  fc.double(),
                  fc.string(),
                  fc.uint8Array({ maxLength: 20 }),
                  fc.tuple(fc.boolean(), fc.oneof(fc.string(), fc.uint8Array({ maxLength: 20 }))),
                ),
                { maxLength: 9 },
              ),
            )
            .map(([version, rest]) => encode([version, ...rest])),
        ),
        (plaintext) => {
          decodeSafely(sealEnvelope(plaintext, key));
        },
      ),
      { numRuns: 3000 },
    );
  });
});
