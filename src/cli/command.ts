/**
 * What every CLI command looks like.
 *
 * Owns: the command interface, the I/O the commands write through (injectable for tests),
 * and turning `util.parseArgs` failures and `--help` into the same shape everywhere.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../errors.js";

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

export type Options = NonNullable<ParseArgsConfig["options"]>;

/** What the arguments ask for: the command's help, or a run. */
export type ParsedArgs =
  | { readonly kind: "help" }
  | {
      readonly kind: "run";
      readonly values: Readonly<Record<string, string | boolean | undefined>>;
      readonly positionals: readonly string[];
    };

/**
 * `parseArgs` with strict options; unknown options become a {@link UsageError}.
 *
 * `-h`/`--help` counts only as the sole argument: a script that passes untrusted input as
 * a TOKEN must never get exit status 0 (help printed) for the input `-h`. Error messages
 * never quote a positional argument, which may be a token.
 */
export function parseCommandArgs(
  args: readonly string[],
  options: Options,
  allowPositionals: boolean,
): ParsedArgs {
  if (args.length === 1 && (args[0] === "-h" || args[0] === "--help")) return { kind: "help" };
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals,
      strict: true,
    });
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new UsageError(
      code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL"
        ? "unexpected argument (not shown: it may be a token)"
        : error instanceof Error
          ? error.message
          : String(error),
    );
  }
  if (parsed.values.help === true) throw new UsageError("--help takes no other arguments");
  return { kind: "run", values: parsed.values, positionals: parsed.positionals };
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
