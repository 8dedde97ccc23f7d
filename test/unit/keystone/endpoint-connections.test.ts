/**
 * `keystone.connections`: the pool to one Keystone endpoint never opens more sockets than
 * configured, whatever the concurrency; the calls beyond it wait for a socket and are all
 * answered. Against an in-process HTTP server (real sockets on loopback) that counts the
 * connections it accepts and the requests in flight at once.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

import { KeystoneEndpoint } from "../../../src/keystone/endpoint.js";

const servers: Server[] = [];
const endpoints: KeystoneEndpoint[] = [];
afterEach(async () => {
  for (const e of endpoints.splice(0)) await e.close();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** A Keystone stand-in answering each request after `delayMs`, counting sockets and load. */
async function slowServer(delayMs: number) {
  const seen = { sockets: 0, inFlight: 0, mostInFlight: 0, answered: 0 };
  const server = createServer((req, res) => {
    req.resume();
    seen.inFlight++;
    seen.mostInFlight = Math.max(seen.mostInFlight, seen.inFlight);
    setTimeout(() => {
      seen.inFlight--;
      seen.answered++;
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    }, delayMs);
  });
  server.on("connection", () => seen.sockets++);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${String(port)}/v3`, seen };
}

describe("KeystoneEndpoint connections", () => {
  it.each([1, 3])(
    "opens at most %i socket(s) for 12 concurrent calls, and answers them all",
    async (connections) => {
      const { url, seen } = await slowServer(20);
      const endpoint = new KeystoneEndpoint({ url, name: "test", connections, timeoutMs: 5_000 });
      endpoints.push(endpoint);
      const outcomes = await Promise.all(
        Array.from({ length: 12 }, () => endpoint.call({ method: "GET", path: "/auth/tokens" })),
      );
      expect(outcomes.map((o) => (o.kind === "response" ? o.status : o.kind))).toEqual(
        Array.from({ length: 12 }, () => 200),
      );
      expect(seen.sockets).toBe(connections);
      expect(seen.mostInFlight).toBe(connections);
      expect(seen.answered).toBe(12);
    },
  );
});
