/**
 * The fault matrix, the service's side (docs/security.md, "Fault matrix"): the service
 * behind the edge down, slow, resetting mid-answer, and a client giving up mid-upload —
 * through a whole in-process edge (region.ts) where the edge's metrics say what happened,
 * and through the listener and forwarder alone where a timeout must be shortened.
 */
import { readFileSync } from "node:fs";
import {
  createServer,
  request,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Forwarder } from "../../../src/proxy/forward.js";
import { createEdgeServer, type RequestOutcome } from "../../../src/proxy/server.js";
import { waitUntil } from "../helpers.js";
import { startRegion, type Region } from "./region.js";

type Behaviour = "echo" | "reset-mid-body" | "stall-mid-body" | "hang";

interface UpstreamRequest {
  readonly path: string;
  bytes: number;
  /** The request's connection closed before its body was whole. */
  aborted: boolean;
  complete: boolean;
  /** The connection closed before the answer was whole. */
  dropped: boolean;
}

/** The service: answers per `behaviour`, records what each request brought. */
class Service {
  behaviour: Behaviour = "echo";
  readonly seen: UpstreamRequest[] = [];
  readonly sockets = new Set<Socket>();
  private server: Server | undefined;
  port = 0;

  async start(port = 0): Promise<void> {
    const server = createServer((req, res) => {
      this.handle(req, res);
    });
    server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }

  get url(): string {
    return `http://127.0.0.1:${String(this.port)}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const record: UpstreamRequest = {
      path: req.url ?? "",
      bytes: 0,
      aborted: false,
      complete: false,
      dropped: false,
    };
    this.seen.push(record);
    req.on("data", (d: Buffer) => (record.bytes += d.length));
    req.on("end", () => (record.complete = true));
    req.on("close", () => {
      if (!record.complete) record.aborted = true;
    });
    req.on("error", () => undefined);
    res.on("close", () => {
      if (!res.writableFinished) record.dropped = true;
    });
    switch (this.behaviour) {
      case "hang":
        return;
      case "reset-mid-body":
      case "stall-mid-body":
        // The head and 64 KiB of a 1 MiB answer, then the connection reset, or silence.
        res.writeHead(200, {
          "content-type": "application/octet-stream",
          "content-length": 1 << 20,
        });
        res.write(Buffer.alloc(64 * 1024, 1), () => {
          if (this.behaviour === "reset-mid-body") {
            setTimeout(() => req.socket.resetAndDestroy(), 20);
          }
        });
        return;
      case "echo":
        req.on("end", () => {
          const body = JSON.stringify({ bytes: record.bytes });
          res.writeHead(200, {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
          });
          res.end(body);
        });
    }
  }
}

/** What a client got: the status, the body bytes, and whether the answer was cut off. */
function get(
  url: string,
  token: string,
): Promise<{ status: number; bytes: number; cut: boolean; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    let status = 0;
    let bytes = 0;
    const req = request(
      `${url}/v2/images/x/file`,
      { headers: { "X-Auth-Token": token } },
      (res) => {
        status = res.statusCode ?? 0;
        res.on("data", (d: Buffer) => (bytes += d.length));
        res.on("end", () => {
          resolve({ status, bytes, cut: false, ms: performance.now() - started });
        });
        res.on("error", () => {
          resolve({ status, bytes, cut: true, ms: performance.now() - started });
        });
      },
    );
    req.on("error", () => {
      resolve({ status, bytes, cut: true, ms: performance.now() - started });
    });
    req.end();
  });
}

/**
 * TCP connections on 127.0.0.1:`port` (either end) the kernel still holds open: every state
 * but LISTEN, TIME_WAIT and CLOSE. A connection the edge forgot to close stays here
 * (ESTABLISHED, or CLOSE_WAIT once the peer has gone).
 */
function openConnections(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  let n = 0;
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    const [local, remote, state] = [f[1], f[2], f[3]];
    if (local === undefined || remote === undefined || state === undefined) continue;
    if (state === "0A" || state === "06" || state === "07") continue;
    if (local.endsWith(`:${hex}`) || remote.endsWith(`:${hex}`)) n++;
  }
  return n;
}

describe("fault matrix: the service behind the edge", () => {
  const service = new Service();
  let region: Region;
  let token = "";

  beforeAll(async () => {
    await service.start();
    region = await startRegion({ upstream: service.url });
    token = region.mint();
    expect((await region.request(token)).status).toBe(200); // validated once, then from L1
  });

  afterAll(async () => {
    await region.close();
    await service.stop();
  });

  it("service down: 502 at once, counted as refused; served again as soon as it is back", async () => {
    service.seen.length = 0;
    const port = service.port;
    await service.stop();
    const down = await region.request(token);
    expect(down.status).toBe(502);
    expect(JSON.parse(down.body)).toMatchObject({ error: { code: 502, title: "Bad Gateway" } });
    expect(down.ms).toBeLessThan(1_000);
    expect(
      await region.metric("keystone_edge_upstream_errors_total", { kind: "upstream_refused" }),
    ).toBe(1);
    await service.start(port);
    expect((await region.request(token)).status).toBe(200);
    expect(service.seen).toHaveLength(1);
  });

  it("service resets mid-answer: the client's answer is cut off, not left hanging, and counted", async () => {
    service.behaviour = "reset-mid-body";
    try {
      const before = await region.metric("keystone_edge_upstream_errors_total", {
        kind: "upstream_error",
      });
      const seen2xx = await region.metric("keystone_edge_requests_total", { status_class: "2xx" });
      const seen5xx = await region.metric("keystone_edge_requests_total", { status_class: "5xx" });
      const got = await get(region.url, token);
      expect(got.status).toBe(200); // the head had gone out
      expect(got.cut).toBe(true);
      expect(got.bytes).toBeGreaterThanOrEqual(64 * 1024);
      expect(got.bytes).toBeLessThan(1 << 20);
      expect(got.ms).toBeLessThan(5_000);
      expect(
        await region.metric("keystone_edge_upstream_errors_total", { kind: "upstream_error" }),
      ).toBe(before + 1);
      // The request is counted with the status the client saw.
      expect(await region.metric("keystone_edge_requests_total", { status_class: "2xx" })).toBe(
        seen2xx + 1,
      );
      expect(await region.metric("keystone_edge_requests_total", { status_class: "5xx" })).toBe(
        seen5xx,
      );
    } finally {
      service.behaviour = "echo";
    }
    expect((await region.request(token)).status).toBe(200);
  });

  it("client gone mid-upload: the service's request is aborted, counted as a client abort, no connection left open", async () => {
    service.behaviour = "echo";
    // Warm: one connection to the service kept alive, then the baseline.
    expect((await region.request(token)).status).toBe(200);
    const edgePort = Number(new URL(region.url).port);
    const edgeConnectionsBefore = openConnections(edgePort);
    const serviceConnectionsBefore = openConnections(service.port);
    const serviceSocketsBefore = service.sockets.size;
    const metricBefore = await region.metric("keystone_edge_upstream_errors_total", {
      kind: "client_aborted",
    });
    const misfiledBefore = await region.metric("keystone_edge_upstream_errors_total", {
      kind: "upstream_error",
    });
    service.seen.length = 0;
    const ROUNDS = 10;
    for (let round = 0; round < ROUNDS; round++) {
      const req = request(`${region.url}/v2/images/x/file`, {
        method: "PUT",
        headers: {
          "X-Auth-Token": token,
          "Content-Type": "application/octet-stream",
          "Content-Length": String(8 << 20),
        },
      });
      req.on("error", () => undefined);
      req.write(Buffer.alloc(1 << 20, 2));
      await waitUntil(
        () => (service.seen[round]?.bytes ?? 0) > 0,
        5_000,
        "the upload to reach the service",
      );
      req.destroy();
      await waitUntil(
        () => service.seen[round]?.aborted === true,
        5_000,
        "the service's request to be aborted",
      );
    }
    expect(service.seen).toHaveLength(ROUNDS);
    for (const r of service.seen) {
      expect(r.complete).toBe(false);
      expect(r.bytes).toBeLessThan(8 << 20);
    }
    await waitUntil(
      async () =>
        (await region.metric("keystone_edge_upstream_errors_total", {
          kind: "client_aborted",
        })) ===
        metricBefore + ROUNDS,
      5_000,
      "every abort to be counted as the client's",
    );
    expect(
      await region.metric("keystone_edge_upstream_errors_total", { kind: "upstream_error" }),
    ).toBe(misfiledBefore);
    await waitUntil(
      () => service.sockets.size <= serviceSocketsBefore,
      5_000,
      "the service's connections to return to the baseline",
    );
    await waitUntil(
      () =>
        openConnections(edgePort) <= edgeConnectionsBefore &&
        openConnections(service.port) <= serviceConnectionsBefore,
      5_000,
      "the edge's connections (clients' and the service's) to return to the baseline",
    );
    expect((await region.request(token)).status).toBe(200);
  });
});

describe("fault matrix: a slow service (listener and forwarder, timeout shortened)", () => {
  const service = new Service();
  let server: Server;
  let forwarder: Forwarder;
  const outcomes: RequestOutcome[] = [];
  let url = "";
  /** undici keeps these timeouts on its coarse timers (~1 s resolution): not below 1 s. */
  const TIMEOUT_MS = 1_000;

  beforeAll(async () => {
    await service.start();
    forwarder = new Forwarder({
      upstream: service.url,
      timeoutMs: TIMEOUT_MS,
      wwwAuthenticate: 'Keystone uri="http://keystone.invalid/v3"',
    });
    server = createEdgeServer({
      authenticator: {
        authenticate: () =>
          Promise.resolve({
            kind: "forward",
            headers: [["X-Identity-Status", "Confirmed"]],
            outcome: "valid",
          }),
      },
      forwarder,
      isIdentityHeader: () => false,
      onRequestDone: (o) => outcomes.push(o),
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    server.close();
    await forwarder.close();
    await service.stop();
  });

  it("no answer: 504 at the forward timeout, the service's request aborted", async () => {
    service.behaviour = "hang";
    service.seen.length = 0;
    outcomes.length = 0;
    const got = await get(url, "t");
    expect(got.status).toBe(504);
    expect(got.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 100);
    expect(got.ms).toBeLessThan(TIMEOUT_MS + 1_500);
    expect(outcomes[0]).toMatchObject({ forward: "upstream_timeout", status: 504 });
    await waitUntil(() => service.seen[0]?.dropped === true, 2_000, "the request to be dropped");
  });

  it("silent mid-answer: the client's answer is cut off at the forward timeout, not left hanging", async () => {
    service.behaviour = "stall-mid-body";
    outcomes.length = 0;
    const got = await get(url, "t");
    expect(got.status).toBe(200);
    expect(got.cut).toBe(true);
    expect(got.bytes).toBe(64 * 1024);
    expect(got.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 100);
    expect(got.ms).toBeLessThan(TIMEOUT_MS + 1_500);
    await waitUntil(() => outcomes.length > 0, 2_000, "the outcome");
    expect(outcomes[0]).toMatchObject({ forward: "upstream_timeout" });
  });
});
