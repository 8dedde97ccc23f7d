/**
 * The Keystone client against the real Keystone: the edge's service token, validation
 * verdicts, and what an unreachable or silent endpoint comes to.
 */
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KeystoneEndpoint } from "../../src/keystone/endpoint.js";
import { KeystoneEndpoints } from "../../src/keystone/endpoint-set.js";
import { ServiceToken } from "../../src/keystone/service-token.js";
import { KeystoneValidator } from "../../src/keystone/validate.js";
import { issueToken } from "../harness/client.js";
import { adminUser, passwordAuth } from "../harness/edge-config.js";

const keystone = inject("keystone");
let endpoint: KeystoneEndpoint;
let serviceToken: ServiceToken;
const adminAuth = () => passwordAuth(adminUser(keystone));

beforeAll(() => {
  endpoint = new KeystoneEndpoint({ url: keystone.url, timeoutMs: 10_000 });
  serviceToken = new ServiceToken({ auth: adminAuth(), endpoints: () => [endpoint] });
});

afterAll(async () => {
  serviceToken.close();
  await endpoint.close();
});

describe("service token", () => {
  it("authenticates as the configured service user and renews on refusal", async () => {
    const first = await serviceToken.ensure();
    expect(first).toMatch(/^gAAAAA/);
    expect(serviceToken.snapshot()).toMatchObject({ kind: "valid" });
    // A 401 with the current token: a new one replaces it.
    const second = await serviceToken.rejected(first ?? "");
    expect(second).toMatch(/^gAAAAA/);
    expect(second).not.toBe(first);
    // A stale token reported after the renewal: the newer one is returned, no new login.
    expect(await serviceToken.rejected(first ?? "")).toBe(second);
  });

  it("reports wrong credentials without a token", async () => {
    const wrong = new ServiceToken({
      auth: { ...adminAuth(), password: "wrong-password" },
      endpoints: () => [endpoint],
      retryMinMs: 60_000,
    });
    try {
      expect(await wrong.ensure()).toBeUndefined();
      expect(wrong.snapshot()).toMatchObject({
        kind: "none",
        lastError: expect.stringContaining("HTTP 401") as unknown,
      });
    } finally {
      wrong.close();
    }
  });
});

describe("validator", () => {
  it("returns Keystone's context for a valid token, catalog included", async () => {
    const validator = new KeystoneValidator({
      endpoints: new KeystoneEndpoints([endpoint]),
      serviceToken,
    });
    const { token } = await issueToken(keystone, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    const verdict = await validator.validate(token);
    expect(verdict.kind).toBe("valid");
    if (verdict.kind !== "valid") return;
    expect(verdict.token.project?.name).toBe("admin");
    expect(verdict.token.roles?.map((r) => r.name)).toContain("admin");
    expect(verdict.token.catalog?.length).toBeGreaterThan(0);
  });

  it("says invalid for a token Keystone does not know", async () => {
    const observed: string[] = [];
    const validator = new KeystoneValidator({
      endpoints: new KeystoneEndpoints([endpoint]),
      serviceToken,
      observe: (_e, outcome) => observed.push(outcome),
    });
    const { token } = await issueToken(keystone, { kind: "unscoped" });
    const res = await fetch(`${keystone.url}/auth/tokens`, {
      method: "DELETE",
      headers: { "X-Auth-Token": token, "X-Subject-Token": token, Connection: "close" },
    });
    expect(res.status).toBe(204);
    expect(await validator.validate(token)).toMatchObject({ kind: "invalid" });
    expect(observed).toEqual(["not_found"]);
  });
});

describe("unreachable Keystone", () => {
  let blackhole: Server;
  let blackholePort = 0;
  beforeAll(async () => {
    // Accepts connections and never answers.
    blackhole = createServer(() => undefined);
    await new Promise<void>((r) => blackhole.listen(0, "127.0.0.1", r));
    blackholePort = (blackhole.address() as { port: number }).port;
  });
  afterAll(() => {
    blackhole.close();
  });

  it("a closed port is a connection failure, at once", async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as { port: number }).port;
    probe.close();
    const dead = new KeystoneEndpoint({ url: `http://127.0.0.1:${port}/v3`, timeoutMs: 2_000 });
    const outcome = await dead.call({ method: "GET", path: "/" });
    expect(outcome).toMatchObject({ kind: "failed", reason: "connection" });
    expect(outcome.latencyMs).toBeLessThan(1_000);
    await dead.close();
  });

  it("a silent endpoint is a timeout within the deadline, and validation is unavailable", async () => {
    const silent = new KeystoneEndpoint({
      url: `http://127.0.0.1:${blackholePort}/v3`,
      timeoutMs: 300,
    });
    const outcome = await silent.call({ method: "GET", path: "/" });
    expect(outcome).toMatchObject({ kind: "failed", reason: "timeout" });
    expect(outcome.latencyMs).toBeLessThan(1_000);
    const validator = new KeystoneValidator({
      endpoints: new KeystoneEndpoints([silent]),
      serviceToken,
    });
    const { token } = await issueToken(keystone, { kind: "unscoped" });
    expect(await validator.validate(token)).toMatchObject({
      kind: "unavailable",
      reason: "timeout",
    });
    await silent.close();
  });
});
