/**
 * The admin listener's `Host` rule (DNS rebinding): IP literals, `localhost` and the
 * configured names pass; any other name gets 421 before any route, `/metrics` included.
 */
import type { Server } from "node:http";
import { request } from "node:http";
import type { AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";

import { createAdminServer } from "../../../src/admin/admin-server.js";
import { adminHostAllowed } from "../../../src/admin/host-check.js";

describe("adminHostAllowed", () => {
  const listed = new Set(["edge.mgmt.example"]);
  it.each([
    "127.0.0.1:9464",
    "127.0.0.1",
    "10.1.2.3:9464",
    "[::1]:9464",
    "[::1]",
    "localhost:9464",
    "LOCALHOST",
    "localhost.:9464",
    "edge.mgmt.example:9464",
    "Edge.Mgmt.Example",
  ])("accepts %s", (host) => {
    expect(adminHostAllowed(host, listed)).toBe(true);
  });
  it.each([
    "evil.example:9464",
    "rebind.127.0.0.1.nip.io:9464",
    "localhost.evil.example",
    "127.0.0.1.evil.example",
    "[::1",
    "[evil]:9464",
    "[::1]x",
    "127.0.0.1:abc",
    "mgmt.example",
  ])("refuses %s", (host) => {
    expect(adminHostAllowed(host, listed)).toBe(false);
  });
});

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

function get(port: number, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers: { host } }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("admin listener", () => {
  it("answers 421 to a rebound name on every route and counts it; serves IP and listed names", async () => {
    let refused = 0;
    const server = createAdminServer({
      registry: new Registry(),
      readiness: [],
      allowedHosts: ["edge.mgmt.example"],
      onHostRefused: () => refused++,
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    for (const path of ["/metrics", "/healthz", "/readyz", "/status"]) {
      const res = await get(port, path, `evil.example:${String(port)}`);
      expect(res.status, path).toBe(421);
      expect(JSON.parse(res.body)).toMatchObject({ code: "host_not_allowed" });
    }
    expect(refused).toBe(4);
    expect((await get(port, "/healthz", `127.0.0.1:${String(port)}`)).status).toBe(200);
    expect((await get(port, "/healthz", `localhost:${String(port)}`)).status).toBe(200);
    expect((await get(port, "/healthz", "edge.mgmt.example")).status).toBe(200);
    expect(refused).toBe(4);
  });
});
