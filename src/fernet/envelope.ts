/**
 * The Fernet envelope, as Keystone uses it.
 *
 * Owns: turning a token string into its bytes, checking its HMAC against a list of keys in
 * constant time *before* any decryption, decrypting the payload, and the reverse (sealing)
 * for tests, the sandbox and benchmarks.
 *
 * Layout: base64url(0x80 ‖ timestamp u64 BE ‖ IV 16 ‖ AES-128-CBC ciphertext ‖ HMAC-SHA256 32),
 * Keystone strips the `=` padding. Key = 32 bytes: 0–15 sign, 16–31 encrypt.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createSecretKey,
  randomBytes,
  timingSafeEqual,
  type Decipher,
  type KeyObject,
} from "node:crypto";
import { TokenError } from "../errors.js";

/** The only Fernet version byte. */
export const FERNET_VERSION = 0x80;
const HEADER_BYTES = 1 + 8 + 16;
const MAC_BYTES = 32;
const BLOCK_BYTES = 16;
/** Smallest envelope: header, one cipher block, the MAC. */
const MIN_TOKEN_BYTES = HEADER_BYTES + BLOCK_BYTES + MAC_BYTES;
/**
 * Longest token string accepted (characters). Keystone's tokens are 180–260 characters; a
 * federated token with many groups is longer, never near this. Longer input is refused
 * before any allocation proportional to it.
 */
export const MAX_TOKEN_CHARS = 16_384;
/** Latest instant Python's `datetime.utcfromtimestamp` can render (9999-12-31T23:59:59). */
export const MAX_EPOCH_SECONDS = 253_402_300_799;

const BASE64URL = /^[A-Za-z0-9_-]+={0,2}$/;

/**
 * Rejections carry no per-token data, so each is built once and shared: building an Error
 * captures a stack trace, which would cost more than the HMAC on the forged-token path.
 */
function rejection(code: TokenError["code"], message: string): TokenError {
  return Object.freeze(new TokenError(code, message));
}
const EMPTY = rejection("malformed", "the token is empty");
const NOT_BASE64URL = rejection("malformed", "the token is not urlsafe base64");
const TOO_SHORT = rejection("malformed", "the token is too short to be a Fernet token");
const NOT_FERNET = rejection("malformed", "the token does not start with the Fernet version byte");
const RAGGED_CIPHERTEXT = rejection(
  "malformed",
  "the token's ciphertext is not a whole number of blocks",
);
const TIMESTAMP_OUT_OF_RANGE = rejection("bad_payload", "the token's timestamp is out of range");
const BAD_PADDING = rejection("bad_payload", "the token's ciphertext has invalid padding");
const TOO_LONG = rejection("malformed", `the token is longer than ${MAX_TOKEN_CHARS} characters`);
const NO_KEY_SIGNED = rejection("bad_signature", "no key in the ring signed this token");

/** One Fernet key, split and imported once so the hot path does no key setup. */
export interface FernetKey {
  /** HMAC-SHA256 key (bytes 0–15). */
  readonly signing: KeyObject;
  /** AES-128 key (bytes 16–31). */
  readonly encryption: Buffer;
  /**
   * AES-128-ECB decryption of whole blocks with `encryption`, created once per key and
   * reused: CBC decryption is then one `update()` plus an XOR with the previous ciphertext
   * block, which saves building a cipher object per token (≈ 1.5 µs of the ≈ 2 µs AES costs
   * in Node). Never fed a partial block and never finalised, so it carries no state from
   * one call to the next.
   */
  readonly blockDecipher: Decipher;
  /** A short SHA-256 fingerprint of the key, safe to print and compare across hosts. */
  readonly fingerprint: string;
}

/**
 * Parses a key file's text: base64 of exactly 32 bytes. Keystone's `Fernet(key)` decodes
 * leniently, so the edge accepts what it accepts in practice: the urlsafe alphabet Keystone
 * writes, the standard alphabet (`+`, `/`) that `openssl rand -base64 32` writes, white
 * space anywhere (editors, Secrets and line-wrapping tools add it), with or without the
 * `=` padding. Anything else is refused. Returns an error message rather than throwing,
 * so the caller can name the file.
 */
export function parseFernetKey(text: string): FernetKey | string {
  const compact = text.replace(/\s+/g, "").replace(/=+$/, "");
  if (!/^[A-Za-z0-9_+/-]{43}$/.test(compact)) {
    return "a Fernet key must be 32 bytes of base64 (44 characters, as keystone-manage writes them)";
  }
  const raw = Buffer.from(compact.replace(/\+/g, "-").replace(/\//g, "_"), "base64url");
  if (raw.length !== 32) return "a Fernet key must decode to exactly 32 bytes";
  return fernetKeyFromBytes(raw);
}

/** Builds a key from its 32 raw bytes. */
export function fernetKeyFromBytes(raw: Uint8Array): FernetKey {
  if (raw.length !== 32) throw new RangeError("a Fernet key is 32 bytes");
  const bytes = Buffer.from(raw);
  const encryption = Buffer.from(bytes.subarray(16, 32));
  const blockDecipher = createDecipheriv("aes-128-ecb", encryption, null);
  blockDecipher.setAutoPadding(false);
  return {
    signing: createSecretKey(bytes.subarray(0, 16)),
    encryption,
    blockDecipher,
    fingerprint: createHash("sha256")
      .update("keystone-edge key fingerprint\0")
      .update(bytes)
      .digest("hex")
      .slice(0, 16),
  };
}

/** A new random key in key-file form (urlsafe base64 with padding), as Keystone writes them. */
export function generateFernetKeyText(): string {
  return randomBytes(32).toString("base64url") + "=";
}

/** The token's bytes, or why it is not a Fernet token at all. */
export function tokenBytes(token: string): Buffer | TokenError {
  if (token.length === 0) return EMPTY;
  if (token.length > MAX_TOKEN_CHARS) {
    return TOO_LONG;
  }
  if (!BASE64URL.test(token) || token.length % 4 === 1) {
    return NOT_BASE64URL;
  }
  const bytes = Buffer.from(token, "base64url");
  if (bytes.length < MIN_TOKEN_BYTES) {
    return TOO_SHORT;
  }
  if (bytes[0] !== FERNET_VERSION) {
    return NOT_FERNET;
  }
  if ((bytes.length - HEADER_BYTES - MAC_BYTES) % BLOCK_BYTES !== 0) {
    return RAGGED_CIPHERTEXT;
  }
  return bytes;
}

/** A token that one of the keys signed, decrypted. */
export interface OpenedEnvelope {
  readonly plaintext: Buffer;
  /** The Fernet timestamp: Keystone's `issued_at`, whole seconds. */
  readonly issuedAtSeconds: number;
  /** Position in the key list of the key that verified it. */
  readonly keyPosition: number;
}

/**
 * Verifies `bytes` (from {@link tokenBytes}) against each key in order, in constant time per
 * key, and decrypts with the first that matches. No key matching is `bad_signature`.
 */
export function openEnvelope(
  bytes: Buffer,
  keys: readonly FernetKey[],
): OpenedEnvelope | TokenError {
  // Checked again although tokenBytes checks them: the shared block decipher must never
  // see a partial block, whoever calls this.
  if (bytes.length < MIN_TOKEN_BYTES) return TOO_SHORT;
  if ((bytes.length - HEADER_BYTES - MAC_BYTES) % BLOCK_BYTES !== 0) return RAGGED_CIPHERTEXT;
  const macAt = bytes.length - MAC_BYTES;
  const signed = bytes.subarray(0, macAt);
  const mac = bytes.subarray(macAt);
  for (let position = 0; position < keys.length; position++) {
    const key = keys[position] as FernetKey;
    const expected = createHmac("sha256", key.signing).update(signed).digest();
    if (!timingSafeEqual(expected, mac)) continue;
    // u64 big-endian; anything past MAX_EPOCH_SECONDS has a non-zero high word beyond 2^6.
    const timestamp = bytes.readUInt32BE(1) * 2 ** 32 + bytes.readUInt32BE(5);
    if (timestamp > MAX_EPOCH_SECONDS) {
      return TIMESTAMP_OUT_OF_RANGE;
    }
    // The MAC is verified, so there is no padding oracle to fear: decrypt the blocks and
    // strip PKCS7 by hand. CBC: P[i] = D(C[i]) xor C[i-1], with C[-1] = the IV.
    const padded = key.blockDecipher.update(bytes.subarray(HEADER_BYTES, macAt));
    for (let i = padded.length - 1; i >= BLOCK_BYTES; i--) {
      padded[i] = (padded[i] as number) ^ (bytes[HEADER_BYTES + i - BLOCK_BYTES] as number);
    }
    for (let i = 0; i < BLOCK_BYTES; i++) {
      padded[i] = (padded[i] as number) ^ (bytes[9 + i] as number);
    }
    const pad = padded[padded.length - 1] as number;
    if (pad < 1 || pad > BLOCK_BYTES || !hasPkcs7Padding(padded, pad)) {
      return BAD_PADDING;
    }
    const plaintext = padded.subarray(0, padded.length - pad);
    return { plaintext, issuedAtSeconds: timestamp, keyPosition: position };
  }
  return NO_KEY_SIGNED;
}

function hasPkcs7Padding(block: Buffer, pad: number): boolean {
  for (let i = block.length - pad; i < block.length; i++) if (block[i] !== pad) return false;
  return true;
}

/** Options of {@link sealEnvelope}. */
export interface SealOptions {
  /** The Fernet timestamp (Keystone's `issued_at`). Default: now, whole seconds. */
  readonly issuedAtSeconds?: number;
  /** The 16-byte IV. Default: random. Fix it only in tests. */
  readonly iv?: Uint8Array;
}

/** Encrypts and signs `plaintext` with `key`, returning the token without `=` padding. */
export function sealEnvelope(
  plaintext: Uint8Array,
  key: FernetKey,
  options: SealOptions = {},
): string {
  const issuedAt = options.issuedAtSeconds ?? Math.floor(Date.now() / 1000);
  const iv = options.iv ?? randomBytes(16);
  if (iv.length !== 16) throw new RangeError("a Fernet IV is 16 bytes");
  const cipher = createCipheriv("aes-128-cbc", key.encryption, iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  const header = Buffer.alloc(HEADER_BYTES);
  header[0] = FERNET_VERSION;
  header.writeBigUInt64BE(BigInt(issuedAt), 1);
  header.set(iv, 9);
  const signed = Buffer.concat([header, ciphertext]);
  const mac = createHmac("sha256", key.signing).update(signed).digest();
  return Buffer.concat([signed, mac]).toString("base64url");
}
