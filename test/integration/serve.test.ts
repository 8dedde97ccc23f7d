/**
 * `keystone-edge serve` as operators run it: a process started from a YAML file, ready
 * when it holds keys and a service token, proxying, exposing metrics, logging JSON without
 * tokens, and leaving cleanly on SIGTERM.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { freePort } from "../harness/keystone.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { createFixtures, type Fixtures } from "../harness/fixtures.js";

const keystone = inject("keystone");
const BIN = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));
let dir = "";
let echo: EchoUpstream;
let fixtures: Fixtures;
let child: ChildProcess;
let stdout = "";
let port = 0;
let adminPort = 0;

beforeAll(async () => {
  fixtures = await createFixtures(keystone);
  echo = await startEchoUpstream();
  dir = await mkdtemp(join(tmpdir(), "ke-serve-"));
  port = await freePort();
  adminPort = await freePort();
  await writeFile(join(dir, "password"), `${fixtures.serviceUser.password}\n`);
  await writeFile(
    join(dir, "edge.yaml"),
    [
      `listen: "127.0.0.1:${port}"`,
      `upstream: "${echo.url}"`,
      `admin_listen: "127.0.0.1:${adminPort}"`,
      "keystone:",
      `  www_authenticate_uri: "${keystone.url}"`,
      `  endpoints: ["${keystone.url}"]`,
      "  timeout_ms: 10000",
      "  auth:",
      "    type: password",
      `    username: ${fixtures.serviceUser.name}`,
      "    password_file: password",
      "    user_domain_id: default",
      `    project_name: ${fixtures.serviceUser.project}`,
      "    project_domain_id: default",
      "fernet:",
      `  key_repository: ${keystone.keyRepository}`,
      `  auth_methods: [${keystone.authMethods.join(", ")}]`,
      "",
    ].join("\n"),
  );
  child = spawn(
    process.execPath,
    [BIN, "serve", "--config", join(dir, "edge.yaml"), "--grace", "2"],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stdout += d.toString()));
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
      if (res.status === 200) break;
      await res.arrayBuffer();
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) throw new Error(`serve exited early: ${stdout}`);
    if (Date.now() > deadline) throw new Error(`serve never became ready: ${stdout}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}, 300_000);

afterAll(async () => {
  if (child.exitCode === null) child.kill("SIGKILL");
  await echo.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("keystone-edge serve", () => {
  it("reports readiness with its checks", async () => {
    const res = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { ready: boolean; checks: { name: string; ok: boolean }[] };
    expect(body.ready).toBe(true);
    expect(body.checks.map((c) => c.name)).toEqual(["keys", "service_token", "upstream"]);
  });

  it("proxies a request with a valid token and refuses one without", async () => {
    const ok = await fetch(`http://127.0.0.1:${port}/v2.1/servers`, {
      headers: { "X-Auth-Token": fixtures.tokens.project },
    });
    expect(ok.status).toBe(200);
    const seen = (await ok.json()) as { headers: Record<string, string> };
    expect(seen.headers["x-identity-status"]).toBe("Confirmed");
    const refused = await fetch(`http://127.0.0.1:${port}/v2.1/servers`);
    expect(refused.status).toBe(401);
    expect(refused.headers.get("www-authenticate")).toBe(`Keystone uri="${keystone.url}"`);
    await refused.arrayBuffer();
  });

  it("exposes Prometheus metrics without tokens, users or projects in labels", async () => {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(text).toContain("keystone_edge_requests_total");
    expect(text).toContain("keystone_edge_validations_total");
    expect(text).toContain("keystone_edge_keystone_call_duration_seconds");
    expect(text).toContain("keystone_edge_process_cpu_seconds_total");
    expect(text).not.toContain(fixtures.tokens.project.slice(0, 20));
    expect(text).not.toMatch(/project_id|user_id/);
  });

  it("leaves cleanly on SIGTERM, with JSON logs that never hold a token", async () => {
    const exited = new Promise<number | null>((resolve) =>
      child.once("exit", (code) => resolve(code)),
    );
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    const lines = stdout.trim().split("\n");
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) expect(() => JSON.parse(line) as unknown).not.toThrow();
    expect(stdout).toContain('"msg":"keystone-edge listening"');
    expect(stdout).toContain('"msg":"stopped"');
    for (const token of Object.values(fixtures.tokens)) expect(stdout).not.toContain(token);
    expect(stdout).not.toContain(fixtures.serviceUser.password);
  });
});
