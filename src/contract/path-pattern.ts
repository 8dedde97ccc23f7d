/**
 * Access-rule path patterns, matched as keystonemiddleware's `_path_matches` matches them,
 * in time linear in the path: no backtracking, and no RegExp built from user data.
 *
 * Owns: the answer to "does this request path match this access-rule pattern", and its cost.
 * keystonemiddleware turns the pattern into a Python regular expression (`*` and `{name}`
 * become `[^\/]+`, `**` becomes `.*`, every other character goes in as written) and runs
 * `re.match('^' + that + '$', path)` on a backtracking engine: a pattern with many `**`
 * takes exponential time on a long path that does not match. Here the very same expression
 * (`kmwRegexSource`) is parsed by the rules of CPython 3.11's `re` parser (its errors
 * included: a pattern Python refuses matches nothing, as keystonemiddleware fails the
 * request), compiled to a Thompson NFA and run as a set of states, one step per code point,
 * with a small lazily built DFA in front (bounded; past the bound, plain NFA steps).
 * Cost: at most path length + (path length + 1) × NFA size units of work (characters read,
 * NFA nodes visited); NFA size ≤ 2 × pattern length + 8; a cached step is one unit. On top,
 * a match stops (and answers no) past `maxMatchWork`.
 *
 * Supported, exactly as Python's `re` (no flags, str pattern): literals and every escape
 * Python accepts for one character, `.` (anything but `\n`), classes `[...]` with ranges,
 * negation and `\d \D \s \S \w \W`, groups `(...)`, `(?:...)`, `(?P<name>...)`, comments
 * `(?#...)`, alternation `|`, `?` `*` `+` greedy or lazy, anchors `^ $ \A \Z \b \B`
 * (`$` also before a final `\n`). Valid Python constructs that are not regular, or not
 * worth their risk, make the pattern match nothing (refused, never more permissive than
 * keystonemiddleware): backreferences, lookaround, conditionals, atomic groups, possessive
 * quantifiers (`*+`, reachable as `*+` or `**+` in a pattern), inline flags, `\N{...}`,
 * group names beyond ASCII, nesting deeper than 100 groups. `{m,n}` cannot occur: the
 * pattern's braces are always consumed as `{name}` (or dropped, unbalanced).
 * Beyond ASCII, `\d`, `\w` and `\b` follow Node's Unicode tables where CPython 3.11 uses
 * Unicode 14: they differ only on code points assigned since. Request paths are ASCII
 * (webob re-quotes them, see access-rules.ts), so this never decides an access check.
 *
 * Size: the parser, the NFA and its lazily built DFA share the compiled pattern's private
 * representation (to be split along those lines).
 */

/** Longest pattern compiled, in UTF-16 code units (Keystone accepts 225); longer ones match nothing. */
export const DEFAULT_MAX_PATTERN_LENGTH = 1024;
/** Longest request path matched, in UTF-16 code units (8 KiB); longer ones match nothing. */
export const DEFAULT_MAX_PATH_LENGTH = 8192;
/**
 * DFA states cached per pattern: each is a set of NFA states with a transition per ASCII
 * class (the characters no part of the pattern tells apart). Past the budget, steps are
 * plain NFA steps (each at most one pass over the NFA). Patterns using `\b`/`\B` are
 * never cached (their steps depend on the character after, too). Memory per pattern: at
 * most this many × (its set, ≤ 2 × pattern length ints, + 5 bytes per class, ≤ 128).
 * A 70-character literal rule needs about 70.
 */
export const DEFAULT_MAX_DFA_STATES = 128;
/**
 * Most work one match may take (characters read + NFA nodes visited, see `measure`); past
 * it the match stops and answers no. Realistic rules take about one unit per character
 * (≤ 8 Ki); only patterns built to defeat the DFA cache come near: about 3–5 ms.
 */
export const DEFAULT_MAX_MATCH_WORK = 1_000_000;
/** Deepest group nesting compiled; deeper patterns match nothing (CPython recurses on them). */
export const MAX_GROUP_DEPTH = 100;

/** Bounds on what a pattern compiles and matches. */
export interface PathPatternLimits {
  /** Longest pattern, UTF-16 code units. Default {@link DEFAULT_MAX_PATTERN_LENGTH} (1024). */
  readonly maxPatternLength?: number;
  /** Longest path, UTF-16 code units. Default {@link DEFAULT_MAX_PATH_LENGTH} (8192). */
  readonly maxPathLength?: number;
  /** DFA states cached. Default {@link DEFAULT_MAX_DFA_STATES} (128); 0: pure NFA simulation. */
  readonly maxDfaStates?: number;
  /** Most work per match. Default {@link DEFAULT_MAX_MATCH_WORK} (1,000,000). */
  readonly maxMatchWork?: number;
}

/** Why a pattern matches nothing. */
export type PatternRefusal =
  /** Longer than `maxPatternLength`. */
  | { readonly kind: "too_long"; readonly length: number }
  /** Python's `re` refuses the expression (keystonemiddleware fails the request). */
  | { readonly kind: "invalid"; readonly message: string }
  /** Valid for Python, but a construct the edge does not run: refused, the safe side. */
  | { readonly kind: "unsupported"; readonly construct: string };

/** How a match ended: `over_budget` answers no, like `no_match`, after too much work. */
export type MatchOutcome = "match" | "no_match" | "over_budget";

/** A match and what it cost: characters read plus NFA nodes visited. */
export interface MatchMeasure {
  readonly outcome: MatchOutcome;
  readonly work: number;
}

/** A compiled access-rule path pattern. */
export interface PathPattern {
  readonly pattern: string;
  /** `undefined` when compiled; else why the pattern matches nothing. */
  readonly refusal: PatternRefusal | undefined;
  /** NFA nodes (0 when refused): a match visits at most path length × this many. */
  readonly size: number;
  /**
   * Whether `path` matches, as `re.match(kmwRegexSource(pattern), path)` would (no, past
   * the bounds).
   */
  matches(path: string): boolean;
  /** {@link matches}, with the work it took; `budget` lowers `maxMatchWork` for this match. */
  measure(path: string, budget?: number): MatchMeasure;
}

// ---------------------------------------------------------------------------------------
// keystonemiddleware's translation, token for token

const STAR = 0x2a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/**
 * The regular expression keystonemiddleware's `_path_matches` builds from `pattern`: its
 * tokenizer `{[^}]*}` | `\*(?=$|[^*])` | `\*\*` | `[^{}*]`, applied with `re.finditer`
 * (characters no alternative matches, i.e. unbalanced braces, are skipped), wrapped in `^…$`.
 */
export function kmwRegexSource(pattern: string): string {
  let out = "^";
  const n = pattern.length;
  let i = 0;
  while (i < n) {
    const c = pattern.charCodeAt(i);
    if (c === OPEN_BRACE) {
      const close = pattern.indexOf("}", i + 1);
      if (close === -1) {
        i += 1; // no alternative matches here: finditer moves on
      } else {
        out += "[^\\/]+";
        i = close + 1;
      }
    } else if (c === STAR) {
      if (i + 1 < n && pattern.charCodeAt(i + 1) === STAR) {
        out += ".*";
        i += 2;
      } else {
        out += "[^\\/]+";
        i += 1;
      }
    } else if (c === CLOSE_BRACE) {
      i += 1;
    } else {
      const cp = pattern.codePointAt(i) ?? c;
      const w = cp > 0xffff ? 2 : 1;
      out += pattern.slice(i, i + w);
      i += w;
    }
  }
  return `${out}$`;
}

// ---------------------------------------------------------------------------------------
// Character sets

/** Python's `\d \D \s \S \w \W` (Unicode, str patterns), as bits. */
const CAT_DIGIT = 1;
const CAT_NOT_DIGIT = 2;
const CAT_SPACE = 4;
const CAT_NOT_SPACE = 8;
const CAT_WORD = 16;
const CAT_NOT_WORD = 32;

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
function isWord(cp: number): boolean {
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
interface CharSetSpec {
  readonly negate: boolean;
  /** Inclusive [lo, hi] pairs. */
  readonly ranges: readonly number[];
  readonly cats: number;
}

class CharSet {
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
const WORD_SET = new CharSet({ negate: false, ranges: [], cats: CAT_WORD });

// ---------------------------------------------------------------------------------------
// Python's `re` parser (3.11, `re/_parser.py`), for the supported subset and its errors

/** Zero-width assertions. */
const AT_BEGINNING = 0; // ^ and \A (no MULTILINE)
const AT_END = 1; // $: the end, or before a final \n
const AT_END_STRING = 2; // \Z
const AT_BOUNDARY = 3; // \b
const AT_NON_BOUNDARY = 4; // \B

type Ast =
  | { readonly t: "set"; readonly spec: CharSetSpec }
  | { readonly t: "seq"; readonly items: readonly Ast[] }
  | { readonly t: "alt"; readonly items: readonly Ast[] }
  | { readonly t: "repeat"; readonly min: 0 | 1; readonly many: boolean; readonly item: Ast }
  | { readonly t: "group"; readonly item: Ast }
  | { readonly t: "at"; readonly kind: number };

class Refused extends Error {
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

class Parser {
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

// ---------------------------------------------------------------------------------------
// Thompson NFA

const OP_MATCH = 0;
const OP_CHAR = 1;
const OP_SPLIT = 2;
const OP_ASSERT = 3;

/** Context bits of a position, for the assertions. */
const CTX_START = 1;
const CTX_END = 2;
const CTX_NL_END = 4; // before a final \n
const CTX_WORD_BEFORE = 8;
const CTX_WORD_AFTER = 16;
const CTX_EMPTY = 32; // the whole path is empty

interface Program {
  readonly op: Uint8Array;
  /** The set (CHAR) or assertion kind (ASSERT). */
  readonly arg: Int32Array;
  readonly out1: Int32Array;
  readonly out2: Int32Array;
  readonly sets: readonly CharSet[];
  /** Each CHAR node's ASCII membership, 4 words per node. */
  readonly bits: Uint32Array;
  readonly start: number;
  readonly usesWordBoundary: boolean;
  /** ASCII code point → class: code points no set tells apart share a class. */
  readonly classOf: Uint8Array;
  readonly classCount: number;
}

class ProgramBuilder {
  private readonly op: number[] = [OP_MATCH];
  private readonly arg: number[] = [0];
  private readonly out1: number[] = [-1];
  private readonly out2: number[] = [-1];
  private readonly specs: CharSetSpec[] = [];
  /** Set index by its code point (one-character sets) or its description. */
  private readonly setIndex = new Map<number | string, number>();
  private usesWordBoundary = false;

  build(ast: Ast): Program {
    const start = this.emitAst(ast, 0);
    const sets = this.specs.map((s) => new CharSet(s));
    const { classOf, classCount } = asciiClasses(sets, this.usesWordBoundary);
    const bits = new Uint32Array(this.op.length * 4);
    this.op.forEach((op, node) => {
      const set = op === OP_CHAR ? sets[this.arg[node] ?? 0] : undefined;
      if (set !== undefined) bits.set(set.ascii, node * 4);
    });
    return {
      op: new Uint8Array(this.op),
      arg: new Int32Array(this.arg),
      bits,
      out1: new Int32Array(this.out1),
      out2: new Int32Array(this.out2),
      sets,
      start,
      usesWordBoundary: this.usesWordBoundary,
      classOf,
      classCount,
    };
  }

  private emit(op: number, arg: number, out1: number, out2 = -1): number {
    this.op.push(op);
    this.arg.push(arg);
    this.out1.push(out1);
    this.out2.push(out2);
    return this.op.length - 1;
  }

  /** Emits `ast` so that it continues at `next`; returns its entry. */
  private emitAst(ast: Ast, next: number): number {
    switch (ast.t) {
      case "set":
        return this.emit(OP_CHAR, this.set(ast.spec), next);
      case "seq": {
        let entry = next;
        for (let k = ast.items.length - 1; k >= 0; k--) {
          const item = ast.items[k];
          if (item !== undefined) entry = this.emitAst(item, entry);
        }
        return entry;
      }
      case "alt": {
        const entries = ast.items.map((item) => this.emitAst(item, next));
        let entry = entries.at(-1) ?? next;
        for (let k = entries.length - 2; k >= 0; k--) {
          entry = this.emit(OP_SPLIT, 0, entries[k] ?? next, entry);
        }
        return entry;
      }
      case "repeat": {
        if (!ast.many) return this.emit(OP_SPLIT, 0, this.emitAst(ast.item, next), next);
        const loop = this.emit(OP_SPLIT, 0, -1, next);
        const body = this.emitAst(ast.item, loop);
        this.out1[loop] = body;
        return ast.min === 1 ? body : loop;
      }
      case "group":
        return this.emitAst(ast.item, next);
      case "at":
        if (ast.kind === AT_BOUNDARY || ast.kind === AT_NON_BOUNDARY) this.usesWordBoundary = true;
        return this.emit(OP_ASSERT, ast.kind, next);
    }
  }

  private set(spec: CharSetSpec): number {
    const { negate, cats, ranges } = spec;
    const key =
      !negate && cats === 0 && ranges.length === 2 && ranges[0] === ranges[1]
        ? (ranges[0] ?? 0)
        : `${negate ? "^" : ""}${cats}:${ranges.join(",")}`;
    let index = this.setIndex.get(key);
    if (index === undefined) {
      index = this.specs.push(spec) - 1;
      this.setIndex.set(key, index);
    }
    return index;
  }
}

/** The one ASCII member of `bits`, or the one non-member; -1 when there is no such one. */
function loneMember(bits: Uint32Array): number {
  for (const invert of [false, true]) {
    let found = -1;
    for (let w = 0; w < 4; w++) {
      const word = invert ? ~(bits[w] ?? 0) : (bits[w] ?? 0) | 0;
      if (word === 0) continue;
      const low = word & -word;
      if (word !== low || found !== -1) {
        found = -2;
        break;
      }
      found = w * 32 + 31 - Math.clz32(low);
    }
    if (found >= 0) return found;
  }
  return -1;
}

/** Partition of ASCII by membership in every set (and word-ness when `\b` is used). */
function asciiClasses(
  sets: readonly CharSet[],
  byWord: boolean,
): { classOf: Uint8Array; classCount: number } {
  const classOf = new Uint8Array(0x80);
  let count = 1;
  const remap = new Int32Array(0x100);
  const refine = (bits: Uint32Array): void => {
    remap.fill(-1);
    let next = 0;
    for (let cp = 0; cp < 0x80; cp++) {
      const member = ((bits[cp >> 5] ?? 0) >>> (cp & 31)) & 1;
      const key = (classOf[cp] ?? 0) * 2 + member;
      let id = remap[key] ?? -1;
      if (id === -1) {
        id = next++;
        remap[key] = id;
      }
      classOf[cp] = id;
    }
    count = next;
  };
  const size = new Int32Array(0x80);
  size[0] = 0x80;
  for (const set of sets) {
    if (count === 0x80) break;
    const odd = loneMember(set.ascii);
    if (odd === -1) {
      refine(set.ascii);
      size.fill(0);
      for (const c of classOf) size[c] = (size[c] ?? 0) + 1;
    } else if ((size[classOf[odd] ?? 0] ?? 0) > 1) {
      // a set with one member, or all but one: it only sets that one apart
      size[classOf[odd] ?? 0] = (size[classOf[odd] ?? 0] ?? 0) - 1;
      classOf[odd] = count;
      size[count++] = 1;
    }
  }
  if (byWord && count < 0x80) refine(WORD_SET.ascii);
  return { classOf, classCount: count };
}

// ---------------------------------------------------------------------------------------
// Matching: state sets, with a bounded lazy DFA

/** Transition table entries besides a state index. */
const UNKNOWN = -1;
const DEAD = -2;
const ACCEPT = -3;
/** What `closure` returns when it reaches MATCH. */
const MATCHED = -1;

class Matcher implements PathPattern {
  readonly refusal = undefined;
  readonly size: number;
  private readonly marks: Int32Array;
  private generation = 0;
  private readonly stack: Int32Array;
  private readonly bufA: Int32Array;
  private readonly bufB: Int32Array;
  /** DFA states (sorted NFA node sets), their index by key, their transitions by ASCII class. */
  private readonly states: Int32Array[] = [];
  private readonly stateIndex = new Map<string, number>();
  private transitions = new Int32Array(0);
  /** Whether a state's successor on an ASCII class, at the very end, accepts: 0 unknown, 1 yes, 2 no. */
  private endAccepts = new Int8Array(0);
  /** The start state per context at position 0 (a state index, DEAD, ACCEPT or UNKNOWN). */
  private readonly initials = new Int32Array(64).fill(UNKNOWN);
  /** Transitions are cached only for programs without `\b`/`\B` (their context needs the next character too). */
  private readonly caching: boolean;
  private work = 0;

  constructor(
    readonly pattern: string,
    private readonly program: Program,
    private readonly maxPathLength: number,
    private readonly maxDfaStates: number,
    private readonly maxMatchWork: number,
  ) {
    this.size = program.op.length;
    this.marks = new Int32Array(this.size);
    this.stack = new Int32Array(3 * this.size + 4);
    this.bufA = new Int32Array(this.size);
    this.bufB = new Int32Array(this.size);
    this.caching = !program.usesWordBoundary && maxDfaStates > 0;
  }

  matches(path: string): boolean {
    return this.run(path, this.maxMatchWork) === "match";
  }

  measure(path: string, budget = this.maxMatchWork): MatchMeasure {
    const outcome = this.run(path, Math.min(budget, this.maxMatchWork));
    return { outcome, work: this.work };
  }

  private run(path: string, budget: number): MatchOutcome {
    this.work = 0;
    const n = path.length;
    if (n > this.maxPathLength) return "no_match";
    const { classOf, usesWordBoundary: wordB } = this.program;
    const classCount = this.program.classCount;

    let ctx = CTX_START;
    if (n === 0) ctx |= CTX_END | CTX_EMPTY;
    else if (n === 1 && path.charCodeAt(0) === 0x0a) ctx |= CTX_NL_END;
    if (wordB && n > 0 && isWord(path.codePointAt(0) ?? 0)) ctx |= CTX_WORD_AFTER;
    let state = this.initials[ctx] ?? UNKNOWN;
    let cur = this.bufA;
    let curLen = 0;
    if (state === UNKNOWN) {
      curLen = this.closure(undefined, 0, 0, ctx, cur);
      state = curLen === MATCHED ? ACCEPT : curLen === 0 ? DEAD : this.intern(cur, curLen);
      if (state !== UNKNOWN) this.initials[ctx] = state;
    }

    let i = 0;
    for (;;) {
      if (state === ACCEPT) return "match";
      if (state === DEAD) return "no_match";
      if (this.work > budget) return "over_budget";
      // Cached DFA steps: ASCII, mid-path (the next position is neither the end nor
      // before a final newline), known transitions.
      if (state >= 0 && this.caching) {
        const table = this.transitions;
        const from = i;
        const stop = n - 2;
        while (i < stop) {
          const c = path.charCodeAt(i);
          if (c >= 0x80) break;
          const next = table[state * classCount + (classOf[c] ?? 0)] ?? UNKNOWN;
          if (next < 0) {
            if (next === UNKNOWN) break;
            this.work += i - from + 1;
            return next === ACCEPT ? "match" : "no_match";
          }
          state = next;
          i++;
        }
        this.work += i - from;
      }
      if (i >= n) return "no_match";

      const cp = path.codePointAt(i) ?? 0;
      const j = i + (cp > 0xffff ? 2 : 1);
      let next = 0;
      if (j === n) next = CTX_END;
      else if (j === n - 1 && path.charCodeAt(j) === 0x0a) next = CTX_NL_END;
      if (wordB) {
        if (isWord(cp)) next |= CTX_WORD_BEFORE;
        if (j < n && isWord(path.codePointAt(j) ?? 0)) next |= CTX_WORD_AFTER;
      }
      const slot =
        state >= 0 && this.caching && cp < 0x80 ? state * classCount + (classOf[cp] ?? 0) : -1;
      if (slot >= 0 && next === 0) {
        const known = this.transitions[slot] ?? UNKNOWN;
        if (known !== UNKNOWN) {
          this.work++;
          state = known;
          i = j;
          continue;
        }
      } else if (slot >= 0 && next === CTX_END) {
        const known = this.endAccepts[slot] ?? 0;
        if (known !== 0) {
          this.work++;
          return known === 1 ? "match" : "no_match";
        }
      }
      const src = state >= 0 ? (this.states[state] ?? cur) : cur;
      const srcLen = state >= 0 ? src.length : curLen;
      const out = src === this.bufA ? this.bufB : this.bufA;
      const outLen = this.closure(src, srcLen, cp, next, out);
      this.work++;
      if (slot >= 0 && next === CTX_END) this.endAccepts[slot] = outLen === MATCHED ? 1 : 2;
      if (outLen === MATCHED) {
        if (slot >= 0 && next === 0) this.transitions[slot] = ACCEPT;
        return "match";
      }
      if (outLen === 0) {
        if (slot >= 0 && next === 0) this.transitions[slot] = DEAD;
        return "no_match";
      }
      const target = slot >= 0 && next === 0 ? this.intern(out, outLen) : UNKNOWN;
      if (target >= 0) {
        this.transitions[slot] = target;
        state = target;
      } else {
        state = UNKNOWN; // a transient set, in `out`: plain NFA steps from here on
        cur = out;
        curLen = outLen;
      }
      i = j;
    }
  }

  /**
   * Writes into `out` the closure, at a position with context `ctx`, of the start (`from`
   * undefined) or of the successors on `cp` of the states `from[0..fromLen)`: the CHAR and
   * MATCH nodes reachable without reading; their number, or MATCHED when MATCH is among
   * them. Visits each node at most once.
   */
  private closure(
    from: Int32Array | undefined,
    fromLen: number,
    cp: number,
    ctx: number,
    out: Int32Array,
  ): number {
    const { op, arg, out1, out2, bits, sets } = this.program;
    const marks = this.marks;
    const stack = this.stack;
    if (this.generation === 0x7fffffff) {
      marks.fill(0);
      this.generation = 0;
    }
    const gen = ++this.generation;
    let top = 0;
    if (from === undefined) {
      stack[top++] = this.program.start;
    } else if (cp < 0x80) {
      const word = cp >> 5;
      const bit = 1 << (cp & 31);
      for (let k = 0; k < fromLen; k++) {
        const s = from[k] ?? 0;
        if (op[s] === OP_CHAR && ((bits[s * 4 + word] ?? 0) & bit) !== 0) {
          stack[top++] = out1[s] ?? 0;
        }
      }
    } else {
      for (let k = 0; k < fromLen; k++) {
        const s = from[k] ?? 0;
        if (op[s] === OP_CHAR && (sets[arg[s] ?? 0]?.has(cp) ?? false)) stack[top++] = out1[s] ?? 0;
      }
    }
    let count = 0;
    let visits = 0;
    let matched = false;
    while (top > 0) {
      const s = stack[--top] ?? 0;
      if (marks[s] === gen) continue;
      marks[s] = gen;
      visits++;
      const o = op[s];
      if (o === OP_CHAR) {
        out[count++] = s;
      } else if (o === OP_SPLIT) {
        stack[top++] = out2[s] ?? 0;
        stack[top++] = out1[s] ?? 0;
      } else if (o === OP_ASSERT) {
        if (holds(arg[s] ?? 0, ctx)) stack[top++] = out1[s] ?? 0;
      } else {
        matched = true;
      }
    }
    this.work += visits;
    return matched ? MATCHED : count;
  }

  /** The DFA state of `ids[0..len)` (sorted in place): known, new within budget, else UNKNOWN. */
  private intern(ids: Int32Array, len: number): number {
    if (this.maxDfaStates <= 0) return UNKNOWN;
    const set = ids.subarray(0, len).sort();
    const key = set.join(",");
    const known = this.stateIndex.get(key);
    if (known !== undefined) return known;
    const index = this.states.length;
    if (index >= this.maxDfaStates) return UNKNOWN;
    this.states.push(set.slice());
    this.stateIndex.set(key, index);
    const width = this.program.classCount;
    if ((index + 1) * width > this.transitions.length) {
      const capacity = Math.min(Math.max(8, index * 2), this.maxDfaStates) * width;
      const grown = new Int32Array(capacity).fill(UNKNOWN);
      grown.set(this.transitions);
      this.transitions = grown;
      const accepts = new Int8Array(capacity);
      accepts.set(this.endAccepts);
      this.endAccepts = accepts;
    }
    return index;
  }
}

function holds(kind: number, ctx: number): boolean {
  switch (kind) {
    case AT_BEGINNING:
      return (ctx & CTX_START) !== 0;
    case AT_END:
      return (ctx & (CTX_END | CTX_NL_END)) !== 0;
    case AT_END_STRING:
      return (ctx & CTX_END) !== 0;
    case AT_BOUNDARY:
      return (
        (ctx & CTX_EMPTY) === 0 &&
        ((ctx & CTX_WORD_BEFORE) === 0) !== ((ctx & CTX_WORD_AFTER) === 0)
      );
    case AT_NON_BOUNDARY:
      return (
        (ctx & CTX_EMPTY) === 0 &&
        ((ctx & CTX_WORD_BEFORE) === 0) === ((ctx & CTX_WORD_AFTER) === 0)
      );
    default:
      return false;
  }
}

class RefusedPattern implements PathPattern {
  readonly size = 0;
  constructor(
    readonly pattern: string,
    readonly refusal: PatternRefusal,
  ) {}
  matches(): boolean {
    return false;
  }
  measure(): MatchMeasure {
    return { outcome: "no_match", work: 0 };
  }
}

/**
 * Compiles an access-rule path pattern. Never throws; a pattern that is too long, that
 * Python's `re` refuses, or that uses a construct the edge does not run, matches nothing
 * (`refusal` says why). Cost: linear in the pattern (plus 128 × its character sets).
 */
export function compilePathPattern(pattern: string, limits: PathPatternLimits = {}): PathPattern {
  const maxPatternLength = limits.maxPatternLength ?? DEFAULT_MAX_PATTERN_LENGTH;
  if (pattern.length > maxPatternLength) {
    return new RefusedPattern(pattern, { kind: "too_long", length: pattern.length });
  }
  let program: Program;
  try {
    program = new ProgramBuilder().build(new Parser(kmwRegexSource(pattern)).parse());
  } catch (e) {
    if (e instanceof Refused) return new RefusedPattern(pattern, e.refusal);
    throw e;
  }
  return new Matcher(
    pattern,
    program,
    limits.maxPathLength ?? DEFAULT_MAX_PATH_LENGTH,
    limits.maxDfaStates ?? DEFAULT_MAX_DFA_STATES,
    limits.maxMatchWork ?? DEFAULT_MAX_MATCH_WORK,
  );
}
