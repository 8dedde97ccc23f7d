/**
 * Running a program on a path: a set of NFA states, one step per code point, with a small
 * lazily built DFA in front (bounded; past the bound, plain NFA steps), and a work budget.
 *
 * Owns: the match and its cost (characters read + NFA nodes visited).
 */
import { isWord } from "./char-set.js";
import { AT_BEGINNING, AT_BOUNDARY, AT_END, AT_END_STRING, AT_NON_BOUNDARY } from "./parser.js";
import {
  CTX_EMPTY,
  CTX_END,
  CTX_NL_END,
  CTX_START,
  CTX_WORD_AFTER,
  CTX_WORD_BEFORE,
  OP_ASSERT,
  OP_CHAR,
  OP_SPLIT,
  type Program,
} from "./program.js";

/** How a match ended: `over_budget` answers no, like `no_match`, after too much work. */
export type MatchOutcome = "match" | "no_match" | "over_budget";

/** A match and what it cost: characters read plus NFA nodes visited. */
export interface MatchMeasure {
  readonly outcome: MatchOutcome;
  readonly work: number;
}

/** Transition table entries besides a state index. */
const UNKNOWN = -1;
const DEAD = -2;
const ACCEPT = -3;
/** What `closure` returns when it reaches MATCH. */
const MATCHED = -1;

/** A compiled pattern that runs (path-pattern.ts's `PathPattern`). */
export class Matcher {
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
