/**
 * Keystone's Fernet payloads: msgpack ↔ a typed union, one variant per payload version.
 *
 * Owns: the field layout of payload versions 0–10 (Keystone's `token_formatters.py`),
 * `(is_uuid, value)` id pairs, raw 16-byte domain and trust ids, the default-domain literal,
 * federated group lists, msgpack `str` or old-style `raw`, audit ids and the `expires_at`
 * float. Decoding never throws: anything Keystone would not have written is `bad_payload`
 * (or `unsupported_version`).
 *
 * Size: the eleven payload versions, each decoded and encoded side by side so that the two
 * directions cannot drift apart.
 */
import { randomBytes } from "node:crypto";
import { encode as msgpackEncode } from "@msgpack/msgpack";
import { TokenError } from "../errors.js";
import type { EpochMicros } from "../units.js";
import type { AuthMethods } from "./methods.js";
import { MsgpackReader, MsgpackShapeError } from "./msgpack-reader.js";

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

/** Fields after the version, per payload version, as Keystone's `assemble` writes them. */
const FIELD_COUNT: readonly number[] = [4, 5, 5, 6, 7, 8, 8, 6, 5, 6, 7];

/** `(is_uuid, value)`: bytes → 32 lowercase hex characters; otherwise a UTF-8 string. */
function idPair(r: MsgpackReader, what: string): string {
  if (r.arrayLength(what) !== 2)
    throw new MsgpackShapeError(`${what} is not an (is_uuid, id) pair`);
  return r.boolean(`${what}'s uuid flag`) ? r.uuidHex(what) : r.text(what);
}

function methods(r: MsgpackReader, options: PayloadCodecOptions): readonly string[] {
  const mask = r.integer("methods");
  if (mask < 0) throw new MsgpackShapeError("methods is negative");
  return options.authMethods.decode(mask);
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

function expires(r: MsgpackReader): EpochMicros {
  const v = r.number("expires_at");
  if (!Number.isFinite(v) || v < 0) throw new MsgpackShapeError("expires_at is not a timestamp");
  const micros = pythonTimestampMicros(v);
  if (micros > MAX_EXPIRES_MICROS) throw new MsgpackShapeError("expires_at is out of range");
  return micros as EpochMicros;
}

function auditIds(r: MsgpackReader): readonly string[] {
  const n = r.arrayLength("audit_ids");
  // Keystone pops its audit id off this list: an empty one cannot be validated.
  if (n === 0) throw new MsgpackShapeError("audit_ids is empty");
  const ids = new Array<string>(n);
  for (let i = 0; i < n; i++) ids[i] = r.base64url("an audit id");
  return ids;
}

function federation(r: MsgpackReader): Federation {
  const n = r.arrayLength("federated group ids");
  const groupIds = new Array<string>(n);
  for (let i = 0; i < n; i++) groupIds[i] = idPair(r, "a federated group id");
  const identityProviderId = idPair(r, "identity_provider_id");
  const protocolId = r.text("protocol_id");
  return { groupIds, identityProviderId, protocolId };
}

/** The settings, prepared once: the default domain id's bytes for version 1. */
interface PreparedOptions extends PayloadCodecOptions {
  readonly defaultDomainBytes: Buffer;
}

const prepared = new WeakMap<PayloadCodecOptions, PreparedOptions>();
function prepare(options: PayloadCodecOptions): PreparedOptions {
  let p = prepared.get(options);
  if (!p) {
    p = { ...options, defaultDomainBytes: Buffer.from(options.defaultDomainId ?? "default") };
    prepared.set(options, p);
  }
  return p;
}

/**
 * Version 1's domain: 16 raw bytes of a UUID, or the configured default-domain id as a
 * literal (Keystone cannot pack a non-UUID domain id any other way). A literal equal to the
 * default domain id wins even when it happens to be 16 bytes long.
 */
function rawDomain(r: MsgpackReader, options: PreparedOptions): string {
  const id = r.literalOrUuidHex(
    options.defaultDomainId ?? "default",
    options.defaultDomainBytes,
    "domain_id",
  );
  if (id === undefined) {
    throw new MsgpackShapeError("domain_id is neither a UUID nor the default domain id");
  }
  return id;
}

/** Reads the fields after the version, in Keystone's order. */
function disassemble(r: MsgpackReader, version: number, o: PreparedOptions): TokenPayload {
  const userId = idPair(r, "user_id");
  const m = methods(r, o);
  switch (version) {
    case 0: {
      const expiresAtMicros = expires(r);
      const audit = auditIds(r);
      return { kind: "unscoped", version, userId, methods: m, expiresAtMicros, auditIds: audit };
    }
    case 1: {
      const domainId = rawDomain(r, o);
      const expiresAtMicros = expires(r);
      const audit = auditIds(r);
      return {
        kind: "domain",
        version,
        userId,
        methods: m,
        domainId,
        expiresAtMicros,
        auditIds: audit,
      };
    }
    case 2: {
      const projectId = idPair(r, "project_id");
      const expiresAtMicros = expires(r);
      const audit = auditIds(r);
      return {
        kind: "project",
        version,
        userId,
        methods: m,
        projectId,
        expiresAtMicros,
        auditIds: audit,
      };
    }
    case 3: {
      const projectId = idPair(r, "project_id");
      const expiresAtMicros = expires(r);
      const audit = auditIds(r);
      const trustId = r.uuidHex("trust_id");
      return {
        kind: "trust",
        version,
        userId,
        methods: m,
        projectId,
        expiresAtMicros,
        auditIds: audit,
        trustId,
      };
    }
    case 4: {
      const fed = federation(r);
      const expiresAtMicros = expires(r);
      const audit = auditIds(r);
      return {
        kind: "federated-unscoped",
        version,
        userId,
        methods: m,
        federation: fed,
        expiresAtMicros,
        auditIds: audit,
      };
    }
    case 5:
    case 6: {
      const scopeId = idPair(r, version === 5 ? "project_id" : "domain_id");
      const fed = federation(r);
      const expiresAtMicros = expires(r);
      const audit = auditIds(r);
      const common = { userId, methods: m, federation: fed, expiresAtMicros, auditIds: audit };
      return version === 5
        ? { kind: "federated-project", version, projectId: scopeId, ...common }
        : { kind: "federated-domain", version, domainId: scopeId, ...common };
    }
    case 7: {
      const projectId = idPair(r, "project_id");
      const accessTokenId = idPair(r, "access_token_id");
      const expiresAtMicros = expires(r);
      const audit = auditIds(r);
      return {
        kind: "oauth1",
        version,
        userId,
        methods: m,
        projectId,
        accessTokenId,
        expiresAtMicros,
        auditIds: audit,
      };
    }
    case 8: {
      const system = r.text("system");
      const expiresAtMicros = expires(r);
      const audit = auditIds(r);
      return {
        kind: "system",
        version,
        userId,
        methods: m,
        system,
        expiresAtMicros,
        auditIds: audit,
      };
    }
    case 9: {
      const projectId = idPair(r, "project_id");
      const expiresAtMicros = expires(r);
      const audit = auditIds(r);
      const appCredId = idPair(r, "app_cred_id");
      return {
        kind: "application-credential",
        version,
        userId,
        methods: m,
        projectId,
        expiresAtMicros,
        auditIds: audit,
        appCredId,
      };
    }
    case 10: {
      const projectId = idPair(r, "project_id");
      const domainId = idPair(r, "domain_id");
      const expiresAtMicros = expires(r);
      const audit = auditIds(r);
      const thumbprint = idPair(r, "thumbprint");
      return {
        kind: "oauth2-credential",
        version,
        userId,
        methods: m,
        projectId,
        domainId,
        expiresAtMicros,
        auditIds: audit,
        thumbprint,
      };
    }
    default:
      throw new MsgpackShapeError(`unreachable version ${version}`);
  }
}

/** Decodes a decrypted payload. Never throws. */
export function decodePayload(
  plaintext: Uint8Array,
  options: PayloadCodecOptions,
): TokenPayload | TokenError {
  const r = new MsgpackReader(
    Buffer.isBuffer(plaintext)
      ? plaintext
      : Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength),
  );
  let count: number;
  let version: number;
  try {
    count = r.arrayLength("the payload");
    if (count === 0) return new TokenError("bad_payload", "the payload is an empty list");
    version = r.integer("the payload version");
  } catch (error) {
    return new TokenError("bad_payload", (error as Error).message);
  }
  if (version < 0 || version > MAX_PAYLOAD_VERSION) {
    return new TokenError(
      "unsupported_version",
      `payload version ${version} is not one Keystone writes (0–${MAX_PAYLOAD_VERSION})`,
    );
  }
  const fields = FIELD_COUNT[version] as number;
  if (count - 1 < fields) {
    return new TokenError(
      "bad_payload",
      `payload version ${version} has ${count - 1} fields, not ${fields}`,
    );
  }
  try {
    const payload = disassemble(r, version, prepare(options));
    // A newer Keystone may append fields; Keystone ignores them, so do we, but they must
    // still be well-formed msgpack and nothing may follow the list.
    for (let i = fields + 1; i < count; i++) r.skip();
    if (!r.atEnd) throw new MsgpackShapeError("bytes follow the payload");
    return payload;
  } catch (error) {
    if (error instanceof MsgpackShapeError) {
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
  const hex = id
    .replace("urn:", "")
    .replace("uuid:", "")
    .replace(/^\{+|\}+$/g, "")
    .replace(/-/g, "");
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
      return [
        p.version,
        user,
        m,
        packId(p.projectId),
        exp,
        audit,
        packRawUuid(p.trustId, "trust_id"),
      ];
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
