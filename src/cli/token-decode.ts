/**
 * `keystone-edge token decode`: verify and read one token locally, print one JSON object.
 *
 * Owns: the CLI contract other checks drive — Keystone's field names on stdout (one field a
 * line to read, one line with `--json`), exit 0 valid, 4 expired (fields plus the error),
 * 3 invalid, 2 usage or key repository problems.
 */
import { EdgeError, ExitStatus, exitStatusFor, UsageError } from "../errors.js";
import { MAX_TOKEN_CHARS } from "../fernet/envelope.js";
import { readKeyRepository } from "../fernet/key-repository.js";
import { staticKeyRing } from "../fernet/key-ring.js";
import { TokenDecoder } from "../token/decoder.js";
import { DEFAULT_AUTH_METHODS } from "../token/methods.js";
import { renderKeystoneFields } from "../token/render.js";
import { fixedClock, systemClock } from "../units.js";
import { errorLines, parseCommandArgs, type Command, type CommandIO } from "./command.js";

const help = `Usage: keystone-edge token decode --key-repository DIR [options] [TOKEN | -]

Verifies a Keystone Fernet token with the keys in DIR and prints one JSON object with
Keystone's validate_token fields (user_id, methods, audit_ids, system, domain_id,
project_id, trust_id, federated_group_ids, identity_provider_id, protocol_id,
access_token_id, app_cred_id, issued_at, expires_at) plus payload_version, one field a
line; --json prints the same object on one line. Absent values are null; times are
YYYY-MM-DDTHH:MM:SS.ffffffZ. Nothing is sent to Keystone: roles, names, revocation and
enabled flags are not checked here.

TOKEN is the token itself; "-" (or no TOKEN with input piped in) reads it from stdin.
Prefer stdin: a token on the command line is visible to other users in the process list.
-h/--help is honoured only as the sole argument, so no TOKEN value can exit 0 by
printing help; "--" ends the options.

Options:
  --key-repository DIR    Keystone's [fernet_tokens] key_repository (required)
  --auth-methods LIST     Keystone's [auth] methods, comma separated, in Keystone's order
                          (default: ${DEFAULT_AUTH_METHODS.join(",")})
  --default-domain-id ID  Keystone's [identity] default_domain_id (default: default)
  --at TIME               judge expiry as of TIME (ISO 8601 with a zone, e.g.
                          2026-01-31T12:00:00Z) instead of now
  --json                  print the object on one line (for machines)
  -h, --help              show this help

Exit status:
  0  valid          {fields…}
  4  expired        {fields…, "error": {"code": "expired", "message": …}}
  3  invalid        {"error": {"code": malformed|bad_signature|bad_payload|unsupported_version, …}}
  2  usage or key repository problem   {"error": {"code": …, "message": …}}
  1  internal error   {"error": {"code": "internal", "message": …}}
`;

/**
 * A JSON object laid out to read: one field a line, indented by two spaces, each value on
 * its field's line (`"methods": ["password"]`, `"error": {"code": "expired", …}`), as
 * README.md shows it. `JSON.parse` reads it back as the one-line form.
 */
export function readableJson(object: object): string {
  const inline = (value: unknown): string => {
    if (Array.isArray(value)) return `[${value.map(inline).join(", ")}]`;
    if (typeof value === "object" && value !== null) {
      const fields = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${inline(v)}`);
      return `{${fields.join(", ")}}`;
    }
    return value === undefined ? "null" : JSON.stringify(value);
  };
  const fields = Object.entries(object).map(([k, v]) => `  ${JSON.stringify(k)}: ${inline(v)}`);
  return fields.length === 0 ? "{}" : `{\n${fields.join(",\n")}\n}`;
}

async function readToken(positionals: readonly string[], io: CommandIO): Promise<string> {
  if (positionals.length > 1) throw new UsageError("give at most one TOKEN");
  const given = positionals[0];
  if (given !== undefined && given !== "-") return given;
  if (given === undefined && io.stdinIsTTY) {
    throw new UsageError('no TOKEN given (pass it as an argument, or "-" to read stdin)');
  }
  // Read a little past the longest token so that an over-long input is reported as such.
  return (await io.readStdin(MAX_TOKEN_CHARS + 1024)).trim();
}

function parseAuthMethods(value: string | boolean | undefined): readonly string[] | undefined {
  if (typeof value !== "string") return undefined;
  const list = value.split(",").map((m) => m.trim());
  if (list.some((m) => m.length === 0)) {
    throw new UsageError("--auth-methods must be a comma-separated list of non-empty names");
  }
  return list;
}

function parseAt(value: string | boolean | undefined): number | undefined {
  if (typeof value !== "string") return undefined;
  const ms = Date.parse(value);
  // A zone is required: without one, Date.parse reads local time.
  if (!/^\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:\d{2})$/.test(value) || Number.isNaN(ms)) {
    throw new UsageError(`--at: "${value}" is not an ISO 8601 time with a zone (…Z or …+hh:mm)`);
  }
  return ms;
}

export const tokenDecode: Command = {
  path: ["token", "decode"],
  summary: "verify and read a Fernet token with a local key repository (JSON out)",
  help,
  async run(args, io) {
    // Known before the arguments are read, so that even a usage error prints as asked.
    const beforeTerminator = args.includes("--") ? args.slice(0, args.indexOf("--")) : args;
    const print = (object: object): void => {
      io.stdout(
        (beforeTerminator.includes("--json") ? JSON.stringify(object) : readableJson(object)) +
          "\n",
      );
    };
    try {
      const parsed = parseCommandArgs(
        args,
        {
          "key-repository": { type: "string", value: "a DIR: Keystone's key repository" },
          "auth-methods": { type: "string", value: "a LIST such as password,token" },
          "default-domain-id": { type: "string", value: "a domain ID" },
          at: { type: "string", value: "a time such as 2026-01-31T12:00:00Z" },
          json: { type: "boolean" },
        },
        true,
      );
      if (parsed.kind === "help") {
        io.stdout(help);
        return ExitStatus.ok;
      }
      const { values, positionals } = parsed;
      const directory = values["key-repository"];
      if (typeof directory !== "string" || directory.length === 0) {
        throw new UsageError("--key-repository DIR is required");
      }
      if (/^gAAAAA[A-Za-z0-9_-]{40,}/.test(directory)) {
        // Arguments swapped: do not echo the token back in a "no such directory" error.
        throw new UsageError("--key-repository looks like a token; give it a directory");
      }
      const authMethods = parseAuthMethods(values["auth-methods"]);
      const at = parseAt(values.at);
      const defaultDomainId = values["default-domain-id"];
      const token = await readToken(positionals, io);
      const ring = await readKeyRepository(directory, { option: "--key-repository" });
      let decoder: TokenDecoder;
      try {
        decoder = new TokenDecoder({
          keys: staticKeyRing(ring),
          ...(authMethods ? { authMethods } : {}),
          ...(typeof defaultDomainId === "string" ? { defaultDomainId } : {}),
          clock: at === undefined ? systemClock : fixedClock(at),
        });
      } catch (error) {
        throw new UsageError(`--auth-methods: ${(error as Error).message}`);
      }
      const result = decoder.decode(token);
      switch (result.status) {
        case "valid":
          print(renderKeystoneFields(result.token));
          return ExitStatus.ok;
        case "expired":
          print({ ...renderKeystoneFields(result.token), error: result.error.toJSON() });
          return ExitStatus.expiredToken;
        case "invalid":
          print({ error: result.error.toJSON() });
          return exitStatusFor(result.error);
      }
    } catch (error) {
      if (error instanceof EdgeError) {
        print({ error: error.toJSON() });
        if (error instanceof UsageError) io.stderr(errorLines(tokenDecode.path, error, help));
        return exitStatusFor(error);
      }
      throw error;
    }
  },
};
