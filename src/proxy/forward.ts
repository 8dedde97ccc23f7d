/**
 * Forwarding to the local service with undici, streaming both ways.
 *
 * Owns: one undici Pool to the upstream, a `dispatch` handler that streams the client's
 * body up and the service's body down with back-pressure in both directions (nothing is
 * buffered whole: a multi-GB image upload keeps memory flat), hop-by-hop headers dropped
 * from the response, `WWW-Authenticate` added to a 401 from the service, and the failure
 * mapping: refused → 502, timeout → 504. A client that goes away aborts the upstream
 * request, so its socket is closed or reused, never leaked.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { Pool, type Dispatcher } from "undici";
import { connectionListed, isHopByHop } from "./hop-by-hop.js";

/** Options of {@link Forwarder}. */
export interface ForwarderOptions {
  /** The local service, e.g. `http://127.0.0.1:18774`. */
  readonly upstream: string;
  /** Connections to the service at most. Default 256. */
  readonly connections?: number;
  /** Time allowed for the service's response headers, and between body chunks. Default 60 000 ms. */
  readonly timeoutMs?: number;
  /** Idle keep-alive connections are closed after this. Default 30 000 ms. */
  readonly keepAliveTimeoutMs?: number;
  /** `WWW-Authenticate` value added to a 401 from the service that has none. */
  readonly wwwAuthenticate: string;
}

/** How one forwarded request ended. */
export type ForwardOutcome =
  | {
      readonly kind: "ok";
      readonly status: number;
      /** The service's `X-OpenStack-Request-ID`, when it sent one (the audit log's). */
      readonly requestId?: string;
    }
  | {
      readonly kind: "upstream_refused" | "upstream_timeout" | "upstream_error";
      readonly status: 502 | 504;
    }
  | { readonly kind: "client_aborted" };

const TIMEOUT_CODES = new Set([
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CONNECT_TIMEOUT",
]);

function errorBody(status: 502 | 504, message: string): string {
  return JSON.stringify({
    error: { code: status, title: status === 502 ? "Bad Gateway" : "Gateway Timeout", message },
  });
}

export class Forwarder {
  private readonly pool: Pool;
  private readonly origin: string;
  private readonly basePath: string;

  constructor(private readonly options: ForwarderOptions) {
    const url = new URL(options.upstream);
    this.origin = url.origin;
    this.basePath = url.pathname.replace(/\/+$/, "");
    const timeout = options.timeoutMs ?? 60_000;
    this.pool = new Pool(this.origin, {
      connections: options.connections ?? 256,
      pipelining: 1,
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 30_000,
      headersTimeout: timeout,
      bodyTimeout: timeout,
    });
  }

  /**
   * Streams `req` to the service with `headers` (flat `[name, value, …]`, already stripped
   * and injected) and the answer back to `res`. `hasBody`: the client announced a body
   * (`Content-Length` or `Transfer-Encoding`). Calls `done` exactly once.
   */
  forward(
    req: IncomingMessage,
    res: ServerResponse,
    headers: string[],
    hasBody: boolean,
    done: (outcome: ForwardOutcome) => void,
  ): void {
    let finished = false;
    const finish = (outcome: ForwardOutcome): void => {
      if (finished) return;
      finished = true;
      done(outcome);
    };
    let controller: Dispatcher.DispatchController | undefined;
    /** The service's `X-OpenStack-Request-ID`. */
    let requestId: string | undefined;
    const onClientGone = (): void => {
      if (res.writableFinished) return;
      // Settle first: abort() calls the handler's error path synchronously.
      finish({ kind: "client_aborted" });
      controller?.abort(new Error("client went away"));
    };
    res.once("close", onClientGone);
    const wwwAuthenticate = this.options.wwwAuthenticate;

    const fail = (error: Error): void => {
      if (finished) return;
      const code = (error as { code?: unknown }).code;
      const kind =
        typeof code === "string" && TIMEOUT_CODES.has(code)
          ? "upstream_timeout"
          : code === "ECONNREFUSED"
            ? "upstream_refused"
            : "upstream_error";
      const status = kind === "upstream_timeout" ? 504 : 502;
      if (!res.headersSent && !res.destroyed) {
        const body = errorBody(
          status,
          kind === "upstream_timeout"
            ? "The service did not answer in time."
            : "The service cannot be reached.",
        );
        res.writeHead(status, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
        });
        res.end(body);
      } else {
        res.destroy(error);
      }
      finish({ kind, status });
    };

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (res.destroyed) c.abort(new Error("client went away"));
      },
      onResponseStart(c, statusCode, upstreamHeaders: IncomingHttpHeaders) {
        const id = upstreamHeaders["x-openstack-request-id"];
        if (typeof id === "string") requestId = id;
        const out: Record<string, string | string[]> = {};
        const listed = connectionListed(upstreamHeaders.connection);
        for (const [name, value] of Object.entries(upstreamHeaders)) {
          if (value === undefined || isHopByHop(name, listed)) continue;
          out[name] = value;
        }
        if (statusCode === 401 && out["www-authenticate"] === undefined) {
          out["www-authenticate"] = wwwAuthenticate;
        }
        res.writeHead(statusCode, out);
        c.resume();
      },
      onResponseData(c, chunk) {
        if (!res.write(chunk)) {
          c.pause();
          res.once("drain", () => {
            c.resume();
          });
        }
      },
      onResponseEnd() {
        res.end();
        finish(
          requestId === undefined
            ? { kind: "ok", status: res.statusCode }
            : { kind: "ok", status: res.statusCode, requestId },
        );
      },
      onResponseError(_c, error) {
        fail(error);
      },
    };

    try {
      this.pool.dispatch(
        {
          origin: this.origin,
          path: this.basePath + (req.url ?? "/"),
          method: req.method ?? "GET",
          headers,
          body: hasBody ? req : null,
        },
        handler,
      );
    } catch (error) {
      fail(error instanceof Error ? error : new Error(String(error)));
    }
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
