/**
 * The Thompson NFA an AST compiles to: nodes (match, character set, split, assertion) in
 * flat typed arrays, each set's ASCII membership as bits, and the ASCII classes (code
 * points no set of the pattern tells apart) the matcher's DFA steps on.
 *
 * Owns: the compiled program; size ≤ 2 × pattern length + 8 nodes.
 */
import { CharSet, WORD_SET, type CharSetSpec } from "./char-set.js";
import { AT_BOUNDARY, AT_NON_BOUNDARY, type Ast } from "./parser.js";

const OP_MATCH = 0;
export const OP_CHAR = 1;
export const OP_SPLIT = 2;
export const OP_ASSERT = 3;

/** Context bits of a position, for the assertions. */
export const CTX_START = 1;
export const CTX_END = 2;
export const CTX_NL_END = 4; // before a final \n
export const CTX_WORD_BEFORE = 8;
export const CTX_WORD_AFTER = 16;
export const CTX_EMPTY = 32; // the whole path is empty

export interface Program {
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

export class ProgramBuilder {
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
