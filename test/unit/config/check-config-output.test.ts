/**
 * What `check-config` prints for a configuration that loads: "configuration OK", the key
 * repository, the served certificate, warnings, then the effective configuration as YAML
 * — every default filled in (those taken from another option too, with a comment saying
 * so), every secret redacted. `--json` keeps the one JSON object scripts read.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { derivedDefaults } from "../../../src/config/derived.js";
import { loadConfig, redactConfig } from "../../../src/config/load.js";
import { generateFernetKeyText } from "../../../src/fernet/envelope.js";
import { runCli } from "../../harness/cli.js";
import { makeRepository } from "../helpers.js";

const SECRET = "the-service-password-123";

let dir = "";
let keys: Awaited<ReturnType<typeof makeRepository>>;
let file = "";
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ke-check-output-"));
  keys = await makeRepository({ "0": generateFernetKeyText(), "1": generateFernetKeyText() });
  await writeFile(join(dir, "password"), `${SECRET}\n`);
  file = join(dir, "edge.yaml");
  await writeFile(
    file,
    [
      'listen: "127.0.0.1:8774"',
      'upstream: "http://127.0.0.1:18774"',
      "keystone:",
      '  www_authenticate_uri: "http://127.0.0.1:5000/v3"',
      "  revocation_poll_interval_ms: 4000",
      "  auth:",
      "    type: password",
      "    username: edge",
      "    password_file: password",
      "    project_name: service",
      "fernet:",
      `  key_repository: ${keys.dir}`,
      "cache:",
      "  token_cache_time: 120",
      "",
    ].join("\n"),
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await keys.cleanup();
});

describe("check-config's report", () => {
  it("says OK, the keys and the warnings, then the effective configuration with every default", async () => {
    const r = await runCli(["check-config", file]);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe("");
    const [head = "", body = ""] = r.stdout.split(
      "\n# effective configuration: defaults filled in, secrets redacted\n",
    );
    expect(head.split("\n")).toEqual([
      `configuration OK: ${file}`,
      `key repository: ${keys.dir}: primary key 1, 2 keys`,
      "warning: keystone.endpoints: 127.0.0.1:5000 is plain HTTP: tokens and the service password cross the network readable",
      "",
    ]);
    expect(r.stdout).not.toContain(SECRET);
    const shown = parse(body) as Record<string, Record<string, unknown>>;
    const config = loadConfig(file);
    const expected = redactConfig(config) as Record<string, Record<string, unknown>>;
    // the defaults no schema default fills: from the options they follow
    expect(derivedDefaults(config).map((d) => d.path.join("."))).toEqual([
      "cache.context_cache_time",
      "shadow_validation.confirm_after_ms",
    ]);
    expect(shown).toEqual({
      ...expected,
      cache: { ...expected.cache, context_cache_time: 120 },
      shadow_validation: { ...expected.shadow_validation, confirm_after_ms: 8000 },
    });
    expect(shown.keystone?.auth).toMatchObject({ password: "<redacted>" });
    expect(shown.client?.max_header_count).toBe(100);
    expect(body).toContain("  context_cache_time: 120 # default: cache.token_cache_time\n");
    expect(body).toContain(
      "  confirm_after_ms: 8000 # default: twice keystone.revocation_poll_interval_ms\n",
    );
  });

  it("a value given in the file is shown as given, without a comment", async () => {
    const given = join(dir, "given.yaml");
    await writeFile(given, `${await readFile(file, "utf8")}  context_cache_time: 30\n`);
    const r = await runCli(["check-config", "--skip-keys", given]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`key repository: ${keys.dir}: not read (--skip-keys)\n`);
    expect(r.stdout).toContain("  context_cache_time: 30\n");
  });

  it("--json: the same object as ever, warnings on stderr too", async () => {
    const r = await runCli(["check-config", "--json", file]);
    expect(r.status).toBe(0);
    const out = r.json();
    expect(Object.keys(out).sort()).toEqual(["config", "key_repository", "ok", "warnings"]);
    expect(out.config).toEqual(redactConfig(loadConfig(file)));
    expect(out.key_repository).toEqual({ primary_index: 1, key_count: 2 });
    expect(r.stderr).toMatch(/^keystone-edge check-config: warning: keystone\.endpoints: /);
    expect(r.stdout).not.toContain(SECRET);
  });
});
