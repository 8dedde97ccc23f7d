/**
 * `check-config --offline` and `validateConfig(…, { offline: true })`: the file alone is
 * checked — shape, types, ranges, unknown options, the rules across options, exactly one
 * source per secret — and nothing it points to is read: no secret file or variable, no
 * TLS or CA file, not the key repository.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  OFFLINE_PLACEHOLDER,
  redactConfig,
  validateConfig,
  type SecretSources,
} from "../../../src/config/load.js";
import { runCli } from "../../harness/cli.js";
import { problemsOf } from "./helpers.js";

/** Sources that fail the test if anything is read. */
function untouchable(): { sources: SecretSources; reads: string[] } {
  const reads: string[] = [];
  const env = new Proxy(
    {},
    {
      get: (_, name) => {
        reads.push(`env ${String(name)}`);
        return "from-the-environment";
      },
    },
  );
  return {
    reads,
    sources: {
      env,
      readFile: (path) => {
        reads.push(`file ${path}`);
        return "from-a-file-of-16+-characters";
      },
    },
  };
}

const FILE = `
listen: "127.0.0.1:8774"
upstream: "http://127.0.0.1:18774"
admin_secret_env: EDGE_ADMIN_SECRET
keystone:
  www_authenticate_uri: "https://keystone.example:5000/v3"
  cafile: /nonexistent/ca.pem
  auth:
    type: password
    username: edge
    password_file: /nonexistent/secrets/password
    project_name: service
fernet:
  key_repository: /nonexistent/fernet-keys
cache:
  memcached_servers: ["127.0.0.1:11211"]
  memcache_secret_key_file: relative/memcache_secret_key
tls:
  certfile: /nonexistent/tls.crt
  keyfile: /nonexistent/tls.key
`;

const doc = (): Record<string, unknown> => parse(FILE) as Record<string, unknown>;

describe("validateConfig offline", () => {
  it("reads no secret and no file, and says so where a secret would be", () => {
    const { sources, reads } = untouchable();
    const config = validateConfig(doc(), { sources, offline: true });
    expect(reads).toEqual([]);
    expect(config.keystone.auth).toMatchObject({ password: OFFLINE_PLACEHOLDER });
    expect(config.cache.memcache_secret_key).toBe(OFFLINE_PLACEHOLDER);
    const shown = redactConfig(config) as {
      admin_secret: string;
      keystone: { auth: { password: string } };
      cache: { memcache_secret_key: string };
    };
    expect(shown.admin_secret).toBe("<not read: offline>");
    expect(shown.keystone.auth.password).toBe("<not read: offline>");
    expect(shown.cache.memcache_secret_key).toBe("<not read: offline>");
  });

  it("without offline the same file is refused for each thing it cannot read", () => {
    const problems = problemsOf(doc());
    expect(problems.map((p) => p.split(":")[0]).sort()).toEqual(
      [
        "admin_secret_env",
        "cache.memcache_secret_key_file",
        "keystone.auth.password_file",
        "keystone.cafile",
        "tls.certfile",
        "tls.keyfile",
      ].sort(),
    );
  });

  it("an inline secret is redacted as ever", () => {
    const { sources } = untouchable();
    const d = doc();
    const auth = (d.keystone as { auth: Record<string, unknown> }).auth;
    delete auth.password_file;
    auth.password = "inline-password";
    const text = JSON.stringify(redactConfig(validateConfig(d, { sources, offline: true })));
    expect(text).not.toContain("inline-password");
    expect(text).toContain('"password":"<redacted>"');
  });

  it("still checks everything the file says: exactly one source, their form, the schema, the rules", () => {
    const { sources, reads } = untouchable();
    const d = doc();
    const auth = (d.keystone as { auth: Record<string, unknown> }).auth;
    auth.password = "also-inline";
    auth.user_id = "and-an-id";
    d.admin_secret_env = "not a variable name";
    (d.cache as Record<string, unknown>).memcache_secret_key_file = "";
    d.upstrem = "x";
    expect([...problemsOf(d, { sources, offline: true })].sort()).toEqual(
      [
        "keystone.auth.password: give only one of password, password_file",
        "cache.memcache_secret_key_file: expected a file path",
        "admin_secret_env: expected an environment variable name",
        "upstrem: unknown option (did you mean upstream?)",
        "keystone.auth: give exactly one of username, user_id",
      ].sort(),
    );
    expect(reads).toEqual([]);
  });
});

describe("check-config --offline", () => {
  let dir = "";
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "ke-offline-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("passes a file whose secrets, TLS files and key repository are elsewhere, and says what it did not read", async () => {
    const file = join(dir, "edge.yaml");
    await writeFile(file, FILE);
    const r = await runCli(["check-config", "--offline", file]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe(`configuration OK: ${file}`);
    expect(r.stdout).toContain("key repository: /nonexistent/fernet-keys: not read (--offline)\n");
    expect(r.stdout).toMatch(/^offline: .*not read$/m);
    expect(r.stdout).toContain('  password: "<not read: offline>"\n');
    expect(r.stdout).not.toMatch(/^tls: serving/m);
    // without --offline: the same file cannot be used on this host
    const online = await runCli(["check-config", "--skip-keys", file]);
    expect(online.status).toBe(2);
    expect(online.stderr).toMatch(/keystone\.auth\.password_file: cannot read/);
  });

  it("--json: the usual object, secrets not read shown as such, no key repository", async () => {
    const file = join(dir, "edge-json.yaml");
    await writeFile(file, FILE);
    const r = await runCli(["check-config", "--offline", "--json", file]);
    expect(r.status).toBe(0);
    const out = r.json();
    expect(Object.keys(out).sort()).toEqual(["config", "ok", "warnings"]);
    expect(out).toMatchObject({
      ok: true,
      config: { keystone: { auth: { password: "<not read: offline>" } } },
      warnings: [],
    });
  });

  it("refuses an invalid file, exit 2, one line per problem", async () => {
    const file = join(dir, "bad.yaml");
    await writeFile(file, FILE.replace("upstream:", "upstrem:"));
    const r = await runCli(["check-config", "--offline", file]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      "keystone-edge check-config: upstream: required\n" +
        "keystone-edge check-config: upstrem: unknown option (did you mean upstream?)\n",
    );
  });

  it("is in the help", async () => {
    const r = await runCli(["check-config", "--help"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/--offline/);
    expect(r.stdout).toMatch(/--json/);
  });
});
