/**
 * Smoke test of the integration harness: the Keystone started by test/harness/global-setup.ts
 * issues project-, domain-, system-scoped and unscoped Fernet tokens over HTTP and validates
 * them with GET /v3/auth/tokens.
 */
import { describe, it, expect, inject } from "vitest";

import { issueToken, validateToken, type KeystoneTokenBody } from "../harness/client.js";

const keystone = inject("keystone");

describe("harness Keystone", () => {
  it("provides plain connection info", () => {
    expect(keystone.url).toBe(`http://127.0.0.1:${keystone.port}/v3`);
    expect(keystone.adminUsername).toBe("admin");
    expect(keystone.authMethods).toContain("password");
  });

  it("issues and validates a project-scoped token", async () => {
    const { token, body } = await issueToken(keystone, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    expect(token).toMatch(/^gAAAAA/);
    expect(body.token.project?.name).toBe("admin");

    const res = await validateToken(keystone, token, token);
    expect(res.status).toBe(200);
    const v = res.body as KeystoneTokenBody;
    expect(v.token.project).toMatchObject({ name: "admin", domain: { id: "default" } });
    expect(v.token.domain).toBeUndefined();
    expect(v.token.system).toBeUndefined();
    expect(v.token.methods).toEqual(["password"]);
  });

  it("issues and validates a domain-scoped token", async () => {
    const admin = await issueToken(keystone, { kind: "system" });
    const { token } = await issueToken(keystone, { kind: "domain", id: "default" });

    const res = await validateToken(keystone, admin.token, token);
    expect(res.status).toBe(200);
    const v = res.body as KeystoneTokenBody;
    expect(v.token.domain).toMatchObject({ id: "default", name: "Default" });
    expect(v.token.project).toBeUndefined();
    expect(v.token.system).toBeUndefined();
  });

  it("issues and validates a system-scoped token", async () => {
    const { token } = await issueToken(keystone, { kind: "system" });

    const res = await validateToken(keystone, token, token);
    expect(res.status).toBe(200);
    const v = res.body as KeystoneTokenBody;
    expect(v.token.system).toEqual({ all: true });
    expect(v.token.project).toBeUndefined();
    expect(v.token.domain).toBeUndefined();
  });

  it("issues and validates an unscoped token", async () => {
    const admin = await issueToken(keystone, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    const { token, body } = await issueToken(keystone, { kind: "unscoped" });
    expect(body.token.roles).toBeUndefined();

    const res = await validateToken(keystone, admin.token, token);
    expect(res.status).toBe(200);
    const v = res.body as KeystoneTokenBody;
    expect(v.token.user.name).toBe("admin");
    expect(v.token.project).toBeUndefined();
    expect(v.token.domain).toBeUndefined();
    expect(v.token.system).toBeUndefined();
  });

  it("answers 404 for an invalid subject token", async () => {
    const admin = await issueToken(keystone, { kind: "system" });
    const res = await validateToken(keystone, admin.token, "gAAAAABnot-a-real-token");
    expect(res.status).toBe(404);
  });
});
