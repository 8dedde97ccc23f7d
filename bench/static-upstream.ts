/**
 * The static upstream of `bench:proxy`: a minimal Node HTTP server answering 200 with a
 * short body, in its own process so its CPU is counted apart. Usage: node
 * dist/bench/static-upstream.js PORT
 */
import { createServer } from "node:http";

const port = Number(process.argv[2]);
const body = Buffer.from('{"ok":true}');
const server = createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json", "content-length": body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, "127.0.0.1");
process.on("SIGTERM", () => {
  server.closeAllConnections();
  server.close();
});
