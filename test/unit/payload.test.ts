import { encode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";
import { TokenError } from "../../src/errors.js";
import { AuthMethods } from "../../src/token/methods.js";
import {
  decodePayload,
  encodePayload,
  pythonTimestampMicros,
  uuidBytes,
  type TokenPayload,
} from "../../src/token/payload.js";
import type { EpochMicros } from "../../src/units.js";

const options = { authMethods: new AuthMethods(), defaultDomainId: "default" };
const exp = 1_900_000_000_123_456 as EpochMicros;
const base = {
  userId: "3ec3164f750146be97f21559ee4d9c51",
  methods: ["token", "password"],
  auditIds: ["GGgSgA3DRS-CUo4CYEd1cA"],
  expiresAtMicros: exp,
} as const;
const fed = {
  groupIds: ["0b9c5e8b43b44f1d9f0cd2b9b5d0d6d1", "engineering"],
  identityProviderId: "acme-idp",
  protocolId: "saml2",
};

const samples: TokenPayload[] = [
  { ...base, kind: "unscoped", version: 0 },
  { ...base, kind: "domain", version: 1, domainId: "default" },
  { ...base, kind: "domain", version: 1, domainId: "a1b2c3d4e5f60718293a4b5c6d7e8f90" },
  { ...base, kind: "project", version: 2, projectId: "proj_non_uuid-42" },
  {
    ...base,
    userId: "cn=José,ou=users,dc=example",
    kind: "project",
    version: 2,
    projectId: "9438ea8b15eb47a2a2a29269380c8c38",
  },
  {
    ...base,
    kind: "trust",
    version: 3,
    projectId: "p1",
    trustId: "5c7a1c9e3a2b4d6f8e0a1b2c3d4e5f60",
  },
  { ...base, kind: "federated-unscoped", version: 4, federation: fed },
  {
    ...base,
    kind: "federated-project",
    version: 5,
    projectId: "p2",
    federation: { ...fed, groupIds: [] },
  },
  { ...base, kind: "federated-domain", version: 6, domainId: "default", federation: fed },
  {
    ...base,
    kind: "oauth1",
    version: 7,
    projectId: "p3",
    accessTokenId: "f00dfeedf00dfeedf00dfeedf00dfeed",
  },
  { ...base, kind: "system", version: 8, system: "all" },
  { ...base, kind: "application-credential", version: 9, projectId: "p4", appCredId: "用户-ü" },
  {
    ...base,
    kind: "oauth2-credential",
    version: 10,
    projectId: "p5",
    domainId: "default",
    thumbprint: "q83vEjRWeJCrze8SNFZ4kA",
  },
];

function decode(bytes: Uint8Array, opts = options): TokenPayload | TokenError {
  return decodePayload(bytes, opts);
}

function codeOf(result: TokenPayload | TokenError): string | undefined {
  return result instanceof TokenError ? result.code : undefined;
}

describe("payloads", () => {
  it.each(samples.map((s) => [`v${s.version} ${s.kind}`, s] as const))(
    "round-trips %s",
    (_name, payload) => {
      expect(decode(encodePayload(payload, options))).toEqual(payload);
    },
  );

  it("stores UUID ids as 16 raw bytes and other ids as strings", () => {
    const bytes = encodePayload(samples[3] as TokenPayload, options);
    const text = Buffer.from(bytes).toString("latin1");
    expect(text).toContain("proj_non_uuid-42");
    expect(text).not.toContain(base.userId);
    expect(uuidBytes("3EC3164F-7501-46BE-97F2-1559EE4D9C51")?.length).toBe(16);
    expect(uuidBytes("{urn:uuid:3ec3164f-7501-46be-97f2-1559ee4d9c51}")?.length).toBe(16);
    expect(uuidBytes("not-a-uuid")).toBeUndefined();
  });

  it("renders a dashed or upper-case UUID id as Keystone does: 32 lowercase hex", () => {
    const payload = {
      ...base,
      userId: "3EC3164F-7501-46BE-97F2-1559EE4D9C51",
      kind: "unscoped",
      version: 0,
    } as const;
    const decoded = decode(encodePayload(payload, options));
    expect((decoded as TokenPayload).userId).toBe("3ec3164f750146be97f21559ee4d9c51");
  });

  it("reads old-format msgpack, where every string is raw bytes", () => {
    // msgpack < 1.0 wrote 16-byte ids as `str` (raw) too: bytes that are not UTF-8.
    const uuid = Buffer.from(base.userId, "hex");
    const raw = (b: Uint8Array): Uint8Array => {
      // fixstr header with the bytes, as use_bin_type=False writes them
      return Buffer.concat([Buffer.from([0xa0 | b.length]), b]);
    };
    const parts = [
      Buffer.from([0x96]), // fixarray of 6
      Buffer.from(encode(2)),
      Buffer.concat([Buffer.from([0x92, 0xc3]), raw(uuid)]), // [true, raw 16 bytes]
      Buffer.from(encode(2)),
      Buffer.concat([Buffer.from([0x92, 0xc2]), raw(Buffer.from("proj"))]),
      Buffer.from(encode(1_900_000_000.5)),
      Buffer.concat([Buffer.from([0x91]), raw(Buffer.from(base.auditIds[0], "base64url"))]),
    ];
    const decoded = decode(Buffer.concat(parts));
    expect(decoded).toMatchObject({ kind: "project", userId: base.userId, projectId: "proj" });
    expect((decoded as TokenPayload).auditIds).toEqual(base.auditIds);
  });

  it("keeps a leading byte-order mark in an id, as Python's UTF-8 decoding does", () => {
    const payload = { ...base, userId: "\ufeffadmin", kind: "unscoped", version: 0 } as const;
    const decoded = decode(encodePayload(payload, options));
    expect((decoded as TokenPayload).userId).toBe("\ufeffadmin");
    expect((decoded as TokenPayload).userId).not.toBe("admin");
  });

  it("reads the default-domain literal only when it is the configured default domain", () => {
    const bytes = encodePayload(samples[1] as TokenPayload, options);
    expect(decode(bytes)).toMatchObject({ domainId: "default" });
    const elsewhere = { ...options, defaultDomainId: "corp" };
    expect(codeOf(decode(bytes, elsewhere))).toBe("bad_payload");
    expect(() =>
      encodePayload({ ...base, kind: "domain", version: 1, domainId: "corp" }, options),
    ).toThrow(/UUID or the default/);
  });

  it("accepts extra trailing fields, as Keystone ignores them", () => {
    const packed = encode([
      2,
      [false, "u"],
      2,
      [false, "p"],
      1.9e9,
      [new Uint8Array(16)],
      "future-field",
    ]);
    expect(decode(packed)).toMatchObject({ kind: "project", userId: "u", projectId: "p" });
  });

  it("accepts an integer expires_at (older Keystones)", () => {
    const packed = encode([0, [false, "u"], 2, 1_900_000_000, [new Uint8Array(16)]]);
    expect(decode(packed)).toMatchObject({ expiresAtMicros: 1_900_000_000_000_000 });
  });

  it.each([
    ["not msgpack", Buffer.from([0xc1])],
    [
      "trailing bytes",
      Buffer.concat([Buffer.from(encode([0, [false, "u"], 2, 1.9e9, []])), Buffer.from([0])]),
    ],
    ["not a list", encode({ a: 1 })],
    ["empty list", encode([])],
    ["string version", encode(["2"])],
    ["missing fields", encode([2, [false, "u"], 2])],
    ["id not a pair", encode([2, "u", 2, [false, "p"], 1.9e9, []])],
    ["uuid flag not bool", encode([2, [1, "u"], 2, [false, "p"], 1.9e9, []])],
    ["uuid of 15 bytes", encode([2, [true, new Uint8Array(15)], 2, [false, "p"], 1.9e9, []])],
    [
      "invalid UTF-8 id",
      encode([2, [false, new Uint8Array([0xff, 0xfe])], 2, [false, "p"], 1.9e9, []]),
    ],
    ["negative methods", encode([2, [false, "u"], -2, [false, "p"], 1.9e9, []])],
    ["fractional methods", encode([2, [false, "u"], 2.5, [false, "p"], 1.9e9, []])],
    ["expires not a number", encode([2, [false, "u"], 2, [false, "p"], "soon", []])],
    ["expires NaN", encode([2, [false, "u"], 2, [false, "p"], NaN, []])],
    ["expires past year 2255", encode([2, [false, "u"], 2, [false, "p"], 1e13, []])],
    ["no audit id (Keystone pops one)", encode([2, [false, "u"], 2, [false, "p"], 1.9e9, []])],
    ["audit ids not a list", encode([2, [false, "u"], 2, [false, "p"], 1.9e9, "x"])],
    ["audit id not bytes", encode([2, [false, "u"], 2, [false, "p"], 1.9e9, [5]])],
    ["trust id not 16 bytes", encode([3, [false, "u"], 2, [false, "p"], 1.9e9, [], "abc"])],
    ["groups not a list", encode([4, [false, "u"], 2, "g", [false, "i"], "saml2", 1.9e9, []])],
    ["system not a string", encode([8, [false, "u"], 2, 7, 1.9e9, []])],
  ])("rejects %s as bad_payload", (_name, bytes) => {
    expect(codeOf(decode(bytes))).toBe("bad_payload");
  });

  it.each([[11], [255], [-1]])("rejects payload version %d as unsupported_version", (version) => {
    expect(codeOf(decode(encode([version, [false, "u"], 2, 1.9e9, []])))).toBe(
      "unsupported_version",
    );
  });
});

describe("pythonTimestampMicros", () => {
  it.each([
    [1_700_000_000, 1_700_000_000_000_000],
    [1_700_000_000.5, 1_700_000_000_500_000],
    [1_700_000_000.123456, 1_700_000_000_123_456],
    // utcfromtimestamp(0.0000005) == 0 µs (half to even), 0.0000015 -> 2 µs
    [0.0000005, 0],
    [0.0000015, 2],
    // a fraction that rounds up into the next second
    [1.9999999, 2_000_000],
  ])("utcfromtimestamp(%d) is %d µs", (seconds, micros) => {
    expect(pythonTimestampMicros(seconds)).toBe(micros);
  });
});
