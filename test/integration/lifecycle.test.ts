/**
 * Shutting down gracefully: with a request still in flight (its body not yet all sent),
 * closing the edge stops accepting, `/readyz` answers 503 ("draining") while the admin
 * listener is still up, the request in flight completes, and close resolves after it.
 */
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { startTestEdge } from "../harness/test-edge.js";
import { waitUntil } from "../harness/wait.js";

const keystone = inject("keystone");
let echo: EchoUpstream;
let edge: RunningEdge;
let token = "";

beforeAll(async () => {
  echo = await startEchoUpstream();
  ({ edge } = await startTestEdge(
    edgeConfigDocument(keystone, { upstream: echo.url, user: adminUser(keystone) }),
  ));
  token = (await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" }))
    .token;
}, 120_000);

afterAll(async () => {
  await echo.stop();
});

async function readyz(): Promise<{ status: number; lifecycle: string | undefined }> {
  const a = edge.adminAddress;
  const res = await fetch(`http://${a.host}:${String(a.port)}/readyz`);
  const body = (await res.json()) as { checks: { name: string; detail?: string }[] };
  return { status: res.status, lifecycle: body.checks.find((c) => c.name === "lifecycle")?.detail };
}

describe("graceful shutdown", () => {
  it("drains: /readyz 503 while a request in flight finishes, then closes", async () => {
    expect(await readyz()).toEqual({ status: 200, lifecycle: "serving" });
    // a PUT whose body is sent in two halves, the second only after close() began
    let answered: ((status: number) => void) | undefined;
    const status = new Promise<number>((resolve) => (answered = resolve));
    const req = request(`http://127.0.0.1:${String(edge.address.port)}/v2.1/servers/x`, {
      method: "PUT",
      headers: { "X-Auth-Token": token, "Content-Length": "10" },
    });
    req.on("response", (res) => {
      res.resume();
      answered?.(res.statusCode ?? 0);
    });
    const forwarded = echo.requests();
    req.write("12345");
    await waitUntil(
      () => echo.requests() > forwarded,
      10_000,
      "the request validated and forwarded, its body half sent",
    );

    let closedAt = 0;
    const closing = edge.close(10_000).then(() => (closedAt = Date.now()));
    await waitUntil(
      async () => (await readyz()).status === 503,
      5_000,
      "/readyz to answer 503 once closing began",
    );
    const during = await readyz();
    expect(during.status).toBe(503);
    expect(during.lifecycle).toMatch(/^draining/);
    expect(closedAt).toBe(0); // still waiting for the request in flight

    const finishedAt = Date.now();
    req.end("67890");
    expect(await status).toBe(200);
    await closing;
    expect(closedAt).toBeGreaterThanOrEqual(finishedAt);
    // no longer accepting
    await expect(fetch(`http://127.0.0.1:${String(edge.address.port)}/`)).rejects.toThrow();
  });
});
