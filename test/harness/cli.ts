/**
 * Owns: running the `keystone-edge` command line in-process for tests, capturing what it
 * writes (the same `main` the binary runs, with injected I/O).
 */
import type { CommandIO } from "../../src/cli/command.js";
import { main } from "../../src/cli/main.js";

/** What one run of the CLI came to. */
export interface CliRun {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed as one JSON object. */
  json(): Record<string, unknown>;
}

/**
 * Runs `keystone-edge ARGS` in-process; `stdin` is piped in when given (else a terminal).
 * `onStderr` sees each piece of stderr as it is written (a test waits on a progress line
 * instead of a fixed time).
 */
export async function runCli(
  args: readonly string[],
  stdin?: string,
  onStderr?: (text: string) => void,
): Promise<CliRun> {
  let stdout = "";
  let stderr = "";
  const io: CommandIO = {
    stdout: (t) => (stdout += t),
    stderr: (t) => {
      stderr += t;
      onStderr?.(t);
    },
    readStdin: (max) => Promise.resolve((stdin ?? "").slice(0, max + 1)),
    stdinIsTTY: stdin === undefined,
  };
  const status = await main(args, io);
  return { status, stdout, stderr, json: () => JSON.parse(stdout) as Record<string, unknown> };
}
