/**
 * The built `keystone-edge` binary as a real process (`node dist/src/cli/main.js`, what
 * npm installs; `npm test` builds it first): an argument problem is exit status 2 with
 * the project's message and the command's usage line on stderr — never util.parseArgs's
 * text, a stack trace, or a token given on the command line. Needs no Keystone.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const BIN = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));

/** A token-shaped argument (Fernet's prefix, base64url): it must never be printed. */
const TOKEN_LIKE = `gAAAAAB${"x7Q-_".repeat(36)}`;

function cli(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    timeout: 30_000,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("the built binary: argument errors", () => {
  it("is built (npm run build)", () => {
    expect(existsSync(BIN), `${BIN} is missing: run npm run build`).toBe(true);
  });

  it("an unknown option: exit 2, the nearest option, the usage line, no Node text", () => {
    const r = cli(["token", "decode", "--key-repositry", "/etc/keystone/fernet-keys", TOKEN_LIKE]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(
      "keystone-edge token decode: unknown option --key-repositry: did you mean --key-repository? (known: --key-repository, --auth-methods, --default-domain-id, --at, --json, --help)\n" +
        "Usage: keystone-edge token decode --key-repository DIR [options] [TOKEN | -]\n",
    );
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: "usage" } });
    expect(r.stdout + r.stderr).not.toContain(TOKEN_LIKE.slice(0, 20));
  });

  it("a drill's `--duration 5 minutes`: exit 2 and the one word meant", () => {
    const r = cli(["drill", "master-outage", "--duration", "5", "minutes"]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      'keystone-edge drill: unexpected extra argument "minutes" after SCENARIO master-outage (a time is one word: --duration 5m)\n' +
        "Usage: keystone-edge drill SCENARIO --admin URL --secret-file FILE --token-file FILE [options]\n",
    );
  });

  it("an option value that looks like an option is the option's to judge, not 'ambiguous'", () => {
    const r = cli([
      "drill",
      "key-lag",
      "--admin",
      "http://127.0.0.1:9",
      "--secret-file",
      "/nonexistent",
      "--token-file",
      "/nonexistent",
      "--max-detection",
      "-1",
    ]);
    expect(r.status).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe(
      "keystone-edge drill: --max-detection: expected a time such as 10s, 2m or 500ms, got -1",
    );
    expect(r.stderr).not.toMatch(/ambiguous|ERR_PARSE_ARGS|at .*\.js:\d+/);
    const serve = cli(["serve", "--gracee", "5"]);
    expect(serve.status).toBe(2);
    expect(serve.stderr).toMatch(
      /^keystone-edge serve: unknown option --gracee: did you mean --grace\? \(known: /,
    );
  });

  it("a mistyped command does not print a token given after it", () => {
    const r = cli(["tokne", TOKEN_LIKE]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /^keystone-edge: unknown command "tokne": did you mean "token decode"\?\n/,
    );
    expect(r.stdout + r.stderr).not.toContain(TOKEN_LIKE.slice(0, 20));
  });
});
