import fc from "fast-check";
import { describe, expect, it } from "vitest";

import {
  MIN_SEALED_BYTES,
  SEALED_VERSION,
  open,
  seal,
  type Opened,
} from "../../../src/cache/sealed.js";
import { isKeystoneToken } from "../../../src/token/body.js";
import { CacheKeyer } from "../../../src/cache/token-key.js";
import type { KeystoneToken } from "../../../src/token/body.js";
import { T0_MS, fakeToken, tokenBody } from "../../harness/doubles.js";

const keyer = new CacheKeyer("a memcache secret key of some length");
const otherKeyer = new CacheKeyer("another memcache secret key entirely");
const TOKEN = fakeToken(7);
const KEY = keyer.sealingKey(TOKEN);
const EXPIRES = T0_MS + 300_000;
const BODY = tokenBody("4f9c1c9b3c8e4b7a9d1e2f3a4b5c6d7e");
const SEALED = seal(KEY, BODY, EXPIRES);

function openAt(bytes: Uint8Array, nowMs = T0_MS, key = KEY): Opened<KeystoneToken> {
  return open(key, bytes, nowMs, isKeystoneToken);
}

function failure(result: Opened<unknown>): string | undefined {
  return "failure" in result ? result.failure : undefined;
}

describe("seal / open", () => {
  it("round-trips a token body with its expiry", () => {
    expect(openAt(SEALED)).toEqual({ value: BODY, expiresAtMs: EXPIRES });
  });

  it("lays out version ‖ nonce ‖ ciphertext ‖ tag and hides the contents", () => {
    expect(SEALED[0]).toBe(SEALED_VERSION);
    const json = Buffer.from(JSON.stringify(BODY));
    expect(SEALED.length).toBe(1 + 12 + 8 + json.length + 16);
    expect(SEALED.includes(Buffer.from(BODY.user.id))).toBe(false);
    expect(SEALED.includes(Buffer.from("alice"))).toBe(false);
  });

  it("uses a fresh nonce each time", () => {
    const again = seal(KEY, BODY, EXPIRES);
    expect(again.equals(SEALED)).toBe(false);
    expect(again.subarray(1, 13).equals(SEALED.subarray(1, 13))).toBe(false);
    expect(openAt(again)).toEqual(openAt(SEALED));
  });

  it("refuses an entry at and after its expiry (a replayed old entry)", () => {
    expect(failure(openAt(SEALED, EXPIRES - 1))).toBeUndefined();
    expect(failure(openAt(SEALED, EXPIRES))).toBe("expired");
    expect(failure(openAt(SEALED, EXPIRES + 86_400_000))).toBe("expired");
  });

  it("refuses an entry sealed under another secret, for another token, or moved to another key", () => {
    const foreign = seal(otherKeyer.sealingKey(TOKEN), BODY, EXPIRES);
    expect(failure(openAt(foreign))).toBe("auth");
    const otherToken = seal(keyer.sealingKey(fakeToken(8)), BODY, EXPIRES);
    expect(failure(openAt(otherToken))).toBe("auth");
    // same AES key, other memcached key: the key is bound as associated data
    const moved = { aesKey: KEY.aesKey, boundKey: keyer.keys(fakeToken(9)).memcachedKey };
    expect(failure(openAt(SEALED, T0_MS, moved))).toBe("auth");
  });

  it("refuses plaintext written by a client without the secret", () => {
    expect(failure(openAt(Buffer.from(JSON.stringify(BODY))))).toBe("malformed");
    const lookalike = Buffer.concat([Buffer.of(SEALED_VERSION), Buffer.from(JSON.stringify(BODY))]);
    expect(failure(openAt(lookalike))).toBe("auth");
  });

  it("calls authentic contents of the wrong shape malformed", () => {
    expect(failure(openAt(seal(KEY, { user: 1 }, EXPIRES)))).toBe("malformed");
    expect(failure(openAt(seal(KEY, null, EXPIRES)))).toBe("malformed");
    const throwing = (_v: unknown): _v is never => {
      throw new Error("guard blew up");
    };
    expect(failure(open(KEY, SEALED, T0_MS, throwing))).toBe("malformed");
  });

  it("refuses unknown versions and short inputs as malformed", () => {
    const v2 = Buffer.from(SEALED);
    v2[0] = 2;
    expect(failure(openAt(v2))).toBe("malformed");
    expect(failure(openAt(Buffer.alloc(0)))).toBe("malformed");
    expect(failure(openAt(SEALED.subarray(0, MIN_SEALED_BYTES - 1)))).toBe("malformed");
  });

  it("throws only for caller bugs: values with no JSON form, a non-finite expiry", () => {
    expect(() => seal(KEY, { n: 1n }, EXPIRES)).toThrow(TypeError);
    const cyclic: Record<string, unknown> = {};
    cyclic["self"] = cyclic;
    expect(() => seal(KEY, cyclic, EXPIRES)).toThrow(TypeError);
    expect(() => seal(KEY, undefined, EXPIRES)).toThrow(TypeError);
    expect(() => seal(KEY, BODY, Number.POSITIVE_INFINITY)).toThrow(TypeError);
  });
});

describe("open never throws and never accepts what it did not seal (properties)", () => {
  const failed = (r: Opened<unknown>): boolean => "failure" in r;

  it("random bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2_000 }), (bytes) => {
        expect(failed(openAt(bytes))).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it("random bytes behind our version byte", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: MIN_SEALED_BYTES, maxLength: 2_000 }), (bytes) => {
        const candidate = Buffer.concat([Buffer.of(SEALED_VERSION), bytes]);
        expect(failure(openAt(candidate))).toBe("auth");
      }),
      { numRuns: 2_000 },
    );
  });

  it("every truncation and every extension of a good entry", () => {
    for (let n = 0; n < SEALED.length; n++) {
      expect(failed(openAt(SEALED.subarray(0, n)))).toBe(true);
      expect(failed(openAt(SEALED.subarray(n + 1)))).toBe(true);
    }
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (tail) => {
        expect(failed(openAt(Buffer.concat([SEALED, tail])))).toBe(true);
      }),
    );
  });

  it("every single-bit flip of a good entry", () => {
    for (let bit = 0; bit < SEALED.length * 8; bit++) {
      const flipped = Buffer.from(SEALED);
      flipped[bit >> 3] = (flipped[bit >> 3] ?? 0) ^ (1 << (bit & 7));
      const result = failure(openAt(flipped));
      expect(result).toBe(bit < 8 ? "malformed" : "auth");
    }
  });

  it("random multi-byte corruption", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), {
          minLength: 1,
          maxLength: 8,
        }),
        (edits) => {
          const bytes = Buffer.from(SEALED);
          for (const [at, xor] of edits) {
            const i = at % bytes.length;
            bytes[i] = (bytes[i] ?? 0) ^ xor;
          }
          if (bytes.equals(SEALED)) return; // edits cancelled out
          expect(failed(openAt(bytes))).toBe(true);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it("entries sealed under another secret or for another token, whatever the contents", () => {
    fc.assert(
      fc.property(
        fc.jsonValue(),
        fc.string({ minLength: 1, maxLength: 200 }),
        fc.boolean(),
        (value, token, sameSecret) => {
          fc.pre(token !== TOKEN);
          const sealer = sameSecret ? keyer : otherKeyer;
          // Moved under our key (the only way it would ever be read for TOKEN).
          const bytes = seal(sealer.sealingKey(token, KEY.boundKey), value, EXPIRES);
          expect(failure(open(KEY, bytes, T0_MS, (_v: unknown): _v is unknown => true))).toBe(
            "auth",
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  it("round-trips any JSON value sealed with the right key", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.integer({ min: 1, max: 10_000_000 }), (value, ttlMs) => {
        const bytes = seal(KEY, value, T0_MS + ttlMs);
        const result = open(KEY, bytes, T0_MS, (_v: unknown): _v is unknown => true);
        expect(result).toEqual({
          value: JSON.parse(JSON.stringify(value)) as unknown,
          expiresAtMs: T0_MS + ttlMs,
        });
      }),
      { numRuns: 500 },
    );
  });
});
