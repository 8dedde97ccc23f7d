/**
 * Python's `re` parser (3.11, `re/_parser.py`), for the subset the edge runs and with its
 * errors: a pattern → an AST, or the reason it matches nothing ({@link PatternRefusal}).
 *
 * Owns: what is a valid Python expression and what the edge refuses to run (see
 * path-pattern.ts for the list).
 */
import {
  CAT_DIGIT,
  CAT_NOT_DIGIT,
  CAT_NOT_SPACE,
  CAT_NOT_WORD,
  CAT_SPACE,
  CAT_WORD,
  type CharSetSpec,
} from "./char-set.js";

/** Deepest group nesting compiled; deeper patterns match nothing (CPython recurses on them). */
const MAX_GROUP_DEPTH = 100;

/** Why a pattern matches nothing. */
export type PatternRefusal =
  /** Longer than `maxPatternLength`. */
  | { readonly kind: "too_long"; readonly length: number }
  /** Python's `re` refuses the expression (keystonemiddleware fails the request). */
  | { readonly kind: "invalid"; readonly message: string }
  /** Valid for Python, but a construct the edge does not run: refused, the safe side. */
  | { readonly kind: "unsupported"; readonly construct: string };

const OPEN_BRACE = 0x7b;

/** Zero-width assertions. */
export const AT_BEGINNING = 0; // ^ and \A (no MULTILINE)
export const AT_END = 1; // $: the end, or before a final \n
export const AT_END_STRING = 2; // \Z
export const AT_BOUNDARY = 3; // \b
export const AT_NON_BOUNDARY = 4; // \B

export type Ast =
  | { readonly t: "set"; readonly spec: CharSetSpec }
  | { readonly t: "seq"; readonly items: readonly Ast[] }
  | { readonly t: "alt"; readonly items: readonly Ast[] }
  | { readonly t: "repeat"; readonly min: 0 | 1; readonly many: boolean; readonly item: Ast }
  | { readonly t: "group"; readonly item: Ast }
  | { readonly t: "at"; readonly kind: number };

export class Refused extends Error {
  constructor(readonly refusal: PatternRefusal) {
    super(refusal.kind);
  }
}
const invalid = (message: string): Refused => new Refused({ kind: "invalid", message });
const unsupported = (construct: string): Refused => new Refused({ kind: "unsupported", construct });

/** A token is a code point, or an escape: `\` and the code point after it, flagged. */
const ESC = 0x200000;
const NONE = -1;
const ch = (s: string): number => s.charCodeAt(0);
const BACKSLASH = ch("\\");
const SPECIAL = new Set(Array.from("\\.[{()*+?^$|", ch));
const HEX = /^[0-9a-fA-F]$/;
const isHexCp = (cp: number): boolean => cp < 0x80 && HEX.test(String.fromCharCode(cp));
const isOctCp = (cp: number): boolean => cp >= 0x30 && cp <= 0x37;
const isDecCp = (cp: number): boolean => cp >= 0x30 && cp <= 0x39;
const isAsciiLetter = (cp: number): boolean =>
  (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a);
const ASCII_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const BEYOND_ASCII = /\P{ASCII}/u;

const ANY_BUT_NEWLINE: CharSetSpec = { negate: true, ranges: [0x0a, 0x0a], cats: 0 };
const literal = (cp: number): CharSetSpec => ({ negate: false, ranges: [cp, cp], cats: 0 });
const category = (cat: number): CharSetSpec => ({ negate: false, ranges: [], cats: cat });

/** `\d`…`\W` and ESCAPES, shared by both escape readers. */
const CATEGORY_ESCAPES = new Map<number, number>([
  [ch("d"), CAT_DIGIT],
  [ch("D"), CAT_NOT_DIGIT],
  [ch("s"), CAT_SPACE],
  [ch("S"), CAT_NOT_SPACE],
  [ch("w"), CAT_WORD],
  [ch("W"), CAT_NOT_WORD],
]);
const CHAR_ESCAPES = new Map<number, number>([
  [ch("a"), 0x07],
  [ch("f"), 0x0c],
  [ch("n"), 0x0a],
  [ch("r"), 0x0d],
  [ch("t"), 0x09],
  [ch("v"), 0x0b],
  [BACKSLASH, BACKSLASH],
]);

/** One class item: a single code point, or a category set. */
type ClassItem =
  { readonly kind: "cp"; readonly cp: number } | { readonly kind: "cat"; readonly cat: number };

export class Parser {
  private readonly cps: number[];
  private index = 0;
  /** The current token (a code point, `ESC | cp`, or NONE). */
  private next = NONE;
  /** Groups opened so far, and which are closed (for backreference errors). */
  private groupCount = 0;
  private readonly closedGroups = new Set<number>();
  private readonly groupNames = new Set<string>();

  constructor(source: string) {
    this.cps = Array.from(source, (s) => s.codePointAt(0) ?? 0);
    this.advance();
  }

  parse(): Ast {
    const ast = this.parseSub(0);
    if (this.next !== NONE) throw invalid("unbalanced parenthesis");
    return ast;
  }

  private advance(): void {
    if (this.index >= this.cps.length) {
      this.next = NONE;
      return;
    }
    const c = this.cps[this.index] ?? 0;
    if (c === BACKSLASH) {
      if (this.index + 1 >= this.cps.length) throw invalid("bad escape (end of pattern)");
      this.next = ESC | (this.cps[this.index + 1] ?? 0);
      this.index += 2;
    } else {
      this.next = c;
      this.index += 1;
    }
  }

  private get(): number {
    const t = this.next;
    this.advance();
    return t;
  }

  private match(cp: number): boolean {
    if (this.next !== cp) return false;
    this.advance();
    return true;
  }

  /** Up to `n` plain tokens satisfying `ok`. */
  private getWhile(n: number, ok: (cp: number) => boolean): number[] {
    const out: number[] = [];
    while (out.length < n && this.next !== NONE && this.next < ESC && ok(this.next)) {
      out.push(this.get());
    }
    return out;
  }

  private parseSub(depth: number): Ast {
    const items = [this.parseSeq(depth)];
    while (this.match(ch("|"))) items.push(this.parseSeq(depth));
    return items.length === 1 ? (items[0] as Ast) : { t: "alt", items };
  }

  private parseSeq(depth: number): Ast {
    const seq: Ast[] = [];
    for (;;) {
      const t = this.next;
      if (t === NONE || t === ch("|") || t === ch(")")) break;
      this.get();
      if (t >= ESC) {
        seq.push(this.escape(t & ~ESC));
      } else if (!SPECIAL.has(t)) {
        seq.push({ t: "set", spec: literal(t) });
      } else if (t === ch("[")) {
        seq.push(this.charClass());
      } else if (t === ch("?") || t === ch("*") || t === ch("+")) {
        const last = seq.at(-1);
        if (last === undefined || last.t === "at") throw invalid("nothing to repeat");
        if (last.t === "repeat") throw invalid("multiple repeat");
        if (!this.match(ch("?")) && this.match(ch("+"))) {
          throw unsupported("possessive quantifier");
        }
        seq[seq.length - 1] = {
          t: "repeat",
          min: t === ch("+") ? 1 : 0,
          many: t !== ch("?"),
          item: last,
        };
      } else if (t === ch("{")) {
        // Never in keystonemiddleware's expressions: the pattern's braces are consumed.
        throw unsupported("{");
      } else if (t === ch(".")) {
        seq.push({ t: "set", spec: ANY_BUT_NEWLINE });
      } else if (t === ch("(")) {
        const group = this.group(depth);
        if (group !== undefined) seq.push(group);
      } else if (t === ch("^")) {
        seq.push({ t: "at", kind: AT_BEGINNING });
      } else if (t === ch("$")) {
        seq.push({ t: "at", kind: AT_END });
      }
    }
    return { t: "seq", items: seq };
  }

  /** After `(`: a group, or `undefined` for a comment. */
  private group(depth: number): Ast | undefined {
    let capture = true;
    let name: string | undefined;
    if (this.match(ch("?"))) {
      const c = this.get();
      if (c === NONE) throw invalid("unexpected end of pattern");
      if (c === ch("P")) {
        if (this.match(ch("<"))) {
          name = this.groupName();
        } else if (this.match(ch("="))) {
          throw unsupported("named backreference");
        } else {
          if (this.get() === NONE) throw invalid("unexpected end of pattern");
          throw invalid("unknown extension ?P");
        }
      } else if (c === ch(":")) {
        capture = false;
      } else if (c === ch("#")) {
        for (;;) {
          if (this.next === NONE) throw invalid("missing ), unterminated comment");
          if (this.get() === ch(")")) return undefined;
        }
      } else if (c === ch("=") || c === ch("!") || c === ch("<")) {
        throw unsupported("lookaround");
      } else if (c === ch("(")) {
        throw unsupported("conditional");
      } else if (c === ch(">")) {
        throw unsupported("atomic group");
      } else if (c < ESC && "iLmsxatu-".includes(String.fromCodePoint(c))) {
        throw unsupported("inline flags");
      } else {
        throw invalid("unknown extension");
      }
    }
    if (depth + 1 > MAX_GROUP_DEPTH) throw unsupported("groups nested too deep");
    let id = 0;
    if (capture) {
      id = ++this.groupCount;
      if (name !== undefined) {
        if (this.groupNames.has(name)) throw invalid("redefinition of group name");
        this.groupNames.add(name);
      }
    }
    const item = this.parseSub(depth + 1);
    if (!this.match(ch(")"))) throw invalid("missing ), unterminated subpattern");
    if (capture) this.closedGroups.add(id);
    return { t: "group", item };
  }

  /** `(?P<` name `>`, as `getuntil('>')` + `checkgroupname`. */
  private groupName(): string {
    let name = "";
    let plain = true;
    for (;;) {
      const c = this.get();
      if (c === NONE)
        throw invalid(name === "" ? "missing group name" : "missing >, unterminated name");
      if (c === ch(">")) {
        if (name === "") throw invalid("missing group name");
        break;
      }
      if (c >= ESC) {
        plain = false;
        name += "\\" + String.fromCodePoint(c & ~ESC);
      } else {
        name += String.fromCodePoint(c);
      }
    }
    if (plain && ASCII_IDENTIFIER.test(name)) return name;
    // Python accepts Unicode identifiers; telling them apart exactly is not worth it here.
    if (!BEYOND_ASCII.test(name)) {
      throw invalid("bad character in group name");
    }
    throw unsupported("group name beyond ASCII");
  }

  /** `_escape`: an escape outside a class. */
  private escape(c: number): Ast {
    switch (c) {
      case ch("A"):
        return { t: "at", kind: AT_BEGINNING };
      case ch("Z"):
        return { t: "at", kind: AT_END_STRING };
      case ch("b"):
        return { t: "at", kind: AT_BOUNDARY };
      case ch("B"):
        return { t: "at", kind: AT_NON_BOUNDARY };
    }
    const cat = CATEGORY_ESCAPES.get(c);
    if (cat !== undefined) return { t: "set", spec: category(cat) };
    const lit = CHAR_ESCAPES.get(c);
    if (lit !== undefined) return { t: "set", spec: literal(lit) };
    const code = this.codeEscape(c);
    if (code !== undefined) return { t: "set", spec: literal(code) };
    if (c === ch("0")) {
      const digits = this.getWhile(2, isOctCp);
      return { t: "set", spec: literal(octal([c, ...digits])) };
    }
    if (c >= ch("1") && c <= ch("9")) {
      const digits = [c];
      if (this.next !== NONE && this.next < ESC && isDecCp(this.next)) {
        digits.push(this.get());
        if (isOctCp(c) && isOctCp(digits[1] ?? 0) && this.next < ESC && isOctCp(this.next)) {
          digits.push(this.get());
          const value = octal(digits);
          if (value > 0o377) throw invalid("octal escape value outside of range 0-0o377");
          return { t: "set", spec: literal(value) };
        }
      }
      const group = Number(String.fromCharCode(...digits));
      if (group <= this.groupCount) {
        if (!this.closedGroups.has(group)) throw invalid("cannot refer to an open group");
        throw unsupported("backreference");
      }
      throw invalid("invalid group reference");
    }
    if (isAsciiLetter(c)) throw invalid("bad escape");
    return { t: "set", spec: literal(c) };
  }

  /** `\x`, `\u`, `\U` (a code point), `\N` (refused); `undefined` for anything else. */
  private codeEscape(c: number): number | undefined {
    const width = c === ch("x") ? 2 : c === ch("u") ? 4 : c === ch("U") ? 8 : 0;
    if (width > 0) {
      const digits = this.getWhile(width, isHexCp);
      if (digits.length !== width) throw invalid("incomplete escape");
      const value = parseInt(String.fromCharCode(...digits), 16);
      if (value > 0x10ffff) throw invalid("bad escape");
      return value;
    }
    if (c === ch("N")) {
      if (this.next !== OPEN_BRACE) throw invalid("missing {");
      throw unsupported("\\N{...}");
    }
    return undefined;
  }

  /** `_class_escape`: an escape inside a class. */
  private classEscape(c: number): ClassItem {
    if (c === ch("b")) return { kind: "cp", cp: 0x08 };
    const lit = CHAR_ESCAPES.get(c);
    if (lit !== undefined) return { kind: "cp", cp: lit };
    const cat = CATEGORY_ESCAPES.get(c);
    if (cat !== undefined) return { kind: "cat", cat };
    const code = this.codeEscape(c);
    if (code !== undefined) return { kind: "cp", cp: code };
    if (isOctCp(c)) {
      const value = octal([c, ...this.getWhile(2, isOctCp)]);
      if (value > 0o377) throw invalid("octal escape value outside of range 0-0o377");
      return { kind: "cp", cp: value };
    }
    if (isDecCp(c) || isAsciiLetter(c)) throw invalid("bad escape");
    return { kind: "cp", cp: c };
  }

  /** After `[`. */
  private charClass(): Ast {
    const negate = this.match(ch("^"));
    const ranges: number[] = [];
    let cats = 0;
    let count = 0;
    const add = (item: ClassItem): void => {
      count++;
      if (item.kind === "cp") ranges.push(item.cp, item.cp);
      else cats |= item.cat;
    };
    for (;;) {
      const t = this.get();
      if (t === NONE) throw invalid("unterminated character set");
      if (t === ch("]") && count > 0) break;
      const first: ClassItem = t >= ESC ? this.classEscape(t & ~ESC) : { kind: "cp", cp: t };
      if (!this.match(ch("-"))) {
        add(first);
        continue;
      }
      const that = this.get();
      if (that === NONE) throw invalid("unterminated character set");
      if (that === ch("]")) {
        add(first);
        add({ kind: "cp", cp: ch("-") });
        break;
      }
      const second: ClassItem =
        that >= ESC ? this.classEscape(that & ~ESC) : { kind: "cp", cp: that };
      if (first.kind !== "cp" || second.kind !== "cp" || second.cp < first.cp) {
        throw invalid("bad character range");
      }
      count++;
      ranges.push(first.cp, second.cp);
    }
    return { t: "set", spec: { negate, ranges, cats } };
  }
}

function octal(digits: readonly number[]): number {
  return parseInt(String.fromCharCode(...digits), 8);
}
