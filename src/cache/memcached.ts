/**
 * memcached, wrapped so that it can never hurt a request.
 *
 * Owns: every byte exchanged with memcached (through memjs) and the guarantees around it:
 * - each call has a deadline (default 50 ms); an error, a timeout or anything unexpected is
 *   a miss, counted, never an exception (`get` and `set` never reject);
 * - a circuit breaker per server (breaker.ts): after 5 consecutive failures (default) the
 *   server is left alone for 5 s (default), then one probe is let through; while open, calls
 *   return a miss at once without touching the network;
 * - at most `maxInFlight` calls per server wait at once (more are misses), so a burst of
 *   cache misses cannot pile up on a slow server;
 * - one log line per breaker transition (warn when a server is lost, info when it is back),
 *   naming the server and the cause, never a key or a token.
 *
 * How memjs 1.3 behaves when the server is down, and what we set because of it (measured
 * against Debian's memcached; see the tests):
 * - default `retries: 2` resends a failed request after `retry_delay` 0.2 s: a refused
 *   connection takes ~200 ms instead of <1 ms. We set `retries: 1` (= one attempt; memjs
 *   counts attempts, and `0` only works by accident of `retries || default`).
 * - its request timeout (`timeout`, 0.5 s) and connect timeout (`conntimeout`, 2 × timeout)
 *   are socket idle timers that fail every request on the connection at once; they cannot
 *   be our 50 ms deadline without tearing the connection down on every slow answer, so they
 *   stay at ~1 s and only clean up dead connections. Our own timer is the deadline.
 * - a server that closes the connection cleanly (FIN: a proxy with no backend, memcached's
 *   idle-connection reaper) leaves requests on it pending FOREVER: memjs forgets the socket
 *   but not the callbacks, and no timer is left to fire. Our deadline answers the caller;
 *   when the breaker opens we close and replace the memjs client, which drops those
 *   callbacks with it.
 * - requests made while a connection is being opened are queued without limit (released
 *   by the connect or its timeout): bounded here by `maxInFlight` and the breaker.
 * - `expires: 0` means "never expire" and values above 30 days are absolute Unix times; a
 *   TTL of 0 is therefore not written, and TTLs are capped at 30 days.
 * - it logs every failed request to `console` by default (one line each): we give it a
 *   logger that discards them (transitions are logged here instead).
 * - it reconnects lazily on the next request after an error: nothing happens in the
 *   background while the breaker is open. With no username in the server string, it falls
 *   back to `MEMCACHIER_USERNAME`/`MEMCACHE_USERNAME` (and passwords) from the environment
 *   for SASL.
 *
 * Several servers: each key lives on one, chosen by rendezvous (highest random weight)
 * hashing over the configured `host:port` names — the same choice on every edge whatever
 * the order of `memcached_servers`, and adding or removing a server moves only the keys it
 * gains or held (1/n of them), where modulo hashing would move almost all. A server that is
 * down costs its share of hits (misses, its breaker open), never a stalled request; its
 * keys are not moved elsewhere meanwhile, so its return finds the others' entries intact.
 *
 * Size: the memjs wrapper — deadline, breaker, overload cap, fault hook — and the pool
 * that hashes keys to its servers; the pool is a few dozen lines over the server.
 */
import { Client as MemjsClient, Server as MemjsServer } from "memjs";
import { performance } from "node:perf_hooks";

import { silentLogger, type Logger } from "../log.js";
import { systemClock, type Clock } from "../units.js";
import {
  CircuitBreaker,
  type Admission,
  type BreakerOptions,
  type BreakerState,
} from "../breaker.js";
import {
  noopCacheMetrics,
  type CacheMetrics,
  type MemcachedOp,
  type MemcachedOutcome,
} from "./metrics.js";

export type { BreakerState } from "../breaker.js";

/** Default deadline of one memcached call, ms. */
export const DEFAULT_DEADLINE_MS = 50;

/**
 * What a call does, as a fault hook decides (drill/faults.ts sets it during a drill): go
 * out, or fail at once as a refused connection does.
 */
export type MemcachedFault = "pass" | "unreachable";
/** Default most calls outstanding per server. */
export const DEFAULT_MAX_IN_FLIGHT = 1_000;
/** Default largest value written, bytes (memcached's default item limit is 1 MiB, key included). */
export const DEFAULT_MAX_VALUE_BYTES = 1_000_000;
/** Default memjs connect timeout, ms. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 1_000;
/** Default memjs idle timeout of a connection with unanswered requests, ms. */
export const DEFAULT_SOCKET_TIMEOUT_MS = 1_000;
/** memcached reads a TTL above 30 days as an absolute Unix time. */
export const MAX_RELATIVE_TTL_SECONDS = 30 * 24 * 3600;
const MAX_CAUSE_CHARS = 200;

/** The shared tier, as the token cache uses it. Implementations never reject. */
export interface SharedStore {
  /**
   * The value under `key`, or undefined on a miss, an error, a timeout or an open breaker.
   * `entry` says what the key names, for the hit/miss counts. Default "token".
   */
  get(key: string, entry?: SharedEntryKind): Promise<Buffer | undefined>;
  /** Writes `value` for `ttlSeconds` (> 0); resolves when done or abandoned, never rejects. */
  set(key: string, value: Buffer, ttlSeconds: number): Promise<void>;
  /** Closes connections; later calls are misses. */
  close(): void;
}

/**
 * What a memcached key names: one token's entry, one user + scope's context, or one
 * token's revocation marker.
 */
export type SharedEntryKind = "token" | "context" | "revocation";

const MISS_EVENT = {
  token: "memcached_miss",
  context: "memcached_context_miss",
  revocation: "revocation_marker_miss",
} as const;
const HIT_EVENT = {
  token: "memcached_hit",
  context: "memcached_context_hit",
  revocation: "revocation_marker_hit",
} as const;

/** The part of a memjs client we use (tests substitute a fake). */
export interface MemcachedClientLike {
  get(key: string): Promise<{ readonly value: Buffer | null }>;
  set(key: string, value: Buffer, options: { readonly expires: number }): Promise<unknown>;
  close(): void;
}

/** Socket settings handed to a client factory. */
export interface MemcachedSocketOptions {
  readonly connectTimeoutMs: number;
  readonly socketTimeoutMs: number;
}

/** Makes the client of one `host:port`. */
export type MemcachedClientFactory = (
  server: string,
  socket: MemcachedSocketOptions,
) => MemcachedClientLike;

/** Options of {@link MemcachedServer} and {@link MemcachedPool}. */
export interface MemcachedOptions {
  /** Longest a caller waits for one call, ms. Default {@link DEFAULT_DEADLINE_MS}. */
  readonly deadlineMs?: number;
  /** Consecutive failures that open a server's breaker. Default 5. */
  readonly failureThreshold?: number;
  /** How long an open breaker refuses calls before one probe, ms. Default 5 000. */
  readonly cooldownMs?: number;
  /** Most calls waiting at once per server; more are misses. Default {@link DEFAULT_MAX_IN_FLIGHT}. */
  readonly maxInFlight?: number;
  /** Values larger than this are not written, bytes. Default {@link DEFAULT_MAX_VALUE_BYTES}. */
  readonly maxValueBytes?: number;
  /** memjs connect timeout, ms. Default {@link DEFAULT_CONNECT_TIMEOUT_MS}. */
  readonly connectTimeoutMs?: number;
  /**
   * memjs idle timeout of a connection with requests outstanding, after which memjs drops
   * the connection and fails them all, ms. Default {@link DEFAULT_SOCKET_TIMEOUT_MS}.
   */
  readonly socketTimeoutMs?: number;
  /** Time source of the breaker. Default the system clock. Latency uses `performance.now()`. */
  readonly clock?: Clock;
  /** Receives one line per breaker transition. Default: silent. */
  readonly logger?: Logger;
  /** Receives `memcached_*` events, latencies and breaker states. Default: none. */
  readonly metrics?: CacheMetrics;
  /** Makes the memjs client (tests pass a fake). Default {@link memjsClientFactory}. */
  readonly createClient?: MemcachedClientFactory;
  /**
   * A drill's fault (drill/faults.ts), asked before every call that would go out: an
   * unreachable memcached fails the call at once, as a refused connection does, and the
   * breaker, the metrics and the logs see a real failure. Default: none.
   */
  readonly fault?: () => MemcachedFault;
}

type Attempt<T> =
  | { readonly kind: "ok"; readonly value: T }
  | { readonly kind: "timeout" }
  | { readonly kind: "error"; readonly error: unknown };

const TIMED_OUT: Attempt<never> = Object.freeze({ kind: "timeout" });

/** One memcached server behind a deadline, an in-flight cap and a circuit breaker. */
export class MemcachedServer implements SharedStore {
  private readonly breaker: CircuitBreaker;
  private readonly deadlineMs: number;
  private readonly maxInFlight: number;
  private readonly maxValueBytes: number;
  private readonly socket: MemcachedSocketOptions;
  private readonly createClient: MemcachedClientFactory;
  private readonly fault: (() => MemcachedFault) | undefined;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly metrics: CacheMetrics;
  private client: MemcachedClientLike | undefined;
  private inFlight = 0;
  private closed = false;
  /** When the server was lost (closed → open), for the recovery log line. */
  private lostAtMs = 0;

  /** @param server `host:port` (or `[v6]:port`; port 11211 when absent). */
  constructor(
    readonly server: string,
    options: MemcachedOptions = {},
  ) {
    parseServer(server); // fail at start-up, not on the first request
    this.deadlineMs = positive(options.deadlineMs ?? DEFAULT_DEADLINE_MS, "deadlineMs");
    this.maxInFlight = positive(options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT, "maxInFlight");
    this.maxValueBytes = positive(
      options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES,
      "maxValueBytes",
    );
    this.socket = {
      connectTimeoutMs: positive(
        options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
        "connectTimeoutMs",
      ),
      socketTimeoutMs: positive(
        options.socketTimeoutMs ?? DEFAULT_SOCKET_TIMEOUT_MS,
        "socketTimeoutMs",
      ),
    };
    this.createClient = options.createClient ?? memjsClientFactory;
    this.fault = options.fault;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.metrics = options.metrics ?? noopCacheMetrics;
    const breakerOptions: BreakerOptions = {
      clock: this.clock,
      onTransition: (from, to, cause) => {
        this.transitioned(from, to, cause);
      },
      ...(options.failureThreshold !== undefined
        ? { failureThreshold: options.failureThreshold }
        : {}),
      ...(options.cooldownMs !== undefined ? { cooldownMs: options.cooldownMs } : {}),
    };
    this.breaker = new CircuitBreaker(breakerOptions);
  }

  /** The breaker's state. */
  state(): BreakerState {
    return this.breaker.state();
  }

  /** Calls waiting for an answer now (a call stops waiting at its deadline). */
  get pending(): number {
    return this.inFlight;
  }

  /** The value under `key`; undefined on a miss, an error, a timeout or an open breaker. */
  async get(key: string, entry: SharedEntryKind = "token"): Promise<Buffer | undefined> {
    try {
      const result = await this.call(
        "get",
        (client) => client.get(key),
        (r) => r.value !== null,
      );
      if (result === undefined) return undefined;
      const value = result.value;
      if (value === null) {
        this.metrics.count(MISS_EVENT[entry]);
        return undefined;
      }
      this.metrics.count(HIT_EVENT[entry]);
      return value;
    } catch {
      return undefined;
    }
  }

  /**
   * Writes `value` for `ttlSeconds` (rounded up, at most 30 days; ≤ 0 is not written, as
   * memcached would keep it forever). Never rejects; safe to fire and forget.
   */
  async set(key: string, value: Buffer, ttlSeconds: number): Promise<void> {
    try {
      if (this.closed) return;
      if (!(ttlSeconds > 0) || value.length > this.maxValueBytes) {
        this.metrics.count("memcached_set_skipped");
        return;
      }
      const expires = Math.min(Math.ceil(ttlSeconds), MAX_RELATIVE_TTL_SECONDS);
      const result = await this.call(
        "set",
        (client) => client.set(key, value, { expires }),
        () => true,
      );
      if (result !== undefined) this.metrics.count("memcached_set");
    } catch {
      // never reject: memcached must not hurt the request that wrote
    }
  }

  /** Closes the connection; every later call is a miss without a network call. */
  close(): void {
    this.closed = true;
    this.dropClient();
  }

  /**
   * Runs one call under the breaker, the in-flight cap and the deadline. Returns the
   * client's answer, or undefined when the call was refused or failed (already counted).
   * `found` tells a hit from a miss for the latency observation.
   */
  private async call<T>(
    op: MemcachedOp,
    run: (client: MemcachedClientLike) => Promise<T>,
    found: (value: T) => boolean,
  ): Promise<T | undefined> {
    if (this.closed) return undefined;
    if (this.inFlight >= this.maxInFlight) {
      this.metrics.count("memcached_overload");
      return undefined;
    }
    const admission = this.breaker.admit();
    if (admission === undefined) {
      this.metrics.count("memcached_short_circuit");
      return undefined;
    }
    this.inFlight++;
    const startedMs = performance.now();
    let attempt: Attempt<T>;
    try {
      attempt =
        this.fault?.() === "unreachable"
          ? { kind: "error", error: new Error("connection refused (made unreachable by a drill)") }
          : await withDeadline(() => run(this.ensureClient()), this.deadlineMs);
    } finally {
      this.inFlight--;
    }
    const seconds = (performance.now() - startedMs) / 1000;
    return this.settle(op, admission, attempt, seconds, found);
  }

  private settle<T>(
    op: MemcachedOp,
    admission: Admission,
    attempt: Attempt<T>,
    seconds: number,
    found: (value: T) => boolean,
  ): T | undefined {
    let outcome: MemcachedOutcome;
    let result: T | undefined;
    switch (attempt.kind) {
      case "ok":
        this.breaker.success(admission);
        outcome = op === "set" ? "stored" : found(attempt.value) ? "hit" : "miss";
        result = attempt.value;
        break;
      case "timeout":
        this.breaker.failure(admission, `no answer within ${this.deadlineMs} ms`);
        this.metrics.count("memcached_timeout");
        outcome = "timeout";
        break;
      case "error":
        this.breaker.failure(admission, describe(attempt.error));
        this.metrics.count("memcached_error");
        outcome = "error";
        break;
    }
    this.metrics.observeMemcached(op, outcome, seconds);
    return result;
  }

  private ensureClient(): MemcachedClientLike {
    this.client ??= this.createClient(this.server, this.socket);
    return this.client;
  }

  /** Closes the memjs client: its sockets, and the callbacks of requests it would never settle. */
  private dropClient(): void {
    const client = this.client;
    this.client = undefined;
    try {
      client?.close();
    } catch {
      // closing a broken client may fail; it is dropped either way
    }
  }

  private transitioned(from: BreakerState, to: BreakerState, cause?: string): void {
    // A fresh client for the probe: the old one may hold a dead connection and requests
    // memjs will never settle. Done first: nothing below may prevent it.
    if (to.kind === "open") {
      this.dropClient();
      if (from.kind === "closed") this.lostAtMs = to.sinceMs;
    }
    const fields = { server: this.server, ...(cause !== undefined ? { cause } : {}) };
    this.metrics.breakerChanged(this.server, to.kind);
    switch (to.kind) {
      case "open":
        if (from.kind === "closed") {
          this.logger.warn("memcached unavailable: circuit open, cache reads are misses", {
            ...fields,
            retryInMs: to.untilMs - to.sinceMs,
          });
        } else {
          this.logger.debug("memcached probe failed: circuit open again", fields);
        }
        break;
      case "half-open":
        this.logger.debug("memcached circuit half-open: probing", fields);
        break;
      case "closed":
        this.logger.info("memcached available again: circuit closed", {
          ...fields,
          downMs: this.clock.nowMs() - this.lostAtMs,
        });
        break;
    }
  }
}

/** A breaker state with the server it belongs to. */
export interface ServerState {
  readonly server: string;
  readonly state: BreakerState;
}

/**
 * Several memcached servers: each key lives on one, chosen by a hash of the key (modulo
 * the number of servers, as memjs and python-memcache do). Each server has its own
 * breaker, so one dead server costs only its share of the keys; there is no failover to
 * another server (it would split entries between two places and serve stale ones back).
 */
export class MemcachedPool implements SharedStore {
  readonly servers: readonly MemcachedServer[];
  /** Each server's seed for rendezvous hashing: a hash of its `host:port`. */
  private readonly seeds: Uint32Array;

  /** @param servers `cache.memcached_servers`: at least one `host:port`. */
  constructor(servers: readonly string[], options: MemcachedOptions = {}) {
    if (servers.length === 0) throw new RangeError("a memcached pool needs at least one server");
    this.servers = servers.map((server) => new MemcachedServer(server, options));
    this.seeds = Uint32Array.from(servers, (server) => fnv1a32(server));
  }

  get(key: string, entry: SharedEntryKind = "token"): Promise<Buffer | undefined> {
    return this.serverFor(key).get(key, entry);
  }

  set(key: string, value: Buffer, ttlSeconds: number): Promise<void> {
    return this.serverFor(key).set(key, value, ttlSeconds);
  }

  close(): void {
    for (const server of this.servers) server.close();
  }

  /** Each server's breaker state. */
  state(): readonly ServerState[] {
    return this.servers.map((s) => ({ server: s.server, state: s.state() }));
  }

  /**
   * The server holding `key`: the one whose weight for it is highest (rendezvous hashing),
   * ties to the name that sorts first. One hash of the key, one mix per server.
   */
  serverFor(key: string): MemcachedServer {
    const servers = this.servers;
    const only = servers[0];
    if (servers.length === 1 && only !== undefined) return only;
    const h = fnv1a32(key);
    let best = 0;
    let bestWeight = -1;
    for (let i = 0; i < servers.length; i++) {
      const weight = mix32(h ^ (this.seeds[i] ?? 0));
      const server = servers[i] as MemcachedServer;
      const incumbent = servers[best] as MemcachedServer;
      if (weight > bestWeight || (weight === bestWeight && server.server < incumbent.server)) {
        best = i;
        bestWeight = weight;
      }
    }
    return servers[best] as MemcachedServer;
  }
}

/**
 * The production client: memjs, one server, no retry, no failover, TCP keep-alive (so an
 * idle connection through a NAT or firewall is not silently dropped), memjs's own log lines
 * discarded.
 */
export const memjsClientFactory: MemcachedClientFactory = (server, socket) => {
  const { host, port } = parseServer(server);
  const serverOptions = {
    timeout: socket.socketTimeoutMs / 1000,
    conntimeout: socket.connectTimeoutMs / 1000,
    keepAlive: true,
    keepAliveDelay: 30,
  };
  const client = new MemjsClient(
    [new MemjsServer(host, port, undefined, undefined, serverOptions)],
    {
      retries: 1,
      retry_delay: 0,
      failover: false,
      expires: 0,
      logger: { log: () => undefined },
    },
  );
  return {
    get: (key) => client.get(key),
    set: (key, value, options) => client.set(key, value, { expires: options.expires }),
    close: () => {
      client.close();
    },
  };
};

/** `host:port`, `[v6]:port`, or a bare host (port 11211). */
export function parseServer(server: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+))(?::(\d{1,5}))?$/.exec(server);
  const host = m?.[1] ?? m?.[2];
  const port = m?.[3] === undefined ? 11211 : Number(m[3]);
  if (host === undefined || port < 1 || port > 65_535) {
    throw new RangeError(`not a memcached address (host:port): ${JSON.stringify(server)}`);
  }
  return { host, port };
}

/** Runs `run` and settles within `deadlineMs`: with its result, its error, or a timeout. */
function withDeadline<T>(run: () => Promise<T>, deadlineMs: number): Promise<Attempt<T>> {
  return new Promise<Attempt<T>>((resolve) => {
    const timer = setTimeout(resolve, deadlineMs, TIMED_OUT);
    let pending: Promise<T>;
    try {
      pending = run();
    } catch (error) {
      clearTimeout(timer);
      resolve({ kind: "error", error });
      return;
    }
    pending.then(
      (value) => {
        clearTimeout(timer);
        resolve({ kind: "ok", value });
      },
      (error: unknown) => {
        clearTimeout(timer);
        resolve({ kind: "error", error });
      },
    );
  });
}

/** A short cause for logs: the error's message (memjs's name the server, never the key). */
function describe(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.length > MAX_CAUSE_CHARS ? `${text.slice(0, MAX_CAUSE_CHARS)}…` : text;
}

function positive(value: number, name: string): number {
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be > 0`);
  return value;
}

/** FNV-1a, 32 bits, over UTF-16 code units (our keys are ASCII). */
/** MurmurHash3's 32-bit finaliser: every input bit flips each output bit with p ≈ ½. */
function mix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
