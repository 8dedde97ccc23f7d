/**
 * Authentication methods ↔ the integer a token carries.
 *
 * Owns: Keystone's encoding of `methods` as a bitmask over its `[auth] methods` list, in
 * config order (bit 1 for the first). The list is configuration, not a constant: a site
 * that adds `totp` gets the next bit, so the edge must be told the same list.
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

/** Beyond this many methods a bit no longer fits exactly in a double. */
const MAX_METHODS = 52;
const CACHE_LIMIT = 1024;

export class AuthMethods {
  private readonly names: readonly string[];
  private readonly cache = new Map<number, readonly string[]>();

  /**
   * @param names Keystone's `[auth] methods`, in the same order. Default
   *   {@link DEFAULT_AUTH_METHODS}.
   * @throws RangeError for an empty list, duplicates, empty names or more than 52 methods.
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
      seen.add(name);
    }
    this.names = Object.freeze([...names]);
  }

  get list(): readonly string[] {
    return this.names;
  }

  /**
   * Keystone's `convert_integer_to_method_list`, faithfully: walk the configured bits from
   * the highest, taking a method when `trunc(mask / bit) == 1`. Methods come out highest bit
   * first (`password` + `token` → `["token", "password"]`). A mask with bits beyond the list
   * yields what Keystone yields (often `[]`), never an error.
   */
  decode(mask: number): readonly string[] {
    const cached = this.cache.get(mask);
    if (cached) return cached;
    const methods: string[] = [];
    let rest = mask;
    if (rest !== 0) {
      for (let i = this.names.length - 1; i >= 0; i--) {
        const bit = 2 ** i;
        if (Math.trunc(rest / bit) === 1) {
          methods.push(this.names[i] as string);
          rest -= bit;
        }
      }
    }
    const frozen = Object.freeze(methods);
    if (this.cache.size < CACHE_LIMIT) this.cache.set(mask, frozen);
    return frozen;
  }

  /**
   * Keystone's `convert_method_list_to_integer`: the sum of the bits of the known names
   * (unknown names add nothing, as in Keystone).
   */
  encode(methods: readonly string[]): number {
    let mask = 0;
    for (const method of methods) {
      const i = this.names.indexOf(method);
      if (i >= 0) mask += 2 ** i;
    }
    return mask;
  }
}
