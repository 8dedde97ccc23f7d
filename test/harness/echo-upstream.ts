/**
 * Owns: the stand-in OpenStack service — a Node HTTP server on a free loopback port that
 * answers every request with JSON of what it received (method, path, query, lower-cased
 * headers, body byte count), so tests and the sandbox can see exactly what keystone-edge
 * forwarded. Counts requests and bytes; never buffers a body.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface EchoRecord {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly bodyBytes: number;
}

export interface EchoUpstream {
  readonly url: string;
  readonly port: number;
  /** Requests seen so far. */
  readonly requests: () => number;
  stop(): Promise<void>;
}

/** Starts the echo service on 127.0.0.1 (port 0 = a free one). */
export async function startEchoUpstream(port = 0): Promise<EchoUpstream> {
  let count = 0;
  const server: Server = createServer((req, res) => {
    count++;
    let bodyBytes = 0;
    req.on("data", (chunk: Buffer) => {
      bodyBytes += chunk.length;
    });
    req.on("end", () => {
      const record: EchoRecord = {
        method: req.method ?? "",
        path: req.url ?? "",
        headers: req.headers,
        bodyBytes,
      };
      const body = JSON.stringify(record);
      res.writeHead(200, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
      });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    requests: () => count,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
