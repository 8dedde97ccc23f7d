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
 * The engine is python-re/: char-set.ts (Python's classes), parser.ts (the pattern → an
 * AST, or the refusal), program.ts (the NFA), matcher.ts (state sets, the bounded DFA, the
 * work budget). This file is the public face: limits, the translation, compilation.
 */
import { Matcher, type MatchMeasure } from "./python-re/matcher.js";
import { Parser, Refused, type PatternRefusal } from "./python-re/parser.js";
import { ProgramBuilder, type Program } from "./python-re/program.js";

export type { MatchMeasure, MatchOutcome } from "./python-re/matcher.js";
export type { PatternRefusal } from "./python-re/parser.js";

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
