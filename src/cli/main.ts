#!/usr/bin/env node
/**
 * The `keystone-edge` command line.
 *
 * Owns: picking the command from the leading words, global `--help` / `--version`, and the
 * last-resort handler that turns an unexpected exception into exit status 1 with a message
 * (never a stack trace holding a token on stdout).
 */
import { readFileSync, realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ExitStatus } from "../errors.js";
import { nearest, processIO, type Command, type CommandIO } from "./command.js";
import { checkConfig } from "./check-config.js";
import { drill } from "./drill.js";
import { configReferenceCommand } from "./config-reference.js";
import { keysCheck } from "./keys-check.js";
import { keysStatus } from "./keys-status.js";
import { serve } from "./serve.js";
import { tokenDecode } from "./token-decode.js";

export const commands: readonly Command[] = [
  serve,
  tokenDecode,
  keysStatus,
  keysCheck,
  checkConfig,
  configReferenceCommand,
  drill,
];

function version(): string {
  const pkg = JSON.parse(
    readFileSync(new URL("../../../package.json", import.meta.url), "utf8"),
  ) as { version: string };
  return pkg.version;
}

function mainHelp(): string {
  const width = Math.max(...commands.map((c) => c.path.join(" ").length));
  const lines = commands.map((c) => `  ${c.path.join(" ").padEnd(width)}  ${c.summary}`);
  return `Usage: keystone-edge <command> [options]

keystone-edge validates OpenStack Keystone Fernet tokens at the edge of a region.

Commands:
${lines.join("\n")}

Options:
  -h, --help     show this help (or a command's: keystone-edge <command> --help)
  -V, --version  print the version

Run "keystone-edge <command> --help" for a command's options.
`;
}

/** A word that may be echoed: a command word as typed, never a token or a path. */
function shownWord(word: string | undefined): string | undefined {
  return word !== undefined && /^-{0,2}[a-z][a-z0-9-]{0,31}$/i.test(word) ? word : undefined;
}

/**
 * Why `argv` names no command, with the nearest command when one is close: `unknown
 * command "check-confg": did you mean "check-config"?`. Echoes only words that look like
 * command words (a mistyped `token decode gAAAA…` must not print the token).
 */
function unknownCommand(argv: readonly string[]): string {
  const [first, second] = argv;
  const group = commands.filter((c) => c.path[0] === first);
  const firstShown = shownWord(first);
  if (firstShown === undefined) return "unknown command (not shown)";
  if (firstShown.startsWith("-")) return `unknown option ${firstShown} (known: --help, --version)`;
  if (group.length === 0) {
    const guess = nearest(
      firstShown,
      commands.map((c) => c.path[0] ?? ""),
    );
    const meant = commands.find((c) => c.path[0] === guess);
    return `unknown command "${firstShown}"${meant === undefined ? "" : `: did you mean "${meant.path.join(" ")}"?`}`;
  }
  const secondShown = shownWord(second);
  const words = group.map((c) => c.path[1] ?? "");
  const guess = secondShown === undefined ? undefined : nearest(secondShown, words);
  return (
    `unknown command "${firstShown} ${secondShown ?? "(not shown)"}"` +
    (guess === undefined
      ? ` ("${firstShown}" has: ${words.join(", ")})`
      : `: did you mean "${firstShown} ${guess}"?`)
  );
}

/** Runs the CLI with `argv` (without `node` and the script); resolves to the exit status. */
export async function main(argv: readonly string[], io: CommandIO): Promise<number> {
  const first = argv[0];
  if (first === undefined || first === "-h" || first === "--help" || first === "help") {
    io.stdout(mainHelp());
    return first === undefined ? ExitStatus.usage : ExitStatus.ok;
  }
  if (first === "-V" || first === "--version") {
    io.stdout(`${version()}\n`);
    return ExitStatus.ok;
  }
  const command = commands.find((c) => c.path.every((word, i) => argv[i] === word));
  if (!command) {
    const group = commands.filter((c) => c.path[0] === first);
    if (group.length > 0 && (argv[1] === undefined || argv[1] === "--help" || argv[1] === "-h")) {
      io.stdout(group.map((c) => c.help).join("\n"));
      return argv[1] === undefined ? ExitStatus.usage : ExitStatus.ok;
    }
    io.stderr(`keystone-edge: ${unknownCommand(argv)}\n\n${mainHelp()}`);
    return ExitStatus.usage;
  }
  try {
    return await command.run(argv.slice(command.path.length), io);
  } catch (error) {
    io.stderr(
      `keystone-edge ${command.path.join(" ")}: internal error: ${
        error instanceof Error ? error.message : String(error)
      }\n`,
    );
    return ExitStatus.internal;
  }
}

function invokedDirectly(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  main(process.argv.slice(2), processIO()).then(
    (status) => {
      process.exitCode = status;
    },
    (error: unknown) => {
      process.stderr.write(`keystone-edge: ${String(error)}\n`);
      process.exitCode = ExitStatus.internal;
    },
  );
}
