/**
 * keystone-edge against the reference, end to end: the same requests, with tokens of every
 * kind from the real Keystone, go to Debian's keystonemiddleware (around an echo app) and to
 * keystone-edge (in front of an echo service). What the two apps receive, and the statuses,
 * must be the same.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { readKeyRepository } from "../../src/fernet/key-repository.js";
import { staticKeyRing } from "../../src/fernet/key-ring.js";
import { TokenDecoder } from "../../src/token/decoder.js";
import type { EpochMicros } from "../../src/units.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { startTestEdge } from "../harness/test-edge.js";
import { edgeConfigDocument } from "../harness/edge-config.js";
import { accessRulesToken, createFixtures, type Fixtures } from "../harness/fixtures.js";
import { kmwPasswordConf, startKeystonemiddleware, type KmwHandle } from "../harness/kmw.js";
import { badTokens, through, type Seen } from "../harness/seen.js";

const keystone = inject("keystone");
let fixtures: Fixtures;
let kmw: KmwHandle;
let echo: EchoUpstream;
let edge: RunningEdge;
let edgeUrl = "";
let restricted = "";

beforeAll(async () => {
  fixtures = await createFixtures(keystone);
  // Before any comparison: it may add a compute service to the catalog.
  restricted = await accessRulesToken(keystone, [
    { service: "compute", method: "GET", path: "/v2.1/servers" },
    { service: "compute", method: "GET", path: "/v2.1/servers/*" },
    { service: "compute", method: "POST", path: "/v2.1/servers/{id}/action" },
    { service: "image", method: "GET", path: "/v2/images" },
  ]);
  const svc = fixtures.serviceUser;
  kmw = await startKeystonemiddleware({
    ...kmwPasswordConf(keystone, svc),
    service_token_roles_required: true,
    service_type: "compute",
  });
  echo = await startEchoUpstream();
  ({ edge, url: edgeUrl } = await startTestEdge(
    edgeConfigDocument(keystone, {
      upstream: echo.url,
      user: svc,
      authToken: { service_type: "compute" },
    }),
  ));
}, 300_000);

afterAll(async () => {
  await edge.close(1_000);
  await echo.stop();
  await kmw.stop();
});

async function both(
  headers: Record<string, string>,
  request: { method?: string; path?: string } = {},
): Promise<[Seen, Seen]> {
  return [await through(kmw.url, headers, request), await through(edgeUrl, headers, request)];
}

function keystoneCalls(): Promise<number> {
  return edge.metrics.keystoneCalls
    .get()
    .then((m) =>
      m.values.filter((v) => v.metricName?.endsWith("_count")).reduce((a, v) => a + v.value, 0),
    );
}

const userKinds = [
  "project",
  "projectOtherDomain",
  "domain",
  "system",
  "unscoped",
  "rescoped",
  "applicationCredential",
  "trust",
] as const;

describe("keystone-edge gives the service what keystonemiddleware gives it", () => {
  it.each(userKinds)("%s token", async (kind) => {
    const [reference, ours] = await both({ "X-Auth-Token": fixtures.tokens[kind] });
    expect(ours.status).toBe(reference.status);
    expect(ours.identity).toEqual(reference.identity);
    expect(Object.keys(ours.identity).length).toBeGreaterThan(5);
  });

  it("a user token with a service token", async () => {
    const headers = {
      "X-Auth-Token": fixtures.tokens.project,
      "X-Service-Token": fixtures.tokens.service,
    };
    const [reference, ours] = await both(headers);
    expect(ours.status).toBe(reference.status);
    expect(ours.identity).toEqual(reference.identity);
    expect(ours.identity["x-service-identity-status"]).toBe("Confirmed");
  });

  it("a service token without the service role does not count", async () => {
    const headers = {
      "X-Auth-Token": fixtures.tokens.project,
      "X-Service-Token": fixtures.tokens.domain,
    };
    const [reference, ours] = await both(headers);
    expect(reference.status).toBe(401);
    expect(ours.status).toBe(401);
  });

  it("a service token alone", async () => {
    const [reference, ours] = await both({ "X-Service-Token": fixtures.tokens.service });
    expect(ours.status).toBe(reference.status);
    expect(ours.wwwAuthenticate).toBe(reference.wwwAuthenticate);
  });

  it("no token, garbage, forged, expired and revoked tokens get the same 401", async () => {
    const { expired, forged, revoked } = await badTokens(keystone);
    for (const headers of [
      {},
      { "X-Auth-Token": "garbage" },
      { "X-Auth-Token": forged },
      { "X-Auth-Token": expired },
      { "X-Auth-Token": revoked },
    ]) {
      const [reference, ours] = await both(headers);
      expect(reference.status).toBe(401);
      expect(ours.status).toBe(401);
      expect(ours.wwwAuthenticate).toBe(reference.wwwAuthenticate);
    }
  });

  it("an expired user token counts with a service token holding the service role (allow_expired)", async () => {
    const keys = staticKeyRing(await readKeyRepository(keystone.keyRepository));
    const decoder = new TokenDecoder({ keys, authMethods: keystone.authMethods });
    const decoded = decoder.decode(fixtures.tokens.project);
    if (decoded.status !== "valid") throw new Error("the fixture token does not decode");
    // The same user and scope, expired two minutes ago (well inside allow_expired_window).
    const expired = decoder.mint({
      ...decoded.token.payload,
      expiresAtMicros: ((Math.floor(Date.now() / 1000) - 120) * 1e6) as EpochMicros,
    });
    const cases: [Record<string, string>, number][] = [
      [{ "X-Auth-Token": expired }, 401],
      [{ "X-Auth-Token": expired, "X-Service-Token": fixtures.tokens.service }, 200],
      // a valid service token without the service role allows nothing expired
      [{ "X-Auth-Token": expired, "X-Service-Token": fixtures.tokens.domain }, 401],
    ];
    for (const [headers, status] of cases) {
      const [reference, ours] = await both(headers);
      expect(reference.status).toBe(status);
      expect(ours.status).toBe(status);
      expect(ours.identity).toEqual(reference.identity);
    }
    const [, ours] = await both(cases[1]?.[0] ?? {});
    expect(ours.identity["x-user-name"]).toBe("alice");
  });

  it("application-credential access rules allow and refuse what keystonemiddleware does", async () => {
    const requests: { method?: string; path: string; allowed: boolean }[] = [
      { path: "/v2.1/servers", allowed: true },
      { path: "/v2.1/servers?all_tenants=1", allowed: true },
      { path: "/v2.1/servers/abc", allowed: true },
      { path: "/v2.1/servers%2Fabc", allowed: true }, // the WSGI path is percent-decoded
      { method: "POST", path: "/v2.1/servers/abc/action", allowed: true },
      { path: "/v2.1/servers/abc/ips", allowed: false },
      { path: "/v2.1/flavors", allowed: false },
      { method: "DELETE", path: "/v2.1/servers/abc", allowed: false },
      { path: "/v2/images", allowed: false }, // an image rule, and this is compute
    ];
    for (const request of requests) {
      const [reference, ours] = await both({ "X-Auth-Token": restricted }, request);
      expect([request.path, reference.status]).toEqual([request.path, request.allowed ? 200 : 401]);
      expect([request.path, ours.status]).toEqual([request.path, reference.status]);
      expect(ours.identity).toEqual(reference.identity);
    }
    // A service token marks a chain of service calls: the rules do not apply.
    const headers = { "X-Auth-Token": restricted, "X-Service-Token": fixtures.tokens.service };
    const [reference, ours] = await both(headers, { method: "DELETE", path: "/v2.1/flavors/x" });
    expect(reference.status).toBe(200);
    expect(ours.status).toBe(200);
    expect(ours.identity).toEqual(reference.identity);
  });

  it("identity headers a client sends never reach the service", async () => {
    const spoof = {
      "X-Auth-Token": fixtures.tokens.project,
      "X-Roles": "admin",
      "X-Is-Admin-Project": "True",
      "X-Service-Identity-Status": "Confirmed",
      "X-Service-Roles": "service",
      "OpenStack-System-Scope": "all",
      "X-Tenant-Id": "spoofed",
    };
    const [reference, ours] = await both(spoof);
    expect(ours.identity).toEqual(reference.identity);
    expect(ours.identity["x-roles"]).not.toContain("admin");
    expect(ours.identity["x-service-identity-status"]).toBeUndefined();
    expect(ours.identity["openstack-system-scope"]).toBeUndefined();
    expect(ours.identity["x-tenant-id"]).not.toBe("spoofed");
  });
});

describe("load on Keystone", () => {
  it("forged and garbage tokens cost no Keystone call", async () => {
    const before = await keystoneCalls();
    for (let i = 0; i < 20; i++) {
      const res = await fetch(edgeUrl, { headers: { "X-Auth-Token": `garbage-${i}` } });
      expect(res.status).toBe(401);
      await res.arrayBuffer();
    }
    expect(await keystoneCalls()).toBe(before);
  });

  it("100 concurrent requests with one new token cost one Keystone call", async () => {
    const { token } = await issueToken(keystone, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    const before = await keystoneCalls();
    const statuses = await Promise.all(
      Array.from({ length: 100 }, async () => {
        const res = await fetch(edgeUrl, { headers: { "X-Auth-Token": token } });
        await res.arrayBuffer();
        return res.status;
      }),
    );
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect((await keystoneCalls()) - before).toBe(1);
  });
});
