import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  loadConfig,
  redactConfig,
  validateConfig,
  type SecretSources,
} from "../../src/config/load.js";
import { parseListenAddress } from "../../src/config/schema.js";
import { insecureEndpoints, insecureEndpointWarning } from "../../src/config/warnings.js";
import { ConfigError } from "../../src/errors.js";
import { runCli } from "../harness/cli.js";
import { generateFernetKeyText } from "../../src/fernet/envelope.js";
import { makeRepository } from "./helpers.js";
import { noSecrets, problemsOf } from "./config/helpers.js";
import { createPki, type Issued } from "../harness/pki.js";

/** The configuration contract, verbatim from the proxy issue. */
const CONTRACT = `
listen: "127.0.0.1:8774"            # host:port; IPv6 "[::1]:8774" works
upstream: "http://127.0.0.1:18774"  # the local service
admin_listen: "127.0.0.1:9464"      # /metrics, /healthz, /readyz
keystone:
  www_authenticate_uri: "http://127.0.0.1:5000/v3"
  endpoints: ["http://127.0.0.1:5000/v3"]
  cafile: null        # also certfile, keyfile, insecure
  timeout_ms: 2000
  auth:               # the edge's own service user; or type: application_credential
    type: password    # with application_credential_id / application_credential_secret
    username: edge-svc
    password: secret
    user_domain_id: default
    project_name: service
    project_domain_id: default
fernet:
  key_repository: /etc/keystone/fernet-keys
  auth_methods: [external, password, token, oauth1, mapped, application_credential]
cache:
  memcached_servers: ["127.0.0.1:11211"]   # empty or absent: in-process LRU only
  memcache_secret_key: "change-me-please-16+"  # required when memcached_servers is set
  token_cache_time: 300
  lru_max_entries: 100000
auth_token:
  delay_auth_decision: false
  include_service_catalog: true
  service_token_roles: [service]
  service_token_roles_required: true
`;

function contract(): Record<string, unknown> {
  return parse(CONTRACT) as Record<string, unknown>;
}

function problemsOfFile(file: string): readonly string[] {
  try {
    loadConfig(file, { sources: noSecrets });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error("expected the file to be refused");
}

const minimal = {
  listen: "127.0.0.1:8774",
  upstream: "http://127.0.0.1:18774",
  keystone: {
    www_authenticate_uri: "https://keystone.example:5000/v3",
    auth: {
      type: "application_credential",
      application_credential_id: "ac",
      application_credential_secret: "s",
    },
  },
  fernet: { key_repository: "/etc/keystone/fernet-keys" },
};

describe("configuration", () => {
  it("accepts the contract's example as written", () => {
    const config = validateConfig(contract(), { sources: noSecrets });
    expect(config.keystone.auth).toMatchObject({ type: "password", username: "edge-svc" });
    expect(config.cache.memcached_servers).toEqual(["127.0.0.1:11211"]);
    expect(Object.isFrozen(config.keystone.endpoints)).toBe(true);
  });

  it("fills every default from a minimal file", () => {
    const config = validateConfig(minimal, { sources: noSecrets });
    expect(config).toMatchObject({
      admin_listen: "127.0.0.1:9464",
      keystone: {
        endpoints: [{ name: "keystone.example:5000", url: "https://keystone.example:5000/v3" }],
        cafile: null,
        insecure: false,
        timeout_ms: 2000,
      },
      fernet: { default_domain_id: "default" },
      cache: { memcached_servers: [], token_cache_time: 300, lru_max_entries: 100_000 },
      auth_token: {
        delay_auth_decision: false,
        include_service_catalog: true,
        service_token_roles: ["service"],
        service_token_roles_required: true,
      },
    });
    expect(config.fernet.auth_methods).toHaveLength(6);
  });

  it("pools 16 connections per Keystone endpoint by default, and names the field when out of range", () => {
    expect(validateConfig(minimal, { sources: noSecrets }).keystone.connections).toBe(16);
    const withConnections = (connections: unknown) => ({
      ...minimal,
      keystone: { ...minimal.keystone, connections },
    });
    expect(validateConfig(withConnections(4), { sources: noSecrets }).keystone.connections).toBe(4);
    expect(problemsOf(withConnections(0))).toEqual([
      expect.stringMatching(/^keystone\.connections: /),
    ]);
  });

  it("limits clients by default and checks the limits against each other", () => {
    const config = validateConfig(minimal, { sources: noSecrets });
    expect(config.client).toEqual({
      max_header_count: 100,
      max_header_bytes: 8192,
      max_head_bytes: 32768,
      max_url_bytes: 8192,
      headers_timeout_ms: 10_000,
      body_timeout_ms: 60_000,
      request_timeout_ms: 0,
      keep_alive_timeout_ms: 75_000,
    });
    expect(config.admin_allowed_hosts).toEqual([]);
    expect(config.upstream_max_connections).toBe(1024);
    expect(config.upstream_timeout_ms).toBe(60_000);
    const bad = (client: Record<string, unknown>) => problemsOf({ ...minimal, client });
    expect(bad({ max_header_bytes: 65_536, max_head_bytes: 16_384 })).toEqual([
      expect.stringMatching(/^client\.max_header_bytes: must not exceed max_head_bytes/),
    ]);
    expect(bad({ headers_timeout_ms: 20_000, request_timeout_ms: 10_000 })).toEqual([
      expect.stringMatching(/^client\.headers_timeout_ms: /),
    ]);
    expect(bad({ max_header_count: 5000 })).toEqual([
      expect.stringMatching(/^client\.max_header_count: /),
    ]);
    expect(bad({ slowloris: true })).toEqual(["client.slowloris: unknown option"]);
  });

  it("lists insecure Keystone endpoints: plain HTTP, or TLS without verification", () => {
    const plain = validateConfig(contract(), { sources: noSecrets });
    expect(insecureEndpoints(plain)).toEqual([{ name: "127.0.0.1:5000", reason: "plain_http" }]);
    const verified = validateConfig(minimal, { sources: noSecrets });
    expect(insecureEndpoints(verified)).toEqual([]);
    const unverified = validateConfig(
      { ...minimal, keystone: { ...(minimal.keystone as object), insecure: true } },
      { sources: noSecrets },
    );
    expect(insecureEndpoints(unverified)).toEqual([
      { name: "keystone.example:5000", reason: "tls_unverified" },
    ]);
    expect(insecureEndpoints(unverified).map(insecureEndpointWarning)).toEqual([
      expect.stringMatching(/without verifying its certificate/),
    ]);
  });

  it("names endpoints: configured names, host:port otherwise; names are unique labels", () => {
    const doc = contract();
    const keystone = doc.keystone as Record<string, unknown>;
    keystone.endpoints = [
      { name: "region-one", url: "https://ks.region-one.example/v3" },
      "https://user:pw@master.example:5000/v3",
    ];
    const config = validateConfig(doc, { sources: noSecrets });
    expect(config.keystone.endpoints.map((e) => e.name)).toEqual([
      "region-one",
      "master.example:5000",
    ]);
    keystone.endpoints = [
      { name: "same", url: "https://a.example/v3" },
      { name: "same", url: "https://b.example/v3" },
    ];
    expect(problemsOf(doc)).toEqual([
      "keystone.endpoints: endpoint names must be unique (unnamed ones are named after host:port)",
    ]);
    keystone.endpoints = [{ name: "https://x/y", url: "https://a.example/v3" }];
    expect(problemsOf(doc)[0]).toMatch(/^keystone\.endpoints\.0\.name: expected 1-63 letters/);
  });

  it("names unknown options, however deep, with the known option they most likely meant", () => {
    const doc = contract();
    (doc.keystone as Record<string, unknown>).timeout = 5;
    doc.listne = "x";
    expect(problemsOf(doc)).toEqual(
      expect.arrayContaining([
        "keystone.timeout: unknown option (did you mean timeout_ms?)",
        "listne: unknown option (did you mean listen?)",
      ]),
    );
  });

  it("names options of the wrong type or range", () => {
    const doc = contract();
    (doc.keystone as Record<string, unknown>).timeout_ms = "2s";
    (doc.cache as Record<string, unknown>).token_cache_time = -1;
    doc.listen = "localhost";
    const problems = problemsOf(doc);
    expect(problems.some((p) => p.startsWith("keystone.timeout_ms:"))).toBe(true);
    expect(problems.some((p) => p.startsWith("cache.token_cache_time:"))).toBe(true);
    expect(problems.some((p) => p.startsWith("listen:"))).toBe(true);
  });

  it("requires the memcache secret with memcached servers", () => {
    const doc = contract();
    delete (doc.cache as Record<string, unknown>).memcache_secret_key;
    expect(problemsOf(doc)).toEqual([
      "cache.memcache_secret_key: memcache_secret_key is required when memcached_servers is set",
    ]);
  });

  it("reads secrets from files and the environment, exactly one source each", () => {
    const sources: SecretSources = {
      env: { EDGE_MC_SECRET: "sixteen-characters-at-least" },
      readFile: (path) => {
        if (path === "/run/secrets/pw") return "s3cret\n";
        throw Object.assign(new Error("no"), { code: "ENOENT" });
      },
    };
    const doc = contract();
    const auth = (doc.keystone as { auth: Record<string, unknown> }).auth;
    delete auth.password;
    auth.password_file = "/run/secrets/pw";
    const cache = doc.cache as Record<string, unknown>;
    delete cache.memcache_secret_key;
    cache.memcache_secret_key_env = "EDGE_MC_SECRET";
    const config = validateConfig(doc, { sources });
    expect(config.keystone.auth).toMatchObject({ password: "s3cret" });
    expect(config.cache.memcache_secret_key).toBe("sixteen-characters-at-least");

    auth.password = "inline";
    expect(problemsOf(doc, { sources })).toEqual([
      "keystone.auth.password: give only one of password, password_file",
    ]);
    delete auth.password;
    auth.password_file = "/run/secrets/missing";
    expect(problemsOf(doc, { sources })).toEqual([
      "keystone.auth.password_file: cannot read /run/secrets/missing (ENOENT)",
    ]);
    delete auth.password_file;
    auth.password_env = "NOT_SET";
    expect(problemsOf(doc, { sources })).toEqual([
      "keystone.auth.password_env: environment variable NOT_SET is not set",
    ]);
  });

  it("checks the service user's identity and scope", () => {
    const doc = contract();
    const auth = (doc.keystone as { auth: Record<string, unknown> }).auth;
    delete auth.username;
    auth.project_id = "p";
    expect(problemsOf(doc)).toEqual([
      "keystone.auth: give exactly one of username, user_id",
      "keystone.auth: give exactly one of project_name, project_id",
    ]);
    auth.type = "kerberos";
    const [problem, ...others] = problemsOf(doc);
    expect(others).toEqual([]);
    expect(problem).toMatch(/^keystone\.auth\.type: .*password.*application_credential/);
  });

  it("checks TLS files: readable, certificate and key together", () => {
    const doc = contract();
    const keystone = doc.keystone as Record<string, unknown>;
    keystone.cafile = "/nonexistent/ca.pem";
    keystone.certfile = "/etc/hostname";
    const problems = problemsOf(doc);
    expect(problems).toContain("keystone: certfile and keyfile go together");
    expect(problems).toContain("keystone.cafile: cannot read /nonexistent/ca.pem (ENOENT)");
  });

  it("parses listen addresses, IPv6 included", () => {
    expect(parseListenAddress("[::1]:8774")).toEqual({ host: "::1", port: 8774 });
    expect(parseListenAddress("0.0.0.0:0")).toEqual({ host: "0.0.0.0", port: 0 });
    expect(parseListenAddress("edge.local:443")).toEqual({ host: "edge.local", port: 443 });
    for (const bad of ["8774", "::1:8774", "host:70000", "host:", ":80", "a b:1"]) {
      expect(parseListenAddress(bad), bad).toBeUndefined();
    }
  });

  it("redacts every secret", () => {
    const config = validateConfig(contract(), { sources: noSecrets });
    const text = JSON.stringify(redactConfig(config));
    expect(text).not.toContain('secret"');
    expect(text).not.toContain("change-me-please");
    expect(text).toContain("<redacted>");
    expect(config.keystone.auth).toMatchObject({ password: "secret" });
  });
});

describe("loadConfig and check-config", () => {
  let dir = "";
  let keys: Awaited<ReturnType<typeof makeRepository>>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "ke-config-"));
    keys = await makeRepository({ "0": generateFernetKeyText(), "1": generateFernetKeyText() });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
    await keys.cleanup();
  });

  const run = runCli;

  it("reads relative secret files next to the configuration", async () => {
    await writeFile(join(dir, "pw"), "from-file\n");
    const file = join(dir, "edge.yaml");
    await writeFile(
      file,
      CONTRACT.replace("password: secret", "password_file: pw").replace(
        "/etc/keystone/fernet-keys",
        keys.dir,
      ),
    );
    expect(loadConfig(file).keystone.auth).toMatchObject({ password: "from-file" });
    const r = await run(["check-config", "--json", file]);
    expect(r.status).toBe(0);
    expect(r.json()).toMatchObject({
      ok: true,
      key_repository: { primary_index: 1, key_count: 2 },
    });
    expect(r.stdout).not.toContain("from-file");
    // The contract's Keystone is plain HTTP: valid, but never quietly.
    expect(r.json()).toMatchObject({ warnings: [expect.stringMatching(/plain HTTP/)] });
    expect(r.stderr).toMatch(/warning: keystone\.endpoints: 127\.0\.0\.1:5000 is plain HTTP/);
  });

  it("reports YAML errors as FILE:LINE:COLUMN with the line and a caret, and duplicate keys", async () => {
    const file = join(dir, "broken.yaml");
    await writeFile(file, 'listen: "127.0.0.1:8774"\nupstream: "http://a"x\n');
    expect(() => loadConfig(file)).toThrow(/not valid YAML/);
    expect(problemsOfFile(file)).toEqual([
      `${file}:2:21: Unexpected scalar at node end\n` +
        '  2 | upstream: "http://a"x\n' +
        // under the x
        "    |                     ^",
    ]);
    await writeFile(file, "listen: a\nlisten: b\n");
    expect(problemsOfFile(file)).toEqual([
      // at the start of a line: the line before is shown too
      `${file}:2:1: Map keys must be unique\n  1 | listen: a\n  2 | listen: b\n    | ^`,
    ]);
  });

  it("never shows a secret's value in a YAML error's lines", async () => {
    const file = join(dir, "quoted.yaml");
    await writeFile(file, 'keystone:\n  auth:\n    password: "s3cr"et-value"\n');
    expect(problemsOfFile(file)).toEqual([
      `${file}:3:21: Unexpected scalar at node end\n` +
        "  3 |     password: <redacted>\n" +
        "    |               ^",
    ]);
    // a value on more than one line: its other lines are hidden too
    await writeFile(file, 'keystone:\n  auth:\n    password: "s3cr\n      et"-value"\n');
    const [problem, ...others] = problemsOfFile(file);
    expect(others).toEqual([]);
    expect(problem).toMatch(new RegExp(`^${file}:4:\\d+: `));
    expect(problem).toContain("  4 |       <redacted>\n");
    expect(problem).not.toMatch(/s3cr|et"|value/);
  });

  it("check-config exits 2 and names each problem on stderr", async () => {
    const file = join(dir, "bad.yaml");
    await writeFile(file, CONTRACT.replace("timeout_ms: 2000", "timeout_ms: 2000\n  retries: 3"));
    const r = await run(["check-config", file, "--skip-keys", "--json"]);
    expect(r.status).toBe(2);
    expect(r.json()).toMatchObject({
      error: { code: "invalid_config", problems: ["keystone.retries: unknown option"] },
    });
    expect(r.stderr).toBe("keystone-edge check-config: keystone.retries: unknown option\n");
    const readable = await run(["check-config", file, "--skip-keys"]);
    expect(readable.status).toBe(2);
    expect(readable.stdout).toBe("");
    expect(readable.stderr).toBe(r.stderr);
    const missing = await run(["check-config", "--json", join(dir, "nope.yaml")]);
    expect(missing.status).toBe(2);
    expect(missing.json()).toMatchObject({ error: { code: "config_unreadable" } });
  });

  it("check-config loads the listeners' certificate: its subject and end, a warning near the end, a mismatched key refused", async () => {
    const pki = createPki();
    try {
      const good = pki.server("edge.region-one");
      const soon = pki.server("edge-soon", { days: 3 });
      const other = pki.server("edge-other");
      const withTls = (cert: Issued, key: Issued): string =>
        CONTRACT.replace("/etc/keystone/fernet-keys", keys.dir) +
        `tls:\n  certfile: ${cert.certfile}\n  keyfile: ${key.keyfile}\n  client_cafile: ${pki.ca.certfile}\n`;
      const file = join(dir, "tls.yaml");
      await writeFile(file, withTls(good, good));
      const ok = await run(["check-config", "--json", file]);
      expect(ok.status, ok.stderr).toBe(0);
      expect(ok.json()).toMatchObject({
        tls: {
          subject: "CN=edge.region-one",
          not_after: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as unknown,
          client_certificates: "required",
        },
      });
      expect(ok.stderr).not.toMatch(/tls:/);
      await writeFile(file, withTls(soon, soon));
      const warned = await run(["check-config", "--json", file]);
      expect(warned.status).toBe(0);
      expect(warned.stderr).toMatch(/warning: tls: the served certificate ends in 3\.0 days/);
      await writeFile(file, withTls(good, other));
      const refused = await run(["check-config", "--json", file]);
      expect(refused.status).toBe(2);
      expect(refused.json()).toMatchObject({
        error: { code: "invalid_config", problems: [expect.stringMatching(/^tls\.keyfile: /)] },
      });
    } finally {
      pki.remove();
    }
  });

  it("check-config refuses a configuration whose key repository does not load", async () => {
    const file = join(dir, "nokeys.yaml");
    await writeFile(file, CONTRACT.replace("/etc/keystone/fernet-keys", join(dir, "no-keys-here")));
    const r = await run(["check-config", "--json", file]);
    expect(r.status).toBe(2);
    expect(r.json()).toMatchObject({ error: { code: "key_repository_missing" } });
    expect(r.stderr).toMatch(
      /^keystone-edge check-config: fernet\.key_repository: \S*no-keys-here does not exist/,
    );
    expect((await run(["check-config", file, "--skip-keys"])).status).toBe(0);
  });
});
