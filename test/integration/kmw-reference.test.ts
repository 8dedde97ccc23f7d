/**
 * The reference works: Debian's keystonemiddleware in front of the echo app, pointed at the
 * harness Keystone, refuses a request without a token and passes a valid one on with the
 * identity headers services read.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { issueToken } from "../harness/client.js";
import { adminUser } from "../harness/edge-config.js";
import { kmwPasswordConf, startKeystonemiddleware, type KmwHandle } from "../harness/kmw.js";

const keystone = inject("keystone");
let kmw: KmwHandle;

beforeAll(async () => {
  kmw = await startKeystonemiddleware(kmwPasswordConf(keystone, adminUser(keystone)));
}, 120_000);

afterAll(async () => {
  await kmw.stop();
});

describe("keystonemiddleware reference", () => {
  it("refuses a request without a token with 401 and WWW-Authenticate", async () => {
    const res = await fetch(`${kmw.url}/v2.1/servers`);
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe(`Keystone uri="${keystone.url}"`);
    await res.arrayBuffer();
  });

  it("passes a valid project token on with the identity headers", async () => {
    const { token } = await issueToken(keystone, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    const res = await fetch(`${kmw.url}/v2.1/servers`, {
      headers: { "X-Auth-Token": token, "X-Roles": "spoofed" },
    });
    expect(res.status).toBe(200);
    const echo = (await res.json()) as { headers: Record<string, string> };
    expect(echo.headers["x-identity-status"]).toBe("Confirmed");
    expect(echo.headers["x-project-name"]).toBe("admin");
    expect(echo.headers["x-roles"]?.split(",")).toContain("admin");
    expect(echo.headers["x-roles"]).not.toContain("spoofed");
  });
});
