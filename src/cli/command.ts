/**
 * What every CLI command looks like.
 *
 * Owns: the command interface, the I/O the commands write through (injectable for tests),
 * and reading every command's arguments the same way: `--help`, the project's own messages
 * for a bad option (never `util.parseArgs`'s text), a guess at a mistyped option, and the
 * usage line after a usage error.
 */
import { parseArgs } from "node:util";
import { editDistance } from "../edit-distance.js";
import { UsageError, type EdgeError } from "../errors.js";

/** Where a command reads and writes. */
export interface CommandIO {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Reads standard input, stopping once more than `maxBytes` have arrived. */
  readonly readStdin: (maxBytes: number) => Promise<string>;
  /** Whether standard input is a terminal (nothing piped in). */
  readonly stdinIsTTY: boolean;
}

export interface Command {
  /** Words that select it, e.g. `["token", "decode"]`. */
  readonly path: readonly string[];
  readonly summary: string;
  /** Full `--help` text. */
  readonly help: string;
  /** Runs with the arguments after the command words; resolves to the exit status. */
  run(args: readonly string[], io: CommandIO): Promise<number>;
}

/** One option a command accepts. */
export interface OptionSpec {
  readonly type: "string" | "boolean";
  /** A one-letter alias, e.g. `h` for `-h`. Default: none. */
  readonly short?: string;
  /**
   * What the value is, for messages: `--grace needs a value (a time such as 10s, …)`.
   * Default: none (`--config needs a value`). String options only.
   */
  readonly value?: string;
}

/** The options a command accepts, by long name (without `--`). `--help` is always added. */
export type Options = Readonly<Record<string, OptionSpec>>;

/** What the arguments ask for: the command's help, or a run. */
export type ParsedArgs =
  | { readonly kind: "help" }
  | {
      readonly kind: "run";
      readonly values: Readonly<Record<string, string | boolean | undefined>>;
      readonly positionals: readonly string[];
    };

/** Longest option name echoed back in a message (an unknown one longer is not shown). */
const MAX_ECHOED_OPTION = 32;

/** An option as a message may show it: its name only (never a `=value`), if short and plain. */
function shownOption(raw: string): string {
  const name = raw.split("=", 1)[0] ?? "";
  return name.length <= MAX_ECHOED_OPTION && /^--?[A-Za-z0-9][A-Za-z0-9_-]*$/.test(name)
    ? name
    : "(not shown)";
}

/**
 * The candidate `word` was most likely meant to be, if any is close: the only one it is a
 * prefix of (3 characters at least), else the nearest within 2 edits (1 for words of up to
 * 4 characters, none for 1 or 2). Undefined when none is, or when two are equally near.
 */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  if (word.length >= 3) {
    const extended = candidates.filter((c) => c.startsWith(word));
    if (extended.length === 1) return extended[0];
  }
  const limit = word.length <= 2 ? 0 : word.length <= 4 ? 1 : 2;
  if (limit === 0) return undefined;
  const scored = candidates
    .map((c) => ({ c, d: editDistance(word, c, { transpositions: true }) }))
    .filter((s) => s.d <= limit)
    .sort((x, y) => x.d - y.d);
  const [first, second] = scored;
  if (first === undefined || (second !== undefined && second.d === first.d)) return undefined;
  return first.c;
}

/** The first line of a command's help: `Usage: keystone-edge … [options]`. */
export function usageLine(help: string): string {
  return help.split("\n", 1)[0] ?? "";
}

/**
 * What a command writes on stderr for an error it reports: `keystone-edge <command>:
 * <message>`, and after a usage error the command's usage line (the first of its help).
 */
export function errorLines(path: readonly string[], error: EdgeError, help: string): string {
  const line = `keystone-edge ${path.join(" ")}: ${error.message}\n`;
  return error.code === "usage" ? `${line}${usageLine(help)}\n` : line;
}

/**
 * Reads a command's arguments with the project's own messages, never Node's:
 *
 * - `unknown option --gracee: did you mean --grace? (known: --config, --grace, --help)`;
 * - `--grace needs a value (a time such as 10s, 2m or 500ms)`, when the option ends the
 *   arguments or is followed by another option;
 * - `--json takes no value`;
 * - `unexpected argument (not shown: it may be a token)`, for a positional argument of a
 *   command that takes none.
 *
 * A string option takes the next argument as its value even when it starts with `-` (as
 * `--grace=-1` would), unless that argument is an option (`--…`, or `-h`): so `--grace -1`
 * reaches the option's own check ("expected a time …, got -1") rather than a parser error.
 * `--` ends the options; every argument after it is positional.
 *
 * `-h`/`--help` counts only as the sole argument: a script that passes untrusted input as
 * a TOKEN must never get exit status 0 (help printed) for the input `-h`. Messages never
 * quote a positional argument, which may be a token, nor an option's value.
 *
 * @param allowPositionals whether the command takes positional arguments
 * @throws UsageError (code `usage`) naming the first problem; print it with
 *   {@link errorLines}, which adds the command's usage line.
 */
export function parseCommandArgs(
  args: readonly string[],
  options: Options,
  allowPositionals: boolean,
): ParsedArgs {
  if (args.length === 1 && (args[0] === "-h" || args[0] === "--help")) return { kind: "help" };
  const specs: Options = { ...options, help: { type: "boolean", short: "h" } };
  const known = Object.keys(specs).map((name) => `--${name}`);
  const shorts = new Set(
    Object.values(specs).flatMap((spec) => (spec.short === undefined ? [] : [`-${spec.short}`])),
  );
  let tokens;
  try {
    ({ tokens } = parseArgs({
      args: [...args],
      options: Object.fromEntries(
        Object.entries(specs).map(([name, spec]) => [
          name,
          spec.short === undefined ? { type: spec.type } : { type: spec.type, short: spec.short },
        ]),
      ),
      allowPositionals: true,
      strict: false,
      tokens: true,
    }));
  } catch {
    // Not expected with strict: false; never show Node's text, which may quote an argument.
    throw new UsageError("cannot read the arguments");
  }
  const values: Record<string, string | boolean | undefined> = {};
  const positionals: string[] = [];
  for (const token of tokens) {
    if (token.kind === "option-terminator") continue;
    if (token.kind === "positional") {
      if (!allowPositionals) {
        throw new UsageError("unexpected argument (not shown: it may be a token)");
      }
      positionals.push(token.value);
      continue;
    }
    const spec = specs[token.name];
    if (spec === undefined || !Object.hasOwn(specs, token.name)) {
      // `-json` reads as `-j -s -o -n`: name the whole argument, as typed.
      const option = shownOption(args[token.index] ?? token.rawName);
      const bare = option.replace(/^--?/, "");
      const guess = option === "(not shown)" ? undefined : nearest(bare, Object.keys(specs));
      throw new UsageError(
        `unknown option ${option}${guess === undefined ? "" : `: did you mean --${guess}?`} (known: ${known.join(", ")})`,
      );
    }
    const name = `--${token.name}`;
    if (token.name === "help") throw new UsageError("--help takes no other arguments");
    if (spec.type === "boolean") {
      if (token.value !== undefined) throw new UsageError(`${name} takes no value`);
      values[token.name] = true;
      continue;
    }
    const value = token.value;
    const isOption =
      value !== undefined && !token.inlineValue && (value.startsWith("--") || shorts.has(value));
    if (value === undefined || isOption) {
      throw new UsageError(
        `${name} needs a value${spec.value === undefined ? "" : ` (${spec.value})`}`,
      );
    }
    values[token.name] = value;
  }
  return { kind: "run", values, positionals };
}

/** Standard I/O of the process. */
export function processIO(): CommandIO {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    readStdin: async (maxBytes) => {
      const chunks: Buffer[] = [];
      let total = 0;
      for await (const chunk of process.stdin) {
        chunks.push(chunk as Buffer);
        total += (chunk as Buffer).length;
        if (total > maxBytes) break; // leaving the loop destroys the stream
      }
      return Buffer.concat(chunks)
        .subarray(0, maxBytes + 1)
        .toString("utf8");
    },
    stdinIsTTY: process.stdin.isTTY,
  };
}
