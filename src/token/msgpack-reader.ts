/**
 * A strict, schema-directed msgpack reader for Fernet payloads.
 *
 * Owns: reading the msgpack subset Keystone writes (arrays, booleans, integers, floats,
 * `str`/`bin`/old-style `raw`) straight out of the decrypted buffer, field by field, with
 * no intermediate objects. Why not a general decoder (see docs/decisions.md): a general
 * decoder builds a tree of views and arrays only for the payload reader to walk it again;
 * reading in place halves the payload's share of a cold decode, and lets the reader treat
 * `str` and `bin` alike (msgpack < 1.0 wrote 16-byte ids as `raw` strings), which the
 * library cannot do without also decoding text. Anything unexpected throws
 * {@link MsgpackShapeError}; the payload reader turns that into `bad_payload`.
 * Encoding (minting) uses @msgpack/msgpack; the tests check this reader against it.
 */

/** The input is not msgpack, or not the shape asked for. */
export class MsgpackShapeError extends Error {}

const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) =>
  i.toString(16).padStart(2, "0"),
);
// ignoreBOM: keep a leading U+FEFF, as Python's bytes.decode("utf-8") does; dropping it
// would let "\ufeffadmin" read as "admin".
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** Nesting allowed when skipping fields this reader does not know. */
const MAX_SKIP_DEPTH = 16;

export class MsgpackReader {
  private at = 0;

  constructor(private readonly buf: Buffer) {}

  /** True when every byte has been read. */
  get atEnd(): boolean {
    return this.at === this.buf.length;
  }

  private fail(what: string): never {
    throw new MsgpackShapeError(what);
  }

  private need(bytes: number): void {
    if (this.at + bytes > this.buf.length) this.fail("the payload ends early");
  }

  private byte(): number {
    this.need(1);
    return this.buf[this.at++] as number;
  }

  /** Reads an array header; returns the number of elements. */
  arrayLength(what: string): number {
    const b = this.byte();
    if (b >= 0x90 && b <= 0x9f) return b & 0x0f;
    if (b === 0xdc) {
      this.need(2);
      const n = this.buf.readUInt16BE(this.at);
      this.at += 2;
      return n;
    }
    if (b === 0xdd) {
      this.need(4);
      const n = this.buf.readUInt32BE(this.at);
      this.at += 4;
      return n;
    }
    return this.fail(`${what} is not a list`);
  }

  boolean(what: string): boolean {
    const b = this.byte();
    if (b === 0xc3) return true;
    if (b === 0xc2) return false;
    return this.fail(`${what} is not a boolean`);
  }

  /** An integer that fits a double exactly. */
  integer(what: string): number {
    const b = this.byte();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    const buf = this.buf;
    let n: number;
    switch (b) {
      case 0xcc:
        this.need(1);
        n = buf.readUInt8(this.at);
        this.at += 1;
        return n;
      case 0xcd:
        this.need(2);
        n = buf.readUInt16BE(this.at);
        this.at += 2;
        return n;
      case 0xce:
        this.need(4);
        n = buf.readUInt32BE(this.at);
        this.at += 4;
        return n;
      case 0xcf:
      case 0xd3: {
        this.need(8);
        const big = b === 0xcf ? buf.readBigUInt64BE(this.at) : buf.readBigInt64BE(this.at);
        this.at += 8;
        if (big > BigInt(Number.MAX_SAFE_INTEGER) || big < BigInt(Number.MIN_SAFE_INTEGER)) {
          return this.fail(`${what} is too large`);
        }
        return Number(big);
      }
      case 0xd0:
        this.need(1);
        n = buf.readInt8(this.at);
        this.at += 1;
        return n;
      case 0xd1:
        this.need(2);
        n = buf.readInt16BE(this.at);
        this.at += 2;
        return n;
      case 0xd2:
        this.need(4);
        n = buf.readInt32BE(this.at);
        this.at += 4;
        return n;
      default:
        this.at--;
        return this.fail(`${what} is not an integer`);
    }
  }

  /** A float or an integer. */
  number(what: string): number {
    const b = this.buf[this.at];
    if (b === 0xcb) {
      this.at++;
      this.need(8);
      const f = this.buf.readDoubleBE(this.at);
      this.at += 8;
      return f;
    }
    if (b === 0xca) {
      this.at++;
      this.need(4);
      const f = this.buf.readFloatBE(this.at);
      this.at += 4;
      return f;
    }
    return this.integer(what);
  }

  /** Reads a `str`, `bin` or old `raw` header; returns the byte length, positioned at the data. */
  private bytesHeader(what: string): number {
    const b = this.byte();
    if (b >= 0xa0 && b <= 0xbf) return b & 0x1f;
    let size: number;
    switch (b) {
      case 0xc4:
      case 0xd9:
        size = 1;
        break;
      case 0xc5:
      case 0xda:
        size = 2;
        break;
      case 0xc6:
      case 0xdb:
        size = 4;
        break;
      default:
        return this.fail(`${what} is not a string`);
    }
    this.need(size);
    const n = this.buf.readUIntBE(this.at, size);
    this.at += size;
    this.need(n);
    return n;
  }

  /** `str` or `bin` as strict UTF-8 text (Python's `bytes.decode('utf-8')`). */
  text(what: string): string {
    const n = this.bytesHeader(what);
    const start = this.at;
    this.at += n;
    const buf = this.buf;
    for (let i = start; i < start + n; i++) {
      if ((buf[i] as number) >= 0x80) {
        try {
          return utf8.decode(buf.subarray(start, start + n));
        } catch {
          return this.fail(`${what} is not valid UTF-8`);
        }
      }
    }
    return buf.toString("latin1", start, start + n);
  }

  /** Exactly 16 bytes (`str` or `bin`) as 32 lowercase hex characters: a UUID's `.hex`. */
  uuidHex(what: string): string {
    const n = this.bytesHeader(what);
    if (n !== 16) this.fail(`${what} is not a 16-byte id`);
    const buf = this.buf;
    const s = this.at;
    this.at += 16;
    return (
      (HEX[buf[s] as number] as string) +
      (HEX[buf[s + 1] as number] as string) +
      (HEX[buf[s + 2] as number] as string) +
      (HEX[buf[s + 3] as number] as string) +
      (HEX[buf[s + 4] as number] as string) +
      (HEX[buf[s + 5] as number] as string) +
      (HEX[buf[s + 6] as number] as string) +
      (HEX[buf[s + 7] as number] as string) +
      (HEX[buf[s + 8] as number] as string) +
      (HEX[buf[s + 9] as number] as string) +
      (HEX[buf[s + 10] as number] as string) +
      (HEX[buf[s + 11] as number] as string) +
      (HEX[buf[s + 12] as number] as string) +
      (HEX[buf[s + 13] as number] as string) +
      (HEX[buf[s + 14] as number] as string) +
      (HEX[buf[s + 15] as number] as string)
    );
  }

  /** `str` or `bin` bytes as urlsafe base64 without padding (Keystone's audit ids). */
  base64url(what: string): string {
    const n = this.bytesHeader(what);
    const start = this.at;
    this.at += n;
    return this.buf.toString("base64url", start, start + n);
  }

  /**
   * `str` or `bin` that is either the text `literal` (given as its UTF-8 bytes) or exactly
   * 16 bytes: version 1's domain id. Returns the literal, the hex, or undefined when it is
   * neither.
   */
  literalOrUuidHex(literal: string, literalBytes: Buffer, what: string): string | undefined {
    const start = this.at;
    const n = this.bytesHeader(what);
    const dataAt = this.at;
    if (literalBytes.length === n && literalBytes.compare(this.buf, dataAt, dataAt + n) === 0) {
      this.at += n;
      return literal;
    }
    if (n === 16) {
      this.at = start;
      return this.uuidHex(what);
    }
    this.at += n;
    return undefined;
  }

  /** Skips one value of any type (fields a newer Keystone may append). */
  skip(depth = 0): void {
    if (depth > MAX_SKIP_DEPTH) this.fail("the payload nests too deeply");
    const b = this.byte();
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) return;
    if (b >= 0x80 && b <= 0x8f) return this.skipMany((b & 0x0f) * 2, depth);
    if (b >= 0x90 && b <= 0x9f) return this.skipMany(b & 0x0f, depth);
    if (b >= 0xa0 && b <= 0xbf) return this.advance(b & 0x1f);
    const fixed: Record<number, number> = {
      0xca: 4,
      0xcb: 8,
      0xcc: 1,
      0xcd: 2,
      0xce: 4,
      0xcf: 8,
      0xd0: 1,
      0xd1: 2,
      0xd2: 4,
      0xd3: 8,
      0xd4: 2,
      0xd5: 3,
      0xd6: 5,
      0xd7: 9,
      0xd8: 17,
    };
    const f = fixed[b];
    if (f !== undefined) return this.advance(f);
    const sized: Record<number, [number, "bytes" | "ext" | "array" | "map"]> = {
      0xc4: [1, "bytes"],
      0xc5: [2, "bytes"],
      0xc6: [4, "bytes"],
      0xd9: [1, "bytes"],
      0xda: [2, "bytes"],
      0xdb: [4, "bytes"],
      0xc7: [1, "ext"],
      0xc8: [2, "ext"],
      0xc9: [4, "ext"],
      0xdc: [2, "array"],
      0xdd: [4, "array"],
      0xde: [2, "map"],
      0xdf: [4, "map"],
    };
    const s = sized[b];
    if (s === undefined) return this.fail("the payload is not valid msgpack");
    const [size, kind] = s;
    this.need(size);
    const n = this.buf.readUIntBE(this.at, size);
    this.at += size;
    switch (kind) {
      case "bytes":
        return this.advance(n);
      case "ext":
        return this.advance(n + 1);
      case "array":
        return this.skipMany(n, depth);
      case "map":
        return this.skipMany(n * 2, depth);
    }
  }

  private advance(bytes: number): void {
    this.need(bytes);
    this.at += bytes;
  }

  private skipMany(count: number, depth: number): void {
    // Each value takes at least one byte: a count beyond what is left is malformed.
    if (count > this.buf.length - this.at) this.fail("the payload ends early");
    for (let i = 0; i < count; i++) this.skip(depth + 1);
  }
}
