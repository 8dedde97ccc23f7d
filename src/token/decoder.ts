/**
 * The token engine: a token string in, a typed verdict out.
 *
 * Owns: the order of checks Keystone applies before touching its database — envelope
 * shape, HMAC against the current key ring (constant time, before any decryption), payload,
 * expiry against an injectable clock — and minting tokens for tests, the sandbox and
 * benchmarks. Never throws on any input: every failure is a {@link TokenError} with a
 * stable code.
 */
import { TokenError } from "../errors.js";
import { openEnvelope, sealEnvelope, tokenBytes, type SealOptions } from "../fernet/envelope.js";
import type { KeyRingSource } from "../fernet/key-ring.js";
import { systemClock, type Clock } from "../units.js";
import { AuthMethods } from "./methods.js";
import { decodePayload, encodePayload, type TokenPayload } from "./payload.js";

/** Shared: building an Error per expired token would capture a stack trace each time. */
const EXPIRED = Object.freeze(new TokenError("expired", "the token has expired"));

/** A token that Keystone's keys signed and whose payload reads. */
export interface Token {
  readonly payload: TokenPayload;
  /** The Fernet timestamp: Keystone's `issued_at`, whole seconds since the epoch. */
  readonly issuedAtSeconds: number;
  /**
   * When Keystone considers the token expired, whole seconds since the epoch: the payload's
   * `expires_at` rounded to microseconds as Python does, then cut to the second, as
   * Keystone's `isotime` does before comparing with now.
   */
  readonly expiresAtSeconds: number;
  /** The integer name of the key file whose key verified the token. */
  readonly keyIndex: number;
}

/** The verdict on one token. */
export type DecodeResult =
  | { readonly status: "valid"; readonly token: Token }
  | { readonly status: "expired"; readonly token: Token; readonly error: TokenError }
  | { readonly status: "invalid"; readonly error: TokenError };

/** Options of {@link TokenDecoder}. */
export interface TokenDecoderOptions {
  /** Where the current key ring comes from (a {@link KeyRepository} or a static ring). */
  readonly keys: KeyRingSource;
  /** Keystone's `[auth] methods`, in order. Default Keystone's six. */
  readonly authMethods?: readonly string[];
  /** Keystone's `[identity] default_domain_id`. Default `"default"`. */
  readonly defaultDomainId?: string;
  /** Default: the wall clock. */
  readonly clock?: Clock;
}

export class TokenDecoder {
  private readonly keys: KeyRingSource;
  private readonly codec: { authMethods: AuthMethods; defaultDomainId: string };
  private readonly clock: Clock;

  constructor(options: TokenDecoderOptions) {
    this.keys = options.keys;
    this.codec = {
      authMethods: new AuthMethods(options.authMethods),
      defaultDomainId: options.defaultDomainId ?? "default",
    };
    this.clock = options.clock ?? systemClock;
  }

  /** Keystone's `[auth] methods` this decoder reads bitmasks with. */
  get authMethods(): readonly string[] {
    return this.codec.authMethods.list;
  }

  /**
   * Verifies, decrypts and reads `token`, then checks expiry as Keystone does
   * (`now < expires_at`, with `expires_at` cut to the second). Any input, any length: never throws.
   */
  decode(token: string): DecodeResult {
    const bytes = tokenBytes(token);
    if (bytes instanceof TokenError) return { status: "invalid", error: bytes };
    const ring = this.keys.current();
    const opened = openEnvelope(bytes, ring.keys);
    if (opened instanceof TokenError) return { status: "invalid", error: opened };
    const payload = decodePayload(opened.plaintext, this.codec);
    if (payload instanceof TokenError) return { status: "invalid", error: payload };
    const decoded: Token = {
      payload,
      issuedAtSeconds: opened.issuedAtSeconds,
      expiresAtSeconds: Math.floor(payload.expiresAtMicros / 1e6),
      keyIndex: ring.entryAt(opened.keyPosition)?.index ?? -1,
    };
    if (this.clock.nowMs() >= decoded.expiresAtSeconds * 1000) {
      return {
        status: "expired",
        token: decoded,
        error: EXPIRED,
      };
    }
    return { status: "valid", token: decoded };
  }

  /**
   * Mints a token the way Keystone does, signed with the ring's primary key. For tests, the
   * sandbox and benchmarks: the edge itself never issues tokens.
   *
   * @throws RangeError when the payload cannot be packed.
   */
  mint(payload: TokenPayload, options: SealOptions & { readonly keyIndex?: number } = {}): string {
    const ring = this.keys.current();
    const entry =
      options.keyIndex === undefined
        ? ring.primary
        : ring.entries.find((e) => e.index === options.keyIndex);
    if (!entry) throw new RangeError(`no key with index ${String(options.keyIndex)}`);
    return sealEnvelope(encodePayload(payload, this.codec), entry.key, options);
  }
}
