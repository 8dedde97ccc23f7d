/**
 * The regional Keystone face: an Identity v3 listener (`identity_listen`).
 *
 * Owns: routing one Identity request — `GET`/`HEAD /v3/auth/tokens` to the edge's own
 * answer (token-api.ts), version discovery (`GET /`, `GET /v3`) relayed with its links
 * pointed back at the edge (discovery.ts), everything else relayed to Keystone
 * (relay.ts) — and the URL the edge is reached at: `identity_public_url` when set, else
 * `http://` + the request's `Host`. Never crashes on a request: anything unexpected is a
 * Keystone-shaped 500, logged without tokens.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

import { silentLogger, type Logger } from "../log.js";
import { isDiscoveryPath, rewriteDiscovery } from "./discovery.js";
import { sendError, type IdentityRelay } from "./relay.js";
import type { TokenApi } from "./token-api.js";

/** Which part of the Identity face answered, for metrics. */
export type IdentityRoute = "validate" | "check" | "discovery" | "relay";

/** Options of {@link createIdentityServer}. */
export interface IdentityServerOptions {
  readonly tokenApi: TokenApi;
  readonly relay: IdentityRelay;
  /** The Identity roots of the Keystone endpoints (their URLs without `/v3`), for discovery. */
  readonly upstreamRoots: readonly string[];
  /** `identity_public_url` without `/v3`; default: `http://` + the request's `Host`. */
  readonly publicRoot?: string | undefined;
  readonly logger?: Logger;
  /** Called once per request answered. Must not throw. */
  readonly onRequest?: (route: IdentityRoute, status: number) => void;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function createIdentityServer(options: IdentityServerOptions): Server {
  const logger = options.logger ?? silentLogger;
  const publicRoot = (req: IncomingMessage): string =>
    (options.publicRoot ?? `http://${header(req, "host") ?? "localhost"}`).replace(/\/+$/, "");

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    const method = req.method ?? "GET";
    if (path.replace(/\/+$/, "") === "/v3/auth/tokens" && (method === "GET" || method === "HEAD")) {
      req.resume();
      const answer = await options.tokenApi.answer({
        method,
        authToken: header(req, "x-auth-token"),
        subjectToken: header(req, "x-subject-token"),
        query: new URLSearchParams(q < 0 ? "" : url.slice(q + 1)),
        accessRulesVersion: header(req, "openstack-identity-access-rules"),
        publicUrl: `${publicRoot(req)}/v3`,
      });
      res.writeHead(answer.status, answer.headers.flat()).end(answer.body);
      options.onRequest?.(method === "HEAD" ? "check" : "validate", answer.status);
      return;
    }
    if (isDiscoveryPath(path) && (method === "GET" || method === "HEAD")) {
      const edgeRoot = publicRoot(req);
      const result = await options.relay.relay(req, res, url, (body) =>
        options.upstreamRoots.reduce((text, root) => rewriteDiscovery(text, root, edgeRoot), body),
      );
      options.onRequest?.("discovery", statusOf(result));
      return;
    }
    const result = await options.relay.relay(req, res, url);
    options.onRequest?.("relay", statusOf(result));
  };

  return createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      logger.error("Identity request failed unexpectedly", {
        method: req.method,
        error: error instanceof Error ? error.message : String(error),
      });
      sendError(res, 500, "Internal Server Error", "An unexpected error prevented the request.");
    });
  });
}

function statusOf(result: Awaited<ReturnType<IdentityRelay["relay"]>>): number {
  switch (result.kind) {
    case "relayed":
      return result.status;
    case "unavailable":
      return 503;
    case "too_large":
      return 413;
  }
}
