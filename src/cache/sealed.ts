/**
 * Sealed memcached entries: memcached is untrusted storage.
 *
 * Owns: the byte format of a memcached value and the only code that writes or reads it.
 * A value is AES-256-GCM encrypted and authenticated under a key that needs both the secret
 * and the token (token-key.ts), with the memcached key it lives under as associated data
 * (an entry copied to another key fails), and carries an absolute expiry checked on open (an
 * old entry replayed after its time is refused). `open` never throws: whatever memcached
 * returns (random bytes, truncations, bit flips, entries sealed under another secret or
 * token, a foreign client's plaintext) comes back as a typed failure.
 *
 * Format, version 1:
 *
 *     version 0x01 (1) ‖ nonce (12, random) ‖ ciphertext ‖ GCM tag (16)
 *     plaintext = expiresAtMs (float64 BE, 8) ‖ value as JSON (UTF-8)
 *     associated data = version byte ‖ memcached key (UTF-8)
 *
 * The version byte is authenticated (it is part of the associated data), so a future
 * format cannot be confused with this one.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

import type { SealingKey } from "./token-key.js";

/** The format version this module writes and reads. */
export const SEALED_VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const EXPIRY_BYTES = 8;
const HEADER_BYTES = 1 + NONCE_BYTES;
/** Shortest well-formed entry: header, expiry, one byte of JSON, tag. */
export const MIN_SEALED_BYTES = HEADER_BYTES + EXPIRY_BYTES + 1 + TAG_BYTES;

/** Why an entry was refused. */
export type SealFailure =
  /** Not produced with this key for this memcached key: tampered, moved, foreign, or corrupt. */
  | "auth"
  /** Authentic, but its expiry has passed. */
  | "expired"
  /** Not in this format (too short, unknown version), or authentic contents we cannot use. */
  | "malformed";

/** What {@link open} gives back. */
export type Opened<T> =
  { readonly value: T; readonly expiresAtMs: number } | { readonly failure: SealFailure };

/**
 * Seals `value` (JSON-serialisable) for storage under `key.boundKey`, to be refused once
 * `expiresAtMs` (epoch ms) has passed.
 * @throws TypeError when `value` cannot be serialised as JSON (a cycle, a BigInt) or
 *   `expiresAtMs` is not finite: caller bugs, never data from memcached.
 */
export function seal(key: SealingKey, value: unknown, expiresAtMs: number): Buffer {
  if (!Number.isFinite(expiresAtMs)) throw new TypeError("expiresAtMs must be finite");
  const json = JSON.stringify(value) as string | undefined;
  if (json === undefined) throw new TypeError("the value has no JSON form");
  const plaintext = Buffer.allocUnsafe(EXPIRY_BYTES + Buffer.byteLength(json, "utf8"));
  plaintext.writeDoubleBE(expiresAtMs, 0);
  plaintext.write(json, EXPIRY_BYTES, "utf8");

  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key.aesKey, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(associatedData(key.boundKey));
  const head = Buffer.of(SEALED_VERSION);
  const body = cipher.update(plaintext);
  const rest = cipher.final();
  return Buffer.concat([head, nonce, body, rest, cipher.getAuthTag()]);
}

/**
 * Opens an entry read from memcached under `key.boundKey`. Authenticates before looking at
 * anything inside, then checks the expiry against `nowMs`, then parses the JSON and lets
 * `accept` vouch for its shape. Never throws.
 */
export function open<T>(
  key: SealingKey,
  sealed: Uint8Array,
  nowMs: number,
  accept: (value: unknown) => value is T,
): Opened<T> {
  try {
    if (sealed.length < MIN_SEALED_BYTES || sealed[0] !== SEALED_VERSION) return MALFORMED;
    const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length);
    const nonce = bytes.subarray(1, HEADER_BYTES);
    const ciphertext = bytes.subarray(HEADER_BYTES, bytes.length - TAG_BYTES);
    const tag = bytes.subarray(bytes.length - TAG_BYTES);

    let plaintext: Buffer;
    try {
      const decipher = createDecipheriv("aes-256-gcm", key.aesKey, nonce, {
        authTagLength: TAG_BYTES,
      });
      decipher.setAAD(associatedData(key.boundKey));
      decipher.setAuthTag(tag);
      const body = decipher.update(ciphertext);
      plaintext = Buffer.concat([body, decipher.final()]);
    } catch {
      return AUTH;
    }

    const expiresAtMs = plaintext.readDoubleBE(0);
    if (!Number.isFinite(expiresAtMs)) return MALFORMED;
    if (!(nowMs < expiresAtMs)) return EXPIRED;
    const value: unknown = JSON.parse(plaintext.toString("utf8", EXPIRY_BYTES));
    return accept(value) ? { value, expiresAtMs } : MALFORMED;
  } catch {
    return MALFORMED;
  }
}

function associatedData(boundKey: string): Buffer {
  const aad = Buffer.allocUnsafe(1 + Buffer.byteLength(boundKey, "utf8"));
  aad[0] = SEALED_VERSION;
  aad.write(boundKey, 1, "utf8");
  return aad;
}

const AUTH: Opened<never> = Object.freeze({ failure: "auth" });
const EXPIRED: Opened<never> = Object.freeze({ failure: "expired" });
const MALFORMED: Opened<never> = Object.freeze({ failure: "malformed" });
