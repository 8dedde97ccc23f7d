/**
 * The regional Keystone face behaves as Keystone does where clients can tell (issue 15),
 * against the real Keystone and a real memcached:
 * - read-your-writes revocation: a token revoked through edge 1's face
 *   (`DELETE /v3/auth/tokens`) is refused at once — next request — by edge 1 and by edge 2
 *   of the same region (one memcached), through the proxy and through each face, although
 *   both had it cached and neither polls the revocation feed within the test;
 * - a slow Keystone (every token issue held 6.5 s by an HTTP relay in front of it, as a
 *   busy Keystone hashing passwords is): the face relays the POST and answers 201, never
 *   503, and the validation breakers stay closed; validations through the same relay are
 *   not slowed and keep their own deadline.
 */
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

import type { RunningEdge } from "../../src/edge/running-edge.js";
import { adminPasswordAuth, issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { startMemcached, type MemcachedHandle } from "../harness/memcached.js";
import { startTestEdge } from "../harness/test-edge.js";

const keystone = inject("keystone");
const SLOW_ISSUE_MS = 6_500;
let echo: EchoUpstream;
let memcached: MemcachedHandle;
let slowKeystone: { server: Server; url: string; issues: number };
const edges: RunningEdge[] = [];

/**
 * An HTTP relay in front of Keystone that holds a client's `POST /v3/auth/tokens` for
 * {@link SLOW_ISSUE_MS} before passing it on; everything else passes at once. The test's
 * client marks its requests (`x-test-slow`, passed on by the face like any client header)
 * so that the edge's own logins — its service token, its key lag check — stay fast: this
 * is Keystone slow for clients' password logins, not down.
 */
async function startSlowIssuer(): Promise<{ server: Server; url: string; issues: number }> {
  const target = new URL(keystone.url);
  const state = { issues: 0 };
  const server = createServer((req, res) => {
    const slow =
      req.method === "POST" &&
      (req.url ?? "").startsWith("/v3/auth/tokens") &&
      req.headers["x-test-slow"] === "1";
    if (slow) state.issues++;
    const forward = (): void => {
      const upstream = httpRequest(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: target.host },
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    };
    if (slow) setTimeout(forward, SLOW_ISSUE_MS);
    else forward();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}/v3`;
  return {
    server,
    url,
    get issues() {
      return state.issues;
    },
  };
}

/** An edge of the region: the shared memcached, the feed polled too rarely to matter here. */
async function regionEdge(endpointUrl = keystone.url): Promise<RunningEdge> {
  const document = edgeConfigDocument(keystone, {
    upstream: echo.url,
    user: adminUser(keystone),
    timeoutMs: 2_000,
    cache: {
      memcached_servers: [memcached.address],
      memcache_secret_key: "one region's memcache secret",
    },
    keystone: {
      endpoints: [{ name: "master", url: endpointUrl }],
      revocation_poll_interval_ms: 600_000,
    },
  });
  const { edge } = await startTestEdge({ ...document, identity_listen: "127.0.0.1:0" });
  edges.push(edge);
  return edge;
}

const face = (edge: RunningEdge): string =>
  `http://127.0.0.1:${String(edge.identityAddress?.port ?? 0)}/v3`;
const proxy = (edge: RunningEdge): string => `http://127.0.0.1:${String(edge.address.port)}`;

async function viaProxy(edge: RunningEdge, token: string): Promise<number> {
  const res = await fetch(`${proxy(edge)}/v2.1/servers`, { headers: { "x-auth-token": token } });
  await res.arrayBuffer();
  return res.status;
}

async function viaFace(edge: RunningEdge, caller: string, subject: string): Promise<number> {
  const res = await fetch(`${face(edge)}/auth/tokens`, {
    headers: { "x-auth-token": caller, "x-subject-token": subject },
  });
  await res.arrayBuffer();
  return res.status;
}

beforeAll(async () => {
  echo = await startEchoUpstream();
  memcached = await startMemcached();
  slowKeystone = await startSlowIssuer();
}, 300_000);

afterAll(async () => {
  await Promise.all(edges.map((e) => e.close(1_000)));
  await new Promise((r) => slowKeystone.server.close(r));
  slowKeystone.server.closeAllConnections();
  await memcached.stop();
  await echo.stop();
});

describe("read-your-writes revocation across a region", () => {
  it("a token revoked through edge 1's face is refused by edge 1 and edge 2 at their next request, proxy and face alike", async () => {
    const one = await regionEdge();
    const two = await regionEdge();
    const admin = (
      await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" })
    ).token;
    const victim = (
      await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" })
    ).token;
    // Both edges know the token: cached, in-process and in memcached.
    for (const edge of [one, two]) {
      expect(await viaProxy(edge, victim)).toBe(200);
      expect(await viaFace(edge, admin, victim)).toBe(200);
    }
    const revoked = await fetch(`${face(one)}/auth/tokens`, {
      method: "DELETE",
      headers: { "x-auth-token": admin, "x-subject-token": victim },
    });
    expect(revoked.status).toBe(204);
    expect(revoked.headers.get("x-openstack-request-id")).toMatch(/^req-/);
    // The next request, anywhere in the region.
    expect(await viaFace(one, admin, victim)).toBe(404);
    expect(await viaProxy(one, victim)).toBe(401);
    expect(await viaProxy(two, victim)).toBe(401);
    expect(await viaFace(two, admin, victim)).toBe(404);
    // As Keystone itself answers; and the caller's own token is untouched.
    const direct = await fetch(`${keystone.url}/auth/tokens`, {
      headers: { "x-auth-token": admin, "x-subject-token": victim },
    });
    expect(direct.status).toBe(404);
    expect(await viaProxy(two, admin)).toBe(200);
    // Edge 2 learnt it from the region's marker (edge 1 wrote it), not from the feed.
    const markers = async (e: RunningEdge, event: string): Promise<number> =>
      (await e.metrics.revocationMarkers.get()).values.find((v) => v.labels.event === event)
        ?.value ?? 0;
    expect(await markers(one, "written")).toBe(1);
    expect(await markers(two, "found")).toBeGreaterThanOrEqual(1);
  }, 120_000);
});

describe("a slow Keystone behind the face", () => {
  it("a token issue held 6.5 s is relayed (201, never 503) and no validation breaker opens; validations keep their own deadline", async () => {
    const edge = await regionEdge(slowKeystone.url);
    const started = performance.now();
    const issued = await fetch(`${face(edge)}/auth/tokens`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-test-slow": "1" },
      body: JSON.stringify({ auth: adminPasswordAuth(keystone) }),
    });
    const tookMs = performance.now() - started;
    expect(issued.status).toBe(201);
    expect(tookMs).toBeGreaterThanOrEqual(SLOW_ISSUE_MS);
    const token = issued.headers.get("x-subject-token") ?? "";
    expect(token.length).toBeGreaterThan(100);
    expect(slowKeystone.issues).toBeGreaterThanOrEqual(1);
    // Validations through the same relay are not held, and the breaker never opened.
    expect(await viaProxy(edge, token)).toBe(200);
    const breakers = await edge.metrics.registry.getSingleMetricAsString(
      "keystone_edge_keystone_breaker_state",
    );
    expect(breakers).toMatch(/endpoint="master",state="closed"\} 1/);
    expect(breakers).not.toMatch(/state="open"\} 1/);
  }, 120_000);
});
