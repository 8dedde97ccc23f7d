import { createCipheriv, createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { TokenError } from "../../src/errors.js";
import {
  MAX_TOKEN_CHARS,
  openEnvelope,
  parseFernetKey,
  sealEnvelope,
  tokenBytes,
} from "../../src/fernet/envelope.js";
import { makeRing } from "./helpers.js";

function open(token: string, keys: Parameters<typeof openEnvelope>[1]) {
  const bytes = tokenBytes(token);
  if (bytes instanceof TokenError) return bytes;
  return openEnvelope(bytes, keys);
}

describe("Fernet envelope", () => {
  const { ring } = makeRing([0, 1, 2]);
  const plaintext = Buffer.from("hello keystone");

  it("round-trips and reports the issued-at timestamp and the key that verified", () => {
    const token = sealEnvelope(plaintext, ring.primary.key, { issuedAtSeconds: 1_700_000_000 });
    expect(token).not.toContain("=");
    const opened = open(token, ring.keys);
    expect(opened).not.toBeInstanceOf(TokenError);
    if (opened instanceof TokenError) return;
    expect(opened.plaintext.equals(plaintext)).toBe(true);
    expect(opened.issuedAtSeconds).toBe(1_700_000_000);
    expect(opened.keyPosition).toBe(0);
  });

  it("tries keys in ring order: a token signed by the staged key opens at the last position", () => {
    const staged = ring.entries.find((e) => e.index === 0);
    if (!staged) throw new Error("no staged key");
    const token = sealEnvelope(plaintext, staged.key);
    const opened = open(token, ring.keys);
    if (opened instanceof TokenError) throw opened;
    expect(opened.keyPosition).toBe(ring.size - 1);
  });

  it("accepts the token with its base64 padding restored", () => {
    const token = sealEnvelope(plaintext, ring.primary.key);
    const padded = token + "=".repeat((4 - (token.length % 4)) % 4);
    expect(open(padded, ring.keys)).not.toBeInstanceOf(TokenError);
  });

  it("rejects a token no key in the ring signed", () => {
    const other = makeRing([5]).ring;
    const token = sealEnvelope(plaintext, other.primary.key);
    const result = open(token, ring.keys);
    expect(result).toBeInstanceOf(TokenError);
    expect((result as TokenError).code).toBe("bad_signature");
  });

  it("rejects any flipped bit in the signed part or the MAC", () => {
    const token = sealEnvelope(plaintext, ring.primary.key);
    const bytes = Buffer.from(token, "base64url");
    for (const at of [1, 9, 30, bytes.length - 40, bytes.length - 1]) {
      const copy = Buffer.from(bytes);
      copy[at] = (copy[at] as number) ^ 0x01;
      const result = open(copy.toString("base64url"), ring.keys);
      expect((result as TokenError).code, `byte ${at}`).toBe("bad_signature");
    }
  });

  it("never decrypts when no key's HMAC matches", () => {
    // A key whose block decipher records every use.
    const real = ring.primary.key;
    let decryptions = 0;
    const spy = {
      ...real,
      blockDecipher: new Proxy(real.blockDecipher, {
        get(target, prop, receiver) {
          if (prop === "update") decryptions++;
          const value: unknown = Reflect.get(target, prop, receiver);
          return typeof value === "function"
            ? (value as (...a: unknown[]) => unknown).bind(target)
            : value;
        },
      }),
    };
    const token = sealEnvelope(plaintext, real);
    const forged = Buffer.from(token, "base64url");
    forged[forged.length - 1] = (forged[forged.length - 1] as number) ^ 1;
    expect((open(forged.toString("base64url"), [spy]) as TokenError).code).toBe("bad_signature");
    expect(decryptions).toBe(0);
    expect(open(token, [spy])).not.toBeInstanceOf(TokenError);
    expect(decryptions).toBe(1);
  });

  it("refuses short or ragged input even when called without tokenBytes", () => {
    const key = ring.primary.key;
    const token = Buffer.from(sealEnvelope(plaintext, key), "base64url");
    expect((openEnvelope(token.subarray(0, 20), ring.keys) as TokenError).code).toBe("malformed");
    // A correctly signed but ragged ciphertext must not reach (and poison) the shared
    // block decipher: the next good token with that key still opens.
    const header = token.subarray(0, 25);
    const ragged = Buffer.concat([header, Buffer.alloc(20, 1)]);
    const mac = createHmac("sha256", key.signing).update(ragged).digest();
    const result = openEnvelope(Buffer.concat([ragged, mac]), ring.keys);
    expect((result as TokenError).code).toBe("malformed");
    expect(openEnvelope(token, ring.keys)).not.toBeInstanceOf(TokenError);
  });

  it("checks the HMAC before decrypting: bad padding under a bad MAC is bad_signature", () => {
    // A correctly signed envelope whose ciphertext has invalid PKCS7 padding.
    const key = ring.primary.key;
    const iv = Buffer.alloc(16, 7);
    const cipher = createCipheriv("aes-128-cbc", key.encryption, iv).setAutoPadding(false);
    const ciphertext = Buffer.concat([cipher.update(Buffer.alloc(16, 0)), cipher.final()]);
    const header = Buffer.concat([Buffer.from([0x80]), Buffer.alloc(8), iv]);
    const signed = Buffer.concat([header, ciphertext]);
    const mac = createHmac("sha256", key.signing).update(signed).digest();
    const good = Buffer.concat([signed, mac]).toString("base64url");
    expect((open(good, ring.keys) as TokenError).code).toBe("bad_payload");
    mac[0] = (mac[0] as number) ^ 0xff;
    const forged = Buffer.concat([signed, mac]).toString("base64url");
    expect((open(forged, ring.keys) as TokenError).code).toBe("bad_signature");
  });

  it.each([
    ["empty", ""],
    ["not base64", "gAAAAA!!notbase64"],
    ["too short", Buffer.alloc(40, 0x80).toString("base64url")],
    [
      "wrong version byte",
      Buffer.concat([Buffer.from([0x81]), Buffer.alloc(88)]).toString("base64url"),
    ],
    [
      "ragged ciphertext",
      Buffer.concat([Buffer.from([0x80]), Buffer.alloc(80)]).toString("base64url"),
    ],
    ["impossible length", "A".repeat(101)],
    ["too long", "A".repeat(MAX_TOKEN_CHARS + 4)],
  ])("rejects %s input as malformed", (_name, token) => {
    const result = tokenBytes(token);
    expect(result).toBeInstanceOf(TokenError);
    expect((result as TokenError).code).toBe("malformed");
  });

  it("parses Keystone's key file format and refuses anything else", () => {
    const text = "5y8Z0Bvb_Q0Fzm1wMq1k0HltVlHCN4HDZ7hNjlqIhGQ=";
    expect(typeof parseFernetKey(text)).toBe("object");
    expect(typeof parseFernetKey(text + "\n")).toBe("object");
    expect(parseFernetKey(text.slice(0, 40))).toMatch(/32 bytes/);
    expect(parseFernetKey("not a key at all, not a key at all, not a k=")).toMatch(/base64/);
    // What Keystone's lenient decoder also takes: the standard alphabet, wrapped lines,
    // no padding. The same key bytes either way.
    const std = text.replace("_", "/");
    const parsedStd = parseFernetKey(std);
    const parsedUrl = parseFernetKey(text);
    if (typeof parsedStd === "string" || typeof parsedUrl === "string") throw new Error();
    expect(parsedStd.fingerprint).toBe(parsedUrl.fingerprint);
    expect(typeof parseFernetKey(`${text.slice(0, 20)}\n${text.slice(20)}`)).toBe("object");
    expect(typeof parseFernetKey(text.slice(0, 43))).toBe("object");
    expect(parseFernetKey(text.replace("_", "*"))).toMatch(/base64/);
    expect(parseFernetKey(text + "junk")).toMatch(/base64/);
  });

  it("gives equal keys equal fingerprints and different keys different ones", () => {
    const text = "5y8Z0Bvb_Q0Fzm1wMq1k0HltVlHCN4HDZ7hNjlqIhGQ=";
    const a = parseFernetKey(text);
    const b = parseFernetKey(text);
    const c = parseFernetKey("6y8Z0Bvb_Q0Fzm1wMq1k0HltVlHCN4HDZ7hNjlqIhGQ=");
    if (typeof a === "string" || typeof b === "string" || typeof c === "string") throw new Error();
    expect(a.fingerprint).toBe(b.fingerprint);
    expect(a.fingerprint).not.toBe(c.fingerprint);
    expect(a.fingerprint).toMatch(/^[0-9a-f]{16}$/);
  });
});
