/**
 * The Identity face's relay and routing against in-process fake Keystones (real HTTP on
 * loopback): failover past a refused connection and a 503, bodies and headers passed on,
 * hop-by-hop headers dropped, the body limit, discovery links rewritten, and 503 with
 * Retry-After when no endpoint takes the request. Hostile input (issue 13): a flood beyond
 * `maxInFlight` is refused at once while validations go through their own pool; relay
 * failures never reach the validation breakers (which the relay only reads); the global
 * body buffer cap; the slot and the bytes given back in every path, client aborts included.
 */
import {
  createServer,
  request,
  type ClientRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";

import { EdgeMetrics } from "../../../src/admin/metrics.js";
import { IdentityRelay, validationRotation } from "../../../src/identity/relay.js";
import { createIdentityServer } from "../../../src/identity/server.js";
import { TokenApi } from "../../../src/identity/token-api.js";
import { KeystoneEndpoint } from "../../../src/keystone/endpoint.js";
import { KeystoneEndpoints } from "../../../src/keystone/endpoint-set.js";
import { ServiceToken } from "../../../src/keystone/service-token.js";
import { KeystoneValidator } from "../../../src/keystone/validate.js";
import { freePort } from "../../harness/net.js";
import { waitUntil } from "../../harness/wait.js";

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

/** Waits until `condition` holds (polling every 5 ms), or fails after 5 s. */
function waitFor(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  return waitUntil(condition, 5_000, what, 5);
}

/**
 * A Keystone stand-in: records each request (its body read whole), then `route` answers
 * it — or keeps it, to be answered later.
 */
async function fakeKeystone(
  route: (seen: Seen, res: ServerResponse) => void,
): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const s = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      };
      seen.push(s);
      route(s, res);
    });
  });
  return { url: `${await listen(server)}/v3`, seen };
}

/** A Keystone stand-in answering `status`, recording what it got. */
function fake(status = 200): Promise<{ url: string; seen: Seen[] }> {
  return fakeKeystone((s, res) => {
    const root = `http://${s.headers.host ?? ""}`;
    const body =
      s.url === "/v3"
        ? JSON.stringify({
            version: { id: "v3.14", links: [{ rel: "self", href: `${root}/v3/` }] },
          })
        : JSON.stringify({ from: root, url: s.url });
    res.writeHead(status, {
      "content-type": "application/json",
      "x-openstack-request-id": "req-1",
    });
    res.end(body);
  });
}

interface FaceOptions {
  readonly maxBodyBytes?: number;
  readonly maxInFlight?: number;
  readonly maxBufferedBytes?: number;
  /** The relay's connections per endpoint. Default 8. */
  readonly connections?: number;
  /** The validation endpoints' connections. Default 16. */
  readonly validationConnections?: number;
  /** Deadline of one call (both sets). Default 2 000 ms. */
  readonly timeoutMs?: number;
  readonly requestTimeoutMs?: number;
  /**
   * The relay's own deadline (`identity_relay.timeout_ms`): its endpoints' call deadline
   * and its walk's, connects keeping `timeoutMs`. Default: as edge.ts before it existed.
   */
  readonly relayTimeoutMs?: number;
  readonly failureThreshold?: number;
  readonly onTokenRevoked?: (token: string) => Promise<void>;
}

/**
 * The Identity face over `endpointUrls` as edge.ts builds it: validation endpoints behind
 * their breakers, and the relay's own endpoints reading those breakers; metrics on a
 * registry of the test's own.
 */
async function face(endpointUrls: readonly string[], options: FaceOptions = {}) {
  const timeoutMs = options.timeoutMs ?? 2_000;
  const guarded = new KeystoneEndpoints(
    endpointUrls.map(
      (url) =>
        new KeystoneEndpoint({
          url,
          timeoutMs,
          ...(options.validationConnections === undefined
            ? {}
            : { connections: options.validationConnections }),
        }),
    ),
    { failureThreshold: options.failureThreshold ?? 5 },
  );
  const metrics = new EdgeMetrics(new Registry());
  const relay = new IdentityRelay({
    endpoints: endpointUrls.map(
      (url) =>
        new KeystoneEndpoint({
          url,
          timeoutMs: options.relayTimeoutMs ?? timeoutMs,
          connectTimeoutMs: timeoutMs,
          connections: options.connections ?? 8,
        }),
    ),
    inRotation: validationRotation(guarded),
    requestTimeoutMs: options.relayTimeoutMs ?? options.requestTimeoutMs ?? 5_000,
    retryAfterSeconds: 3,
    observe: metrics.identityRelayObserver(),
    ...(options.maxBodyBytes === undefined ? {} : { maxBodyBytes: options.maxBodyBytes }),
    ...(options.maxInFlight === undefined ? {} : { maxInFlight: options.maxInFlight }),
    ...(options.maxBufferedBytes === undefined
      ? {}
      : { maxBufferedBytes: options.maxBufferedBytes }),
  });
  const notUsed = () => Promise.reject(new Error("no validation in this test"));
  const server = createIdentityServer({
    tokenApi: new TokenApi({ validate: notUsed, validateAllowingExpired: notUsed }),
    relay,
    upstreamRoots: endpointUrls.map((u) => u.replace(/\/v3$/, "")),
    publicRoot: "https://identity.region-one.example",
    ...(options.onTokenRevoked === undefined ? {} : { onTokenRevoked: options.onTokenRevoked }),
  });
  const url = await listen(server);
  const gauge = async (g: "in_flight" | "buffered_bytes"): Promise<number> => {
    const metric =
      g === "in_flight" ? metrics.identityRelayInFlight : metrics.identityRelayBufferedBytes;
    return (await metric.get()).values[0]?.value ?? Number.NaN;
  };
  const rejected = async (reason: string): Promise<number> =>
    (await metrics.identityRelayRejected.get()).values.find((v) => v.labels.reason === reason)
      ?.value ?? Number.NaN;
  /** Nothing held: no slot taken, no byte reserved — in the relay and in its gauges. */
  const idle = async (): Promise<boolean> =>
    relay.inFlight === 0 &&
    relay.bufferedBytes === 0 &&
    (await gauge("in_flight")) === 0 &&
    (await gauge("buffered_bytes")) === 0;
  return {
    url,
    relay,
    guarded,
    gauge,
    rejected,
    idle,
    close: async () => {
      await Promise.all([guarded.close(), relay.close()]);
    },
  };
}

/** Every validation breaker closed without a failure counted. */
function untouched(guarded: KeystoneEndpoints): boolean {
  return guarded.guards.every((g) => {
    const s = g.breaker.state();
    return s.kind === "closed" && s.failures === 0;
  });
}

/** A request through node:http (fetch drops a Connection header, and cannot stop mid-body). */
function send(
  url: string,
  options: { method: string; headers?: Record<string, string> },
): { req: ClientRequest; response: Promise<IncomingMessage> } {
  const req = request(url, options);
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.on("response", resolve);
    req.on("error", reject);
  });
  return { req, response };
}

describe("Identity relay", () => {
  it("goes past a refused connection and a 503 to the endpoint that answers, body and headers intact", async () => {
    const closed = `http://127.0.0.1:${String(await freePort())}/v3`;
    const busy = await fake(503);
    const good = await fake(201);
    const f = await face([closed, busy.url, good.url]);
    const { req, response } = send(`${f.url}/v3/users?name=x`, {
      method: "PUT",
      headers: {
        "X-Auth-Token": "tok",
        "Content-Type": "application/json",
        Connection: "keep-alive, x-private",
        "X-Private": "hop",
        Forwarded: "for=6.6.6.6;proto=https;host=evil.example",
        "X-Forwarded-Prefix": "/admin",
        "X-Forwarded-For": "6.6.6.6",
        "X-Real-IP": "6.6.6.6",
      },
    });
    req.end(JSON.stringify({ user: { name: "x" } }));
    const r = await response;
    r.resume();
    expect(r.statusCode).toBe(201);
    expect(r.headers["x-openstack-request-id"]).toBe("req-1");
    expect(busy.seen).toHaveLength(1); // tried, 503, next
    expect(good.seen).toHaveLength(1);
    const got = good.seen[0];
    expect(got?.url).toBe("/v3/users?name=x");
    expect(got?.body).toBe('{"user":{"name":"x"}}');
    expect(got?.headers["x-auth-token"]).toBe("tok");
    expect(got?.headers["x-private"]).toBeUndefined(); // named in Connection: hop-by-hop
    expect(got?.headers.host).toBe(new URL(good.url).host);
    // oslo.middleware in front of Keystone trusts these: only the edge's reach it.
    expect(got?.headers.forwarded).toBe("for=127.0.0.1;proto=http");
    expect(got?.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(got?.headers["x-forwarded-prefix"]).toBeUndefined();
    expect(got?.headers["x-real-ip"]).toBeUndefined();
    await waitFor(f.idle, "the relay idle");
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

  it("a slow Keystone: a POST answered past the validation deadline comes through within the relay's own; past that, 504, sent once, no breaker touched", async () => {
    const slow = await fakeKeystone((_s, res) => {
      setTimeout(() => {
        res.writeHead(201, { "content-type": "application/json" }).end('{"token":{}}');
      }, 600);
    });
    const f = await face([slow.url], { timeoutMs: 200, relayTimeoutMs: 3_000 });
    const issued = await fetch(`${f.url}/v3/auth/tokens`, { method: "POST", body: "{}" });
    expect(issued.status).toBe(201);
    expect(await issued.text()).toBe('{"token":{}}');
    expect(untouched(f.guarded)).toBe(true);
    await f.close();

    const silent = await fakeKeystone(() => undefined);
    const spare = await fake(201);
    const g = await face([silent.url, spare.url], { timeoutMs: 200, relayTimeoutMs: 800 });
    const cut = await fetch(`${g.url}/v3/auth/tokens`, { method: "POST", body: "{}" });
    expect(cut.status).toBe(504);
    expect(cut.headers.get("retry-after")).toBeNull();
    expect(((await cut.json()) as { error: { code: number } }).error.code).toBe(504);
    // Sent once: the first endpoint may be issuing it still; the second never saw it.
    expect(silent.seen).toHaveLength(1);
    expect(spare.seen).toHaveLength(0);
    expect(untouched(g.guarded)).toBe(true);
    await g.close();
  });

  it("a revocation Keystone accepted takes effect at the edge before the client hears of it; one it refused does not", async () => {
    let status = 204;
    const keystone = await fakeKeystone((_s, res) => {
      res.writeHead(status).end();
    });
    const revoked: string[] = [];
    const f = await face([keystone.url], {
      onTokenRevoked: async (token) => {
        // Slow on purpose: the answer must wait for it.
        await new Promise((r) => setTimeout(r, 150));
        revoked.push(token);
      },
    });
    const del = (subject: string) =>
      fetch(`${f.url}/v3/auth/tokens`, {
        method: "DELETE",
        headers: { "x-auth-token": "caller", "x-subject-token": subject },
      });
    const ok = await del("subject-1");
    expect(ok.status).toBe(204);
    expect(revoked).toEqual(["subject-1"]);
    expect(keystone.seen[0]?.headers["x-subject-token"]).toBe("subject-1");
    status = 404;
    expect((await del("subject-2")).status).toBe(404);
    expect(revoked).toEqual(["subject-1"]);
    // The client gone before Keystone answered: the revocation still takes effect here.
    status = 204;
    const { req, response } = send(`${f.url}/v3/auth/tokens`, {
      method: "DELETE",
      headers: { "x-auth-token": "caller", "x-subject-token": "subject-3" },
    });
    req.end();
    await waitFor(() => keystone.seen.length === 3, "the third DELETE at Keystone");
    req.destroy();
    await response.catch(() => undefined);
    await waitFor(() => revoked.includes("subject-3"), "the revocation of subject-3");
    await f.close();
  });

  it("every answer of the face carries x-openstack-request-id: Keystone's on relayed ones, the client's when well-formed, else a new one", async () => {
    const keystone = await fake(200);
    const f = await face([keystone.url]);
    const relayed = await fetch(`${f.url}/v3/users`);
    expect(relayed.headers.get("x-openstack-request-id")).toBe("req-1");
    const own = await fetch(`${f.url}/v3/auth/tokens`); // no token: the face's own 401
    expect(own.status).toBe(401);
    const id = own.headers.get("x-openstack-request-id") ?? "";
    expect(id).toMatch(/^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const again = await fetch(`${f.url}/v3/auth/tokens`);
    expect(again.headers.get("x-openstack-request-id")).not.toBe(id);
    const sent = "req-0f5c2b8e-2d6a-4c1e-9b7a-3e8f1d2c4a5b";
    const echoed = await fetch(`${f.url}/v3/auth/tokens`, {
      headers: { "x-openstack-request-id": sent },
    });
    expect(echoed.headers.get("x-openstack-request-id")).toBe(sent);
    const hostile = await fetch(`${f.url}/v3/auth/tokens`, {
      headers: { "x-openstack-request-id": "req-<script>" },
    });
    expect(hostile.headers.get("x-openstack-request-id")).toMatch(/^req-[0-9a-f-]{36}$/);
    await f.close();
  });

  it("refuses a body over the limit with 413, and answers 503 with Retry-After when no endpoint takes it", async () => {
    const good = await fake(200);
    const f = await face([good.url], { maxBodyBytes: 16 });
    const big = await fetch(`${f.url}/v3/projects`, { method: "POST", body: "x".repeat(17) });
    expect(big.status).toBe(413);
    expect(good.seen).toHaveLength(0);
    expect(await f.rejected("too_large")).toBe(1);
    // chunked, no Content-Length: refused as it streams, the rest discarded
    const { req, response } = send(`${f.url}/v3/projects`, { method: "POST" });
    req.write("x".repeat(10));
    req.end("x".repeat(10));
    const chunked = await response;
    chunked.resume();
    expect(chunked.statusCode).toBe(413);
    expect(good.seen).toHaveLength(0);
    expect(await f.rejected("too_large")).toBe(2);
    await waitFor(f.idle, "the relay idle");
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

describe("Identity relay under hostile input", () => {
  it("refuses a flood beyond max_in_flight at once while validations get through their own pool", async () => {
    // Wrong-password token requests are kept waiting (Keystone hashing slowly); the edge's
    // own service user and validations are answered at once.
    const slow: ServerResponse[] = [];
    let slowMode: "hold" | "answer" = "hold";
    const keystone = await fakeKeystone((s, res) => {
      if (s.method === "POST" && s.url.startsWith("/v3/auth/tokens")) {
        if (s.body.includes('"edge-password"')) {
          const expires = new Date(Date.now() + 3_600_000).toISOString();
          res.writeHead(201, { "x-subject-token": "svc", "content-type": "application/json" });
          return void res.end(JSON.stringify({ token: { expires_at: expires } }));
        }
        if (slowMode === "hold") return void slow.push(res);
        return void res.writeHead(401, { "content-type": "application/json" }).end("{}");
      }
      if (s.method === "GET" && s.url.startsWith("/v3/auth/tokens")) {
        res.writeHead(200, { "content-type": "application/json" });
        return void res.end(
          JSON.stringify({
            token: {
              methods: ["password"],
              user: { id: "u1", name: "u1", domain: { id: "default", name: "Default" } },
              audit_ids: ["a"],
              expires_at: "2030-01-01T00:00:00.000000Z",
              issued_at: "2029-12-31T23:00:00.000000Z",
            },
          }),
        );
      }
      res.writeHead(404).end();
    });
    // Both pools tiny: were they shared, two held relay requests would starve validations.
    const f = await face([keystone.url], {
      connections: 2,
      validationConnections: 2,
      maxInFlight: 4,
      failureThreshold: 1,
    });
    const flood = Array.from({ length: 12 }, () =>
      fetch(`${f.url}/v3/auth/tokens`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ auth: { identity: { password: { user: { password: "wrong" } } } } }),
      }),
    );
    const settled: Response[] = [];
    for (const p of flood) void p.then((r) => settled.push(r));
    // 2 with Keystone, 2 waiting for one of the relay's sockets, 8 refused at once.
    await waitFor(() => slow.length === 2 && settled.length === 8, "the flood to settle");
    expect(f.relay.inFlight).toBe(4);
    expect(await f.gauge("in_flight")).toBe(4);
    for (const r of settled) {
      expect(r.status).toBe(503);
      expect(r.headers.get("retry-after")).toBe("1");
      expect(((await r.json()) as { error: { code: number } }).error.code).toBe(503);
    }
    expect(await f.rejected("saturated")).toBe(8);

    // Meanwhile a validation — the service token, then the token — goes straight through.
    const serviceToken = new ServiceToken({
      auth: {
        type: "password",
        username: "edge",
        password: "edge-password",
        user_domain_id: "default",
        project_name: "service",
        project_domain_id: "default",
      },
      endpoints: () => f.guarded.preferred(),
    });
    const validator = new KeystoneValidator({ endpoints: f.guarded, serviceToken });
    const started = performance.now();
    const verdict = await validator.validate("user-token");
    expect(verdict).toMatchObject({ kind: "valid" });
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(slow).toHaveLength(2); // the flood still holds the relay's sockets

    slowMode = "answer";
    for (const res of slow.splice(0)) res.writeHead(401).end("{}");
    const statuses = await Promise.all(flood.map(async (p) => (await p).status));
    expect(statuses.filter((s) => s === 401)).toHaveLength(4);
    expect(statuses.filter((s) => s === 503)).toHaveLength(8);
    await waitFor(f.idle, "the relay idle");
    expect(untouched(f.guarded)).toBe(true);
    serviceToken.close();
    await f.close();
  });

  it("never reports to the validation breakers, but skips endpoints they hold out of rotation", async () => {
    const failing = await fake(503);
    const hanging = await fakeKeystone(() => undefined); // never answers
    const good = await fake(200);
    const f = await face([failing.url, hanging.url, good.url], {
      failureThreshold: 1,
      timeoutMs: 200,
      requestTimeoutMs: 2_000,
    });
    for (let i = 0; i < 3; i++) {
      // GET: 503, failover; timeout, failover; answered by the third
      expect((await fetch(`${f.url}/v3/projects`)).status).toBe(200);
      // POST: Keystone's 503 passed on, not resent
      expect((await fetch(`${f.url}/v3/projects`, { method: "POST", body: "{}" })).status).toBe(
        503,
      );
    }
    expect(failing.seen).toHaveLength(6);
    expect(hanging.seen).toHaveLength(3);
    expect(untouched(f.guarded)).toBe(true); // one failure would have opened a breaker

    // Validation takes the first two out of rotation: the relay reads it and skips them.
    for (const g of f.guarded.guards.slice(0, 2)) {
      const admission = g.breaker.admit();
      if (admission === undefined) throw new Error("breaker not closed");
      f.guarded.report(g, admission, { kind: "failed", reason: "timeout" });
    }
    expect(f.guarded.guards.map((g) => g.breaker.state().kind)).toEqual(["open", "open", "closed"]);
    const started = performance.now();
    expect((await fetch(`${f.url}/v3/projects`)).status).toBe(200);
    expect(performance.now() - started).toBeLessThan(200); // no timeout waited for
    expect(failing.seen).toHaveLength(6);
    expect(hanging.seen).toHaveLength(3);
    await waitFor(f.idle, "the relay idle");
    servers
      .find(
        (s) => `http://127.0.0.1:${String((s.address() as AddressInfo).port)}/v3` === hanging.url,
      )
      ?.closeAllConnections();
    await f.close();
  });

  it("refuses a body that would overflow the global buffer with 503, unbuffered, and gives the bytes back", async () => {
    const held: ServerResponse[] = [];
    const keystone = await fakeKeystone((_s, res) => void held.push(res));
    const f = await face([keystone.url], { maxBodyBytes: 64, maxBufferedBytes: 100 });
    const first = fetch(`${f.url}/v3/projects`, { method: "POST", body: "a".repeat(60) });
    await waitFor(() => held.length === 1, "the first body with Keystone");
    expect(f.relay.bufferedBytes).toBe(60);
    expect(await f.gauge("buffered_bytes")).toBe(60);

    // declared by Content-Length: refused before a byte is read
    const second = await fetch(`${f.url}/v3/projects`, { method: "POST", body: "b".repeat(60) });
    expect(second.status).toBe(503);
    expect(second.headers.get("retry-after")).toBe("1");
    expect(((await second.json()) as { error: { code: number } }).error.code).toBe(503);
    // chunked: fits at first, then would overflow
    const { req, response } = send(`${f.url}/v3/projects`, { method: "POST" });
    req.write("c".repeat(30));
    await waitFor(() => f.relay.bufferedBytes === 90, "the first chunk reserved");
    req.end("c".repeat(30));
    const third = await response;
    third.resume();
    expect(third.statusCode).toBe(503);
    expect(await f.rejected("buffer_full")).toBe(2);
    expect(keystone.seen).toHaveLength(1); // neither reached Keystone
    await waitFor(() => f.relay.bufferedBytes === 60, "the chunked body's bytes given back");

    const res = held[0];
    if (res === undefined) throw new Error("nothing held");
    res.writeHead(201).end("{}");
    expect((await first).status).toBe(201);
    await waitFor(f.idle, "the relay idle");
    // and the budget is whole again
    const after = fetch(`${f.url}/v3/projects`, { method: "POST", body: "d".repeat(60) });
    await waitFor(() => held.length === 2, "a new body with Keystone");
    held[1]?.writeHead(201).end("{}");
    expect((await after).status).toBe(201);
    await waitFor(f.idle, "the relay idle");
    await f.close();
  });

  it("gives the slot and the bytes back when the client goes away mid-body, while Keystone works, and mid-answer", async () => {
    const held: ServerResponse[] = [];
    const keystone = await fakeKeystone((s, res) => {
      if (s.url === "/v3/partial") {
        // headers and part of the body, then nothing
        res.writeHead(200, { "content-type": "application/json" });
        return void res.write('{"partial":');
      }
      held.push(res);
    });
    const f = await face([keystone.url], { maxBodyBytes: 64, maxBufferedBytes: 100 });

    // 1. mid-body: 10 of 50 declared bytes sent, then gone; nothing reaches Keystone
    const midBody = send(`${f.url}/v3/projects`, {
      method: "POST",
      headers: { "content-length": "50" },
    });
    midBody.response.catch(() => undefined);
    midBody.req.write("x".repeat(10));
    await waitFor(() => f.relay.bufferedBytes === 50, "the declared body reserved");
    midBody.req.destroy();
    await waitFor(f.idle, "the bytes given back after an abort mid-body");
    expect(keystone.seen).toHaveLength(0);

    // 2. while Keystone works: given back when its call settles, nothing written to the client
    const waiting = send(`${f.url}/v3/projects`, { method: "POST" });
    waiting.response.catch(() => undefined);
    waiting.req.end("y".repeat(20));
    await waitFor(() => held.length === 1, "the request with Keystone");
    expect(f.relay.inFlight).toBe(1);
    expect(f.relay.bufferedBytes).toBe(20);
    waiting.req.destroy();
    held[0]?.writeHead(201).end("{}");
    await waitFor(f.idle, "the slot and bytes given back after an abort while Keystone works");

    // 3. mid-answer: the client reads the head and leaves while the body still streams
    const midAnswer = send(`${f.url}/v3/partial`, { method: "POST" });
    midAnswer.req.end("z".repeat(20));
    const head = await midAnswer.response;
    expect(head.statusCode).toBe(200);
    expect(f.relay.inFlight).toBe(1);
    head.destroy();
    midAnswer.req.destroy();
    await waitFor(f.idle, "the slot and bytes given back after an abort mid-answer");
    await f.close();
  });
});
