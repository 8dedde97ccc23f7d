/**
 * Cache keys derived from a token: never the token itself.
 *
 * Owns: how a token becomes (a) the key of the in-process cache, (b) the memcached key
 * `keystone-edge/v1/<64 hex>`, and (c) on the memcached path only, the AES-256 key that
 * seals the token's entry. The token is never stored, logged or sent anywhere: only keyed
 * hashes of it are.
 *
 * Derivation. Three sub-keys are drawn once from the configured secret with HKDF-SHA256
 * (distinct `info` labels, so the secret itself keys nothing directly):
 * - `l1Prefix` (64 hex characters): the L1 key is `SHA-256(l1Prefix ‖ token)`, first 16
 *   bytes, base64url (22 characters). The hot path runs it for every request, so it is
 *   one `crypto.hash` call: no HMAC object, no Buffer. A secret-prefix hash is a sound
 *   keyed hash here: L1 keys never leave the process, so length extension (the reason
 *   HMAC exists) has nothing to extend, and a fixed-length prefix keeps the encoding of
 *   `prefix ‖ token` unambiguous.
 * - `idKey`: the memcached key is `keystone-edge/v1/` + hex(HMAC-SHA256(idKey, token)),
 *   computed only when memcached is read or written (an L1 miss or a store). A name, not
 *   a secret: memcached sees it.
 * - `sealSalt`: the sealing key is `HKDF-SHA256(ikm = token, salt = sealSalt, info =
 *   "keystone-edge/v1 aes-256-gcm")`, computed only when memcached is read or written.
 *   It needs BOTH the secret and the token, and is independent of the memcached key:
 *   whoever reads the memcached keys learns nothing about it. (Deriving it from the MAC,
 *   or HKDF-extracting with the key that makes the MAC, would make the public key name
 *   the secret.)
 *
 * Contexts (the per-scope cache, validation/context.ts) are shared through memcached too,
 * under `keystone-edge/v1/ctx/` + hex(HMAC-SHA256(contextIdKey, context key)), sealed with
 * one AES-256 key drawn from the secret (`contextAesKey`). A context key names a user and a
 * scope, not a secret, so unlike a token's entry its sealing key needs the secret alone:
 * whoever holds `memcache_secret_key` could forge contexts (docs/decisions.md).
 *
 * A token revoked through the Identity face leaves a revocation marker in memcached under
 * `keystone-edge/v1/rev/` + hex(HMAC-SHA256(revokedIdKey, token)), sealed like the token's
 * entry (a key needing the secret and the token, bound to the marker's own name): only
 * an edge that holds the token and the secret can write one, so memcached's other clients
 * cannot make an edge refuse a valid token.
 */
import { createHmac, hash, hkdfSync, randomBytes } from "node:crypto";

/** Prefix of every memcached key we write; the version changes with the entry format. */
export const MEMCACHED_KEY_PREFIX = "keystone-edge/v1/";
/** Prefix of the memcached keys of contexts. */
export const CONTEXT_KEY_PREFIX = "keystone-edge/v1/ctx/";
/** Prefix of the memcached keys of revocation markers. */
export const REVOKED_KEY_PREFIX = "keystone-edge/v1/rev/";
/** Shortest secret accepted, bytes (the configuration requires 16 characters). */
export const MIN_SECRET_BYTES = 16;

const HKDF_SALT = "keystone-edge cache";
const ID_INFO = "keystone-edge/v1 cache-key";
const L1_INFO = "keystone-edge/v1 l1-key";
const SEAL_SALT_INFO = "keystone-edge/v1 seal-salt";
const AES_INFO = "keystone-edge/v1 aes-256-gcm";
const CONTEXT_ID_INFO = "keystone-edge/v1 context-key";
const CONTEXT_AES_INFO = "keystone-edge/v1 context aes-256-gcm";
const REVOKED_ID_INFO = "keystone-edge/v1 revoked-key";
/** base64url characters of the L1 key: 22 = 128 bits, collisions out of reach. */
const L1_KEY_CHARS = 22;

/** The names of one token's cache entries. */
export interface TokenKeys {
  /** Key of the in-process cache: 22 base64url characters. */
  readonly l1Key: string;
  /** Key of the memcached entry: `keystone-edge/v1/` + 64 lowercase hex (81 bytes). */
  readonly memcachedKey: string;
}

/** What seals and opens one token's memcached entry (see sealed.ts). */
export interface SealingKey {
  /** AES-256-GCM key, 32 bytes: needs the secret and the token. */
  readonly aesKey: Buffer;
  /** The memcached key the entry lives under; bound into the entry as associated data. */
  readonly boundKey: string;
}

/** Derives cache keys from tokens with one secret. */
export class CacheKeyer {
  readonly #l1Prefix: string;
  readonly #idKey: Buffer;
  readonly #sealSalt: Buffer;
  readonly #contextIdKey: Buffer;
  readonly #contextAesKey: Buffer;
  readonly #revokedIdKey: Buffer;

  /**
   * @param secret `cache.memcache_secret_key` (UTF-8), or random bytes when memcached is off
   *   (see {@link CacheKeyer.random}). At least {@link MIN_SECRET_BYTES} bytes.
   * @throws RangeError when the secret is shorter.
   */
  constructor(secret: string | Uint8Array) {
    const bytes = typeof secret === "string" ? Buffer.from(secret, "utf8") : Buffer.from(secret);
    if (bytes.length < MIN_SECRET_BYTES) {
      throw new RangeError(`the cache secret must be at least ${MIN_SECRET_BYTES} bytes`);
    }
    this.#l1Prefix = Buffer.from(hkdfSync("sha256", bytes, HKDF_SALT, L1_INFO, 32)).toString("hex");
    this.#idKey = Buffer.from(hkdfSync("sha256", bytes, HKDF_SALT, ID_INFO, 32));
    this.#sealSalt = Buffer.from(hkdfSync("sha256", bytes, HKDF_SALT, SEAL_SALT_INFO, 32));
    this.#contextIdKey = Buffer.from(hkdfSync("sha256", bytes, HKDF_SALT, CONTEXT_ID_INFO, 32));
    this.#contextAesKey = Buffer.from(hkdfSync("sha256", bytes, HKDF_SALT, CONTEXT_AES_INFO, 32));
    this.#revokedIdKey = Buffer.from(hkdfSync("sha256", bytes, HKDF_SALT, REVOKED_ID_INFO, 32));
    bytes.fill(0);
  }

  /** A keyer with a fresh random 32-byte secret: for a process whose cache is L1 only. */
  static random(): CacheKeyer {
    return new CacheKeyer(randomBytes(32));
  }

  /** Both keys of `token`'s entries. */
  keys(token: string): TokenKeys {
    return { l1Key: this.l1Key(token), memcachedKey: this.memcachedKey(token) };
  }

  /** The in-process cache's key for `token`: one SHA-256, the hot path's only crypto. */
  l1Key(token: string): string {
    return hash("sha256", this.#l1Prefix + token, "base64url").slice(0, L1_KEY_CHARS);
  }

  /** The memcached key of `token`'s entry: one HMAC-SHA256. */
  memcachedKey(token: string): string {
    return (
      MEMCACHED_KEY_PREFIX + createHmac("sha256", this.#idKey).update(token, "utf8").digest("hex")
    );
  }

  /**
   * The key sealing `token`'s memcached entry, bound to `memcachedKey` (default: the one
   * {@link memcachedKey} gives; pass it when already known to save an HMAC).
   */
  sealingKey(token: string, memcachedKey: string = this.memcachedKey(token)): SealingKey {
    const aesKey = Buffer.from(hkdfSync("sha256", token, this.#sealSalt, AES_INFO, 32));
    return { aesKey, boundKey: memcachedKey };
  }

  /** The memcached key of `token`'s revocation marker: one HMAC-SHA256. */
  revokedKey(token: string): string {
    return (
      REVOKED_KEY_PREFIX +
      createHmac("sha256", this.#revokedIdKey).update(token, "utf8").digest("hex")
    );
  }

  /** The memcached key and sealing key of the context under `contextKey` (one HMAC). */
  contextSealingKey(contextKey: string): SealingKey {
    const boundKey =
      CONTEXT_KEY_PREFIX +
      createHmac("sha256", this.#contextIdKey).update(contextKey, "utf8").digest("hex");
    return { aesKey: this.#contextAesKey, boundKey };
  }

  /** Never shows key material when printed. */
  toJSON(): string {
    return "CacheKeyer";
  }
}
