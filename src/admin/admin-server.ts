/**
 * The admin listener: `/metrics`, `/healthz`, `/readyz`.
 *
 * Owns: the operator-facing HTTP surface of the first cut. `/healthz` answers while the
 * process runs; `/readyz` answers 200 only when every readiness check passes and lists
 * them either way (JSON), so a load balancer stops sending traffic to an edge that cannot
 * validate.
 */
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

/** One named readiness condition. */
export interface ReadinessCheck {
  readonly name: string;
  readonly check: () => { readonly ok: boolean; readonly detail?: string };
}

export function createAdminServer(options: {
  registry: Registry;
  readiness: readonly ReadinessCheck[];
}): Server {
  return createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      options.registry.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": options.registry.contentType }).end(text);
        },
        () => {
          res.writeHead(500).end();
        },
      );
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    if (path === "/readyz") {
      const checks = options.readiness.map((c) => ({ name: c.name, ...c.check() }));
      const ready = checks.every((c) => c.ok);
      res
        .writeHead(ready ? 200 : 503, { "content-type": "application/json" })
        .end(JSON.stringify({ ready, checks }) + "\n");
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  });
}
