import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.js";
import { readKeyRepository } from "../../src/fernet/key-repository.js";
import { TokenDecoder } from "../../src/token/decoder.js";
import { staticKeyRing } from "../../src/fernet/key-ring.js";
import { DEFAULT_AUTH_METHODS } from "../../src/token/methods.js";
import { generateFernetKeyText } from "../../src/fernet/envelope.js";
import type { EpochMicros } from "../../src/units.js";
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
    const r = await run(["token", "decode", "--key-repository", dir, ...totp, token]);
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
  it("prints the repository status as JSON", async () => {
    const r = await run(["keys", "status", "--key-repository", dir]);
    expect(r.status).toBe(0);
    const status = r.json();
    expect(status).toMatchObject({ directory: dir, primary_index: 2, key_count: 3 });
    expect((status.keys as { role: string }[]).map((k) => k.role)).toEqual([
      "primary",
      "secondary",
      "staged",
    ]);
  });

  it("exits 2 naming the bad key file", async () => {
    const bad = await makeRepository({ "0": generateFernetKeyText(), "4": "short" });
    try {
      const r = await run(["keys", "status", "--key-repository", bad.dir]);
      expect(r.status).toBe(2);
      expect(r.json()).toMatchObject({ error: { code: "invalid_key" } });
      expect(r.stderr).toContain(`${bad.dir}/4`);
    } finally {
      await bad.cleanup();
    }
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
