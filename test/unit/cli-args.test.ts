/**
 * The argument reader every command uses (src/cli/command.ts) and the `--admin URL` check
 * (src/cli/admin-url.ts), called directly: what it returns, and each message it gives
 * instead of util.parseArgs's. The same through the commands: test/unit/cli.test.ts.
 */
import { describe, expect, it } from "vitest";
import { parseAdminUrl } from "../../src/cli/admin-url.js";
import {
  errorLines,
  nearest,
  parseCommandArgs,
  usageLine,
  type Options,
} from "../../src/cli/command.js";
import { DURATION_EXAMPLE } from "../../src/cli/duration.js";
import { KeyRepositoryError, UsageError } from "../../src/errors.js";

const options: Options = {
  config: { type: "string" },
  grace: { type: "string", value: DURATION_EXAMPLE },
  "log-level": { type: "string" },
  json: { type: "boolean" },
};

/** The message parseCommandArgs refuses `args` with. */
function refusal(args: readonly string[], allowPositionals = false): string {
  try {
    parseCommandArgs(args, options, allowPositionals);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as UsageError).message;
  }
  throw new Error(`${args.join(" ")} parsed`);
}

describe("parseCommandArgs", () => {
  it("reads options, inline values, positionals and --", () => {
    expect(
      parseCommandArgs(
        ["--config", "a.yaml", "--grace=5s", "--json", "x", "--", "--json", "-h"],
        options,
        true,
      ),
    ).toEqual({
      kind: "run",
      values: { config: "a.yaml", grace: "5s", json: true },
      positionals: ["x", "--json", "-h"],
    });
  });

  it("takes a value starting with one dash as the value: --grace -1 is --grace=-1", () => {
    const parsed = parseCommandArgs(["--grace", "-1", "--log-level", "-"], options, false);
    expect(parsed).toMatchObject({ values: { grace: "-1", "log-level": "-" } });
  });

  it("help only as the sole argument", () => {
    expect(parseCommandArgs(["-h"], options, true)).toEqual({ kind: "help" });
    expect(parseCommandArgs(["--help"], options, true)).toEqual({ kind: "help" });
    expect(refusal(["--json", "-h"])).toBe("--help takes no other arguments");
    expect(refusal(["--help", "x"], true)).toBe("--help takes no other arguments");
  });

  it.each([
    [
      ["--gracee", "5"],
      "unknown option --gracee: did you mean --grace? (known: --config, --grace, --log-level, --json, --help)",
    ],
    [
      ["--frobnicate"],
      "unknown option --frobnicate (known: --config, --grace, --log-level, --json, --help)",
    ],
    [["-x"], "unknown option -x (known: --config, --grace, --log-level, --json, --help)"],
    [["--grace"], `--grace needs a value (${DURATION_EXAMPLE})`],
    [["--grace", "--json"], `--grace needs a value (${DURATION_EXAMPLE})`],
    [["--config", "-h"], "--config needs a value"],
    [["--config", "--"], "--config needs a value"],
    [["--json=true"], "--json takes no value"],
    [["positional"], "unexpected argument (not shown: it may be a token)"],
    [
      ["--toString"],
      "unknown option --toString (known: --config, --grace, --log-level, --json, --help)",
    ],
  ])("%j: %s", (args, message) => {
    expect(refusal(args)).toBe(message);
  });
});

describe("nearest", () => {
  const words = ["key-repository", "auth-methods", "at", "json", "help"];
  it.each([
    ["key-repo", "key-repository"],
    ["key-repositroy", "key-repository"],
    ["jsno", "json"],
    ["jso", "json"],
    ["hepl", "help"],
  ])("%s → %s", (typed, meant) => {
    expect(nearest(typed, words)).toBe(meant);
  });

  it("guesses nothing when nothing is close, or two are as close", () => {
    expect(nearest("frobnicate", words)).toBeUndefined();
    expect(nearest("ab", ["ac", "ad"])).toBeUndefined();
    // Too short to guess from: a prefix needs 3 characters, an edit 3 too.
    expect(nearest("a", words)).toBeUndefined();
    expect(nearest("ke", words)).toBeUndefined();
  });
});

describe("errorLines", () => {
  const help = "Usage: keystone-edge x --config FILE\n\nMore.\n";
  it("adds the usage line after a usage error only", () => {
    expect(usageLine(help)).toBe("Usage: keystone-edge x --config FILE");
    expect(errorLines(["x"], new UsageError("bad"), help)).toBe(
      "keystone-edge x: bad\nUsage: keystone-edge x --config FILE\n",
    );
    expect(
      errorLines(["x"], new KeyRepositoryError("key_repository_missing", "gone", "/k"), help),
    ).toBe("keystone-edge x: gone\n");
  });
});

describe("parseAdminUrl", () => {
  it("returns the base without a trailing slash", () => {
    expect(parseAdminUrl("http://127.0.0.1:9464/")).toBe("http://127.0.0.1:9464");
    expect(parseAdminUrl("https://edge.example:9464/admin/")).toBe(
      "https://edge.example:9464/admin",
    );
  });

  it.each([
    ["127.0.0.1:38785", " (did you mean http://127.0.0.1:38785?)"],
    ["localhost:9464", " (did you mean http://localhost:9464?)"],
    ["[::1]:9464", " (did you mean http://[::1]:9464?)"],
    ["ftp://127.0.0.1:9464", ""],
    ["edge", ""],
  ])("%s: a URL such as http://127.0.0.1:9464%s", (text, hint) => {
    expect(() => parseAdminUrl(text)).toThrow(
      new UsageError(`--admin must be a URL such as http://127.0.0.1:9464${hint}`),
    );
  });

  it("refuses credentials without echoing them", () => {
    let message = "";
    try {
      parseAdminUrl("http://admin:hunter2@127.0.0.1:9464");
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/^--admin: give no credentials in the URL/);
    expect(message).not.toContain("hunter2");
  });
});
