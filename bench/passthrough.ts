/**
 * A bare pass-through proxy built from keystone-edge's own listener and forwarder, with
 * validation switched off: the baseline `bench:proxy` subtracts to isolate the cost of
 * validation and the header contract. With HEADERS_JSON (a file of `[name, value]` pairs)
 * it adds those headers to every request, as the edge adds a token's identity headers:
 * the cost of the header bytes alone. Usage: node dist/bench/passthrough.js PORT UPSTREAM [HEADERS_JSON]
 */
import { readFileSync } from "node:fs";
import { Forwarder } from "../src/proxy/forward.js";
import { createEdgeServer } from "../src/proxy/server.js";
import { isIdentityHeader } from "../src/contract/strip.js";

const [port, upstream, headersFile] = process.argv.slice(2);
if (port === undefined || upstream === undefined) {
  process.stderr.write("usage: passthrough PORT UPSTREAM\n");
  process.exit(2);
}
const headers: readonly (readonly [string, string])[] = Object.freeze(
  headersFile === undefined
    ? []
    : (JSON.parse(readFileSync(headersFile, "utf8")) as [string, string][]).map((p) =>
        Object.freeze(p),
      ),
);
const forwarder = new Forwarder({ upstream, wwwAuthenticate: 'Keystone uri="none"' });
const server = createEdgeServer({
  forwarder,
  isIdentityHeader,
  authenticator: {
    authenticate: () => Promise.resolve({ kind: "forward", headers, outcome: "valid" }),
  },
});
server.keepAliveTimeout = 60_000;
server.listen(Number(port), "127.0.0.1");
process.on("SIGTERM", () => {
  server.close();
  void forwarder.close();
  server.closeAllConnections();
});
