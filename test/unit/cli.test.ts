import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, type CliRun } from "../harness/cli.js";
import { readableJson } from "../../src/cli/token-decode.js";
import { DRILL_SCENARIOS } from "../../src/protocol/admin.js";
import { readKeyRepository } from "../../src/fernet/key-repository.js";
import { TokenDecoder } from "../../src/token/decoder.js";
import { staticKeyRing } from "../../src/fernet/key-ring.js";
import { DEFAULT_AUTH_METHODS } from "../../src/token/methods.js";
import { generateFernetKeyText } from "../../src/fernet/envelope.js";
import type { EpochMicros } from "../../src/units.js";
import { formatAge } from "../../src/cli/keys-status.js";
import { makeRepository } from "./helpers.js";

const run = runCli;

const payload = {
  kind: "project",
  version: 2,
  userId: "3ec3164f750146be97f21559ee4d9c51",
  methods: ["password", "totp"],
  auditIds: ["GGgSgA3DRS-CUo4CYEd1cA"],
  projectId: "proj_non_uuid-42",
  expiresAtMicros: 1_900_000_000_000_000 as EpochMicros,
} as const;

let dir = "";
let cleanup: () => Promise<void> = () => Promise.resolve();
let token = "";
let expired = "";

beforeAll(async () => {
  ({ dir, cleanup } = await makeRepository({
    "0": generateFernetKeyText(),
    "1": generateFernetKeyText(),
    "2": generateFernetKeyText(),
  }));
  const decoder = new TokenDecoder({
    keys: staticKeyRing(await readKeyRepository(dir)),
    authMethods: [...DEFAULT_AUTH_METHODS, "totp"],
  });
  token = decoder.mint(payload, { issuedAtSeconds: 1_899_990_000 });
  expired = decoder.mint({ ...payload, expiresAtMicros: 1_000_000_000_000_000 as EpochMicros });
});
afterAll(() => cleanup());

describe("keystone-edge token decode", () => {
  const totp = ["--auth-methods", [...DEFAULT_AUTH_METHODS, "totp"].join(",")];

  it("prints Keystone's fields for a valid token and exits 0", async () => {
    const r = await run(["token", "decode", "--key-repository", dir, ...totp, "--json", token]);
    expect(r.status).toBe(0);
    expect(r.json()).toEqual({
      user_id: payload.userId,
      methods: ["totp", "password"],
      audit_ids: payload.auditIds,
      system: null,
      domain_id: null,
      project_id: "proj_non_uuid-42",
      trust_id: null,
      federated_group_ids: null,
      identity_provider_id: null,
      protocol_id: null,
      access_token_id: null,
      app_cred_id: null,
      issued_at: "2030-03-17T15:00:00.000000Z",
      expires_at: "2030-03-17T17:46:40.000000Z",
      payload_version: 2,
    });
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
  });

  it("reads the token from stdin with - and when piped without an argument", async () => {
    expect(
      (await run(["token", "decode", "--key-repository", dir, "-"], `${token}\n`)).status,
    ).toBe(0);
    expect((await run(["token", "decode", "--key-repository", dir], token)).status).toBe(0);
  });

  it("reads methods with the default list unless told otherwise", async () => {
    const r = await run(["token", "decode", "--key-repository", dir, token]);
    expect(r.json().methods).toEqual([]);
  });

  it("prints the fields plus the error for an expired token and exits 4", async () => {
    const r = await run(["token", "decode", "--key-repository", dir, expired]);
    expect(r.status).toBe(4);
    expect(r.json()).toMatchObject({
      user_id: payload.userId,
      expires_at: "2001-09-09T01:46:40.000000Z",
      error: { code: "expired" },
    });
  });

  it("judges expiry as of --at", async () => {
    const after = await run([
      "token",
      "decode",
      "--key-repository",
      dir,
      "--at",
      "2031-01-01T00:00:00Z",
      token,
    ]);
    expect(after.status).toBe(4);
    const before = await run([
      "token",
      "decode",
      "--key-repository",
      dir,
      "--at",
      "2000-01-01T00:00:00Z",
      expired,
    ]);
    expect(before.status).toBe(0);
  });

  const forge = (t: string): string =>
    t.slice(0, -6) + (t.endsWith("AAAAAA") ? "BBBBBB" : "AAAAAA");
  it.each([
    ["garbage", "malformed"],
    ["forged", "bad_signature"],
  ])("prints only the error for a %s token and exits 3", async (kind, code) => {
    const input = kind === "garbage" ? "not-a-token" : forge(token);
    expect(input.length).toBeGreaterThan(0);
    const r = await run(["token", "decode", "--key-repository", dir, input]);
    expect(r.status).toBe(3);
    const out = r.json();
    expect(Object.keys(out)).toEqual(["error"]);
    expect(out.error).toMatchObject({ code });
    expect(r.stdout).not.toContain(input);
  });

  it.each([
    [["token", "decode", "x"], "usage"],
    [["token", "decode", "--key-repository", "/nonexistent/keys", "x"], "key_repository_missing"],
    [["token", "decode", "--bogus"], "usage"],
    [["token", "decode", "--key-repository", "DIR", "a", "b"], "usage"],
    [["token", "decode", "--key-repository", "DIR", "--auth-methods", "a,,b", "x"], "usage"],
    [["token", "decode", "--key-repository", "DIR", "--auth-methods", "a,a", "x"], "usage"],
    [["token", "decode", "--key-repository", "DIR", "--at", "yesterday", "x"], "usage"],
    [["token", "decode", "--key-repository", "DIR", "--at", "2030-01-01T00:00:00", "x"], "usage"],
  ])("exits 2 for %j", async (args, code) => {
    const r = await run(args.map((a) => (a === "DIR" ? dir : a)));
    expect(r.status).toBe(2);
    expect(r.json()).toMatchObject({ error: { code } });
  });

  it.each([["-h"], ["--help"]])(
    "never exits 0 for the TOKEN %s: help counts only as the sole argument",
    async (input) => {
      const r = await run(["token", "decode", "--key-repository", dir, input]);
      expect(r.status).toBe(2);
      expect(r.json()).toMatchObject({ error: { code: "usage" } });
    },
  );

  it("accepts a token after --", async () => {
    expect((await run(["token", "decode", "--key-repository", dir, "--", token])).status).toBe(0);
  });

  it("does not echo a token given where it does not belong", async () => {
    const swapped = await run(["token", "decode", "--key-repository", token, dir]);
    expect(swapped.status).toBe(2);
    expect(swapped.stdout + swapped.stderr).not.toContain(token.slice(10, 40));
    const extra = await run(["keys", "status", "--key-repository", dir, token]);
    expect(extra.status).toBe(2);
    expect(extra.stdout + extra.stderr).not.toContain(token.slice(10, 40));
  });

  it("reports an over-long stdin as a malformed token without reading it all", async () => {
    const r = await run(["token", "decode", "--key-repository", dir, "-"], "A".repeat(100_000));
    expect(r.status).toBe(3);
    expect(r.json()).toMatchObject({ error: { code: "malformed" } });
  });

  it("refuses to wait on a terminal when no token is given", async () => {
    const r = await run(["token", "decode", "--key-repository", dir]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/no TOKEN/);
  });
});

describe("keystone-edge keys status", () => {
  it("--json prints what one read knows: no reload counters, no watching", async () => {
    const r = await run(["keys", "status", "--key-repository", dir, "--json"]);
    expect(r.status).toBe(0);
    const status = r.json();
    expect(Object.keys(status)).toEqual(["directory", "primary_index", "key_count", "keys"]);
    expect(status).toMatchObject({ directory: dir, primary_index: 2, key_count: 3 });
    const keys = status.keys as { index: number; role: string; fingerprint: string }[];
    expect(keys.map((k) => k.role)).toEqual(["primary", "secondary", "staged"]);
    expect(Object.keys(keys[0] ?? {})).toEqual(["index", "role", "fingerprint", "age_seconds"]);
  });

  it("prints a readable summary by default: the repository, then a line per key", async () => {
    const r = await run(["keys", "status", "--key-repository", dir]);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe("");
    const json = JSON.parse(
      (await run(["keys", "status", "--key-repository", dir, "--json"])).stdout,
    ) as { keys: { index: number; role: string; fingerprint: string }[] };
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe(`key repository ${dir}: primary 2, 3 keys`);
    expect(lines[1]).toMatch(/^ {2}index +role +fingerprint +age$/);
    expect(lines).toHaveLength(2 + json.keys.length);
    json.keys.forEach((k, i) => {
      expect(lines[i + 2]).toMatch(
        new RegExp(`^ {2}${String(k.index)} +${k.role} +${k.fingerprint} +\\d+[smhd]`),
      );
    });
    // The columns line up.
    const column = (line: string | undefined): number =>
      line?.indexOf(json.keys[0]?.fingerprint ?? "?") ?? -1;
    expect(lines[1]?.indexOf("fingerprint")).toBe(column(lines[2]));
    expect(r.stdout).not.toMatch(/reloads|watching|\{/);
  });

  it("exits 2 naming the bad key file: on stderr, and as JSON with --json", async () => {
    const bad = await makeRepository({ "0": generateFernetKeyText(), "4": "short" });
    try {
      const r = await run(["keys", "status", "--key-repository", bad.dir, "--json"]);
      expect(r.status).toBe(2);
      expect(r.json()).toMatchObject({ error: { code: "invalid_key" } });
      expect(r.stderr).toContain(`${bad.dir}/4`);
      const readable = await run(["keys", "status", "--key-repository", bad.dir]);
      expect(readable.status).toBe(2);
      expect(readable.stdout).toBe("");
      expect(readable.stderr).toContain(`${bad.dir}/4`);
      expect(readable.stderr).not.toMatch(/Usage:/); // not a usage error
    } finally {
      await bad.cleanup();
    }
  });
});

describe("formatAge", () => {
  it.each([
    [0, "0s"],
    [59, "59s"],
    [125, "2m 5s"],
    [3_600, "1h"],
    [90_061, "1d 1h"],
    [259_205, "3d"],
  ])("%d s reads %s", (seconds, text) => {
    expect(formatAge(seconds)).toBe(text);
  });
});

describe("keystone-edge token decode: output", () => {
  it("prints one field a line by default, the same object as --json's one line", async () => {
    const readable = await run(["token", "decode", "--key-repository", dir, token]);
    const oneLine = await run(["token", "decode", "--key-repository", dir, "--json", token]);
    expect(readable.status).toBe(0);
    expect(oneLine.status).toBe(0);
    expect(readable.json()).toEqual(oneLine.json());
    const lines = readable.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("{");
    expect(lines.at(-1)).toBe("}");
    expect(lines.slice(1, -1)).toHaveLength(Object.keys(oneLine.json()).length);
    expect(lines).toContain(`  "audit_ids": ["${payload.auditIds[0]}"],`);
    expect(oneLine.stdout.trimEnd().split("\n")).toHaveLength(1);
  });

  it("prints errors the same way: readable by default, one line with --json", async () => {
    const readable = await run(["token", "decode", "--key-repository", dir, expired]);
    expect(readable.status).toBe(4);
    expect(readable.stdout).toMatch(
      /\n {2}"error": \{"code": "expired", "message": "[^"]+"\}\n\}\n$/,
    );
    const usage = await run(["token", "decode", "--key-repository", dir, "--jsn", token]);
    expect(usage.status).toBe(2);
    expect(usage.stdout.split("\n").length).toBeGreaterThan(2);
    const machine = await run([
      "token",
      "decode",
      "--json",
      "--key-repository",
      dir,
      "--jsn",
      token,
    ]);
    expect(machine.status).toBe(2);
    expect(machine.stdout.trimEnd().split("\n")).toHaveLength(1);
    expect(machine.json()).toMatchObject({ error: { code: "usage" } });
  });

  it("README.md's example is what it prints for those fields", () => {
    const readme = readFileSync(fileURLToPath(new URL("../../README.md", import.meta.url)), "utf8");
    const section = readme.slice(readme.indexOf("### `keystone-edge token decode`"));
    const block = /```json\n([\s\S]*?)\n```/.exec(section)?.[1];
    expect(block, "README.md: token decode's example").toBeDefined();
    expect(readableJson(JSON.parse(block ?? "{}") as object)).toBe(block);
  });
});

describe("arguments: the project's messages, never util.parseArgs's", () => {
  /** stderr of a usage error: the message, then the command's usage line. */
  const usageError = async (args: readonly string[]): Promise<string[]> => {
    const r = await run(args);
    expect(r.status, args.join(" ")).toBe(2);
    expect(r.stderr).not.toMatch(/ambiguous|To specify|Unknown option|'--/);
    return r.stderr.trimEnd().split("\n");
  };

  it("an unknown option: named, the nearest known one suggested, every known one listed", async () => {
    const lines = await usageError(["keys", "status", "--key-repositry", dir]);
    expect(lines).toEqual([
      "keystone-edge keys status: unknown option --key-repositry: did you mean --key-repository? (known: --key-repository, --admin, --json, --help)",
      "Usage: keystone-edge keys status --key-repository DIR [--admin URL] [--json]",
    ]);
    expect(await usageError(["keys", "status", "--frobnicate"])).toContain(
      "keystone-edge keys status: unknown option --frobnicate (known: --key-repository, --admin, --json, --help)",
    );
    // A unique prefix, a transposition, one dash instead of two.
    for (const [typed, meant] of [
      ["--key-repo", "--key-repository"],
      ["--jsno", "--json"],
      ["-json", "--json"],
    ] as const) {
      expect((await usageError(["keys", "status", typed]))[0]).toContain(
        `unknown option ${typed}: did you mean ${meant}?`,
      );
    }
  });

  it("never echoes an unknown option's value, nor an over-long option", async () => {
    const secret = "s3cr3t-value-never-printed";
    const withValue = await run(["keys", "status", `--pasword=${secret}`]);
    expect(withValue.stderr).toContain("unknown option --pasword");
    expect(withValue.stderr + withValue.stdout).not.toContain(secret);
    const long = `--${"x".repeat(60)}`;
    const r = await run(["keys", "status", long]);
    expect(r.stderr).toContain("unknown option (not shown)");
    expect(r.stderr).not.toContain(long);
  });

  it("an option without its value says what the value is", async () => {
    expect(await usageError(["drill", "master-outage", "--duration"])).toEqual([
      "keystone-edge drill: --duration needs a value (a time such as 10s, 2m or 500ms)",
      "Usage: keystone-edge drill SCENARIO --admin URL --secret-file FILE --token-file FILE [options]",
    ]);
    // Followed by another option: that option is not taken as the value.
    expect((await usageError(["keys", "status", "--key-repository", "--json"]))[0]).toBe(
      "keystone-edge keys status: --key-repository needs a value (a DIR: Keystone's key repository)",
    );
    expect((await usageError(["keys", "status", "--key-repository", "-h"]))[0]).toMatch(
      /--key-repository needs a value/,
    );
  });

  it("a value starting with a dash is the option's value (as --grace=-1), checked by the option", async () => {
    const base = ["drill", "master-outage", "--admin", "http://127.0.0.1:9", "--secret-file", "s"];
    const lines = await usageError([...base, "--token-file", "t", "--duration", "-1"]);
    expect(lines[0]).toBe(
      "keystone-edge drill: --duration: expected a time such as 10s, 2m or 500ms, got -1",
    );
    expect((await usageError([...base, "--token-file", "t", "--duration=-1"]))[0]).toBe(lines[0]);
  });

  it("a boolean option given a value", async () => {
    expect((await usageError(["keys", "status", "--json=yes"]))[0]).toBe(
      "keystone-edge keys status: --json takes no value",
    );
  });

  it("a positional argument where none is taken is never quoted: it may be a token", async () => {
    const lines = await usageError(["keys", "status", "--key-repository", dir, token]);
    expect(lines[0]).toBe(
      "keystone-edge keys status: unexpected argument (not shown: it may be a token)",
    );
    expect(lines.join("\n")).not.toContain(token.slice(0, 12));
  });

  it("-h/--help: help only as the sole argument", async () => {
    expect((await run(["keys", "status", "-h"])).status).toBe(0);
    expect((await usageError(["keys", "status", "--json", "--help"]))[0]).toBe(
      "keystone-edge keys status: --help takes no other arguments",
    );
  });

  it("main: an unknown command is named only when it looks like one, with the nearest", async () => {
    expect((await usageError(["check-confg"]))[0]).toBe(
      'keystone-edge: unknown command "check-confg": did you mean "check-config"?',
    );
    expect((await usageError(["keys", "stauts"]))[0]).toBe(
      'keystone-edge: unknown command "keys stauts": did you mean "keys status"?',
    );
    expect((await usageError(["keys", "frobnicate"]))[0]).toBe(
      'keystone-edge: unknown command "keys frobnicate" ("keys" has: status, check)',
    );
    const typo = await run(["tokne", token]);
    expect(typo.stderr).toContain('unknown command "tokne": did you mean "token decode"?');
    const swapped = await run(["token", token]);
    expect(swapped.status).toBe(2);
    expect(typo.stderr + swapped.stderr).not.toContain(token.slice(0, 12));
  });
});

describe("keystone-edge drill: usage (2, before any call to the edge)", () => {
  let files = "";
  let secret = "";
  let tokens = "";
  let empty = "";
  beforeAll(async () => {
    files = await mkdtemp(join(tmpdir(), "ke-cli-drill-"));
    secret = join(files, "secret");
    tokens = join(files, "tokens");
    empty = join(files, "empty");
    await writeFile(secret, "admin-secret\n");
    await writeFile(tokens, `${token}\n`);
    await writeFile(empty, "# no token yet\n\n");
  });
  afterAll(() => rm(files, { recursive: true, force: true }));

  /** A drill whose edge does not exist: anything but a usage error would try to reach it. */
  const drill = (scenario: readonly string[], extra: readonly string[] = []) =>
    run([
      "drill",
      ...scenario,
      "--admin",
      "http://127.0.0.1:9",
      "--secret-file",
      secret,
      "--token-file",
      tokens,
      ...extra,
    ]);
  const firstLine = (r: CliRun): string => r.stderr.split("\n")[0] ?? "";

  it("`--duration 5 minutes`: an extra argument after SCENARIO, with the one word meant", async () => {
    const r = await run([
      "drill",
      "master-outage",
      "--duration",
      "5",
      "minutes",
      "--admin",
      "http://127.0.0.1:9",
      "--secret-file",
      secret,
    ]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(
      'keystone-edge drill: unexpected extra argument "minutes" after SCENARIO master-outage (a time is one word: --duration 5m)\n' +
        "Usage: keystone-edge drill SCENARIO --admin URL --secret-file FILE --token-file FILE [options]\n",
    );
    expect(firstLine(await drill(["key-lag"], ["--max-detection=30", "sec"]))).toContain(
      '"sec" after SCENARIO key-lag (a time is one word: --max-detection 30s)',
    );
    // Any other extra word: named (short), no hint.
    expect(firstLine(await drill(["master-outage", "twice"]))).toBe(
      'keystone-edge drill: unexpected extra argument "twice" after SCENARIO master-outage',
    );
  });

  it("an extra argument that may be a token is not shown", async () => {
    const r = await drill(["master-outage", token]);
    expect(r.status).toBe(2);
    expect(firstLine(r)).toMatch(
      /^keystone-edge drill: unexpected extra argument \(not shown: \d+ characters\) after SCENARIO master-outage$/,
    );
    expect(r.stderr).not.toContain(token.slice(0, 12));
  });

  it("an unknown or missing SCENARIO is named with the list of scenarios", async () => {
    const list = DRILL_SCENARIOS.join(", ");
    expect(firstLine(await drill(["sideways"]))).toBe(
      `keystone-edge drill: unknown scenario "sideways" (scenarios: ${list})`,
    );
    const none = await drill([]);
    expect(none.status).toBe(2);
    expect(firstLine(none)).toBe(`keystone-edge drill: give a SCENARIO: ${list}`);
  });

  it("--token-file is required by every scenario that validates tokens, and must hold one", async () => {
    for (const scenario of DRILL_SCENARIOS.filter((s) => s !== "revocation")) {
      const r = await run([
        "drill",
        scenario,
        "--admin",
        "http://127.0.0.1:9",
        "--secret-file",
        secret,
      ]);
      expect(r.status, scenario).toBe(2);
      expect(firstLine(r)).toBe(
        "keystone-edge drill: --token-file FILE is required: tokens to drive traffic with",
      );
    }
    const holdsNone = await run([
      "drill",
      "master-outage",
      "--admin",
      "http://127.0.0.1:9",
      "--secret-file",
      secret,
      "--token-file",
      empty,
    ]);
    expect(holdsNone.status).toBe(2);
    expect(firstLine(holdsNone)).toMatch(/--token-file holds no token/);
    // revocation brings its own token: it asks for what it needs instead.
    const revocation = await run([
      "drill",
      "revocation",
      "--admin",
      "http://127.0.0.1:9",
      "--secret-file",
      secret,
    ]);
    expect(revocation.status).toBe(2);
    expect(firstLine(revocation)).toMatch(
      /revocation needs --revoke-token-file FILE and --keystone URL/,
    );
  });

  it("--admin must be a URL, with an example; a bare host:port is shown what it lacks", async () => {
    const r = await run([
      "drill",
      "master-outage",
      "--admin",
      "127.0.0.1:38785",
      "--secret-file",
      secret,
      "--token-file",
      tokens,
    ]);
    expect(r.status).toBe(2);
    expect(firstLine(r)).toBe(
      "keystone-edge drill: --admin must be a URL such as http://127.0.0.1:9464 (did you mean http://127.0.0.1:38785?)",
    );
    for (const url of ["ftp://127.0.0.1:9464", "not a url", "localhost"]) {
      const bad = await drill(["master-outage"], ["--admin", url]);
      expect(firstLine(bad), url).toBe(
        "keystone-edge drill: --admin must be a URL such as http://127.0.0.1:9464",
      );
    }
    const withCredentials = await drill(["master-outage"], ["--admin", "http://u:pw@127.0.0.1:9"]);
    expect(withCredentials.status).toBe(2);
    expect(withCredentials.stderr).not.toContain("pw");
  });

  it("times: the shared parser, the drill's own bound", async () => {
    expect(firstLine(await drill(["master-outage"], ["--duration", "2h"]))).toBe(
      "keystone-edge drill: --duration: must be at most 1h, got 2h",
    );
    expect(firstLine(await drill(["master-outage"], ["--duration", "0"]))).toBe(
      "keystone-edge drill: --duration: must be above 0, got 0",
    );
    expect(firstLine(await drill(["master-outage"], ["--recovery-timeout", "soon"]))).toBe(
      "keystone-edge drill: --recovery-timeout: expected a time such as 10s, 2m or 500ms, got soon",
    );
  });
});

describe("help", () => {
  it.each([
    [["--help"]],
    [["token", "decode", "--help"]],
    [["keys", "status", "--help"]],
    [["token", "--help"]],
  ])("%j describes every option", async (args) => {
    const r = await run(args);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Usage: keystone-edge/);
  });

  it("documents every option token decode accepts", async () => {
    const r = await run(["token", "decode", "--help"]);
    for (const option of [
      "--key-repository",
      "--auth-methods",
      "--default-domain-id",
      "--at",
      "--help",
    ]) {
      expect(r.stdout).toContain(option);
    }
  });

  it("exits 2 on an unknown command", async () => {
    const r = await run(["frobnicate"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown command/);
  });
});

describe("the installed binary", () => {
  const bin = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));

  it("runs as a process with the same contract (npm test builds it first)", async () => {
    expect(existsSync(bin), "dist is missing: run npm run build").toBe(true);
    const exec = promisify(execFile);
    const ok = await exec(process.execPath, [
      bin,
      "token",
      "decode",
      "--key-repository",
      dir,
      token,
    ]);
    expect(JSON.parse(ok.stdout)).toMatchObject({ project_id: "proj_non_uuid-42" });
    const failed = await exec(process.execPath, [
      bin,
      "token",
      "decode",
      "--key-repository",
      dir,
      "junk",
    ]).then(
      () => ({ code: 0 }),
      (e: unknown) => e as { code: number },
    );
    expect(failed.code).toBe(3);
    const version = await exec(process.execPath, [bin, "--version"]);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
});

describe("keystone-edge serve: its arguments", () => {
  it("--grace takes the times every command takes; a bad one is a usage error with the usage line", async () => {
    const bad = await runCli(["serve", "--config", "/nonexistent/config.yaml", "--grace", "-1"]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe(
      "keystone-edge serve: --grace: expected a time such as 10s, 2m or 500ms, got -1\n" +
        "Usage: keystone-edge serve [--config FILE] [--log-level LEVEL] [--grace TIME]\n",
    );
    // 10s is accepted: the run gets as far as reading the configuration.
    for (const grace of ["10s", "10", "1m", "0"]) {
      const run = await runCli(["serve", "--config", "/nonexistent/config.yaml", "--grace", grace]);
      expect(run.status).toBe(2);
      expect(run.stderr).toContain("/nonexistent/config.yaml: cannot read (ENOENT)");
    }
  });

  it("without --config it reads /etc/keystone-edge/config.yaml, the path every example uses", async () => {
    expect(existsSync("/etc/keystone-edge/config.yaml"), "a test machine, not an edge host").toBe(
      false,
    );
    const run = await runCli(["serve"]);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain("/etc/keystone-edge/config.yaml: cannot read (ENOENT)");
  });
});
