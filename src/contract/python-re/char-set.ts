/**
 * Character sets of Python's `re` (str patterns, no flags): ranges, negation and the
 * categories `\d \D \s \S \w \W` with Python's Unicode meaning.
 *
 * Owns: whether a code point is in a set, and the word test `\b`/`\B` use.
 */

/** Python's `\d \D \s \S \w \W` (Unicode, str patterns), as bits. */
export const CAT_DIGIT = 1;
export const CAT_NOT_DIGIT = 2;
export const CAT_SPACE = 4;
export const CAT_NOT_SPACE = 8;
export const CAT_WORD = 16;
export const CAT_NOT_WORD = 32;

/** `str.isspace()`, CPython 3.11: the whole list. */
const PY_SPACE = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001,
  0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f,
  0x205f, 0x3000,
]);
// Fixed expressions (never user data): Unicode categories, for code points beyond ASCII.
const UNI_WORD = /^[\p{L}\p{N}_]$/u;
const UNI_DIGIT = /^\p{Nd}$/u;

function isDigit(cp: number): boolean {
  if (cp < 0x80) return cp >= 0x30 && cp <= 0x39;
  return UNI_DIGIT.test(String.fromCodePoint(cp));
}
export function isWord(cp: number): boolean {
  if (cp < 0x80) {
    return (
      (cp >= 0x30 && cp <= 0x39) ||
      (cp >= 0x41 && cp <= 0x5a) ||
      (cp >= 0x61 && cp <= 0x7a) ||
      cp === 0x5f
    );
  }
  return UNI_WORD.test(String.fromCodePoint(cp));
}

function inCategories(cats: number, cp: number): boolean {
  if (cats & (CAT_DIGIT | CAT_NOT_DIGIT)) {
    const d = isDigit(cp);
    if ((cats & CAT_DIGIT && d) || (cats & CAT_NOT_DIGIT && !d)) return true;
  }
  if (cats & (CAT_SPACE | CAT_NOT_SPACE)) {
    const s = PY_SPACE.has(cp);
    if ((cats & CAT_SPACE && s) || (cats & CAT_NOT_SPACE && !s)) return true;
  }
  if (cats & (CAT_WORD | CAT_NOT_WORD)) {
    const w = isWord(cp);
    if ((cats & CAT_WORD && w) || (cats & CAT_NOT_WORD && !w)) return true;
  }
  return false;
}

/** One position's worth of characters: ranges and categories, maybe negated. */
export interface CharSetSpec {
  readonly negate: boolean;
  /** Inclusive [lo, hi] pairs. */
  readonly ranges: readonly number[];
  readonly cats: number;
}

export class CharSet {
  /** Membership of ASCII code points, 4 × 32 bits. */
  readonly ascii = new Uint32Array(4);

  constructor(private readonly spec: CharSetSpec) {
    if (spec.cats === 0) {
      for (let k = 0; k < spec.ranges.length; k += 2) {
        const hi = Math.min(spec.ranges[k + 1] ?? -1, 0x7f);
        for (let cp = spec.ranges[k] ?? 0; cp <= hi; cp++) this.setBit(cp);
      }
      if (spec.negate) for (let w = 0; w < 4; w++) this.ascii[w] = ~(this.ascii[w] ?? 0);
    } else {
      for (let cp = 0; cp < 0x80; cp++) if (this.slow(cp)) this.setBit(cp);
    }
  }

  has(cp: number): boolean {
    if (cp < 0x80) return (((this.ascii[cp >> 5] ?? 0) >>> (cp & 31)) & 1) === 1;
    return this.slow(cp);
  }

  private setBit(cp: number): void {
    this.ascii[cp >> 5] = (this.ascii[cp >> 5] ?? 0) | (1 << (cp & 31));
  }

  private slow(cp: number): boolean {
    const { ranges, cats, negate } = this.spec;
    let hit = false;
    for (let k = 0; k < ranges.length && !hit; k += 2) {
      hit = cp >= (ranges[k] ?? 0) && cp <= (ranges[k + 1] ?? -1);
    }
    if (!hit && cats !== 0) hit = inCategories(cats, cp);
    return hit !== negate;
  }
}

/** `\w`, for the ASCII classes of programs that use `\b`. */
export const WORD_SET = new CharSet({ negate: false, ranges: [], cats: CAT_WORD });
