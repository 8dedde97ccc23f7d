/**
 * The audit log against a real Keystone: every authentication decision of the proxy and
 * of the Identity face's token API is one JSON line — who, which scope, what, the verdict
 * and why, the tier, the latency, the request id — with the token as its short hash only,
 * and the path without its query. A request refused by the client limits is no decision.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { tokenHash } from "../../src/log.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { startTestEdge } from "../harness/test-edge.js";
import { waitUntil } from "../harness/wait.js";

const keystone = inject("keystone");
let echo: EchoUpstream;
let edge: RunningEdge;
let url = "";
let identityUrl = "";
let dir = "";
let auditPath = "";
let token = "";
let projectId = "";
let userId = "";

beforeAll(async () => {
  echo = await startEchoUpstream();
  dir = await mkdtemp(join(tmpdir(), "ke-audit-"));
  auditPath = join(dir, "audit.jsonl");
  const document = edgeConfigDocument(keystone, { upstream: echo.url, user: adminUser(keystone) });
  ({ edge, url } = await startTestEdge({
    ...document,
    identity_listen: "127.0.0.1:0",
    audit_log: { path: auditPath },
  }));
  identityUrl = `http://127.0.0.1:${String(edge.identityAddress?.port ?? 0)}/v3`;
  const issued = await issueToken(keystone, {
    kind: "project",
    name: "admin",
    domainId: "default",
  });
  token = issued.token;
  const body = issued.body as { token: { user: { id: string }; project: { id: string } } };
  userId = body.token.user.id;
  projectId = body.token.project.id;
}, 300_000);

afterAll(async () => {
  await edge.close(1_000);
  await echo.stop();
  await rm(dir, { recursive: true, force: true });
});

type Line = Record<string, unknown>;

async function lines(): Promise<Line[]> {
  const text = await readFile(auditPath, "utf8").catch(() => "");
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Line);
}

async function waitForLines(n: number): Promise<Line[]> {
  await waitUntil(async () => (await lines()).length >= n, 5_000, `${String(n)} audit lines`);
  return lines();
}

describe("audit log", () => {
  it("writes one line per proxy decision: who, scope, verdict, tier, latency; the token hashed", async () => {
    const ok = await fetch(`${url}/v2.1/servers?all_tenants=1&secret=x`, {
      headers: { "X-Auth-Token": token },
    });
    await ok.arrayBuffer();
    const again = await fetch(`${url}/v2.1/servers/detail`, { headers: { "X-Auth-Token": token } });
    await again.arrayBuffer();
    const bad = await fetch(`${url}/v2.1/flavors`, {
      method: "POST",
      headers: { "X-Auth-Token": `${token.slice(0, -4)}AAAA` },
    });
    await bad.arrayBuffer();
    const none = await fetch(`${url}/v2.1/`);
    await none.arrayBuffer();
    expect([ok.status, again.status, bad.status, none.status]).toEqual([200, 200, 401, 401]);

    const got = await waitForLines(4);
    const [first, second, third, fourth] = got;
    expect(first).toMatchObject({
      listener: "proxy",
      method: "GET",
      path: "/v2.1/servers",
      status: 200,
      outcome: "valid",
      tier: "keystone",
      token: tokenHash(token),
      user_id: userId,
      project_id: projectId,
    });
    expect(typeof first?.["latency_ms"]).toBe("number");
    expect(Date.parse(String(first?.["time"]))).toBeGreaterThan(Date.now() - 60_000);
    expect(second).toMatchObject({ path: "/v2.1/servers/detail", outcome: "valid", tier: "l1" });
    expect(third).toMatchObject({
      method: "POST",
      status: 401,
      outcome: "invalid",
      reason: "bad_signature",
      tier: "local_reject",
    });
    expect(third).not.toHaveProperty("user_id");
    expect(fourth).toMatchObject({ status: 401, outcome: "no_token" });
    expect(fourth).not.toHaveProperty("token");
    const text = await readFile(auditPath, "utf8");
    expect(text).not.toContain(token);
    expect(text).not.toContain(token.slice(0, 40));
    expect(text).not.toContain("secret=x");
  });

  it("writes the Identity face's token validations with its request id", async () => {
    const before = (await lines()).length;
    const res = await fetch(`${identityUrl}/auth/tokens`, {
      headers: { "X-Auth-Token": token, "X-Subject-Token": token },
    });
    await res.arrayBuffer();
    expect(res.status).toBe(200);
    const notFound = await fetch(`${identityUrl}/auth/tokens`, {
      method: "HEAD",
      headers: { "X-Auth-Token": token, "X-Subject-Token": `${token.slice(0, -4)}AAAA` },
    });
    expect(notFound.status).toBe(404);
    const got = (await waitForLines(before + 2)).slice(before);
    expect(got[0]).toMatchObject({
      listener: "identity",
      method: "GET",
      path: "/v3/auth/tokens",
      status: 200,
      outcome: "valid",
      request_id: res.headers.get("x-openstack-request-id"),
      user_id: userId,
      project_id: projectId,
      token: tokenHash(token),
    });
    expect(got[1]).toMatchObject({
      method: "HEAD",
      status: 404,
      outcome: "invalid",
      reason: "bad_signature",
    });
    expect(await readFile(auditPath, "utf8")).not.toContain(token);
  });

  it("counts no drop while the disk keeps up", async () => {
    const text = await edge.metrics.registry.metrics();
    expect(text).toMatch(/^keystone_edge_audit_dropped_total 0$/m);
  });
});
