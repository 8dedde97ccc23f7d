/**
 * The rest of the Identity API, relayed to the Keystone endpoints.
 *
 * Owns: taking a client's request the edge does not answer itself (issuing tokens, the
 * catalog, users, projects, …) to the first Keystone endpoint that takes it — in the
 * configured order, past endpoints out of rotation, within its own deadline
 * (`identity_relay.timeout_ms`: issuing a token may take seconds; validations keep theirs) — and
 * streaming the answer back; and keeping that traffic, which anyone reaching
 * `identity_listen` can send unauthenticated, from touching token validation. The request
 * body is read first (so that a request refused at connect time, or an idempotent one that
 * failed or met a 502/503/504, can go to the next endpoint). Hop-by-hop headers and `Host`
 * stop here. `transform` rewrites a buffered answer (version discovery).
 *
 * Isolation from validation, and why each piece is as it is:
 * - Own pools. The relay's endpoints are its own {@link KeystoneEndpoint}s (same URLs, TLS
 *   and deadlines as the validation ones, `identity_relay.connections` each): a flood of
 *   slow `POST /v3/auth/tokens` fills the relay's sockets, never the validations'.
 * - Own limit, no queue of its own. At most `maxInFlight` requests are with Keystone through
 *   the relay (from the first endpoint tried until the answer is passed on); one more is
 *   answered 503 (`saturated`, `Retry-After`) at once. Waiting for a slot would only turn
 *   overload into latency while holding the client's socket and buffered body, and the
 *   deadline would fail most waiters anyway; a prompt 503 tells clients to back off. Bursts
 *   are still absorbed: with `maxInFlight` above `connections`, requests beyond an
 *   endpoint's sockets wait in its pool — a queue bounded by `maxInFlight` and by the
 *   deadline.
 * - No breakers of its own, and never a report to the validation breakers: it only reads
 *   them (`inRotation`) to skip endpoints known down. Relay outcomes are shaped by whoever
 *   sends them — a crafted request can make Keystone slow or answer 5xx at will — so they
 *   are no evidence of an endpoint's health: reported to the validation breakers they
 *   would let a flood take Keystone out of rotation for the whole region, and fed to
 *   breakers of the relay's own they would let it shut the relay for everyone else.
 *   Validations, the revocation feed, the service token and the background probe (trusted
 *   traffic) keep the breakers true; an endpoint dead before they notice costs a relayed
 *   request its deadline's share, and failover takes it to the next.
 * - Bounded memory. A body larger than `maxBodyBytes` is refused with 413 (by its
 *   `Content-Length` before a byte is read, else as it streams). Every body's bytes are
 *   reserved in a {@link ByteBudget} of `maxBufferedBytes` shared by all requests before
 *   they are buffered; a body that would overflow it is answered 503 (`buffer_full`) and
 *   not buffered. The rest of a refused body is read and discarded, never kept. The slot
 *   and the bytes are given back when the request is done, in every path: answered,
 *   refused, failed, the client gone mid-body (at once) or while Keystone works (when its
 *   call settles, within the deadline).
 *
 * Size: one relay — pools, admission, the byte budget and streaming share the state of a
 * request in flight.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";

import type { KeystoneEndpoint, RelayOutcome } from "../keystone/endpoint.js";
import type { KeystoneEndpoints } from "../keystone/endpoint-set.js";
import { retryAfterValue } from "../contract/responses.js";
import { silentLogger, ThrottledLog, type Logger } from "../log.js";
import { connectionListed, isHopByHop } from "../proxy/hop-by-hop.js";
import { forwardedNode, peerAddress } from "../proxy/request-head.js";
import { ByteBudget, type Reservation } from "./byte-budget.js";
import { InFlightLimit } from "./in-flight-limit.js";
import { keystoneError } from "./token-api.js";

/** Default {@link IdentityRelayOptions.maxInFlight}. */
export const DEFAULT_RELAY_MAX_IN_FLIGHT = 64;
/** Default {@link IdentityRelayOptions.maxBodyBytes}: 1 MiB (Identity requests are small). */
export const DEFAULT_RELAY_MAX_BODY_BYTES = 1024 * 1024;
/** Default {@link IdentityRelayOptions.maxBufferedBytes}: 16 MiB. */
export const DEFAULT_RELAY_MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

/** Why the relay refused a request before it reached Keystone (a bounded metric label). */
export type RelayRejection = "saturated" | "buffer_full" | "too_large";

/** What the relay reports, for metrics. Each must not throw. */
export interface RelayObserver {
  /** Requests in flight to Keystone through the relay went up (+1) or down (−1). */
  readonly inFlight?: (delta: 1 | -1) => void;
  /** Bytes of request bodies held went up or down by `deltaBytes`. */
  readonly bufferedBytes?: (deltaBytes: number) => void;
  /** A request was refused before it reached Keystone. */
  readonly rejected?: (reason: RelayRejection) => void;
}

/** Options of {@link IdentityRelay}. */
export interface IdentityRelayOptions {
  /**
   * The relay's own endpoints, in the configured order: pools of their own, never those of
   * validation. The relay owns them: {@link IdentityRelay.close} closes them.
   */
  readonly endpoints: readonly KeystoneEndpoint[];
  /**
   * Whether an endpoint (by name) is in rotation: read from the validation breakers
   * ({@link validationRotation}), never reported to. Default: every endpoint is.
   */
  readonly inRotation?: (name: string) => boolean;
  /**
   * Whole walk over the endpoints, until the answer's headers, ms
   * (`identity_relay.timeout_ms`: a relayed call is not a validation and gets its own).
   */
  readonly requestTimeoutMs: number;
  /** Requests in flight to Keystone through the relay at most; one more: 503. Default 64. */
  readonly maxInFlight?: number;
  /** Largest request body relayed, bytes; larger: 413. Default 1 MiB. */
  readonly maxBodyBytes?: number;
  /** Request body bytes buffered at once, all requests together; beyond: 503. Default 16 MiB. */
  readonly maxBufferedBytes?: number;
  /** `Retry-After` of a 503 when no endpoint takes a request, seconds. Default 5. */
  readonly retryAfterSeconds?: number;
  /** `Retry-After` of a 503 when the relay is saturated or its buffer full, seconds. Default 1. */
  readonly saturatedRetryAfterSeconds?: number;
  readonly logger?: Logger;
  readonly observe?: RelayObserver;
}

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);
/** Failures where the request cannot have reached Keystone. */
const NOT_SENT =
  /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|UND_ERR_CONNECT_TIMEOUT/;

/** What came of a relayed request. */
export type RelayResult =
  | { readonly kind: "relayed"; readonly status: number; readonly endpoint: string }
  | {
      /** Answered 503 (or, `client_aborted`, not answered: the client is gone). */
      readonly kind: "unavailable";
      /**
       * `no_endpoint`: no endpoint took it; `timeout`: none answered within the deadline
       * (answered 504); `saturated`: `maxInFlight` reached;
       * `buffer_full`: its body would overflow `maxBufferedBytes`; `client_aborted`: the
       * client went away before the answer.
       */
      readonly reason: "no_endpoint" | "timeout" | "saturated" | "buffer_full" | "client_aborted";
      readonly detail: string;
    }
  | { readonly kind: "too_large" };

/** Reads the validation breakers: an endpoint is in rotation while its breaker is closed. */
export function validationRotation(set: KeystoneEndpoints): (name: string) => boolean {
  return (name) => set.guards.find((g) => g.label === name)?.breaker.state().kind === "closed";
}

export class IdentityRelay {
  private readonly maxBodyBytes: number;
  private readonly retryAfter: string;
  private readonly saturatedRetryAfter: string;
  private readonly logger: Logger;
  /** "Not relayed" is logged once per 10 s at most: clients can repeat it at will. */
  private readonly notRelayed: ThrottledLog;
  private readonly limit: InFlightLimit;
  private readonly budget: ByteBudget;

  constructor(private readonly options: IdentityRelayOptions) {
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_RELAY_MAX_BODY_BYTES;
    this.retryAfter = retryAfterValue(options.retryAfterSeconds);
    this.saturatedRetryAfter = retryAfterValue(options.saturatedRetryAfterSeconds ?? 1);
    this.logger = options.logger ?? silentLogger;
    this.notRelayed = new ThrottledLog((m, f) => {
      this.logger.warn(m, f);
    });
    const observe = options.observe;
    this.limit = new InFlightLimit({
      max: options.maxInFlight ?? DEFAULT_RELAY_MAX_IN_FLIGHT,
      ...(observe?.inFlight === undefined ? {} : { onChange: observe.inFlight }),
    });
    this.budget = new ByteBudget({
      maxBytes: options.maxBufferedBytes ?? DEFAULT_RELAY_MAX_BUFFERED_BYTES,
      ...(observe?.bufferedBytes === undefined ? {} : { onChange: observe.bufferedBytes }),
    });
  }

  /** Requests with Keystone through the relay now. */
  get inFlight(): number {
    return this.limit.inFlight;
  }

  /** Request body bytes held now, all requests together. */
  get bufferedBytes(): number {
    return this.budget.usedBytes;
  }

  /**
   * Relays `req` (its path and query: `path`) and answers `res`. Never rejects.
   * `beforeAnswer` runs once Keystone's answer is in and before the client sees any of it,
   * with its status (read-your-writes: a revocation takes effect at the edge before the
   * client learns it succeeded); a rejection is logged and the answer still passed on.
   */
  async relay(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    transform?: (body: string) => string,
    beforeAnswer?: (status: number) => Promise<void>,
  ): Promise<RelayResult> {
    const reservation = this.budget.open();
    try {
      const read = await readBody(req, this.maxBodyBytes, reservation);
      switch (read.kind) {
        case "too_large":
          this.options.observe?.rejected?.("too_large");
          sendError(res, 413, "Request Entity Too Large", "The request body is too large.");
          return { kind: "too_large" };
        case "buffer_full":
          return this.refuse(res, "buffer_full", "request bodies in flight fill the buffer");
        case "aborted":
          return {
            kind: "unavailable",
            reason: "client_aborted",
            detail: "the client went away before its request's body was in",
          };
        case "read":
          break;
      }
      const slot = this.limit.tryAcquire();
      if (slot === undefined) {
        return this.refuse(res, "saturated", "requests in flight to Keystone at the limit");
      }
      try {
        return await this.forward(req, res, path, read.body, transform, beforeAnswer);
      } finally {
        slot.release();
      }
    } finally {
      reservation.release();
    }
  }

  /** Closes the relay's pools (requests in flight finish first). */
  async close(): Promise<void> {
    await Promise.all(this.options.endpoints.map((e) => e.close()));
  }

  /** 503 for a request refused before Keystone: saturated, or the buffer full. */
  private refuse(
    res: ServerResponse,
    reason: "saturated" | "buffer_full",
    detail: string,
  ): RelayResult {
    this.options.observe?.rejected?.(reason);
    sendError(
      res,
      503,
      "Service Unavailable",
      "The Identity service is too busy to take this request now; try again later.",
      [["Retry-After", this.saturatedRetryAfter]],
    );
    return { kind: "unavailable", reason, detail };
  }

  private async forward(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    body: Buffer,
    transform: ((body: string) => string) | undefined,
    beforeAnswer: ((status: number) => Promise<void>) | undefined,
  ): Promise<RelayResult> {
    let clientGone = false;
    const onClose = (): void => {
      if (!res.writableFinished) clientGone = true;
    };
    /** Whether the client went away (set by the 'close' listener, between awaits). */
    const gone = (): boolean => clientGone;
    res.once("close", onClose);
    try {
      const method = req.method ?? "GET";
      const headers = relayedHeaders(req.rawHeaders, peerAddress(req.socket.remoteAddress));
      const deadline = performance.now() + this.options.requestTimeoutMs;
      const endpoints = this.options.endpoints;
      const inRotation = this.options.inRotation ?? (() => true);
      let last = "no endpoint in rotation";
      /** The walk ended on a deadline: 504, not 503 (Keystone may still be working on it). */
      let timedOut = false;
      for (const [i, endpoint] of endpoints.entries()) {
        if (gone()) break;
        const remainingMs = Math.floor(deadline - performance.now());
        if (remainingMs <= 0) {
          last = `no answer within ${String(this.options.requestTimeoutMs)} ms`;
          timedOut = true;
          break;
        }
        if (!inRotation(endpoint.name)) continue;
        const outcome = await endpoint.relay({
          method,
          path,
          headers,
          body: body.length === 0 && (method === "GET" || method === "HEAD") ? null : body,
          timeoutMs: Math.min(remainingMs, endpoint.timeoutMs),
        });
        if (outcome.kind === "failed") {
          last = `${endpoint.name}: ${outcome.detail}`;
          timedOut = outcome.reason === "timeout";
          if (IDEMPOTENT.has(method) || NOT_SENT.test(outcome.detail)) continue;
          break;
        }
        if (beforeAnswer !== undefined) {
          // Even when the client has gone: Keystone did what it asked.
          await beforeAnswer(outcome.status).catch((error: unknown) => {
            this.logger.error(
              "Identity relay: the edge's own step after Keystone's answer failed",
              {
                error: error instanceof Error ? error.message : String(error),
              },
            );
          });
        }
        if (gone()) {
          discard(outcome.body);
          break;
        }
        const more = i < endpoints.length - 1;
        if (more && IDEMPOTENT.has(method) && [502, 503, 504].includes(outcome.status)) {
          outcome.body.resume();
          last = `${endpoint.name}: HTTP ${String(outcome.status)}`;
          continue;
        }
        await this.answer(res, outcome, method, transform);
        return { kind: "relayed", status: outcome.status, endpoint: endpoint.name };
      }
      if (gone()) {
        return {
          kind: "unavailable",
          reason: "client_aborted",
          detail: "the client went away before Keystone answered",
        };
      }
      this.notRelayed.write("Identity request not relayed: no Keystone endpoint took it", {
        method,
        detail: last,
      });
      if (timedOut) {
        sendError(res, 504, "Gateway Timeout", "Keystone did not answer in time.");
        return { kind: "unavailable", reason: "timeout", detail: last };
      }
      sendError(
        res,
        503,
        "Service Unavailable",
        "No Keystone endpoint answers now; try again later.",
        [["Retry-After", this.retryAfter]],
      );
      return { kind: "unavailable", reason: "no_endpoint", detail: last };
    } finally {
      res.off("close", onClose);
    }
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
      discard(outcome.body);
      res.destroy();
    }
  }
}

/**
 * Drops an answer's body unread. undici's body, destroyed unconsumed, emits an
 * `AbortError`: with no listener that is an uncaught exception, the daemon's end.
 */
function discard(body: NodeJS.ReadableStream & { destroy(): void }): void {
  body.on("error", () => undefined);
  body.destroy();
}

/** The client's headers minus hop-by-hop ones, `Host` and `Content-Length` (set anew). */
/**
 * The proxy headers Keystone's oslo.middleware trusts (proto, host, client address, script
 * name): a client's never reach Keystone; the edge sets `Forwarded` and `X-Forwarded-For`.
 */
const CLIENT_PROXY_HEADERS = new Set([
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
  "x-forwarded-prefix",
  "x-real-ip",
]);

function relayedHeaders(raw: readonly string[], peer: string): Record<string, string | string[]> {
  let listed: ReadonlySet<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] ?? "").toLowerCase() === "connection") listed = connectionListed(raw[i + 1]);
  }
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] ?? "").toLowerCase();
    const value = raw[i + 1] ?? "";
    if (name === "host" || name === "content-length" || isHopByHop(name, listed)) continue;
    if (CLIENT_PROXY_HEADERS.has(name)) continue;
    const prior = out[name];
    out[name] = prior === undefined ? value : [...(Array.isArray(prior) ? prior : [prior]), value];
  }
  out["x-forwarded-for"] = peer;
  out["forwarded"] = `for=${forwardedNode(peer)};proto=http`;
  return out;
}

/** A request body read, or why it was not. */
type BodyRead =
  | { readonly kind: "read"; readonly body: Buffer }
  | { readonly kind: "too_large" }
  | { readonly kind: "buffer_full" }
  | { readonly kind: "aborted" };

/**
 * Reads `req`'s body into memory, each byte reserved in `reservation` before it is kept:
 * a declared `Content-Length` is checked and reserved before anything is read, a chunked
 * body chunk by chunk. Refused (too large, buffer full): the rest is read and discarded.
 */
function readBody(
  req: IncomingMessage,
  limitBytes: number,
  reservation: Reservation,
): Promise<BodyRead> {
  const declared = req.headers["content-length"];
  const declaredBytes = declared === undefined ? undefined : Number(declared);
  const refuse = (kind: "too_large" | "buffer_full"): BodyRead => {
    req.resume(); // discard the rest, without keeping it
    return { kind };
  };
  if (declaredBytes !== undefined && Number.isSafeInteger(declaredBytes)) {
    if (declaredBytes > limitBytes) return Promise.resolve(refuse("too_large"));
    if (!reservation.ensure(declaredBytes)) return Promise.resolve(refuse("buffer_full"));
  }
  if (req.readableEnded) return Promise.resolve({ kind: "read", body: Buffer.alloc(0) });
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (read: BodyRead): void => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onGone);
      req.off("close", onGone);
      if (read.kind !== "read") chunks.length = 0;
      resolve(read);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limitBytes) return settle(refuse("too_large"));
      if (!reservation.ensure(size)) return settle(refuse("buffer_full"));
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      settle({ kind: "read", body: Buffer.concat(chunks, size) });
    };
    const onGone = (): void => {
      settle({ kind: "aborted" });
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onGone);
    req.on("close", onGone);
  });
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
