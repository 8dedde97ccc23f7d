/**
 * One Keystone endpoint: a pooled keep-alive HTTP(S) client with a deadline per call.
 *
 * Owns: the undici Pool for one Identity v3 base URL (bounded connections, keep-alive, TLS
 * CA / client certificate / insecure), turning a call into a typed outcome (a response, or
 * why there was none) and never throwing. A dead pooled connection (Keystone restarted) is
 * retried once on a fresh one, transparently: that is the only retry here; failover across
 * endpoints belongs to the caller.
 */
import { readFileSync } from "node:fs";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { Pool, errors as undiciErrors } from "undici";

/** Options of {@link KeystoneEndpoint}. */
/**
 * What a call does, as a fault hook decides (drill/faults.ts sets it during a drill): go
 * out, or hang until its deadline as a dead network path does.
 */
export type EndpointFault = "pass" | "blackhole";

export interface KeystoneEndpointOptions {
  /** Identity v3 base URL, e.g. `https://keystone.example:5000/v3`. */
  readonly url: string;
  /**
   * The endpoint's name in metrics, logs, `/status` and drills (`keystone.endpoints[].name`).
   * Default: the URL's `host:port`.
   */
  readonly name?: string;
  /** Deadline of one call, connect to last body byte. Default 2 000 ms. */
  readonly timeoutMs?: number;
  /**
   * Deadline to open a connection (TCP and TLS handshake), ms: a path that cannot connect
   * in this long is dead, however long the call itself may take (the Identity relay's
   * calls may take a minute; its connects may not). Default: `timeoutMs`.
   */
  readonly connectTimeoutMs?: number;
  /** Pooled connections at most. Default 16. */
  readonly connections?: number;
  /** Idle keep-alive connections are closed after this. Default 30 000 ms. */
  readonly keepAliveTimeoutMs?: number;
  /** PEM CA bundle path. Default: Node's CAs. */
  readonly cafile?: string | null;
  /** PEM client certificate and key paths (mutual TLS). Default: none. */
  readonly certfile?: string | null;
  readonly keyfile?: string | null;
  /** Skip certificate verification. Default `false`. */
  readonly insecure?: boolean;
  /**
   * A drill's fault for this endpoint (drill/faults.ts), asked before every call: a
   * blackholed call goes nowhere and fails as a timeout at its deadline. Default: none.
   */
  readonly fault?: (name: string) => EndpointFault;
}

/** What a call came to. */
export type CallOutcome =
  | {
      readonly kind: "response";
      readonly status: number;
      readonly headers: Readonly<Record<string, string | string[] | undefined>>;
      readonly body: string;
      readonly latencyMs: number;
    }
  | {
      readonly kind: "failed";
      /** `timeout`, `connection` (refused, reset, TLS), or `aborted`. */
      readonly reason: "timeout" | "connection" | "aborted";
      readonly detail: string;
      readonly latencyMs: number;
    };

/** A relayed request's answer, its body still streaming; or why there was none. */
export type RelayOutcome =
  | {
      readonly kind: "response";
      readonly status: number;
      readonly headers: Readonly<Record<string, string | string[] | undefined>>;
      /** Must be consumed or destroyed. */
      readonly body: Readable;
      readonly latencyMs: number;
    }
  | Extract<CallOutcome, { readonly kind: "failed" }>;

/** A client's request to relay (the regional Keystone face). */
export interface RelayOptions {
  readonly method: string;
  /** The client's path and query, from the Identity root: `/v3/users?name=x`, `/`. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[]>>;
  /** Buffered, so that another endpoint can be tried. */
  readonly body: Buffer | null;
  /** Deadline until the answer's headers, ms. */
  readonly timeoutMs: number;
}

export interface CallOptions {
  readonly method: "GET" | "HEAD" | "POST" | "DELETE";
  /** Path below the base URL, with query, e.g. `/auth/tokens?nocatalog`. */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  /** Overrides the endpoint's deadline for this call. */
  readonly timeoutMs?: number;
}

const RETRYABLE_SOCKET_CODES = new Set(["ECONNRESET", "EPIPE", "UND_ERR_SOCKET", "UND_ERR_CLOSED"]);

export class KeystoneEndpoint {
  readonly url: string;
  /** A bounded label: the configured name, or `host:port`; never credentials or paths. */
  readonly name: string;
  private readonly origin: string;
  private readonly basePath: string;
  /** The Identity root: the base path without its `/v3`. */
  readonly rootPath: string;
  private readonly pool: Pool;
  /** Deadline of one call, ms. */
  readonly timeoutMs: number;
  private readonly fault: ((name: string) => EndpointFault) | undefined;

  constructor(options: KeystoneEndpointOptions) {
    const url = new URL(options.url);
    this.url = options.url;
    this.name = options.name ?? url.host;
    this.origin = url.origin;
    this.basePath = url.pathname.replace(/\/+$/, "");
    this.rootPath = this.basePath.replace(/\/v3$/, "");
    this.timeoutMs = options.timeoutMs ?? 2_000;
    this.fault = options.fault;
    const tls =
      url.protocol === "https:"
        ? {
            ...(options.cafile ? { ca: readFileSync(options.cafile) } : {}),
            ...(options.certfile ? { cert: readFileSync(options.certfile) } : {}),
            ...(options.keyfile ? { key: readFileSync(options.keyfile) } : {}),
            rejectUnauthorized: !(options.insecure ?? false),
          }
        : {};
    this.pool = new Pool(this.origin, {
      connections: options.connections ?? 16,
      pipelining: 1,
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 30_000,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      connect: {
        timeout: Math.min(options.connectTimeoutMs ?? this.timeoutMs, this.timeoutMs),
        ...tls,
      },
    });
  }

  /** Makes one call (two when a pooled connection turns out dead). Never throws. */
  async call(options: CallOptions): Promise<CallOutcome> {
    const started = performance.now();
    if (this.fault?.(this.name) === "blackhole") {
      return this.blackholed(options.timeoutMs ?? this.timeoutMs, started);
    }
    const first = await this.once(options, started);
    if (first.kind === "failed" && first.reason === "connection" && isStaleSocket(first.detail)) {
      // Keystone restarted and closed our idle keep-alive socket: one fresh try.
      return this.once(options, started);
    }
    return first;
  }

  private async once(options: CallOptions, started: number): Promise<CallOutcome> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const remaining = Math.max(1, Math.floor(timeoutMs - (performance.now() - started)));
    const signal = AbortSignal.timeout(remaining);
    try {
      const response = await this.pool.request({
        origin: this.origin,
        path: this.basePath + options.path,
        method: options.method,
        headers: {
          ...options.headers,
          ...(options.body ? { "content-type": "application/json" } : {}),
        },
        body: options.body ?? null,
        signal,
      });
      const body = options.method === "HEAD" ? "" : await response.body.text();
      if (options.method === "HEAD") await response.body.dump();
      return {
        kind: "response",
        status: response.statusCode,
        headers: response.headers,
        body,
        latencyMs: performance.now() - started,
      };
    } catch (error) {
      return failureOf(error, signal.aborted, performance.now() - started);
    }
  }

  /**
   * Relays a client's request below the Identity root (the endpoint's URL without `/v3`):
   * the answer comes back as soon as its headers do, its body streaming. Never throws.
   */
  async relay(options: RelayOptions): Promise<RelayOutcome> {
    const started = performance.now();
    if (this.fault?.(this.name) === "blackhole") {
      return this.blackholed(options.timeoutMs, started);
    }
    const controller = new AbortController();
    const timer = setTimeout(() => {
      controller.abort();
    }, options.timeoutMs);
    try {
      const response = await this.pool.request({
        origin: this.origin,
        path: this.rootPath + options.path,
        method: options.method,
        headers: options.headers,
        body: options.body,
        signal: controller.signal,
      });
      return {
        kind: "response",
        status: response.statusCode,
        headers: response.headers,
        body: response.body,
        latencyMs: performance.now() - started,
      };
    } catch (error) {
      return failureOf(error, controller.signal.aborted, performance.now() - started);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A call into a drill's blackhole: no answer, a timeout at the deadline. */
  private async blackholed(
    timeoutMs: number,
    started: number,
  ): Promise<Extract<CallOutcome, { readonly kind: "failed" }>> {
    await sleep(timeoutMs, undefined, { ref: false });
    return {
      kind: "failed",
      reason: "timeout",
      detail: `no answer within ${String(timeoutMs)} ms (blackholed by a drill)`,
      latencyMs: performance.now() - started,
    };
  }

  /** Closes idle connections and refuses new calls. */
  async close(): Promise<void> {
    await this.pool.close();
  }
}

/** A call's failure: timed out (our deadline or undici's) or a connection problem. */
function failureOf(
  error: unknown,
  aborted: boolean,
  latencyMs: number,
): Extract<CallOutcome, { readonly kind: "failed" }> {
  const rawCode = (error as { code?: unknown }).code;
  const code = typeof rawCode === "string" ? rawCode : undefined;
  const detail = `${code ?? ""} ${error instanceof Error ? error.message : String(error)}`.trim();
  const timedOut =
    aborted ||
    error instanceof undiciErrors.HeadersTimeoutError ||
    error instanceof undiciErrors.BodyTimeoutError ||
    error instanceof undiciErrors.ConnectTimeoutError;
  return { kind: "failed", reason: timedOut ? "timeout" : "connection", detail, latencyMs };
}

function isStaleSocket(detail: string): boolean {
  return (
    [...RETRYABLE_SOCKET_CODES].some((code) => detail.startsWith(code)) ||
    /other side closed/i.test(detail)
  );
}
