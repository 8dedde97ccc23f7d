/**
 * The Identity face's relay and routing against in-process fake Keystones (real HTTP on
 * loopback): failover past a refused connection and a 503, bodies and headers passed on,
 * hop-by-hop headers dropped, the body limit, discovery links rewritten, and 503 with
 * Retry-After when no endpoint takes the request.
 */
import { createServer, request, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

import { IdentityRelay } from "../../../src/identity/relay.js";
import { createIdentityServer } from "../../../src/identity/server.js";
import { TokenApi } from "../../../src/identity/token-api.js";
import { KeystoneEndpoint } from "../../../src/keystone/endpoint.js";
import { KeystoneEndpoints } from "../../../src/keystone/endpoint-set.js";
import { freePort } from "../../harness/net.js";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function listen(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
}

/** A Keystone stand-in answering `status`, recording what it got. */
async function fake(status = 200): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      const root = `http://${req.headers.host ?? ""}`;
      const body =
        req.url === "/v3"
          ? JSON.stringify({
              version: { id: "v3.14", links: [{ rel: "self", href: `${root}/v3/` }] },
            })
          : JSON.stringify({ from: root, url: req.url });
      res.writeHead(status, {
        "content-type": "application/json",
        "x-openstack-request-id": "req-1",
      });
      res.end(body);
    });
  });
  return { url: `${await listen(server)}/v3`, seen };
}

async function face(endpointUrls: readonly string[], maxBodyBytes?: number) {
  const endpoints = new KeystoneEndpoints(
    endpointUrls.map((url) => new KeystoneEndpoint({ url, timeoutMs: 2_000 })),
    { failureThreshold: 5 },
  );
  const notUsed = () => Promise.reject(new Error("no validation in this test"));
  const server = createIdentityServer({
    tokenApi: new TokenApi({ validate: notUsed, validateAllowingExpired: notUsed }),
    relay: new IdentityRelay({
      endpoints,
      requestTimeoutMs: 5_000,
      retryAfterSeconds: 3,
      ...(maxBodyBytes === undefined ? {} : { maxBodyBytes }),
    }),
    upstreamRoots: endpointUrls.map((u) => u.replace(/\/v3$/, "")),
    publicRoot: "https://identity.region-one.example",
  });
  const url = await listen(server);
  return {
    url,
    close: async () => {
      await endpoints.close();
    },
  };
}

describe("Identity relay", () => {
  it("goes past a refused connection and a 503 to the endpoint that answers, body and headers intact", async () => {
    const closed = `http://127.0.0.1:${String(await freePort())}/v3`;
    const busy = await fake(503);
    const good = await fake(201);
    const f = await face([closed, busy.url, good.url]);
    // node:http, not fetch: fetch drops a Connection header
    const res = await new Promise<{ status: number; requestId: string | undefined }>(
      (resolve, reject) => {
        const req = request(
          `${f.url}/v3/users?name=x`,
          {
            method: "PUT",
            headers: {
              "X-Auth-Token": "tok",
              "Content-Type": "application/json",
              Connection: "keep-alive, x-private",
              "X-Private": "hop",
            },
          },
          (r) => {
            r.resume();
            const id = r.headers["x-openstack-request-id"];
            resolve({ status: r.statusCode ?? 0, requestId: Array.isArray(id) ? id[0] : id });
          },
        );
        req.on("error", reject);
        req.end(JSON.stringify({ user: { name: "x" } }));
      },
    );
    expect(res.status).toBe(201);
    expect(res.requestId).toBe("req-1");
    expect(busy.seen).toHaveLength(1); // tried, 503, next
    expect(good.seen).toHaveLength(1);
    const got = good.seen[0];
    expect(got?.url).toBe("/v3/users?name=x");
    expect(got?.body).toBe('{"user":{"name":"x"}}');
    expect(got?.headers["x-auth-token"]).toBe("tok");
    expect(got?.headers["x-private"]).toBeUndefined(); // named in Connection: hop-by-hop
    expect(got?.headers.host).toBe(new URL(good.url).host);
    await f.close();
  });

  it("does not resend a POST that may have reached Keystone, but does one refused at connect", async () => {
    const closed = `http://127.0.0.1:${String(await freePort())}/v3`;
    const good = await fake(201);
    const f = await face([closed, good.url]);
    const res = await fetch(`${f.url}/v3/auth/tokens`, { method: "POST", body: "{}" });
    expect(res.status).toBe(201);
    expect(good.seen).toHaveLength(1);
    const busy = await fake(503);
    const g = await face([busy.url, good.url]);
    const again = await fetch(`${g.url}/v3/auth/tokens`, { method: "POST", body: "{}" });
    expect(again.status).toBe(503); // Keystone's own answer, passed on
    expect(good.seen).toHaveLength(1);
    await f.close();
    await g.close();
  });

  it("refuses a body over the limit with 413, and answers 503 with Retry-After when no endpoint takes it", async () => {
    const good = await fake(200);
    const f = await face([good.url], 16);
    const big = await fetch(`${f.url}/v3/projects`, { method: "POST", body: "x".repeat(17) });
    expect(big.status).toBe(413);
    expect(good.seen).toHaveLength(0);
    const closed = `http://127.0.0.1:${String(await freePort())}/v3`;
    const g = await face([closed]);
    const down = await fetch(`${g.url}/v3/projects`);
    expect(down.status).toBe(503);
    expect(down.headers.get("retry-after")).toBe("3");
    expect(((await down.json()) as { error: { code: number } }).error.code).toBe(503);
    await f.close();
    await g.close();
  });

  it("rewrites version discovery links to the edge's public URL", async () => {
    const good = await fake(200);
    const f = await face([good.url]);
    const res = await fetch(`${f.url}/v3`);
    const doc = (await res.json()) as { version: { links: { href: string }[] } };
    expect(doc.version.links[0]?.href).toBe("https://identity.region-one.example/v3/");
    await f.close();
  });
});
