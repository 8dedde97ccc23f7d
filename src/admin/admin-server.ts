/**
 * The admin listener: `/metrics`, `/healthz`, `/readyz`.
 *
 * Owns: the operator-facing HTTP surface: `/status` (JSON, status.ts) and the status page
 * at `/` (status-page.ts). `/healthz` answers while the
 * process runs; `/readyz` answers 200 only when every readiness check passes and lists
 * them either way (JSON, with `degraded: true` when any part serves in a degraded way —
 * readiness.ts says which are which), so a load balancer stops sending traffic to an
 * edge that cannot validate, and an operator sees why one is limping.
 */
import { createServer, type RequestListener, type Server, type ServerResponse } from "node:http";
import type { Registry } from "prom-client";
import type { AdminApi } from "./admin-api.js";
import type { ReadinessCheck } from "./readiness.js";
import type { EdgeStatus } from "../protocol/admin.js";
import { writeStatusPage } from "./status-page.js";
import { adminHostAllowed } from "./host-check.js";

export type { ReadinessCheck } from "./readiness.js";

/** What the admin listener answers from. */
export interface AdminHandlerOptions {
  registry: Registry;
  readiness: readonly ReadinessCheck[];
  /** `GET /status` (JSON) and the status page at `/`; none when absent. */
  status?: () => Promise<EdgeStatus>;
  /** The mutating operations (admin-api.ts); none when absent. */
  api?: AdminApi;
  /**
   * DNS names accepted in `Host` besides IP literals and `localhost` (`admin_allowed_hosts`,
   * lower case). Default: none.
   */
  allowedHosts?: readonly string[];
  /** Called once per request refused for its `Host`. */
  onHostRefused?: () => void;
}

/** The admin listener: {@link createAdminHandler} on a listener of its own. */
export function createAdminServer(options: AdminHandlerOptions): Server {
  return createAdminListener(createAdminHandler(options));
}

/** A listener for the admin handler: short head deadline, no client limits beyond it. */
export function createAdminListener(handler: RequestListener): Server {
  return createServer({ headersTimeout: 10_000, connectionsCheckingInterval: 1_000 }, handler);
}

/** The 421 of a request whose `Host` the admin listener does not answer to. */
export function writeHostRefusal(res: ServerResponse): void {
  res.writeHead(421, { "content-type": "application/json", connection: "close" }).end(
    JSON.stringify({
      code: "host_not_allowed",
      error: "this listener answers only to an IP address, localhost or admin_allowed_hosts",
    }) + "\n",
  );
}

/** The admin routes as a request handler, for a listener that outlives it (reloads). */
export function createAdminHandler(options: AdminHandlerOptions): RequestListener {
  const allowedHosts = new Set(options.allowedHosts ?? []);
  return (req, res) => {
    if (!adminHostAllowed(req.headers.host, allowedHosts)) {
      options.onHostRefused?.();
      writeHostRefusal(res);
      return;
    }
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (options.api?.handles(path) === true) {
      options.api.answer(req, res, path);
      return;
    }
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
    const status = options.status;
    if (status !== undefined && path === "/status") {
      status().then(
        (doc) => {
          res
            .writeHead(200, { "content-type": "application/json", "cache-control": "no-store" })
            .end(JSON.stringify(doc) + "\n");
        },
        () => {
          res.writeHead(500).end();
        },
      );
      return;
    }
    if (status !== undefined && writeStatusPage(path, res)) return;
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    if (path === "/readyz") {
      const checks = options.readiness.map((c) => ({ name: c.name, ...c.check() }));
      const ready = checks.every((c) => c.ok);
      const degraded = checks.some((c) => c.degraded === true);
      res
        .writeHead(ready ? 200 : 503, { "content-type": "application/json" })
        .end(JSON.stringify({ ready, degraded, checks }) + "\n");
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  };
}
