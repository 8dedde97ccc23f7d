/**
 * `keystone-edge serve` as operators run it: a process started from a YAML file, ready
 * when it holds keys and a service token, proxying, exposing metrics, logging JSON without
 * tokens, and leaving cleanly on SIGTERM.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { EchoUpstream } from "../harness/echo-upstream.js";
import { startServedRegion, type EdgeProcess } from "../harness/edge-process.js";
import type { Fixtures } from "../harness/fixtures.js";

const keystone = inject("keystone");
let echo: EchoUpstream;
let fixtures: Fixtures;
let edge: EdgeProcess;

beforeAll(async () => {
  ({ fixtures, echo, edge } = await startServedRegion(keystone, ["--grace", "2"]));
}, 300_000);

afterAll(async () => {
  if (edge.child.exitCode === null) edge.child.kill("SIGKILL");
  await echo.stop();
});

describe("keystone-edge serve", () => {
  it("reports readiness with its checks", async () => {
    const res = await fetch(`${edge.adminUrl}/readyz`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { ready: boolean; checks: { name: string; ok: boolean }[] };
    expect(body.ready).toBe(true);
    expect(body.checks.map((c) => c.name)).toEqual([
      "keys",
      "service_token",
      "keystone",
      "revocation_feed",
      "upstream",
      "lifecycle",
    ]);
  });

  it("proxies a request with a valid token and refuses one without", async () => {
    const ok = await fetch(`${edge.url}/v2.1/servers`, {
      headers: { "X-Auth-Token": fixtures.tokens.project },
    });
    expect(ok.status).toBe(200);
    const seen = (await ok.json()) as { headers: Record<string, string> };
    expect(seen.headers["x-identity-status"]).toBe("Confirmed");
    const refused = await fetch(`${edge.url}/v2.1/servers`);
    expect(refused.status).toBe(401);
    expect(refused.headers.get("www-authenticate")).toBe(`Keystone uri="${keystone.url}"`);
    await refused.arrayBuffer();
  });

  it("exposes Prometheus metrics without tokens, users or projects in labels", async () => {
    const text = await (await fetch(`${edge.adminUrl}/metrics`)).text();
    expect(text).toContain("keystone_edge_requests_total");
    expect(text).toContain("keystone_edge_validations_total");
    expect(text).toContain("keystone_edge_keystone_call_duration_seconds");
    expect(text).toContain("keystone_edge_process_cpu_seconds_total");
    expect(text).not.toContain(fixtures.tokens.project.slice(0, 20));
    expect(text).not.toMatch(/project_id|user_id/);
  });

  it("leaves cleanly on SIGTERM, with JSON logs that never hold a token", async () => {
    expect(await edge.stop()).toBe(0);
    const stdout = edge.output();
    const lines = stdout.trim().split("\n");
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) expect(() => JSON.parse(line) as unknown).not.toThrow();
    expect(stdout).toContain('"msg":"keystone-edge listening"');
    expect(stdout).toContain('"msg":"stopped"');
    for (const token of Object.values(fixtures.tokens)) expect(stdout).not.toContain(token);
    expect(stdout).not.toContain(fixtures.serviceUser.password);
  });
});
