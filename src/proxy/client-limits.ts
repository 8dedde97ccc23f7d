/**
 * What a client may send, and for how long: the client-facing listeners' first defence.
 *
 * Owns: the `client` options applied to a listener (Node's head-size cap, header count,
 * head, request and keep-alive timeouts, checked every second rather than Node's 30 s); the
 * checks run on every request head before any validation work (header count, one header's
 * size, the target's length and form, a second `Host`); the answer to a connection-level
 * failure (431, 414, 408, 400 written on the socket, then closed); `CONNECT` refused; and
 * the body deadline (a request body that stalls for `body_timeout_ms` loses its
 * connection, which aborts its upstream request). One event loop serves the region: every
 * check here costs in proportion to the head's own bytes, which are bounded.
 */
import {
  createServer,
  type IncomingMessage,
  type RequestListener,
  type Server,
  type ServerOptions,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Duplex } from "node:stream";
import type { TlsOptions } from "node:tls";
import type { ClientLimits } from "../config/schema.js";
import { readRequestTarget } from "./request-target.js";

/** Why a request or a connection was refused before validation (a metric label). */
export type RefusalReason =
  | "header_count"
  | "header_size"
  | "head_size"
  | "url_size"
  | "duplicate_host"
  | "bad_target"
  | "bad_request"
  | "method_not_allowed"
  | "headers_timeout"
  | "body_timeout"
  | "request_timeout"
  | "host_not_allowed"
  | "tls_handshake";

/** A refusal: the status, its metric reason and a message for the client. */
export interface Refusal {
  readonly status: 400 | 405 | 408 | 414 | 421 | 431;
  readonly reason: RefusalReason;
  readonly message: string;
}

/** What the head checks decided. */
export type Admission =
  | {
      readonly kind: "admit";
      /** The origin-form target: what access rules see and the service receives. */
      readonly target: string;
      /** Set for an absolute-form target: the request's `Host` from now on. */
      readonly authority: string | undefined;
    }
  /** `OPTIONS *`: answered by the listener itself. */
  | { readonly kind: "asterisk" }
  | { readonly kind: "refuse"; readonly refusal: Refusal };

/** Called once per refusal, with the listener it happened on. */
export type RefusalObserver = (reason: RefusalReason) => void;

const STATUS_TEXT: Readonly<Record<Refusal["status"], string>> = {
  400: "Bad Request",
  405: "Method Not Allowed",
  408: "Request Timeout",
  414: "URI Too Long",
  421: "Misdirected Request",
  431: "Request Header Fields Too Large",
};

/** Node's server options for a listener with these limits. */
export function listenerOptions(limits: ClientLimits): ServerOptions {
  return {
    maxHeaderSize: limits.max_head_bytes,
    headersTimeout: limits.headers_timeout_ms,
    requestTimeout: limits.request_timeout_ms,
    keepAliveTimeout: limits.keep_alive_timeout_ms,
    // Node checks the head and request deadlines on this period (default 30 s): a slowloris
    // connection is closed within a second of its deadline, not half a minute after.
    connectionsCheckingInterval: 1_000,
    requireHostHeader: true,
  };
}

/**
 * A listener with the client limits and the connection-level defences
 * ({@link guardListener}), passing each request to `handler`; HTTPS when `tls` is given
 * (tls.ts `tlsServerOptions`), a failed handshake counted as `tls_handshake`. The limits
 * can be changed later ({@link applyListenerLimits}); the handler is the caller's to make
 * indirect.
 */
export function createLimitedListener(
  limits: ClientLimits,
  handler: RequestListener,
  observe: RefusalObserver,
  tls?: TlsOptions,
): Server {
  const options = listenerOptions(limits);
  let server: Server;
  if (tls === undefined) {
    server = createServer(options, handler);
  } else {
    const secure = createHttpsServer({ ...options, ...tls }, handler);
    // Node destroys the socket itself; a scanner or a client without the certificate
    // asked for is counted, never logged one by one.
    secure.on("tlsClientError", () => {
      observe("tls_handshake");
    });
    server = secure;
  }
  applyListenerLimits(server, limits);
  guardListener(server, observe);
  return server;
}

/**
 * Applies the limits to a listener already built (a reload): they hold for connections
 * accepted from now on; Node reads them per connection.
 */
export function applyListenerLimits(server: Server, limits: ClientLimits): void {
  // One more than the limit, so that a head with too many fields is seen (Node silently
  // drops the ones past `maxHeadersCount`) and refused rather than truncated.
  server.maxHeadersCount = limits.max_header_count + 1;
  server.headersTimeout = limits.headers_timeout_ms;
  server.requestTimeout = limits.request_timeout_ms;
  server.keepAliveTimeout = limits.keep_alive_timeout_ms;
  (server as { maxHeaderSize?: number }).maxHeaderSize = limits.max_head_bytes;
}

/**
 * The checks on one parsed request head, before any validation: its size and shape, then
 * its target. The head was already capped at `max_head_bytes` by the parser.
 */
export function admitRequest(req: IncomingMessage, limits: ClientLimits): Admission {
  const raw = req.rawHeaders;
  if (raw.length / 2 > limits.max_header_count) {
    return refuse(
      431,
      "header_count",
      `more than ${String(limits.max_header_count)} header fields`,
    );
  }
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    if (name.length + value.length + 2 > limits.max_header_bytes) {
      return refuse(
        431,
        "header_size",
        `a header field is longer than ${String(limits.max_header_bytes)} bytes`,
      );
    }
    if (name.length === 4 && name.toLowerCase() === "host") hosts++;
  }
  if (hosts > 1) return refuse(400, "duplicate_host", "more than one Host header field");
  const url = req.url ?? "/";
  if (url.length > limits.max_url_bytes) {
    return refuse(
      414,
      "url_size",
      `the request target is longer than ${String(limits.max_url_bytes)} bytes`,
    );
  }
  const target = readRequestTarget(req.method ?? "GET", url);
  switch (target.kind) {
    case "invalid":
      return refuse(400, "bad_target", target.reason);
    case "asterisk":
      return target;
    case "origin":
      return { kind: "admit", target: target.target, authority: target.authority };
  }
}

function refuse(status: Refusal["status"], reason: RefusalReason, message: string): Admission {
  return { kind: "refuse", refusal: { status, reason, message } };
}

/** The JSON body of a refusal, shaped as the edge's other errors (and Keystone's). */
export function refusalBody(refusal: Refusal): string {
  return JSON.stringify({
    error: { code: refusal.status, title: STATUS_TEXT[refusal.status], message: refusal.message },
  });
}

/**
 * Writes a refusal straight onto a socket (no request object exists) and closes it. The
 * listener's sockets are half-open capable and no longer read: once the answer is flushed
 * the socket is destroyed, or a client that never closes its side would hold it for good.
 */
function writeRefusal(socket: Duplex, refusal: Refusal): void {
  const body = refusalBody(refusal);
  socket.end(
    `HTTP/1.1 ${String(refusal.status)} ${STATUS_TEXT[refusal.status]}\r\n` +
      "Connection: close\r\nContent-Type: application/json\r\n" +
      `Content-Length: ${String(Buffer.byteLength(body))}\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}

/** Sockets whose current request reached its handler (a deadline then is not the head's). */
const inHandler = new WeakSet<Duplex>();

/**
 * Installs the connection-level defences on a listener: parse failures and deadlines
 * answered (431, 414, 408, 400) and counted, `CONNECT` refused 405.
 */
export function guardListener(server: Server, observe: RefusalObserver): void {
  server.on("clientError", (error: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket) => {
    const maxHeadBytes = (server as { maxHeaderSize?: number }).maxHeaderSize ?? 16_384;
    const refusal = clientErrorRefusal(error, maxHeadBytes);
    if (refusal === undefined) {
      socket.destroy(); // a reset or an abort: nobody to answer
      return;
    }
    const reason =
      refusal.reason === "request_timeout" && !inHandler.has(socket)
        ? "headers_timeout"
        : refusal.reason;
    observe(reason);
    const message = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (socket.writable && message?.headersSent !== true) {
      writeRefusal(socket, { ...refusal, reason });
    } else {
      socket.destroy();
    }
  });
  server.on("connect", (_req: IncomingMessage, socket: Duplex) => {
    observe("method_not_allowed");
    if (socket.writable) {
      writeRefusal(socket, {
        status: 405,
        reason: "method_not_allowed",
        message: "CONNECT is not served here",
      });
    } else {
      socket.destroy();
    }
  });
  server.on("request", (req: IncomingMessage) => {
    const socket = req.socket;
    inHandler.add(socket);
    req.once("close", () => inHandler.delete(socket));
  });
}

function clientErrorRefusal(
  error: NodeJS.ErrnoException & { rawPacket?: Buffer },
  maxHeadBytes: number,
): Refusal | undefined {
  switch (error.code) {
    case "ECONNRESET":
    case "EPIPE":
      return undefined;
    case "HPE_HEADER_OVERFLOW": {
      // The request line alone did not fit (no line end within the cap, in the data that
      // overflowed it): the target is what is too long.
      const packet = error.rawPacket;
      const lineEnds = packet === undefined ? 0 : packet.indexOf("\n");
      return lineEnds === -1 || lineEnds > maxHeadBytes
        ? { status: 414, reason: "url_size", message: "the request line is too long" }
        : { status: 431, reason: "head_size", message: "the request head is too large" };
    }
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return {
        status: 408,
        reason: "request_timeout",
        message: "the request took too long to arrive",
      };
    default:
      return { status: 400, reason: "bad_request", message: "the request could not be parsed" };
  }
}

/**
 * The body deadline of one request: while its body is being received, a connection silent
 * for `bodyTimeoutMs` is closed (which aborts the request's upstream call). Cleared once
 * the body has arrived. No-op without a body or with a limit of 0.
 */
export function guardBody(
  req: IncomingMessage,
  hasBody: boolean,
  bodyTimeoutMs: number,
  observe: RefusalObserver,
): void {
  if (!hasBody || bodyTimeoutMs <= 0 || req.complete) return;
  req.setTimeout(bodyTimeoutMs, () => {
    if (req.complete) return;
    observe("body_timeout");
    req.socket.destroy();
  });
  const clear = (): void => {
    req.setTimeout(0);
  };
  req.once("end", clear);
}
