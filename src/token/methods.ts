/**
 * Authentication methods ↔ the integer a token carries.
 *
 * Owns: Keystone's encoding of `methods` as a bitmask over its `[auth] methods` list, in
 * config order (bit 1 for the first). The list is configuration, not a constant: a site
 * that adds `totp` gets the next bit, so the edge must be told the same list. Current
 * Keystone (and Debian's patched 22.0.2) also reserves two fixed pseudo-method bits for
 * tokens issued from EC2 and OAuth 2.0 credentials, whatever the list says.
 */

/** Keystone's default `[auth] methods`. */
export const DEFAULT_AUTH_METHODS: readonly string[] = Object.freeze([
  "external",
  "password",
  "token",
  "oauth1",
  "mapped",
  "application_credential",
]);

/**
 * Keystone's `_PSEUDO_METHOD_BITS`: methods that are not in `[auth] methods` but mark how
 * a token was obtained, so that credentials derived from it can be restricted.
 */
export const PSEUDO_METHOD_BITS: ReadonlyMap<number, string> = new Map([
  [2 ** 32, "ec2credential"],
  [2 ** 33, "oauth2_credential"],
]);

/** More configured methods would collide with the pseudo-method bits. */
const MAX_METHODS = 32;
const CACHE_LIMIT = 1024;

export class AuthMethods {
  private readonly names: readonly string[];
  /** `[bit, name]`, highest bit first: Keystone's method map, sorted as it walks it. */
  private readonly bits: readonly (readonly [number, string])[];
  private readonly cache = new Map<number, readonly string[]>();

  /**
   * @param names Keystone's `[auth] methods`, in the same order. Default
   *   {@link DEFAULT_AUTH_METHODS}.
   * @throws RangeError for an empty list, duplicates, empty names, a pseudo-method name or
   *   more than 32 methods.
   */
  constructor(names: readonly string[] = DEFAULT_AUTH_METHODS) {
    if (names.length === 0) throw new RangeError("the auth methods list is empty");
    if (names.length > MAX_METHODS) {
      throw new RangeError(`at most ${MAX_METHODS} auth methods are supported`);
    }
    const seen = new Set<string>();
    for (const name of names) {
      if (name.length === 0) throw new RangeError("an auth method name is empty");
      if (seen.has(name)) throw new RangeError(`auth method "${name}" is listed twice`);
      if ([...PSEUDO_METHOD_BITS.values()].includes(name)) {
        throw new RangeError(`"${name}" is a pseudo-method Keystone adds itself; do not list it`);
      }
      seen.add(name);
    }
    this.names = Object.freeze([...names]);
    const map = new Map<number, string>(names.map((name, i) => [2 ** i, name]));
    for (const [bit, name] of PSEUDO_METHOD_BITS) map.set(bit, name);
    this.bits = [...map].sort((a, b) => b[0] - a[0]);
  }

  get list(): readonly string[] {
    return this.names;
  }

  /**
   * Keystone's `convert_integer_to_method_list`, faithfully: walk the method map's bits
   * (configured and pseudo) from the highest, taking a method when `trunc(mask / bit) == 1`.
   * Methods come out highest bit first (`password` + `token` → `["token", "password"]`). A
   * mask with bits beyond the map yields what Keystone yields (often `[]`), never an error.
   * Plain arithmetic, not bitwise operators: the pseudo bits lie beyond 32 bits.
   */
  decode(mask: number): readonly string[] {
    const cached = this.cache.get(mask);
    if (cached) return cached;
    const methods: string[] = [];
    let rest = mask;
    if (rest !== 0) {
      for (const [bit, name] of this.bits) {
        if (Math.trunc(rest / bit) === 1) {
          methods.push(name);
          rest -= bit;
        }
      }
    }
    const frozen = Object.freeze(methods);
    if (this.cache.size < CACHE_LIMIT) this.cache.set(mask, frozen);
    return frozen;
  }

  /**
   * Keystone's `convert_method_list_to_integer`: the sum of the bits of the known names,
   * pseudo-methods included (unknown names add nothing, as in Keystone).
   */
  encode(methods: readonly string[]): number {
    let mask = 0;
    for (const method of methods) {
      for (const [bit, name] of this.bits) if (name === method) mask += bit;
    }
    return mask;
  }
}
