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
  /** Reads all of standard input. */
  readonly readStdin: () => Promise<string>;
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

/** `parseArgs` with strict options; unknown options become a {@link UsageError}. */
export function parseCommandArgs(
  args: readonly string[],
  options: Options,
  allowPositionals: boolean,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const parsed = parseArgs({
      args: [...args],
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals,
      strict: true,
    });
    return {
      values: parsed.values,
      positionals: parsed.positionals,
    };
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

/** Standard I/O of the process. */
export function processIO(): CommandIO {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    readStdin: async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString("utf8");
    },
    stdinIsTTY: process.stdin.isTTY,
  };
}
