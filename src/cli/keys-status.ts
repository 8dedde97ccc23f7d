/**
 * `keystone-edge keys status`: print a key repository's status as JSON.
 *
 * Owns: the one-shot read an operator or a config-management check runs to see which keys
 * the edge would load: count, primary index, each key's role, fingerprint and age.
 */
import { EdgeError, ExitStatus, exitStatusFor, UsageError } from "../errors.js";
import { KeyRepository } from "../fernet/key-repository.js";
import { parseCommandArgs, type Command } from "./command.js";

const help = `Usage: keystone-edge keys status --key-repository DIR

Reads a Keystone key repository as keystone-edge would and prints its status as JSON:
directory, primary_index, key_count, and for each key its index, role (primary,
secondary, staged), fingerprint (a short SHA-256 of the key, safe to compare between
hosts to check that keys are in sync) and age_seconds (from the file's mtime).

Options:
  --key-repository DIR  Keystone's [fernet_tokens] key_repository (required)
  -h, --help            show this help

Exit status: 0 the repository loads; 2 it is missing, empty or holds an invalid key file
(the JSON error names the file).
`;

export const keysStatus: Command = {
  path: ["keys", "status"],
  summary: "print a key repository's status (keys, primary, ages) as JSON",
  help,
  async run(args, io) {
    try {
      const parsed = parseCommandArgs(args, { "key-repository": { type: "string" } }, false);
      if (parsed.kind === "help") {
        io.stdout(help);
        return ExitStatus.ok;
      }
      const directory = parsed.values["key-repository"];
      if (typeof directory !== "string" || directory.length === 0) {
        throw new UsageError("--key-repository DIR is required");
      }
      const repository = await KeyRepository.open({ directory, watch: false, pollIntervalMs: 0 });
      repository.close();
      io.stdout(JSON.stringify(repository.status(), null, 2) + "\n");
      return ExitStatus.ok;
    } catch (error) {
      if (error instanceof EdgeError) {
        io.stdout(JSON.stringify({ error: error.toJSON() }) + "\n");
        io.stderr(`keystone-edge keys status: ${error.message}\n`);
        return exitStatusFor(error);
      }
      throw error;
    }
  },
};
