/**
 * Keystone's Fernet payloads: msgpack ↔ a typed union, one variant per payload version.
 *
 * Owns: the field layout of payload versions 0–10 (Keystone's `token_formatters.py`),
 * `(is_uuid, value)` id pairs, raw 16-byte domain and trust ids, the default-domain literal,
 * federated group lists, msgpack `str` or old-style `raw`, audit ids and the `expires_at`
 * float. Decoding never throws: anything Keystone would not have written is `bad_payload`
 * (or `unsupported_version`).
 */
import { randomBytes } from "node:crypto";
import { Decoder, encode as msgpackEncode } from "@msgpack/msgpack";
import { TokenError } from "../errors.js";
import type { EpochMicros } from "../units.js";
import type { AuthMethods } from "./methods.js";

/** Latest `expires_at` representable exactly in integer microseconds (year 2255). */
const MAX_EXPIRES_MICROS = Number.MAX_SAFE_INTEGER;

/** Federation data of payload versions 4–6. */
export interface Federation {
  /** Group ids from the assertion (Keystone renders them as `[{"id": …}]`). */
  readonly groupIds: readonly string[];
  readonly identityProviderId: string;
  readonly protocolId: string;
}

interface PayloadBase {
  readonly userId: string;
  /** Method names, highest bit first, as Keystone returns them. */
  readonly methods: readonly string[];
  /** Base64url audit ids without padding: own id, then the chain id of a rescoped token. */
  readonly auditIds: readonly string[];
  /** `expires_at`, rounded to microseconds exactly as Python's `utcfromtimestamp` does. */
  readonly expiresAtMicros: EpochMicros;
}

export type UnscopedPayload = PayloadBase & { readonly kind: "unscoped"; readonly version: 0 };
export type DomainPayload = PayloadBase & {
  readonly kind: "domain";
  readonly version: 1;
  readonly domainId: string;
};
export type ProjectPayload = PayloadBase & {
  readonly kind: "project";
  readonly version: 2;
  readonly projectId: string;
};
export type TrustPayload = PayloadBase & {
  readonly kind: "trust";
  readonly version: 3;
  readonly projectId: string;
  readonly trustId: string;
};
export type FederatedUnscopedPayload = PayloadBase & {
  readonly kind: "federated-unscoped";
  readonly version: 4;
  readonly federation: Federation;
};
export type FederatedProjectPayload = PayloadBase & {
  readonly kind: "federated-project";
  readonly version: 5;
  readonly projectId: string;
  readonly federation: Federation;
};
export type FederatedDomainPayload = PayloadBase & {
  readonly kind: "federated-domain";
  readonly version: 6;
  readonly domainId: string;
  readonly federation: Federation;
};
export type OAuth1Payload = PayloadBase & {
  readonly kind: "oauth1";
  readonly version: 7;
  readonly projectId: string;
  readonly accessTokenId: string;
};
export type SystemPayload = PayloadBase & {
  readonly kind: "system";
  readonly version: 8;
  /** Always `"all"` today. */
  readonly system: string;
};
export type ApplicationCredentialPayload = PayloadBase & {
  readonly kind: "application-credential";
  readonly version: 9;
  readonly projectId: string;
  readonly appCredId: string;
};
export type OAuth2CredentialPayload = PayloadBase & {
  readonly kind: "oauth2-credential";
  readonly version: 10;
  readonly projectId: string;
  readonly domainId: string;
  /** The client certificate thumbprint the token is bound to. */
  readonly thumbprint: string;
};

/** A decoded payload; `kind` and `version` discriminate. */
export type TokenPayload =
  | UnscopedPayload
  | DomainPayload
  | ProjectPayload
  | TrustPayload
  | FederatedUnscopedPayload
  | FederatedProjectPayload
  | FederatedDomainPayload
  | OAuth1Payload
  | SystemPayload
  | ApplicationCredentialPayload
  | OAuth2CredentialPayload;

export type PayloadKind = TokenPayload["kind"];
export type PayloadVersion = TokenPayload["version"];

/** Highest payload version this build understands. */
export const MAX_PAYLOAD_VERSION = 10;

/** Settings that change how a payload reads. */
export interface PayloadCodecOptions {
  /** Keystone's `[auth] methods`, as an {@link AuthMethods}. */
  readonly authMethods: AuthMethods;
  /** Keystone's `[identity] default_domain_id`. Default `"default"`. */
  readonly defaultDomainId?: string;
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/** Thrown inside the decoder only; {@link decodePayload} turns it into a result. */
class Bad extends Error {}

const utf8 = new TextDecoder("utf-8", { fatal: true });
// rawStrings: msgpack `str` comes back as bytes too, so old-format tokens (everything `raw`)
// and new ones read alike and a 16-byte binary id is never mangled by UTF-8 decoding.
const decoder = new Decoder({ rawStrings: true, maxStrLength: 4096, maxBinLength: 4096 });

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

function text(v: unknown, what: string): string {
  if (!isBytes(v)) throw new Bad(`${what} is not a string`);
  try {
    return utf8.decode(v);
  } catch {
    throw new Bad(`${what} is not valid UTF-8`);
  }
}

const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) =>
  i.toString(16).padStart(2, "0"),
);

function uuidHex(v: unknown, what: string): string {
  if (!isBytes(v) || v.length !== 16) throw new Bad(`${what} is not a 16-byte id`);
  let out = "";
  for (let i = 0; i < 16; i++) out += HEX[v[i] as number] as string;
  return out;
}

/** `(is_uuid, value)`: bytes → 32 lowercase hex characters; otherwise a UTF-8 string. */
function idPair(v: unknown, what: string): string {
  if (!Array.isArray(v) || v.length !== 2) throw new Bad(`${what} is not an (is_uuid, id) pair`);
  const [isUuid, value] = v as [unknown, unknown];
  if (typeof isUuid !== "boolean") throw new Bad(`${what} has a non-boolean uuid flag`);
  return isUuid ? uuidHex(value, what) : text(value, what);
}

function methods(v: unknown, options: PayloadCodecOptions): readonly string[] {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new Bad("methods is not a non-negative integer");
  }
  return options.authMethods.decode(v);
}

/**
 * Python's `datetime.utcfromtimestamp(f)` to microseconds: split off the integer part,
 * scale the fraction, round half to even (CPython's `_PyTime_ROUND_HALF_EVEN`).
 */
export function pythonTimestampMicros(seconds: number): number {
  const whole = Math.trunc(seconds);
  const scaled = (seconds - whole) * 1e6;
  let rounded = Math.round(scaled);
  if (Math.abs(scaled - rounded) === 0.5) rounded = 2 * Math.round(scaled / 2);
  return whole * 1e6 + rounded;
}

function expires(v: unknown): EpochMicros {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
    throw new Bad("expires_at is not a timestamp");
  }
  const micros = pythonTimestampMicros(v);
  if (micros > MAX_EXPIRES_MICROS) throw new Bad("expires_at is out of range");
  return micros as EpochMicros;
}

function auditIds(v: unknown): readonly string[] {
  if (!Array.isArray(v)) throw new Bad("audit_ids is not a list");
  return v.map((id: unknown) => {
    if (!isBytes(id)) throw new Bad("an audit id is not bytes");
    return Buffer.from(id.buffer, id.byteOffset, id.length).toString("base64url");
  });
}

function groups(v: unknown): readonly string[] {
  if (!Array.isArray(v)) throw new Bad("federated group ids are not a list");
  return v.map((g: unknown) => idPair(g, "a federated group id"));
}

/**
 * Version 1's domain: 16 raw bytes of a UUID, or the configured default-domain id as a
 * literal (Keystone cannot pack a non-UUID domain id any other way). A literal equal to the
 * default domain id wins even when it happens to be 16 bytes long.
 */
function rawDomain(v: unknown, options: PayloadCodecOptions): string {
  if (!isBytes(v)) throw new Bad("domain_id is not bytes");
  const defaultDomainId = options.defaultDomainId ?? "default";
  const literal = (() => {
    try {
      return utf8.decode(v);
    } catch {
      return undefined;
    }
  })();
  if (literal === defaultDomainId) return literal;
  if (v.length === 16) return uuidHex(v, "domain_id");
  throw new Bad("domain_id is neither a UUID nor the default domain id");
}

function field(payload: readonly unknown[], i: number): unknown {
  if (i >= payload.length) throw new Bad(`the payload has no field ${i}`);
  return payload[i];
}

function federation(payload: readonly unknown[], at: number): Federation {
  return {
    groupIds: groups(field(payload, at)),
    identityProviderId: idPair(field(payload, at + 1), "identity_provider_id"),
    protocolId: text(field(payload, at + 2), "protocol_id"),
  };
}

function disassemble(
  version: number,
  p: readonly unknown[],
  options: PayloadCodecOptions,
): TokenPayload {
  // p[0] is the version; Keystone's field i is p[i + 1]. Extra trailing fields are
  // ignored, as Keystone ignores them.
  const userId = idPair(field(p, 1), "user_id");
  const m = methods(field(p, 2), options);
  switch (version) {
    case 0:
      return {
        kind: "unscoped",
        version,
        userId,
        methods: m,
        expiresAtMicros: expires(field(p, 3)),
        auditIds: auditIds(field(p, 4)),
      };
    case 1:
      return {
        kind: "domain",
        version,
        userId,
        methods: m,
        domainId: rawDomain(field(p, 3), options),
        expiresAtMicros: expires(field(p, 4)),
        auditIds: auditIds(field(p, 5)),
      };
    case 2:
      return {
        kind: "project",
        version,
        userId,
        methods: m,
        projectId: idPair(field(p, 3), "project_id"),
        expiresAtMicros: expires(field(p, 4)),
        auditIds: auditIds(field(p, 5)),
      };
    case 3:
      return {
        kind: "trust",
        version,
        userId,
        methods: m,
        projectId: idPair(field(p, 3), "project_id"),
        expiresAtMicros: expires(field(p, 4)),
        auditIds: auditIds(field(p, 5)),
        trustId: uuidHex(field(p, 6), "trust_id"),
      };
    case 4:
      return {
        kind: "federated-unscoped",
        version,
        userId,
        methods: m,
        federation: federation(p, 3),
        expiresAtMicros: expires(field(p, 6)),
        auditIds: auditIds(field(p, 7)),
      };
    case 5:
    case 6: {
      const scopeId = idPair(field(p, 3), version === 5 ? "project_id" : "domain_id");
      const common = {
        userId,
        methods: m,
        federation: federation(p, 4),
        expiresAtMicros: expires(field(p, 7)),
        auditIds: auditIds(field(p, 8)),
      };
      return version === 5
        ? { kind: "federated-project", version, projectId: scopeId, ...common }
        : { kind: "federated-domain", version, domainId: scopeId, ...common };
    }
    case 7:
      return {
        kind: "oauth1",
        version,
        userId,
        methods: m,
        projectId: idPair(field(p, 3), "project_id"),
        accessTokenId: idPair(field(p, 4), "access_token_id"),
        expiresAtMicros: expires(field(p, 5)),
        auditIds: auditIds(field(p, 6)),
      };
    case 8:
      return {
        kind: "system",
        version,
        userId,
        methods: m,
        system: text(field(p, 3), "system"),
        expiresAtMicros: expires(field(p, 4)),
        auditIds: auditIds(field(p, 5)),
      };
    case 9:
      return {
        kind: "application-credential",
        version,
        userId,
        methods: m,
        projectId: idPair(field(p, 3), "project_id"),
        expiresAtMicros: expires(field(p, 4)),
        auditIds: auditIds(field(p, 5)),
        appCredId: idPair(field(p, 6), "app_cred_id"),
      };
    case 10:
      return {
        kind: "oauth2-credential",
        version,
        userId,
        methods: m,
        projectId: idPair(field(p, 3), "project_id"),
        domainId: idPair(field(p, 4), "domain_id"),
        expiresAtMicros: expires(field(p, 5)),
        auditIds: auditIds(field(p, 6)),
        thumbprint: idPair(field(p, 7), "thumbprint"),
      };
    default:
      throw new Bad(`unreachable version ${version}`);
  }
}

/** Decodes a decrypted payload. Never throws. */
export function decodePayload(
  plaintext: Uint8Array,
  options: PayloadCodecOptions,
): TokenPayload | TokenError {
  let value: unknown;
  try {
    value = decoder.decode(plaintext);
  } catch {
    return new TokenError("bad_payload", "the payload is not valid msgpack");
  }
  if (!Array.isArray(value) || value.length === 0) {
    return new TokenError("bad_payload", "the payload is not a versioned list");
  }
  const version: unknown = value[0];
  if (typeof version !== "number" || !Number.isInteger(version)) {
    return new TokenError("bad_payload", "the payload version is not an integer");
  }
  if (version < 0 || version > MAX_PAYLOAD_VERSION) {
    return new TokenError(
      "unsupported_version",
      `payload version ${version} is not one Keystone writes (0–${MAX_PAYLOAD_VERSION})`,
    );
  }
  try {
    return disassemble(version, value, options);
  } catch (error) {
    if (error instanceof Bad) {
      return new TokenError("bad_payload", `payload version ${version}: ${error.message}`);
    }
    return new TokenError("bad_payload", `payload version ${version} cannot be read`);
  }
}

// ---------------------------------------------------------------------------------------
// Encoding (minting): Keystone's `assemble`, for tests, the sandbox and benchmarks.
// ---------------------------------------------------------------------------------------

/**
 * Keystone's `attempt_convert_uuid_hex_to_bytes` for the forms Python's `uuid.UUID` takes in
 * practice (optional `urn:uuid:` prefix, braces, dashes, either case).
 */
export function uuidBytes(id: string): Uint8Array | undefined {
  const hex = id.replace("urn:", "").replace("uuid:", "").replace(/^\{+|\}+$/g, "").replace(/-/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) return undefined;
  return Buffer.from(hex, "hex");
}

/** msgpack with `expires_at` forced to float64, as Python's `total_seconds()` always is. */
class Float64 {
  constructor(readonly value: number) {}
}

function packId(id: string): [boolean, Uint8Array | string] {
  const bytes = uuidBytes(id);
  return bytes ? [true, bytes] : [false, id];
}

function packAudit(ids: readonly string[]): Uint8Array[] {
  return ids.map((id) => {
    if (!/^[A-Za-z0-9_-]{22}$/.test(id)) {
      throw new RangeError("an audit id is 22 characters of urlsafe base64");
    }
    return Buffer.from(id, "base64url");
  });
}

function packRawDomain(id: string, options: PayloadCodecOptions): Uint8Array | string {
  const bytes = uuidBytes(id);
  if (bytes) return bytes;
  if (id === (options.defaultDomainId ?? "default")) return id;
  throw new RangeError("a version 1 domain id must be a UUID or the default domain id");
}

function packRawUuid(id: string, what: string): Uint8Array {
  const bytes = uuidBytes(id);
  if (!bytes) throw new RangeError(`${what} must be a UUID`);
  return bytes;
}

function assemble(p: TokenPayload, options: PayloadCodecOptions): unknown[] {
  const user = packId(p.userId);
  const m = options.authMethods.encode(p.methods);
  const exp = new Float64(p.expiresAtMicros / 1e6);
  const audit = packAudit(p.auditIds);
  const fed = (f: Federation): unknown[] => [
    f.groupIds.map(packId),
    packId(f.identityProviderId),
    f.protocolId,
  ];
  switch (p.kind) {
    case "unscoped":
      return [p.version, user, m, exp, audit];
    case "domain":
      return [p.version, user, m, packRawDomain(p.domainId, options), exp, audit];
    case "project":
      return [p.version, user, m, packId(p.projectId), exp, audit];
    case "trust":
      return [p.version, user, m, packId(p.projectId), exp, audit, packRawUuid(p.trustId, "trust_id")];
    case "federated-unscoped":
      return [p.version, user, m, ...fed(p.federation), exp, audit];
    case "federated-project":
      return [p.version, user, m, packId(p.projectId), ...fed(p.federation), exp, audit];
    case "federated-domain":
      return [p.version, user, m, packId(p.domainId), ...fed(p.federation), exp, audit];
    case "oauth1":
      return [p.version, user, m, packId(p.projectId), packId(p.accessTokenId), exp, audit];
    case "system":
      return [p.version, user, m, p.system, exp, audit];
    case "application-credential":
      return [p.version, user, m, packId(p.projectId), exp, audit, packId(p.appCredId)];
    case "oauth2-credential":
      return [
        p.version,
        user,
        m,
        packId(p.projectId),
        packId(p.domainId),
        exp,
        audit,
        [false, p.thumbprint],
      ];
  }
}

/**
 * Encodes a payload as Keystone's `create_token` would (msgpack, new format: `bin` for
 * bytes, `str` for text, `expires_at` as float64).
 *
 * @throws RangeError when a field cannot be packed (a non-UUID trust id, a bad audit id).
 */
export function encodePayload(payload: TokenPayload, options: PayloadCodecOptions): Uint8Array {
  const items = assemble(payload, options);
  const parts: Uint8Array[] = [Uint8Array.of(0x90 | items.length)];
  for (const item of items) {
    if (item instanceof Float64) {
      const f = Buffer.alloc(9);
      f[0] = 0xcb;
      f.writeDoubleBE(item.value, 1);
      parts.push(f);
    } else {
      parts.push(msgpackEncode(item));
    }
  }
  return Buffer.concat(parts);
}

/** Random audit id: 16 random bytes, urlsafe base64 without padding (22 characters). */
export function randomAuditId(): string {
  return randomBytes(16).toString("base64url");
}
