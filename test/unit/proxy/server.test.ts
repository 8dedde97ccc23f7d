/**
 * The listener and the forwarder against real loopback sockets: a tiny upstream that
 * records what it receives, an in-process authenticator standing in for validation.
 */
import { createServer, request, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Forwarder } from "../../../src/proxy/forward.js";
import { createEdgeServer, type RequestOutcome } from "../../../src/proxy/server.js";
import type { AuthDecision, RequestAuthenticator } from "../../../src/validation/decision.js";
import { waitUntil } from "../../harness/wait.js";

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bodyBytes: number;
  aborted: boolean;
}

let upstream: Server;
let upstreamPort = 0;
const seen: Seen[] = [];
let behaviour: "echo" | "401" | "hang" = "echo";

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve((server.address() as AddressInfo).port);
    });
  });
}

beforeAll(async () => {
  upstream = createServer((req, res) => {
    const record: Seen = {
      method: req.method ?? "",
      url: req.url ?? "",
      headers: req.headers,
      bodyBytes: 0,
      aborted: false,
    };
    seen.push(record);
    req.on("data", (c: Buffer) => (record.bodyBytes += c.length));
    res.on("close", () => {
      if (!res.writableFinished) record.aborted = true;
    });
    if (behaviour === "hang") return;
    req.on("end", () => {
      if (behaviour === "401") {
        res.writeHead(401, { "content-type": "text/plain" });
        res.end("no");
        return;
      }
      res.writeHead(200, {
        "content-type": "application/json",
        connection: "x-upstream-private",
        "x-upstream-private": "1",
      });
      res.end(JSON.stringify({ bytes: record.bodyBytes }));
    });
  });
  upstreamPort = await listen(upstream);
});
afterAll(() => {
  upstream.close();
});
afterEach(() => {
  seen.length = 0;
  behaviour = "echo";
});

const forwardDecision: AuthDecision = {
  kind: "forward",
  headers: [
    ["X-Identity-Status", "Confirmed"],
    ["X-Roles", "member"],
  ],
  outcome: "valid",
};

async function edge(
  authenticator: RequestAuthenticator,
  upstreamUrl = `http://127.0.0.1:${upstreamPort}`,
  timeoutMs = 5_000,
) {
  const forwarder = new Forwarder({
    upstream: upstreamUrl,
    timeoutMs,
    wwwAuthenticate: 'Keystone uri="http://ks/v3"',
  });
  const outcomes: RequestOutcome[] = [];
  const server = createEdgeServer({
    authenticator,
    forwarder,
    isIdentityHeader: (n) => n === "x-roles" || n === "x-identity-status" || n === "x-user-id",
    onRequestDone: (o) => outcomes.push(o),
  });
  const port = await listen(server);
  return {
    port,
    outcomes,
    close: async () => {
      server.close();
      await forwarder.close();
    },
  };
}

function send(
  port: number,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: Buffer },
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: options.method ?? "GET",
        path: options.path ?? "/",
        headers: options.headers,
      },
      (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

describe("edge server", () => {
  it("strips what the client claims, sets what validation decided, drops hop-by-hop", async () => {
    const e = await edge({ authenticate: () => Promise.resolve(forwardDecision) });
    try {
      const r = await send(e.port, {
        path: "/v2.1/servers?x=1",
        headers: {
          "X-Auth-Token": "tok",
          "X-Roles": "admin",
          "x-user-id": "spoofed",
          Connection: "X-Secret-Hop",
          "X-Secret-Hop": "1",
          "X-Forwarded-For": "203.0.113.9",
          "X-Custom": "kept",
        },
      });
      expect(r.status).toBe(200);
      expect(r.headers["x-upstream-private"]).toBeUndefined();
      const got = seen[0];
      expect(got?.url).toBe("/v2.1/servers?x=1");
      expect(got?.headers["x-roles"]).toBe("member");
      expect(got?.headers["x-identity-status"]).toBe("Confirmed");
      expect(got?.headers["x-user-id"]).toBeUndefined();
      expect(got?.headers["x-secret-hop"]).toBeUndefined();
      expect(got?.headers["x-custom"]).toBe("kept");
      expect(got?.headers["x-auth-token"]).toBe("tok");
      expect(got?.headers["x-forwarded-for"]).toBe("203.0.113.9, 127.0.0.1");
      expect(got?.headers["x-forwarded-proto"]).toBe("http");
      expect(got?.headers["x-forwarded-host"]).toBe(`127.0.0.1:${e.port}`);
      expect(got?.headers.host).toBe(`127.0.0.1:${e.port}`);
      expect(e.outcomes[0]).toMatchObject({ auth: "valid", forward: "ok", status: 200 });
    } finally {
      await e.close();
    }
  });

  it("sends values beyond Latin-1 as UTF-8 bytes and drops a value that could split headers", async () => {
    const e = await edge({
      authenticate: () =>
        Promise.resolve({
          kind: "forward",
          headers: [
            ["X-Project-Name", "研究"],
            ["X-User-Name", "Jürgen"],
            ["X-Domain-Name", "evil\r\nX-Roles: admin"],
          ],
          outcome: "valid",
        }),
    });
    try {
      expect((await send(e.port, {})).status).toBe(200);
      const got = seen[0]?.headers;
      expect(Buffer.from(got?.["x-project-name"] as string, "latin1").toString("utf8")).toBe(
        "研究",
      );
      expect(got?.["x-user-name"]).toBe(Buffer.from("Jürgen", "latin1").toString("latin1"));
      expect(got?.["x-domain-name"]).toBeUndefined();
      expect(got?.["x-roles"]).toBeUndefined();
    } finally {
      await e.close();
    }
  });

  it("answers without calling the service when validation says so", async () => {
    const e = await edge({
      authenticate: () =>
        Promise.resolve({
          kind: "respond",
          status: 401,
          headers: [["WWW-Authenticate", 'Keystone uri="x"']],
          body: "{}",
          outcome: "invalid",
        }),
    });
    try {
      const r = await send(e.port, { method: "POST", body: Buffer.alloc(1000) });
      expect(r.status).toBe(401);
      expect(r.headers["www-authenticate"]).toBe('Keystone uri="x"');
      expect(seen).toHaveLength(0);
    } finally {
      await e.close();
    }
  });

  it("adds WWW-Authenticate to a 401 from the service", async () => {
    behaviour = "401";
    const e = await edge({ authenticate: () => Promise.resolve(forwardDecision) });
    try {
      const r = await send(e.port, {});
      expect(r.status).toBe(401);
      expect(r.headers["www-authenticate"]).toBe('Keystone uri="http://ks/v3"');
    } finally {
      await e.close();
    }
  });

  it("streams a large body up and reports the service's answer", async () => {
    const e = await edge({ authenticate: () => Promise.resolve(forwardDecision) });
    try {
      const body = Buffer.alloc(24 * 1024 * 1024, 7);
      const r = await send(e.port, {
        method: "PUT",
        body,
        headers: { "content-type": "application/octet-stream" },
      });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toEqual({ bytes: body.length });
    } finally {
      await e.close();
    }
  });

  it("maps a refused service to 502 and a silent one to 504", async () => {
    const closed = createServer();
    const deadPort = await listen(closed);
    closed.close();
    const refused = await edge(
      { authenticate: () => Promise.resolve(forwardDecision) },
      `http://127.0.0.1:${deadPort}`,
    );
    try {
      const r = await send(refused.port, {});
      expect(r.status).toBe(502);
      expect(refused.outcomes[0]).toMatchObject({ forward: "upstream_refused", status: 502 });
    } finally {
      await refused.close();
    }
    behaviour = "hang";
    const slow = await edge(
      { authenticate: () => Promise.resolve(forwardDecision) },
      undefined,
      200,
    );
    try {
      const r = await send(slow.port, {});
      expect(r.status).toBe(504);
      expect(slow.outcomes[0]).toMatchObject({ forward: "upstream_timeout", status: 504 });
    } finally {
      await slow.close();
    }
  });

  it("aborts the upstream request when the client goes away", async () => {
    behaviour = "hang";
    const e = await edge({ authenticate: () => Promise.resolve(forwardDecision) });
    try {
      const req = request({ host: "127.0.0.1", port: e.port, path: "/slow" });
      req.on("error", () => undefined);
      req.end();
      await waitUntil(() => seen.length > 0, 3_000, "the service to see the request");
      req.destroy();
      await waitUntil(() => seen[0]?.aborted === true, 3_000, "the service's request aborted");
      await waitUntil(() => e.outcomes.length > 0, 3_000, "the request's outcome");
      expect(e.outcomes[0]).toMatchObject({ forward: "client_aborted" });
    } finally {
      await e.close();
    }
  });

  it("answers 500 when the authenticator throws, and keeps serving", async () => {
    let calls = 0;
    const e = await edge({
      authenticate: () => {
        calls++;
        return calls === 1 ? Promise.reject(new Error("boom")) : Promise.resolve(forwardDecision);
      },
    });
    try {
      expect((await send(e.port, {})).status).toBe(500);
      expect((await send(e.port, {})).status).toBe(200);
    } finally {
      await e.close();
    }
  });
});
