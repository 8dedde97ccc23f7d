/**
 * The regional Keystone face: an Identity v3 listener (`identity_listen`).
 *
 * Owns: routing one Identity request — `GET`/`HEAD /v3/auth/tokens` to the edge's own
 * answer (token-api.ts), `DELETE /v3/auth/tokens` relayed with the revocation applied at
 * the edge before the client hears Keystone's answer (read-your-writes), version discovery
 * (`GET /`, `GET /v3`) relayed with its links pointed back at the edge (discovery.ts),
 * everything else relayed to Keystone (relay.ts) — every answer's
 * `X-OpenStack-Request-ID` (Keystone's own on relayed ones), and the URL the edge is reached at: `identity_public_url` when set, else
 * the request's scheme + `Host`. The client limits come first, as on the proxy
 * (proxy/client-limits.ts): a head too large or malformed is refused before any work, and an
 * absolute-form target is made origin-form. Never crashes on a request: anything unexpected
 * is a Keystone-shaped 500, logged without tokens.
 */
import { randomUUID } from "node:crypto";
import {
  STATUS_CODES,
  type IncomingMessage,
  type RequestListener,
  type Server,
  type ServerResponse,
} from "node:http";

import { CLIENT_LIMIT_DEFAULTS, type ClientLimits } from "../config/schema.js";
import { silentLogger, type Logger } from "../log.js";
import {
  admitRequest,
  createLimitedListener,
  guardBody,
  type RefusalObserver,
} from "../proxy/client-limits.js";
import { isDiscoveryPath, rewriteDiscovery } from "./discovery.js";
import { sendError, type IdentityRelay } from "./relay.js";
import type { TokenApi } from "./token-api.js";
import type { Verdict } from "../validation/pipeline.js";

/** Which part of the Identity face answered, for metrics. */
export type IdentityRoute = "validate" | "check" | "revoke" | "discovery" | "relay";

/** A token validation the face answered, for the audit log. */
export interface TokenDecision {
  readonly method: "GET" | "HEAD";
  /** The path, without the query. */
  readonly path: string;
  readonly status: number;
  /** The answer's `X-OpenStack-Request-ID`. */
  readonly requestId: string;
  /** The subject token, for the audit log to hash: never logged as it is. */
  readonly subjectToken: string | undefined;
  /** Its verdict, when it was validated (the caller's token was valid). */
  readonly subject: Verdict | undefined;
  /** From the request's arrival to the answer, ms. */
  readonly latencyMs: number;
}

/** Options of {@link createIdentityServer}. */
export interface IdentityServerOptions {
  readonly tokenApi: TokenApi;
  readonly relay: IdentityRelay;
  /** The Identity roots of the Keystone endpoints (their URLs without `/v3`), for discovery. */
  readonly upstreamRoots: readonly string[];
  /**
   * `identity_public_url` without `/v3`; default: the request's scheme (`https` on a TLS
   * listener) + its `Host`.
   */
  readonly publicRoot?: string | undefined;
  /** What a client may send, and for how long (the `client` options). Default: their defaults. */
  readonly limits?: ClientLimits;
  /** Called once per request or connection refused by the client limits. */
  readonly onRefusal?: RefusalObserver;
  readonly logger?: Logger;
  /** Called once per request answered. Must not throw. */
  readonly onRequest?: (route: IdentityRoute, status: number) => void;
  /** Called once per `GET`/`HEAD /v3/auth/tokens` answered (the audit log). Must not throw. */
  readonly onTokenDecision?: (decision: TokenDecision) => void;
  /**
   * Keystone accepted a `DELETE /v3/auth/tokens` relayed through the face: the subject
   * token is revoked. Awaited before the client sees the answer (read-your-writes); a
   * rejection is logged. Default: nothing (the revocation feed catches up).
   */
  readonly onTokenRevoked?: (token: string) => Promise<void>;
}

/** Keystone's request ID format (oslo.middleware): `req-` and a UUID. */
const REQUEST_ID = /^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The client's `X-OpenStack-Request-ID` when it is in Keystone's format, else a new one. */
export function requestIdFor(sent: string | undefined): string {
  return sent !== undefined && REQUEST_ID.test(sent) ? sent : `req-${randomUUID()}`;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The Identity listener: {@link createIdentityHandler} behind the client limits. */
export function createIdentityServer(options: IdentityServerOptions): Server {
  return createLimitedListener(
    options.limits ?? CLIENT_LIMIT_DEFAULTS,
    createIdentityHandler(options),
    (reason) => options.onRefusal?.(reason),
  );
}

/** Routing one Identity request, for a listener that outlives it (a reload builds anew). */
export function createIdentityHandler(options: IdentityServerOptions): RequestListener {
  const logger = options.logger ?? silentLogger;
  const limits = options.limits ?? CLIENT_LIMIT_DEFAULTS;
  const refused: RefusalObserver = (reason) => options.onRefusal?.(reason);
  /** The authority of an absolute-form target, which stands for the request's `Host`. */
  const authorities = new WeakMap<IncomingMessage, string>();
  const publicRoot = (req: IncomingMessage): string =>
    (
      options.publicRoot ??
      // The scheme the client used: https on a TLS listener (`tls`).
      `${"encrypted" in req.socket ? "https" : "http"}://${authorities.get(req) ?? header(req, "host") ?? "localhost"}`
    ).replace(/\/+$/, "");

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = performance.now();
    // Every answer carries one, as Keystone's do; a relayed answer carries Keystone's own.
    const requestId = requestIdFor(header(req, "x-openstack-request-id"));
    res.setHeader("x-openstack-request-id", requestId);
    const admission = admitRequest(req, limits);
    if (admission.kind !== "admit") {
      req.resume();
      if (admission.kind === "asterisk") {
        res.writeHead(200, { "content-length": "0" }).end();
        return;
      }
      refused(admission.refusal.reason);
      res.shouldKeepAlive = false;
      sendError(
        res,
        admission.refusal.status,
        statusTitle(admission.refusal.status),
        admission.refusal.message,
      );
      return;
    }
    req.url = admission.target;
    if (admission.authority !== undefined) authorities.set(req, admission.authority);
    guardBody(
      req,
      req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined,
      limits.body_timeout_ms,
      refused,
    );
    const url = admission.target;
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    const method = req.method ?? "GET";
    if (path.replace(/\/+$/, "") === "/v3/auth/tokens" && (method === "GET" || method === "HEAD")) {
      req.resume();
      const subjectToken = header(req, "x-subject-token");
      const answer = await options.tokenApi.answer({
        method,
        authToken: header(req, "x-auth-token"),
        subjectToken,
        query: new URLSearchParams(q < 0 ? "" : url.slice(q + 1)),
        accessRulesVersion: header(req, "openstack-identity-access-rules"),
        publicUrl: `${publicRoot(req)}/v3`,
      });
      res.writeHead(answer.status, answer.headers.flat()).end(answer.body);
      options.onRequest?.(method === "HEAD" ? "check" : "validate", answer.status);
      options.onTokenDecision?.({
        method,
        path,
        status: answer.status,
        requestId,
        subjectToken,
        subject: answer.subject,
        latencyMs: performance.now() - started,
      });
      return;
    }
    const subject = header(req, "x-subject-token");
    const onRevoked = options.onTokenRevoked;
    if (
      method === "DELETE" &&
      path.replace(/\/+$/, "") === "/v3/auth/tokens" &&
      subject !== undefined &&
      onRevoked !== undefined
    ) {
      const result = await options.relay.relay(req, res, url, undefined, async (status) => {
        if (status >= 200 && status < 300) await onRevoked(subject);
      });
      options.onRequest?.("revoke", statusOf(result));
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

  return (req, res) => {
    handle(req, res).catch((error: unknown) => {
      logger.error("Identity request failed unexpectedly", {
        method: req.method,
        error: error instanceof Error ? error.message : String(error),
      });
      sendError(res, 500, "Internal Server Error", "An unexpected error prevented the request.");
    });
  };
}

function statusTitle(status: number): string {
  return STATUS_CODES[status] ?? "Bad Request";
}

function statusOf(result: Awaited<ReturnType<IdentityRelay["relay"]>>): number {
  switch (result.kind) {
    case "relayed":
      return result.status;
    case "unavailable":
      // A client that left got no answer: counted as the proxy counts it, not as a 503.
      return result.reason === "client_aborted" ? 499 : result.reason === "timeout" ? 504 : 503;
    case "too_large":
      return 413;
  }
}
