/**
 * The rest of the Identity API, relayed to the Keystone endpoints.
 *
 * Owns: taking a client's request the edge does not answer itself (issuing tokens, the
 * catalog, users, projects, …) to the first Keystone endpoint that takes it — in the
 * configured order, past endpoints whose breaker is open, within `request_timeout_ms` —
 * and streaming the answer back. The request body is read first (at most
 * `maxBodyBytes`, default 1 MiB: Identity requests are small), so that a request refused
 * at connect time, or an idempotent one that failed or met a 502/503/504, can go to the
 * next endpoint. Hop-by-hop headers and `Host` stop here. `transform` rewrites a
 * buffered answer (version discovery). No endpoint taking it: 503 with `Retry-After`.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";

import type { RelayOutcome } from "../keystone/endpoint.js";
import type { KeystoneEndpoints } from "../keystone/endpoint-set.js";
import { retryAfterValue } from "../contract/responses.js";
import { silentLogger, type Logger } from "../log.js";
import { connectionListed, isHopByHop } from "../proxy/hop-by-hop.js";
import { keystoneError } from "./token-api.js";

/** Options of {@link IdentityRelay}. */
export interface IdentityRelayOptions {
  readonly endpoints: KeystoneEndpoints;
  /** Whole walk over the endpoints, until the answer's headers, ms (`request_timeout_ms`). */
  readonly requestTimeoutMs: number;
  /** Largest request body relayed, bytes. Default 1 MiB. */
  readonly maxBodyBytes?: number;
  /** `Retry-After` of a 503, seconds. Default 5. */
  readonly retryAfterSeconds?: number;
  readonly logger?: Logger;
}

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);
/** Failures where the request cannot have reached Keystone. */
const NOT_SENT =
  /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|UND_ERR_CONNECT_TIMEOUT/;

/** Why a relayed request got no answer from any endpoint. */
export type RelayResult =
  | { readonly kind: "relayed"; readonly status: number; readonly endpoint: string }
  | { readonly kind: "unavailable"; readonly detail: string }
  | { readonly kind: "too_large" };

export class IdentityRelay {
  private readonly maxBodyBytes: number;
  private readonly retryAfter: string;
  private readonly logger: Logger;

  constructor(private readonly options: IdentityRelayOptions) {
    this.maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
    this.retryAfter = retryAfterValue(options.retryAfterSeconds);
    this.logger = options.logger ?? silentLogger;
  }

  /** Relays `req` (its path and query: `path`) and answers `res`. Never rejects. */
  async relay(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    transform?: (body: string) => string,
  ): Promise<RelayResult> {
    const body = await readBody(req, this.maxBodyBytes);
    if (body === "too_large") {
      sendError(res, 413, "Request Entity Too Large", "The request body is too large.");
      return { kind: "too_large" };
    }
    const method = req.method ?? "GET";
    const headers = relayedHeaders(req.rawHeaders);
    const deadline = performance.now() + this.options.requestTimeoutMs;
    const guards = this.options.endpoints.guards;
    let last = "no endpoint in rotation";
    for (const [i, guard] of guards.entries()) {
      const remainingMs = Math.floor(deadline - performance.now());
      if (remainingMs <= 0) {
        last = `no answer within ${String(this.options.requestTimeoutMs)} ms`;
        break;
      }
      const admission = guard.breaker.admit();
      if (admission === undefined) continue;
      const outcome = await guard.endpoint.relay({
        method,
        path,
        headers,
        body: body.length === 0 && (method === "GET" || method === "HEAD") ? null : body,
        timeoutMs: Math.min(remainingMs, guard.endpoint.timeoutMs),
      });
      this.options.endpoints.report(guard, admission, outcome);
      const more = i < guards.length - 1;
      if (outcome.kind === "failed") {
        last = `${guard.label}: ${outcome.detail}`;
        if (IDEMPOTENT.has(method) || NOT_SENT.test(outcome.detail)) continue;
        break;
      }
      if (more && IDEMPOTENT.has(method) && [502, 503, 504].includes(outcome.status)) {
        outcome.body.resume();
        last = `${guard.label}: HTTP ${String(outcome.status)}`;
        continue;
      }
      await this.answer(res, outcome, method, transform);
      return { kind: "relayed", status: outcome.status, endpoint: guard.label };
    }
    this.logger.warn("Identity request not relayed: no Keystone endpoint took it", {
      method,
      detail: last,
    });
    sendError(
      res,
      503,
      "Service Unavailable",
      "No Keystone endpoint answers now; try again later.",
      [["Retry-After", this.retryAfter]],
    );
    return { kind: "unavailable", detail: last };
  }

  private async answer(
    res: ServerResponse,
    outcome: Extract<RelayOutcome, { readonly kind: "response" }>,
    method: string,
    transform: ((body: string) => string) | undefined,
  ): Promise<void> {
    const listed = connectionListed(outcome.headers["connection"]);
    const headers: [string, string | string[]][] = [];
    for (const [name, value] of Object.entries(outcome.headers)) {
      if (value === undefined || isHopByHop(name, listed)) continue;
      if (transform !== undefined && name === "content-length") continue;
      headers.push([name, value]);
    }
    try {
      if (transform !== undefined && method !== "HEAD") {
        const chunks: Buffer[] = [];
        for await (const chunk of outcome.body) chunks.push(chunk as Buffer);
        const text = transform(Buffer.concat(chunks).toString("utf8"));
        headers.push(["content-length", String(Buffer.byteLength(text))]);
        res.writeHead(outcome.status, Object.fromEntries(headers)).end(text);
        return;
      }
      res.writeHead(outcome.status, Object.fromEntries(headers));
      await pipeline(outcome.body, res);
    } catch {
      // The client went away, or Keystone broke off mid-answer: nothing left to tell.
      outcome.body.destroy();
      res.destroy();
    }
  }
}

/** The client's headers minus hop-by-hop ones, `Host` and `Content-Length` (set anew). */
function relayedHeaders(raw: readonly string[]): Record<string, string | string[]> {
  let listed: ReadonlySet<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] ?? "").toLowerCase() === "connection") listed = connectionListed(raw[i + 1]);
  }
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] ?? "").toLowerCase();
    const value = raw[i + 1] ?? "";
    if (name === "host" || name === "content-length" || isHopByHop(name, listed)) continue;
    const prior = out[name];
    out[name] = prior === undefined ? value : [...(Array.isArray(prior) ? prior : [prior]), value];
  }
  return out;
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | "too_large"> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      const b = chunk as Buffer;
      size += b.length;
      if (size > limit) return "too_large";
      chunks.push(b);
    }
  } catch {
    return Buffer.alloc(0);
  }
  return Buffer.concat(chunks);
}

/** A Keystone-shaped JSON error. */
export function sendError(
  res: ServerResponse,
  status: number,
  title: string,
  message: string,
  extra: readonly (readonly [string, string])[] = [],
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = keystoneError(status, title, message);
  res
    .writeHead(status, {
      "Content-Type": "application/json",
      "Content-Length": String(Buffer.byteLength(body)),
      ...Object.fromEntries(extra),
    })
    .end(body);
}
