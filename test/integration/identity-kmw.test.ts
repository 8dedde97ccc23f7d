/**
 * Unmodified keystonemiddleware (Debian) in front of the echo app, twice: once as
 * deployed today (auth_url at the real Keystone), once pointed at keystone-edge's
 * Identity face — auth_url at the edge, and the edge registered as the identity endpoint of
 * a region of its own, which keystonemiddleware (`region_name`) validates against, as it
 * would against a region-local Keystone. Every token kind of the proxy issue's list gives
 * both the same status and the same identity headers; the second one's validations are
 * answered by the edge (Keystone sees none once the edge knows the tokens). Then the
 * master stops: validation through the edge keeps answering for known tokens and
 * contexts, and issuing a token through it gets 503.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { readKeyRepository } from "../../src/fernet/key-repository.js";
import { staticKeyRing } from "../../src/fernet/key-ring.js";
import { TokenDecoder } from "../../src/token/decoder.js";
import { randomAuditId } from "../../src/token/payload.js";
import type { EpochMicros } from "../../src/units.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { api, createFixtures, type Fixtures } from "../harness/fixtures.js";
import { startKeystoneReplica, type KeystoneReplica } from "../harness/keystone-replica.js";
import { kmwPasswordConf, startKeystonemiddleware, type KmwHandle } from "../harness/kmw.js";
import { freePort } from "../harness/net.js";
import { badTokens, through, type Seen } from "../harness/seen.js";
import { startTestEdge } from "../harness/test-edge.js";

const keystone = inject("keystone");
const REGION = `EdgeRegion-${String(Date.now())}`;
let fixtures: Fixtures;
let replica: KeystoneReplica; // the edge's only Keystone: stopped at the end
let echo: EchoUpstream;
let edge: RunningEdge;
let direct: KmwHandle;
let viaEdge: KmwHandle;
let adminToken = "";
let identityUrl = "";
const registered: string[] = [];

beforeAll(async () => {
  fixtures = await createFixtures(keystone);
  adminToken = (await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" }))
    .token;
  // The edge as the identity endpoint of a region of its own, registered before anything
  // is validated, so that every catalog shows it.
  const port = await freePort();
  identityUrl = `http://127.0.0.1:${String(port)}/v3`;
  await api(keystone, adminToken, "POST", "/regions", { region: { id: REGION } });
  const services = await api(keystone, adminToken, "GET", "/services?type=identity");
  const identityService = (services.json.services as { id: string }[])[0]?.id ?? "";
  for (const iface of ["public", "internal", "admin"]) {
    const made = await api(keystone, adminToken, "POST", "/endpoints", {
      endpoint: {
        service_id: identityService,
        interface: iface,
        region_id: REGION,
        url: identityUrl,
      },
    });
    registered.push((made.json.endpoint as { id: string }).id);
  }
  replica = await startKeystoneReplica(keystone);
  echo = await startEchoUpstream();
  ({ edge } = await startTestEdge({
    ...edgeConfigDocument(keystone, {
      upstream: echo.url,
      user: adminUser(keystone),
      keystone: { endpoints: [replica.url], failure_threshold: 1, open_duration_ms: 500 },
    }),
    identity_listen: `127.0.0.1:${String(port)}`,
  }));
  const conf = kmwPasswordConf(keystone, fixtures.serviceUser);
  [direct, viaEdge] = await Promise.all([
    startKeystonemiddleware(conf),
    startKeystonemiddleware({
      ...conf,
      auth_url: identityUrl,
      www_authenticate_uri: identityUrl,
      region_name: REGION,
    }),
  ]);
}, 300_000);

afterAll(async () => {
  await Promise.all([direct.stop(), viaEdge.stop()]);
  await edge.close(1_000);
  await echo.stop();
  await replica.close();
  for (const id of registered) await api(keystone, adminToken, "DELETE", `/endpoints/${id}`);
  await api(keystone, adminToken, "DELETE", `/regions/${REGION}`);
});

async function both(headers: Record<string, string>): Promise<[Seen, Seen]> {
  return [await through(direct.url, headers), await through(viaEdge.url, headers)];
}

async function identityCalls(route: string): Promise<number> {
  const values = (await edge.metrics.identityRequests.get()).values;
  return values.filter((v) => v.labels["route"] === route).reduce((a, v) => a + v.value, 0);
}

describe("keystonemiddleware with its auth_url at keystone-edge", () => {
  it("gives every token kind the same status and headers as with the real Keystone", async () => {
    const t = fixtures.tokens;
    const { expired, forged, revoked } = await badTokens(keystone);
    const keys = staticKeyRing(await readKeyRepository(keystone.keyRepository));
    const decoded = new TokenDecoder({ keys, authMethods: keystone.authMethods }).decode(t.project);
    if (decoded.status !== "valid") throw new Error("the fixture token does not decode");
    const expiredAlice = new TokenDecoder({ keys, authMethods: keystone.authMethods }).mint({
      ...decoded.token.payload,
      expiresAtMicros: ((Math.floor(Date.now() / 1000) - 120) * 1e6) as EpochMicros,
    });
    const cases: [string, Record<string, string>][] = [
      ...Object.entries(t).map(([kind, token]): [string, Record<string, string>] => [
        kind,
        { "X-Auth-Token": token },
      ]),
      ["user + service", { "X-Auth-Token": t.project, "X-Service-Token": t.service }],
      ["service alone", { "X-Service-Token": t.service }],
      ["service without the role", { "X-Auth-Token": t.project, "X-Service-Token": t.domain }],
      [
        "expired + service (allow_expired)",
        { "X-Auth-Token": expiredAlice, "X-Service-Token": t.service },
      ],
      ["none", {}],
      ["garbage", { "X-Auth-Token": "garbage" }],
      ["forged", { "X-Auth-Token": forged }],
      ["expired", { "X-Auth-Token": expired }],
      ["revoked", { "X-Auth-Token": revoked }],
    ];
    const statuses = new Set<number>();
    for (const [label, headers] of cases) {
      const [reference, ours] = await both(headers);
      expect(ours.status, label).toBe(reference.status);
      expect(ours.identity, label).toEqual(reference.identity);
      statuses.add(reference.status);
    }
    expect(statuses).toEqual(new Set([200, 401]));
    // keystonemiddleware's validations went to the edge's face, and its token through the relay
    expect(await identityCalls("validate")).toBeGreaterThan(5);
    expect(await identityCalls("relay")).toBeGreaterThanOrEqual(1);
  });

  it("master stopped: known tokens and contexts keep validating, token issue gets 503", async () => {
    const t = fixtures.tokens;
    await replica.stop();
    try {
      // at the face, as keystonemiddleware asks: a known token, then a new token of a known
      // user and scope
      const alice = new TokenDecoder({
        keys: staticKeyRing(await readKeyRepository(keystone.keyRepository)),
        authMethods: keystone.authMethods,
      });
      const d = alice.decode(t.project);
      if (d.status !== "valid") throw new Error("decode");
      const fresh = alice.mint({
        ...d.token.payload,
        auditIds: [randomAuditId()],
        expiresAtMicros: ((Math.floor(Date.now() / 1000) + 600) * 1e6) as EpochMicros,
      });
      for (const subject of [t.project, fresh]) {
        const res = await fetch(`${identityUrl}/auth/tokens`, {
          headers: { "X-Auth-Token": t.service, "X-Subject-Token": subject },
        });
        expect(res.status).toBe(200);
      }
      const issue = await fetch(`${identityUrl}/auth/tokens`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ auth: { identity: { methods: ["password"] } } }),
      });
      expect(issue.status).toBe(503);
      expect(issue.headers.get("retry-after")).toBe("1");
    } finally {
      await replica.start();
    }
  });
});
