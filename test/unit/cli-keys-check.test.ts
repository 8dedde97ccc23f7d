/**
 * `keystone-edge keys check` (the rotation gate) against a stand-in master Keystone that
 * issues real Fernet tokens signed with a key the test picks: a copy whose primary is the
 * master's (0), one rotation behind (7), lacking the master's key (1), ahead of it (7);
 * Keystone down, failing or refusing the service user, a token that is not Fernet (6);
 * usage and configuration problems (2); failover across endpoints, `--endpoint`, HTTPS with
 * `keystone.cafile`; the JSON shape; and never a token, key or password in the output.
 * Also `keys status --admin` against a stand-in admin listener.
 */
import { execFileSync } from "node:child_process";
import { createServer, type Server } from "node:http";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateFernetKeyText } from "../../src/fernet/envelope.js";
import { runCli, type CliRun } from "../harness/cli.js";
import { startFernetKeystone, type FernetKeystone } from "../harness/fernet-keystone.js";
import { freePort } from "../harness/net.js";
import { keyFromText, makeRepository } from "./helpers.js";

const PASSWORD = "s3rvice-pa55word-never-printed";

/** The region's copy: staged 0, secondary 1, primary 2. */
const texts = {
  staged: generateFernetKeyText(),
  secondary: generateFernetKeyText(),
  primary: generateFernetKeyText(),
  /** The master's primary after two rotations this copy has not seen. */
  unseen: generateFernetKeyText(),
};

let work = "";
let region: { dir: string; cleanup: () => Promise<void> };
let keystone: FernetKeystone;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "ke-keys-check-"));
  region = await makeRepository({ "0": texts.staged, "1": texts.secondary, "2": texts.primary });
  keystone = await startFernetKeystone({ signingKey: keyFromText(texts.primary) });
});

afterAll(async () => {
  await keystone.close();
  await region.cleanup();
  await rm(work, { recursive: true, force: true });
});

afterEach(async () => {
  keystone.mode = "issue";
  keystone.signingKey = keyFromText(texts.primary);
  for (const c of cleanups.splice(0)) await c();
});

let configs = 0;

/** Writes an edge configuration (JSON is YAML) and returns its path. */
async function config(
  options: {
    readonly endpoints?: readonly (string | { name: string; url: string })[];
    readonly keyRepository?: string;
    readonly keystone?: Record<string, unknown>;
    readonly auth?: Record<string, unknown>;
  } = {},
): Promise<string> {
  const path = join(work, `edge-${String(++configs)}.yaml`);
  const document = {
    listen: "127.0.0.1:0",
    upstream: "http://127.0.0.1:1",
    keystone: {
      www_authenticate_uri: keystone.url,
      endpoints: options.endpoints ?? [{ name: "master", url: keystone.url }],
      timeout_ms: 2_000,
      auth: options.auth ?? {
        type: "password",
        username: "edge-svc",
        password: PASSWORD,
        user_domain_id: "default",
        project_name: "service",
        project_domain_id: "default",
      },
      ...options.keystone,
    },
    fernet: { key_repository: options.keyRepository ?? region.dir },
  };
  await writeFile(path, JSON.stringify(document, null, 2));
  return path;
}

/** Nothing secret in what the command wrote: no token issued, no key, no password. */
function expectNoSecrets(r: CliRun): void {
  const out = r.stdout + r.stderr;
  for (const token of keystone.issued) expect(out).not.toContain(token);
  for (const text of Object.values(texts)) {
    expect(out).not.toContain(text);
    expect(out).not.toContain(text.replace(/=+$/, ""));
  }
  expect(out).not.toContain(PASSWORD);
}

async function check(args: readonly string[]): Promise<CliRun> {
  const r = await runCli(["keys", "check", ...args]);
  expectNoSecrets(r);
  return r;
}

describe("keystone-edge keys check: the verdict", () => {
  it("exits 0 when the copy's primary key verifies what Keystone issues now (in sync)", async () => {
    const before = keystone.issued.length;
    const r = await check(["--config", await config(), "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(keystone.issued.length).toBe(before + 1); // one fresh token, asked for now
    const report = r.json();
    expect(report).toEqual({
      state: "in_sync",
      ok: true,
      key_repository: {
        directory: region.dir,
        primary_index: 2,
        key_count: 3,
        keys: [
          { index: 2, role: "primary", fingerprint: keyFromText(texts.primary).fingerprint },
          { index: 1, role: "secondary", fingerprint: keyFromText(texts.secondary).fingerprint },
          { index: 0, role: "staged", fingerprint: keyFromText(texts.staged).fingerprint },
        ],
      },
      keystone: {
        endpoint: "master",
        url: keystone.url,
        token_issued_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/) as unknown,
      },
      decrypted_with: {
        index: 2,
        role: "primary",
        fingerprint: keyFromText(texts.primary).fingerprint,
      },
      payload: "valid",
    });
    const issuedAt = Date.parse(
      (report["keystone"] as { token_issued_at: string }).token_issued_at,
    );
    expect(Math.abs(issuedAt - Date.now())).toBeLessThan(10_000);
    expect(r.stderr).toBe("");
  });

  it("exits 1 when no key of the copy verifies it (behind: two rotations not synced)", async () => {
    keystone.signingKey = keyFromText(texts.unseen);
    const r = await check(["--config", await config(), "--json"]);
    expect(r.status).toBe(1);
    expect(r.json()).toMatchObject({
      state: "behind",
      ok: false,
      key_repository: { primary_index: 2, key_count: 3 },
      keystone: { endpoint: "master" },
      decrypted_with: null,
      payload: null,
    });
  });

  it("exits 7 when only the staged key verifies it (one rotation behind: serving, but do not rotate)", async () => {
    keystone.signingKey = keyFromText(texts.staged);
    const r = await check(["--config", await config(), "--json"]);
    expect(r.status).toBe(7);
    expect(r.json()).toMatchObject({
      state: "one_rotation_behind",
      ok: false,
      decrypted_with: { index: 0, role: "staged" },
      payload: "valid",
    });
  });

  it("exits 7 when a secondary verifies it (the Keystone that answered is behind this copy)", async () => {
    keystone.signingKey = keyFromText(texts.secondary);
    const r = await check(["--config", await config(), "--json"]);
    expect(r.status).toBe(7);
    expect(r.json()).toMatchObject({
      state: "ahead",
      ok: false,
      decrypted_with: { index: 1, role: "secondary" },
    });
  });

  it("prints a human summary by default: verdict, repository, endpoint, key, advice", async () => {
    const ok = await check(["--config", await config()]);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/^keys check: IN SYNC\n/);
    expect(ok.stdout).toContain(`key repository  ${region.dir}: primary 2, 3 keys`);
    expect(ok.stdout).toContain(`Keystone        master (${keystone.url}), token issued `);
    expect(ok.stdout).toContain(
      `decrypted with  key 2 (primary, fingerprint ${keyFromText(texts.primary).fingerprint})`,
    );
    keystone.signingKey = keyFromText(texts.unseen);
    const behind = await check(["--config", await config()]);
    expect(behind.status).toBe(1);
    expect(behind.stdout).toMatch(/^keys check: BEHIND\n/);
    expect(behind.stdout).toContain("decrypted with  none of the 3 keys");
    expect(behind.stdout).toMatch(/Do\s+not\s+rotate\s+again/);
  });
});

describe("keystone-edge keys check: Keystone", () => {
  it("fails over to the next endpoint in order, and says which one issued the token", async () => {
    const dead = `http://127.0.0.1:${String(await freePort())}/v3`;
    const r = await check([
      "--config",
      await config({
        endpoints: [
          { name: "regional", url: dead },
          { name: "master", url: keystone.url },
        ],
      }),
      "--json",
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({ state: "in_sync", keystone: { endpoint: "master" } });
  });

  it("--endpoint asks only the endpoint named; an unknown name is a usage error", async () => {
    const dead = `http://127.0.0.1:${String(await freePort())}/v3`;
    const path = await config({
      endpoints: [
        { name: "regional", url: dead },
        { name: "master", url: keystone.url },
      ],
    });
    const master = await check(["--config", path, "--endpoint", "master", "--json"]);
    expect(master.status).toBe(0);
    const regional = await check(["--config", path, "--endpoint", "regional", "--json"]);
    expect(regional.status).toBe(6);
    expect(regional.json()).toMatchObject({
      error: { code: "keystone_unreachable" },
      keystone: { attempts: [{ endpoint: "regional", result: "connection" }] },
    });
    const unknown = await check(["--config", path, "--endpoint", "nowhere", "--json"]);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("it has: regional, master");
  });

  it("exits 6 when no endpoint answers (Keystone down)", async () => {
    const dead = `http://127.0.0.1:${String(await freePort())}/v3`;
    const r = await check([
      "--config",
      await config({ endpoints: [{ name: "master", url: dead }] }),
      "--json",
    ]);
    expect(r.status).toBe(6);
    expect(r.json()).toMatchObject({
      state: "unknown",
      ok: false,
      error: { code: "keystone_unreachable" },
      key_repository: { directory: region.dir, primary_index: 2, key_count: 3 },
      keystone: { attempts: [{ endpoint: "master", url: dead, result: "connection" }] },
    });
    expect(r.stderr).toMatch(/no Keystone endpoint issued a token: master: connection/);
  });

  it("exits 6 when Keystone fails (5xx)", async () => {
    keystone.mode = "fail";
    const r = await check(["--config", await config(), "--json"]);
    expect(r.status).toBe(6);
    expect(r.json()).toMatchObject({
      error: { code: "keystone_unreachable" },
      keystone: { attempts: [{ endpoint: "master", result: "HTTP 500" }] },
    });
  });

  it("exits 6 when Keystone refuses the service user, and asks no further endpoint", async () => {
    keystone.mode = "refuse";
    const before = keystone.authentications.length;
    const other = await startFernetKeystone({ signingKey: keyFromText(texts.primary) });
    cleanups.push(() => other.close());
    const r = await check([
      "--config",
      await config({
        endpoints: [
          { name: "master", url: keystone.url },
          { name: "other", url: other.url },
        ],
      }),
      "--json",
    ]);
    expect(r.status).toBe(6);
    expect(r.json()).toMatchObject({
      error: { code: "keystone_refused" },
      keystone: {
        attempts: [
          { endpoint: "master", result: "HTTP 401" },
          { endpoint: "other", result: "not tried" },
        ],
      },
    });
    expect(keystone.authentications.length).toBe(before + 1);
    expect(other.authentications).toEqual([]); // a refusal is not retried elsewhere (lockouts)
    expect(r.stderr).toContain("Keystone refused the service user");
  });

  it("exits 6 when Keystone issues a token that is not Fernet", async () => {
    keystone.mode = "opaque";
    const r = await check(["--config", await config(), "--json"]);
    expect(r.status).toBe(6);
    expect(r.json()).toMatchObject({ error: { code: "not_fernet_token" } });
  });

  it("authenticates as the configured service user: password, or application credential", async () => {
    const before = keystone.authentications.length;
    await check(["--config", await config()]);
    expect(keystone.authentications[before]).toMatchObject({
      auth: {
        identity: { methods: ["password"], password: { user: { name: "edge-svc" } } },
        scope: { project: { name: "service" } },
      },
    });
    const r = await check([
      "--config",
      await config({
        auth: {
          type: "application_credential",
          application_credential_id: "ac-id",
          application_credential_secret: PASSWORD,
        },
      }),
    ]);
    expect(r.status).toBe(0);
    expect(keystone.authentications[before + 1]).toMatchObject({
      auth: {
        identity: { methods: ["application_credential"], application_credential: { id: "ac-id" } },
      },
    });
  });

  it("speaks HTTPS with keystone.cafile; an unverifiable certificate is 'could not check'", async () => {
    const pki = await makePki();
    cleanups.push(pki.cleanup);
    const tls = await startFernetKeystone({
      signingKey: keyFromText(texts.primary),
      tls: { cert: pki.serverCert, key: pki.serverKey },
    });
    cleanups.push(() => tls.close());
    const verified = await check([
      "--config",
      await config({
        endpoints: [{ name: "master", url: tls.url }],
        keystone: { cafile: pki.caFile },
      }),
      "--json",
    ]);
    expect(verified.status, verified.stderr).toBe(0);
    expect(verified.json()).toMatchObject({ state: "in_sync", keystone: { url: tls.url } });
    const unverified = await check([
      "--config",
      await config({ endpoints: [{ name: "master", url: tls.url }] }),
      "--json",
    ]);
    expect(unverified.status).toBe(6);
    expect(unverified.json()).toMatchObject({
      error: { code: "keystone_unreachable" },
      keystone: { attempts: [{ endpoint: "master", result: "connection" }] },
    });
    expect(tls.issued.length).toBe(1);
  });
});

describe("keystone-edge keys check: usage and configuration (2)", () => {
  it("exits 2 without --config, with a positional argument, or an unknown option", async () => {
    for (const args of [[], ["edge.yaml"], ["--config", "x", "--frobnicate"]]) {
      const r = await check(args);
      expect(r.status, args.join(" ")).toBe(2);
    }
    const json = await check(["--json"]);
    expect(json.status).toBe(2);
    expect(json.json()).toMatchObject({ ok: false, error: { code: "usage" } });
  });

  it("a usage error names the problem, then the usage line; never util.parseArgs's text", async () => {
    const typo = await runCli(["keys", "check", "--confg", "edge.yaml"]);
    expect(typo.status).toBe(2);
    expect(typo.stderr).toBe(
      "keystone-edge keys check: unknown option --confg: did you mean --config? (known: --config, --endpoint, --json, --help)\n" +
        "Usage: keystone-edge keys check --config FILE [--endpoint NAME] [--json]\n",
    );
    const missing = await runCli(["keys", "check", "--config"]);
    expect(missing.stderr.split("\n")[0]).toBe(
      "keystone-edge keys check: --config needs a value (the edge's configuration FILE)",
    );
    // Not a usage error: no usage line.
    const unreadable = await runCli(["keys", "check", "--config", join(work, "nope.yaml")]);
    expect(unreadable.status).toBe(2);
    expect(unreadable.stderr).not.toMatch(/Usage:/);
  });

  it("exits 2 on a configuration that does not load, naming the option", async () => {
    const missing = await check(["--config", join(work, "nope.yaml"), "--json"]);
    expect(missing.status).toBe(2);
    expect(missing.json()).toMatchObject({ error: { code: "config_unreadable" } });
    const path = join(work, "bad.yaml");
    await writeFile(path, "keystone: {}\nfernet: {key_repository: /x}\n");
    const invalid = await check(["--config", path, "--json"]);
    expect(invalid.status).toBe(2);
    expect(invalid.json()).toMatchObject({ error: { code: "invalid_config" } });
    expect(invalid.stderr).toMatch(/keystone-edge keys check: keystone\./);
  });

  it("exits 2 when the key repository does not load, before asking Keystone", async () => {
    const before = keystone.authentications.length;
    const r = await check([
      "--config",
      await config({ keyRepository: join(work, "no-such-repository") }),
      "--json",
    ]);
    expect(r.status).toBe(2);
    expect(r.json()).toMatchObject({ error: { code: "key_repository_missing" } });
    expect(keystone.authentications.length).toBe(before);
  });

  it("--help describes every option and exit status", async () => {
    const r = await runCli(["keys", "check", "--help"]);
    expect(r.status).toBe(0);
    for (const s of [
      "--config",
      "--endpoint",
      "--json",
      "Exit status",
      "  0 ",
      "  1 ",
      "  7 ",
      "  6 ",
      "  2 ",
    ]) {
      expect(r.stdout).toContain(s);
    }
    const group = await runCli(["keys", "--help"]);
    expect(group.stdout).toContain("keystone-edge keys check");
  });
});

/** A CA and a server certificate for 127.0.0.1, made with openssl. */
async function makePki(): Promise<{
  caFile: string;
  serverCert: string;
  serverKey: string;
  cleanup: () => Promise<void>;
}> {
  const dir = await mkdtemp(join(tmpdir(), "ke-pki-"));
  const openssl = (...args: string[]): void => {
    execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=keys-check test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign",
  );
  openssl("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1");
  await writeFile(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
  openssl(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "1",
    "-extfile",
    "ext.cnf",
  );
  return {
    caFile: join(dir, "ca.pem"),
    serverCert: await readFile(join(dir, "server.pem"), "utf8"),
    serverKey: await readFile(join(dir, "server.key"), "utf8"),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** A stand-in admin listener answering `/status` with `answer`. */
async function fakeAdmin(answer: { status: number; body: string }): Promise<{
  url: string;
  server: Server;
}> {
  const server = createServer((req, res) => {
    if (req.url !== "/status") {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(answer.status, { "content-type": "application/json" }).end(answer.body);
  });
  await new Promise<void>((resolve) => server.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const a = server.address();
  const port = a !== null && typeof a === "object" ? a.port : 0;
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  );
  return { url: `http://127.0.0.1:${String(port)}`, server };
}

/** A plausible `/status` of an edge that knows its keys are behind. */
function edgeStatus(keys: Record<string, unknown>): string {
  return JSON.stringify({
    status: "degraded",
    uptime_seconds: 3600,
    keys: { healthy: true, count: 3, primary_index: 2, primary_age_seconds: 60, ...keys },
  });
}

/** A running edge's key-lag state as `/status` gives it: behind since 10:00. */
const BEHIND = {
  state: "behind",
  since: "2026-12-01T10:00:00.000Z",
  last_agreed: "2026-12-01T09:59:30.000Z",
  last_check: { at: "2026-12-01T10:00:05.000Z", trigger: "undecryptable", result: "behind" },
};

describe("keystone-edge keys status --admin", () => {
  it("adds the running edge's ring and key-lag state", async () => {
    // the shape admin/status.ts answers
    const admin = await fakeAdmin({ status: 200, body: edgeStatus({ lag: BEHIND }) });
    const r = await runCli([
      "keys",
      "status",
      "--key-repository",
      region.dir,
      "--admin",
      `${admin.url}/`,
      "--json",
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json()).toMatchObject({
      primary_index: 2,
      key_count: 3,
      edge: {
        admin: admin.url,
        status: "degraded",
        keys: { primary_index: 2, key_count: 3, healthy: true },
        lag: BEHIND,
      },
    });
    expect(r.stderr).toBe("");
  });

  it("says lag is not reported (null) by an edge without it; odd fields are tolerated", async () => {
    const admin = await fakeAdmin({ status: 200, body: edgeStatus({}) });
    const r = await runCli([
      "keys",
      "status",
      "--key-repository",
      region.dir,
      "--admin",
      admin.url,
      "--json",
    ]);
    expect(r.status).toBe(0);
    expect(r.json()).toMatchObject({ edge: { lag: null } });
    expect(r.stderr).toMatch(/does not report key lag/);
    const odd = await fakeAdmin({
      status: 200,
      body: JSON.stringify({
        keys: {
          lag: {
            state: 3,
            since: null,
            last_check: "x",
            list: [1],
            nested: { x: 1, deep: { y: 2 } },
          },
        },
      }),
    });
    const tolerated = await runCli([
      "keys",
      "status",
      "--key-repository",
      region.dir,
      "--admin",
      odd.url,
      "--json",
    ]);
    expect(tolerated.status).toBe(0);
    expect(tolerated.json()["edge"] as Record<string, unknown>).toEqual({
      admin: odd.url,
      status: null,
      keys: { primary_index: null, key_count: null, healthy: null },
      lag: { state: "unknown", since: null, last_agreed: null, last_check: null, nested: { x: 1 } },
    });
  });

  it("exits 6 when the admin listener cannot be read, still printing the repository", async () => {
    const notJson = await fakeAdmin({ status: 200, body: "<html>" });
    const bad = await runCli([
      "keys",
      "status",
      "--key-repository",
      region.dir,
      "--admin",
      notJson.url,
      "--json",
    ]);
    expect(bad.status).toBe(6);
    expect(bad.json()).toMatchObject({
      primary_index: 2,
      edge: { error: { code: "admin_bad_answer" } },
    });
    const refused = await fakeAdmin({ status: 421, body: "{}" });
    expect(
      (await runCli(["keys", "status", "--key-repository", region.dir, "--admin", refused.url]))
        .status,
    ).toBe(6);
    const dead = `http://127.0.0.1:${String(await freePort())}`;
    const down = await runCli([
      "keys",
      "status",
      "--key-repository",
      region.dir,
      "--admin",
      dead,
      "--json",
    ]);
    expect(down.status).toBe(6);
    expect(down.json()).toMatchObject({ edge: { error: { code: "admin_unreachable" } } });
  });

  it("prints the edge's view readably by default, under the repository", async () => {
    const admin = await fakeAdmin({ status: 200, body: edgeStatus({ lag: BEHIND }) });
    const r = await runCli([
      "keys",
      "status",
      "--key-repository",
      region.dir,
      "--admin",
      admin.url,
    ]);
    expect(r.status, r.stderr).toBe(0);
    const [repository, edge] = r.stdout.trimEnd().split("\n\n");
    expect(repository).toMatch(new RegExp(`^key repository ${region.dir}: primary 2, 3 keys\n`));
    expect(edge?.split("\n")).toEqual([
      `edge at ${admin.url}: degraded`,
      "  ring         primary 2, 3 keys, healthy",
      "  key lag      behind since 2026-12-01T10:00:00.000Z",
      "  last agreed  2026-12-01T09:59:30.000Z",
      "  last check   2026-12-01T10:00:05.000Z (undecryptable): behind",
    ]);
    const old = await fakeAdmin({ status: 200, body: edgeStatus({}) });
    const before = await runCli([
      "keys",
      "status",
      "--key-repository",
      region.dir,
      "--admin",
      old.url,
    ]);
    expect(before.status).toBe(0);
    expect(before.stdout).toContain("  key lag  not reported (an edge version before it did)\n");
    expect(before.stdout).not.toContain("last check");
    const notJson = await fakeAdmin({ status: 200, body: "<html>" });
    const bad = await runCli([
      "keys",
      "status",
      "--key-repository",
      region.dir,
      "--admin",
      notJson.url,
    ]);
    expect(bad.status).toBe(6);
    expect(bad.stdout).toContain(`edge at ${notJson.url}: could not read /status`);
    expect(bad.stderr).toMatch(/^keystone-edge keys status: .*not JSON/);
    expect(bad.stderr).not.toMatch(/Usage:/);
  });

  it("exits 2 on an --admin that is not an http(s) URL", async () => {
    for (const url of ["127.0.0.1:9464", "ftp://127.0.0.1:9464", "http://user:pw@127.0.0.1:9464"]) {
      const r = await runCli(["keys", "status", "--key-repository", region.dir, "--admin", url]);
      expect(r.status, url).toBe(2);
      expect(r.stdout + r.stderr).not.toContain("pw@");
      expect(r.stderr).toMatch(/\nUsage: keystone-edge keys status /);
    }
    const bare = await runCli([
      "keys",
      "status",
      "--key-repository",
      region.dir,
      "--admin",
      "127.0.0.1:9464",
    ]);
    expect(bare.stderr.split("\n")[0]).toBe(
      "keystone-edge keys status: --admin must be a URL such as http://127.0.0.1:9464 (did you mean http://127.0.0.1:9464?)",
    );
  });
});
