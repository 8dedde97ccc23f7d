import { describe, expect, it } from "vitest";
import { AuthMethods, DEFAULT_AUTH_METHODS } from "../../src/token/methods.js";

describe("AuthMethods", () => {
  const methods = new AuthMethods();

  it("uses Keystone's default list and bit order", () => {
    expect(methods.list).toEqual(DEFAULT_AUTH_METHODS);
    expect(methods.encode(["external"])).toBe(1);
    expect(methods.encode(["password"])).toBe(2);
    expect(methods.encode(["application_credential"])).toBe(32);
  });

  it("decodes highest bit first, as Keystone's convert_integer_to_method_list does", () => {
    expect(methods.decode(0)).toEqual([]);
    expect(methods.decode(2)).toEqual(["password"]);
    expect(methods.decode(2 + 4)).toEqual(["token", "password"]);
    expect(methods.decode(63)).toEqual([...DEFAULT_AUTH_METHODS].reverse());
  });

  it("reproduces Keystone's answer for bits beyond the configured list", () => {
    // trunc(66 / bit) is never exactly 1 for any configured bit: Keystone returns [].
    expect(methods.decode(64 + 2)).toEqual([]);
    // 64 / 32 = 2, so 32 is skipped; 64 alone yields [] too.
    expect(methods.decode(64)).toEqual([]);
  });

  it("gives a site that adds totp the next bit", () => {
    const withTotp = new AuthMethods([...DEFAULT_AUTH_METHODS, "totp"]);
    expect(withTotp.encode(["password", "totp"])).toBe(2 + 64);
    expect(withTotp.decode(66)).toEqual(["totp", "password"]);
    // The same mask read with the default list loses totp, exactly as Keystone would.
    expect(methods.decode(66)).toEqual([]);
  });

  it("reads Keystone's pseudo-method bits beyond 32 bits, whatever the list", () => {
    expect(methods.decode(2 ** 32 + 2)).toEqual(["ec2credential", "password"]);
    expect(methods.decode(2 ** 33 + 2 ** 32)).toEqual(["oauth2_credential", "ec2credential"]);
    expect(methods.encode(["oauth2_credential", "password"])).toBe(2 ** 33 + 2);
    const withTotp = new AuthMethods([...DEFAULT_AUTH_METHODS, "totp"]);
    expect(withTotp.decode(2 ** 32 + 64)).toEqual(["ec2credential", "totp"]);
  });

  it("encodes as Keystone does, ignoring unknown names and counting repeats", () => {
    expect(methods.encode(["password", "nope"])).toBe(2);
    expect(methods.encode(["password", "password"])).toBe(4);
  });

  it("refuses a list Keystone could not have", () => {
    expect(() => new AuthMethods([])).toThrow(/empty/);
    expect(() => new AuthMethods(["password", "password"])).toThrow(/twice/);
    expect(() => new AuthMethods(["password", ""])).toThrow(/empty/);
    expect(() => new AuthMethods(Array.from({ length: 33 }, (_, i) => `m${i}`))).toThrow(/32/);
    expect(() => new AuthMethods(["password", "ec2credential"])).toThrow(/pseudo-method/);
  });
});
