/**
 * The per-scope context cache against the real parts: 1000 requests, each with a token
 * never seen before for one of 20 known user + project pairs, cost at most 20 Keystone
 * validations; and the headers a service receives for such a token (answered with no
 * Keystone call) equal keystonemiddleware's for the same token. Two edges sharing a real
 * memcached: a context one learnt answers the other's new tokens.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { IDENTITY_HEADERS } from "../../src/contract/strip.js";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { readKeyRepository } from "../../src/fernet/key-repository.js";
import { staticKeyRing } from "../../src/fernet/key-ring.js";
import { TokenDecoder } from "../../src/token/decoder.js";
import { randomAuditId } from "../../src/token/payload.js";
import type { EpochMicros } from "../../src/units.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { startTestEdge } from "../harness/test-edge.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { api, createFixtures, type Fixtures } from "../harness/fixtures.js";
import { kmwPasswordConf, startKeystonemiddleware, type KmwHandle } from "../harness/kmw.js";
import { startMemcached } from "../harness/memcached.js";
import { waitUntil } from "../harness/wait.js";

const keystone = inject("keystone");
const PAIRS = 20;
let echo: EchoUpstream;
let edge: RunningEdge;
let kmw: KmwHandle;
let fixtures: Fixtures;
let edgeUrl = "";
let mintFor: (userId: string, projectId: string) => string;
const pairs: { userId: string; projectId: string }[] = [];

beforeAll(async () => {
  fixtures = await createFixtures(keystone);
  const admin = (
    await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" })
  ).token;
  const roles = await api(keystone, admin, "GET", "/roles?name=member");
  const memberId = (roles.json.roles as { id: string }[])[0]?.id ?? "";
  const tag = String(Date.now());
  for (let i = 0; i < PAIRS; i++) {
    const name = `ctx-${tag}-${String(i)}`;
    const project = await api(keystone, admin, "POST", "/projects", {
      project: { name, domain_id: "default" },
    });
    const user = await api(keystone, admin, "POST", "/users", {
      user: { name, domain_id: "default", password: "ctx-pw-1" },
    });
    const projectId = (project.json.project as { id: string }).id;
    const userId = (user.json.user as { id: string }).id;
    await api(keystone, admin, "PUT", `/projects/${projectId}/users/${userId}/roles/${memberId}`);
    pairs.push({ userId, projectId });
  }
  // Tokens as Keystone issues them (its own keys, its payload format), minted here so a
  // thousand of them take no time: Keystone validates each like any other.
  const decoder = new TokenDecoder({
    keys: staticKeyRing(await readKeyRepository(keystone.keyRepository)),
    authMethods: keystone.authMethods,
  });
  mintFor = (userId, projectId) =>
    decoder.mint({
      kind: "project",
      version: 2,
      userId,
      methods: ["password"],
      auditIds: [randomAuditId()],
      projectId,
      expiresAtMicros: ((Math.floor(Date.now() / 1000) + 3600) * 1e6) as EpochMicros,
    });

  echo = await startEchoUpstream();
  ({ edge, url: edgeUrl } = await startTestEdge(
    edgeConfigDocument(keystone, { upstream: echo.url, user: adminUser(keystone) }),
  ));
  kmw = await startKeystonemiddleware(kmwPasswordConf(keystone, fixtures.serviceUser));
}, 600_000);

afterAll(async () => {
  await edge.close(1_000);
  await echo.stop();
  await kmw.stop();
});

async function keystoneCalls(of: RunningEdge = edge): Promise<number> {
  const values = (await of.metrics.keystoneCalls.get()).values;
  return values.filter((v) => v.metricName?.endsWith("_count")).reduce((a, v) => a + v.value, 0);
}

async function identityVia(
  base: string,
  token: string,
): Promise<{ status: number; identity: Record<string, string> }> {
  const res = await fetch(`${base}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
  const text = await res.text();
  const identity: Record<string, string> = {};
  if (res.status === 200) {
    const headers = (JSON.parse(text) as { headers: Record<string, string> }).headers;
    for (const [name, value] of Object.entries(headers)) {
      if (!IDENTITY_HEADERS.has(name)) continue;
      identity[name] = /(^|-)roles?$/.test(name) ? value.split(",").sort().join(",") : value;
    }
  }
  return { status: res.status, identity };
}

describe("per-scope context cache", () => {
  it("1000 requests with fresh tokens for 20 known user + project pairs cost at most 20 Keystone calls", async () => {
    const before = await keystoneCalls();
    // The pairs become known: one token each, one at a time (the harness Keystone serves
    // eight validations at once; the test is about the cache, not about overloading it).
    for (const { userId, projectId } of pairs) {
      const res = await fetch(`${edgeUrl}/v2.1/servers`, {
        headers: { "X-Auth-Token": mintFor(userId, projectId) },
      });
      await res.arrayBuffer();
      expect(res.status).toBe(200);
    }
    const afterWarmUp = await keystoneCalls();
    let ok = 0;
    for (let round = 0; round < 1000 / PAIRS; round++) {
      await Promise.all(
        pairs.map(async ({ userId, projectId }) => {
          const res = await fetch(`${edgeUrl}/v2.1/servers`, {
            headers: { "X-Auth-Token": mintFor(userId, projectId) },
          });
          await res.arrayBuffer();
          if (res.status === 200) ok++;
        }),
      );
    }
    expect(ok).toBe(1000);
    expect(afterWarmUp - before).toBe(PAIRS);
    // the thousand fresh tokens: no Keystone call at all
    expect((await keystoneCalls()) - afterWarmUp).toBe(0);
    const text = await edge.metrics.registry.metrics();
    expect(text).toMatch(
      /keystone_edge_validations_total\{source="context",result="valid"\} 1000\n/,
    );
  });

  it("a token answered from a context gives the service exactly keystonemiddleware's headers", async () => {
    const { userId, projectId } = pairs[0] ?? { userId: "", projectId: "" };
    const token = mintFor(userId, projectId);
    const before = await keystoneCalls();
    const ours = await identityVia(edgeUrl, token);
    expect(await keystoneCalls()).toBe(before); // no Keystone call: built from the context
    const reference = await identityVia(kmw.url, token);
    expect(reference.status).toBe(200);
    expect(ours).toEqual(reference);
    expect(ours.identity["x-user-id"]).toBe(userId);
    expect(ours.identity["x-project-id"]).toBe(projectId);
  });

  it("so does a second token Keystone itself issued for a known user and scope", async () => {
    // A second token for the same user and scope as each fixture token, from Keystone itself.
    const alice = await issueToken(keystone, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    for (const token of [fixtures.tokens.project, alice.token]) {
      await identityVia(edgeUrl, token); // the context
    }
    const again = await issueToken(keystone, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    const before = await keystoneCalls();
    const ours = await identityVia(edgeUrl, again.token);
    expect(await keystoneCalls()).toBe(before);
    expect(ours).toEqual(await identityVia(kmw.url, again.token));
  });
});

/** memcached writes an edge has completed. */
async function memcachedStores(of: RunningEdge): Promise<number> {
  const values = (await of.metrics.memcachedCalls.get()).values;
  return values
    .filter((v) => v.metricName?.endsWith("_count") && v.labels["op"] === "set")
    .reduce((n, v) => n + v.value, 0);
}

function until(check: () => Promise<boolean>, ms = 5_000): Promise<void> {
  return waitUntil(check, ms);
}

describe("contexts shared through memcached", () => {
  it("a context one edge learnt answers another edge's new token with no Keystone call, headers as keystonemiddleware's", async () => {
    const memcached = await startMemcached();
    const cache = {
      memcached_servers: [memcached.address],
      memcache_secret_key: "region secret for contexts",
    };
    const started = await Promise.all(
      [0, 1].map(() =>
        startTestEdge(
          edgeConfigDocument(keystone, { upstream: echo.url, user: adminUser(keystone), cache }),
        ),
      ),
    );
    try {
      const [a, b] = started as [(typeof started)[0], (typeof started)[0]];
      const { userId, projectId } = pairs[1] ?? { userId: "", projectId: "" };
      expect((await identityVia(a.url, mintFor(userId, projectId))).status).toBe(200);
      expect(await keystoneCalls(a.edge)).toBe(1);
      // the token's and the context's entries are written after the answer: let them land
      await until(async () => (await memcachedStores(a.edge)) >= 2);
      const token = mintFor(userId, projectId);
      const ours = await identityVia(b.url, token);
      expect(ours.status).toBe(200);
      expect(await keystoneCalls(b.edge)).toBe(0);
      const text = await b.edge.metrics.registry.metrics();
      expect(text).toMatch(
        /keystone_edge_cache_lookups_total\{tier="memcached_context",result="hit"\} 1\n/,
      );
      expect((await identityVia(b.url, mintFor(userId, projectId))).status).toBe(200);
      expect(await keystoneCalls(b.edge)).toBe(0);
      const again = mintFor(userId, projectId);
      expect(await identityVia(b.url, again)).toEqual(await identityVia(kmw.url, again));
    } finally {
      await Promise.all(started.map((s) => s.edge.close(1_000)));
      await memcached.stop();
    }
  });
});
