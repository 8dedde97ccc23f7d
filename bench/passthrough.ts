/**
 * A bare pass-through proxy built from keystone-edge's own listener and forwarder, with
 * validation switched off: the baseline `bench:proxy` subtracts to isolate the cost of
 * validation and the header contract. Usage: node dist/bench/passthrough.js PORT UPSTREAM
 */
import { Forwarder } from "../src/proxy/forward.js";
import { createEdgeServer } from "../src/proxy/server.js";
import { isIdentityHeader } from "../src/contract/strip.js";

const [port, upstream] = process.argv.slice(2);
if (port === undefined || upstream === undefined) {
  process.stderr.write("usage: passthrough PORT UPSTREAM\n");
  process.exit(2);
}
const forwarder = new Forwarder({ upstream, wwwAuthenticate: 'Keystone uri="none"' });
const server = createEdgeServer({
  forwarder,
  isIdentityHeader,
  authenticator: {
    authenticate: () => Promise.resolve({ kind: "forward", headers: [], outcome: "bypass" }),
  },
});
server.keepAliveTimeout = 60_000;
server.listen(Number(port), "127.0.0.1");
process.on("SIGTERM", () => {
  server.close();
  void forwarder.close();
  server.closeAllConnections();
});
