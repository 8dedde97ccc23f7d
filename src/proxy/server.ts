/**
 * The listener in front of the service.
 *
 * Owns: the per-request sequence — the client limits first (client-limits.ts: a head too
 * large or malformed, or a target in no form a proxy serves, is refused before any
 * validation work), the target made origin-form once (what access rules see is what the
 * service gets), read the request head (the client's headers minus
 * hop-by-hop and every identity header, strip before set; the tokens), ask the authenticator, then
 * either answer (401, 503) or forward with the injected headers and `X-Forwarded-*`. It
 * knows nothing about tokens beyond where they travel; a request can never crash the
 * process: any unexpected error is a 500 and a log line.
 */
import type { IncomingMessage, RequestListener, Server, ServerResponse } from "node:http";
import { wireHeaderValue } from "../contract/wire.js";
import { silentLogger, type Logger } from "../log.js";
import type { ForwardOutcome, Forwarder } from "./forward.js";
import { CLIENT_LIMIT_DEFAULTS, type ClientLimits } from "../config/schema.js";
import {
  admitRequest,
  createLimitedListener,
  guardBody,
  refusalBody,
  type RefusalObserver,
} from "./client-limits.js";
import { RequestHeadReader } from "./request-head.js";
import type { AuthOutcome, RequestAuthenticator } from "../validation/decision.js";
import type { Verdict } from "../validation/pipeline.js";
import { noTracing, type TraceSpan, type Tracing } from "../tracing.js";

export interface EdgeServerOptions {
  readonly authenticator: RequestAuthenticator;
  readonly forwarder: Forwarder;
  /** Lower-case names never forwarded from the client (the identity headers). */
  readonly isIdentityHeader: (lowerName: string) => boolean;
  /** What a client may send, and for how long (the `client` options). Default: their defaults. */
  readonly limits?: ClientLimits;
  /** Called once per request or connection refused by the client limits. */
  readonly onRefusal?: RefusalObserver;
  readonly logger?: Logger;
  /** Called once per request when it is over. */
  readonly onRequestDone?: (outcome: RequestOutcome) => void;
  /**
   * A server span per request (continuing the client's `traceparent`), the validation's
   * spans inside it, and a client span for the forward whose `traceparent` the service
   * gets in place of the client's. Default {@link noTracing}: the client's
   * `traceparent` goes through untouched.
   */
  readonly tracing?: Tracing;
}

export interface RequestOutcome {
  readonly auth: AuthOutcome;
  readonly forward: ForwardOutcome["kind"] | "not_forwarded";
  readonly status: number;
  readonly durationMs: number;
  /** The method and the origin-form target; absent for a request the client limits refused. */
  readonly method?: string;
  readonly target?: string;
  /** The service's `X-OpenStack-Request-ID`, when it answered with one. */
  readonly requestId?: string | undefined;
  /**
   * The user token, for the audit log to hash (`tokenHash`): never logged or labelled as
   * it is. Absent when the request had none.
   */
  readonly userToken?: string | undefined;
  /** The user token's verdict. */
  readonly user?: Verdict | undefined;
  /** How long validation took, ms (the decision's latency, not the service's). */
  readonly authMs?: number;
}

/**
 * Header lists ready for the wire, flat `[name, value, …]`: values above U+00FF as UTF-8
 * bytes, values with CR/LF (which could split headers) dropped. Memoised per list: the
 * header contract hands out the same frozen list for every request with the same token.
 */
const wireReady = new WeakMap<readonly (readonly [string, string])[], readonly string[]>();
function wireHeaders(pairs: readonly (readonly [string, string])[]): readonly string[] {
  let flat = wireReady.get(pairs);
  if (flat === undefined) {
    const out: string[] = [];
    for (const [name, value] of pairs) {
      const wire = wireHeaderValue(value);
      if (wire !== undefined) out.push(name, wire);
    }
    flat = out;
    if (Object.isFrozen(pairs)) wireReady.set(pairs, flat);
  }
  return flat;
}

/**
 * `headers` (flat `[name, value, …]`) with the client's `traceparent`/`tracestate` replaced
 * by `trace`'s.
 */
function replaceTraceHeaders(headers: string[], trace: Readonly<Record<string, string>>): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    const name = headers[i]?.toLowerCase();
    if (name === "traceparent" || name === "tracestate") headers.splice(i, 2);
  }
  for (const [name, value] of Object.entries(trace)) headers.push(name, value);
}

/** The listener in front of the service: {@link createEdgeHandler} behind the client limits. */
export function createEdgeServer(options: EdgeServerOptions): Server {
  return createLimitedListener(
    options.limits ?? CLIENT_LIMIT_DEFAULTS,
    createEdgeHandler(options),
    (reason) => options.onRefusal?.(reason),
  );
}

/**
 * The per-request sequence as a request handler, for a listener that outlives it (a
 * reload builds a new one; the listener calls the one in force).
 */
export function createEdgeHandler(options: EdgeServerOptions): RequestListener {
  const logger = options.logger ?? silentLogger;
  const heads = new RequestHeadReader(options.isIdentityHeader);
  const limits = options.limits ?? CLIENT_LIMIT_DEFAULTS;
  const refused: RefusalObserver = (reason) => options.onRefusal?.(reason);
  const tracing = options.tracing ?? noTracing;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = performance.now();
    const admission = admitRequest(req, limits);
    if (admission.kind !== "admit") {
      req.resume();
      if (admission.kind === "asterisk") {
        // `OPTIONS *` asks the server itself: nothing the service needs to see.
        res.writeHead(200, { "content-length": "0" }).end();
      } else {
        refused(admission.refusal.reason);
        const body = refusalBody(admission.refusal);
        res.shouldKeepAlive = false;
        res
          .writeHead(admission.refusal.status, {
            "content-type": "application/json",
            "content-length": String(Buffer.byteLength(body)),
            connection: "close",
          })
          .end(body);
      }
      const status = admission.kind === "asterisk" ? 200 : admission.refusal.status;
      options.onRequestDone?.({
        auth: "refused",
        forward: "not_forwarded",
        status,
        durationMs: performance.now() - started,
      });
      return;
    }
    // From here on, one target: the one access rules judge is the one forwarded.
    req.url = admission.target;
    if (!tracing.enabled) return serve(req, res, admission, started, undefined);
    const method = req.method ?? "GET";
    const q = admission.target.indexOf("?");
    return tracing.inSpan(
      method,
      "server",
      {
        "http.request.method": method,
        // Never the query: it can hold anything.
        "url.path": q < 0 ? admission.target : admission.target.slice(0, q),
      },
      (span) => serve(req, res, admission, started, span),
      { traceparent: req.headers["traceparent"], tracestate: req.headers["tracestate"] },
    );
  };

  /** An admitted request: read its head, authenticate, answer or forward. */
  const serve = async (
    req: IncomingMessage,
    res: ServerResponse,
    admission: { readonly target: string; readonly authority?: string | undefined },
    started: number,
    span: TraceSpan | undefined,
  ): Promise<void> => {
    const head = heads.read(req, admission.authority);
    guardBody(req, head.hasBody, limits.body_timeout_ms, refused);
    const headers = head.headers;
    const method = req.method ?? "GET";
    const decision = await options.authenticator.authenticate(head.userToken, head.serviceToken, {
      accept: head.accept,
      method,
      url: admission.target,
    });
    const authMs = performance.now() - started;
    const done = (forward: RequestOutcome["forward"], status: number, requestId?: string): void => {
      if (span !== undefined) {
        span.setAttribute("http.response.status_code", status);
        span.setAttribute("keystone_edge.outcome", decision.outcome);
        const user = decision.user;
        if (user !== undefined && user.kind !== "unavailable") {
          span.setAttribute("keystone_edge.tier", user.source);
        }
        // A server's 5xx is an error of the span (semantic conventions); a 4xx is not.
        if (status >= 500) span.end(`HTTP ${String(status)}`);
      }
      options.onRequestDone?.({
        auth: decision.outcome,
        forward,
        status,
        durationMs: performance.now() - started,
        method,
        target: admission.target,
        requestId,
        userToken: head.userToken,
        user: decision.user,
        authMs,
      });
    };
    if (decision.kind === "respond") {
      req.resume(); // discard any body
      const flat: string[] = decision.headers.flat();
      if (!decision.headers.some(([n]) => n.toLowerCase() === "content-length")) {
        flat.push("Content-Length", String(Buffer.byteLength(decision.body)));
      }
      res.writeHead(decision.status, flat);
      res.end(decision.body);
      done("not_forwarded", decision.status);
      return;
    }
    for (const item of wireHeaders(decision.headers)) headers.push(item);
    const forward = (onDone: () => void): void => {
      options.forwarder.forward(req, res, headers, head.hasBody, (outcome) => {
        // A service that failed mid-answer: the client already saw its status (and then a
        // cut connection); count what it saw, the failure goes to the upstream errors.
        const sent = outcome.kind !== "ok" && res.headersSent ? res.statusCode : undefined;
        done(
          outcome.kind,
          sent ?? ("status" in outcome ? outcome.status : 499),
          outcome.kind === "ok" ? outcome.requestId : undefined,
        );
        onDone();
      });
    };
    if (span === undefined) {
      forward(() => undefined);
      return;
    }
    // The service continues the trace from the forward's span, not from the client's.
    await tracing.inSpan("forward", "client", { "http.request.method": method }, (client) => {
      const trace: Record<string, string> = {};
      tracing.inject(trace);
      replaceTraceHeaders(headers, trace);
      return new Promise<void>((resolve) => {
        forward(() => {
          client.setAttribute("http.response.status_code", res.statusCode);
          resolve();
        });
      });
    });
  };
  return (req, res) => {
    handle(req, res).catch((error: unknown) => {
      logger.error("request failed unexpectedly", {
        error: error instanceof Error ? error.message : String(error),
      });
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            error: { code: 500, title: "Internal Server Error", message: "keystone-edge failed" },
          }),
        );
      } else {
        res.destroy();
      }
    });
  };
}
