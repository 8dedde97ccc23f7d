import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { staticKeyRing } from "../../src/fernet/key-ring.js";
import { TokenDecoder } from "../../src/token/decoder.js";
import { DEFAULT_AUTH_METHODS } from "../../src/token/methods.js";
import { keystoneTime, renderKeystoneFields } from "../../src/token/render.js";
import { fixedClock, type EpochMicros } from "../../src/units.js";
import { makeRing } from "./helpers.js";
import { loadVectors, ringOf } from "../harness/vectors.js";

const fixture = fileURLToPath(new URL("../fixtures/keystone-vectors.json", import.meta.url));

describe("TokenDecoder against Keystone's own tokens (committed vectors)", () => {
  const file = loadVectors(fixture);
  const keys = staticKeyRing(ringOf(file));
  const clock = fixedClock(file.generated_at * 1000);

  it("covers every payload version Keystone 22 writes, and the totp site", () => {
    const versions = new Set(file.vectors.map((v) => v.payload_version));
    expect([...versions].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(file.vectors.some((v) => v.auth_methods.includes("totp"))).toBe(true);
    expect(file.vectors.length).toBeGreaterThanOrEqual(40);
  });

  it.each(file.vectors.map((v) => [v.name, v] as const))("%s", (_name, vector) => {
    const decoder = new TokenDecoder({
      keys,
      authMethods: vector.auth_methods,
      defaultDomainId: file.default_domain_id,
      clock,
    });
    const result = decoder.decode(vector.token);
    expect(result.status).toBe("valid");
    if (result.status !== "valid") return;
    const { payload_version, ...fields } = renderKeystoneFields(result.token);
    expect(fields).toEqual(vector.expected);
    expect(payload_version).toBe(vector.payload_version);
    if (vector.signing_key !== undefined) {
      expect(String(result.token.keyIndex)).toBe(vector.signing_key);
    }
  });
});

describe("TokenDecoder", () => {
  const { ring } = makeRing([0, 1, 2]);
  const expiresAtMicros = 1_900_000_000_750_000 as EpochMicros;
  const payload = {
    kind: "project",
    version: 2,
    userId: "u1",
    methods: ["password"],
    auditIds: ["GGgSgA3DRS-CUo4CYEd1cA"],
    projectId: "p1",
    expiresAtMicros,
  } as const;
  const decoderAt = (ms: number) =>
    new TokenDecoder({ keys: staticKeyRing(ring), clock: fixedClock(ms) });

  it("judges expiry as Keystone does: expires_at cut to the second, now < expires_at", () => {
    const token = decoderAt(0).mint(payload, { issuedAtSeconds: 1_899_990_000 });
    const cut = 1_900_000_000_000;
    expect(decoderAt(cut - 1).decode(token).status).toBe("valid");
    const expired = decoderAt(cut).decode(token);
    expect(expired.status).toBe("expired");
    if (expired.status !== "expired") return;
    expect(expired.error.code).toBe("expired");
    expect(expired.token.payload).toEqual(payload);
    expect(renderKeystoneFields(expired.token).expires_at).toBe("2030-03-17T17:46:40.000000Z");
  });

  it("reports which key verified the token", () => {
    const decoder = decoderAt(0);
    expect(decoder.decode(decoder.mint(payload)).status).toBe("valid");
    const result = decoder.decode(decoder.mint(payload, { keyIndex: 0 }));
    expect(result.status === "valid" && result.token.keyIndex).toBe(0);
    expect(() => decoder.mint(payload, { keyIndex: 9 })).toThrow(/index 9/);
  });

  it("reads the token's methods with the configured list", () => {
    const withTotp = new TokenDecoder({
      keys: staticKeyRing(ring),
      authMethods: [...DEFAULT_AUTH_METHODS, "totp"],
      clock: fixedClock(0),
    });
    const token = withTotp.mint({ ...payload, methods: ["totp", "password"] });
    const read = withTotp.decode(token);
    expect(read.status === "valid" && read.token.payload.methods).toEqual(["totp", "password"]);
    const plain = decoderAt(0).decode(token);
    expect(plain.status === "valid" && plain.token.payload.methods).toEqual([]);
  });

  it("follows the ring it is given: a key removed from the ring stops verifying", () => {
    const source = {
      ring,
      current() {
        return this.ring;
      },
    };
    const decoder = new TokenDecoder({ keys: source, clock: fixedClock(0) });
    const token = decoder.mint(payload, { keyIndex: 1 });
    expect(decoder.decode(token).status).toBe("valid");
    source.ring = makeRing([3, 2]).ring;
    const result = decoder.decode(token);
    expect(result.status === "invalid" && result.error.code).toBe("bad_signature");
  });

  it("formats times as Keystone does", () => {
    expect(keystoneTime(0)).toBe("1970-01-01T00:00:00.000000Z");
    expect(keystoneTime(1_700_000_000.9)).toBe("2023-11-14T22:13:20.000000Z");
  });
});
