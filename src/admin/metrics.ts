/**
 * The edge's Prometheus metrics: the request path, the tiers, the background loops.
 *
 * Owns: every metric's name, help and label set, registered on a registry that is passed
 * in (never prom-client's global one). Labels are bounded enums and configured endpoint
 * hosts: no token, user, project or raw path ever becomes a label. Each gauge names how
 * several worker processes' values make one (`aggregator`, for the supervisor's one
 * scrape): sizes and loads summed; states by their max (1 when any worker is in it);
 * health, freshness times and a certificate's end by their min (the worst worker).
 * Counters and histograms are summed.
 *
 * Size: one file on purpose — every series the edge exports is declared here, next to its
 * help text, so that docs/metrics.md and the registry are checked against one place.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { HotCounter } from "./hot-counter.js";
import { BREAKER_STATE_KINDS, type BreakerState } from "../breaker.js";

const TLS_NOT_AFTER = "keystone_edge_tls_certificate_not_after_timestamp_seconds";

/** A scrape-time gauge's `collect`: `read`'s value, or no sample while it has none. */
function sampled(read: () => number | undefined): (this: Gauge) => void {
  return function (this: Gauge) {
    const value = read();
    if (value === undefined) this.reset();
    else this.set(value);
  };
}

/**
 * The state the gauges of {@link EdgeMetrics.currentView} read, once per scrape and never per
 * request: each answer is the configuration in force at that moment.
 */
export interface MetricsView {
  /** Entries per cache tier held in this process (`l1`, `context`). */
  entries(): Readonly<Record<string, number>>;
  /** Seconds since the revocation feed last answered; undefined before it ever did. */
  feedLagSeconds(): number | undefined;
  /** When the revocation feed last answered, Unix seconds; undefined before it ever did. */
  feedLastSuccessSeconds(): number | undefined;
  /** Revocation events held. */
  revocationEvents(): number | undefined;
  /** The key repository; undefined: none loaded yet. */
  keyRepository():
    | {
        readonly healthy: boolean;
        readonly keys: number;
        readonly lastSuccessSeconds: number;
        /** Age of the primary key's file, seconds. */
        readonly primaryAgeSeconds: number | undefined;
      }
    | undefined;
  /** Whether the key ring is known to be behind the master's (keystone/key-lag.ts). */
  keysBehind(): boolean;
  /** When a fresh Keystone token last decrypted locally, Unix seconds; undefined: never. */
  keysAgreedAtSeconds(): number | undefined;
  /** Whether known users are being served from stale contexts with no Keystone answering. */
  degradedMode(): boolean;
  /** Each Keystone endpoint's breaker state. */
  keystoneBreakers(): readonly {
    readonly endpoint: string;
    readonly state: BreakerState["kind"];
  }[];
  /** Keystone endpoints reached without verified TLS, and why. */
  insecureEndpoints(): readonly { readonly endpoint: string; readonly reason: string }[];
}

/** Nothing known yet: no series from the state gauges. */
const EMPTY_VIEW: MetricsView = {
  entries: () => ({}),
  feedLagSeconds: () => undefined,
  feedLastSuccessSeconds: () => undefined,
  revocationEvents: () => undefined,
  keyRepository: () => undefined,
  keysBehind: () => false,
  keysAgreedAtSeconds: () => undefined,
  degradedMode: () => false,
  keystoneBreakers: () => [],
  insecureEndpoints: () => [],
};

export class EdgeMetrics {
  readonly registry: Registry;
  readonly requests: Counter<"outcome" | "status_class">;
  readonly validations: Counter<"source" | "result">;
  readonly cacheLookups: Counter<"tier" | "result">;
  readonly keystoneCalls: Histogram<"endpoint" | "outcome">;
  readonly memcachedErrors: Counter<"kind">;
  readonly revocationMarkers: Counter<"event">;
  readonly cacheEvictions: Counter<"tier" | "reason">;
  readonly memcachedCalls: Histogram<"op" | "outcome">;
  readonly memcachedBreaker: Gauge<"server" | "state">;
  readonly keystoneBreaker: Gauge<"endpoint" | "state">;
  readonly revocationEventsHeld: Gauge;
  readonly degraded: Gauge;
  readonly revocationEventsApplied: Counter;
  readonly revocationEventsDropped: Counter;
  readonly revocationLastSuccess: Gauge;
  readonly keyRepositoryHealthy: Gauge;
  readonly identityRequests: Counter<"route" | "status_class">;
  readonly identityRelayInFlight: Gauge;
  readonly identityRelayBufferedBytes: Gauge;
  readonly identityRelayRejected: Counter<"reason">;
  readonly upstreamErrors: Counter<"kind">;
  readonly cacheEntries: Gauge<"tier">;
  readonly revocationFeedLag: Gauge;
  readonly keyPrimaryAge: Gauge;
  readonly drillActive: Gauge<"scenario">;
  readonly clientRefusals: Counter<"listener" | "reason">;
  /** Set only through {@link tlsCertificateNotAfterSeconds}, which registers it. */
  private readonly tlsCertificateNotAfter: Gauge;
  /**
   * The served certificate's end, Unix seconds; undefined without `tls`. The gauge is in
   * the registry only while it is set: a gauge with no labels would otherwise export 0, an
   * end long past, and its alert would fire on every edge without `tls`.
   */
  get tlsCertificateNotAfterSeconds(): number | undefined {
    return this.tlsNotAfter;
  }
  set tlsCertificateNotAfterSeconds(seconds: number | undefined) {
    const registered = this.tlsNotAfter !== undefined;
    this.tlsNotAfter = seconds;
    if (seconds === undefined) {
      if (registered) this.registry.removeSingleMetric(TLS_NOT_AFTER);
      return;
    }
    this.tlsCertificateNotAfter.set(seconds);
    if (!registered) this.registry.registerMetric(this.tlsCertificateNotAfter);
  }
  /** Set exactly while the gauge is in the registry. */
  private tlsNotAfter: number | undefined;
  readonly keystoneEndpointInsecure: Gauge<"endpoint" | "reason">;
  readonly keyRepositoryBehind: Gauge;
  readonly keyRepositoryAgreed: Gauge;
  readonly keyLagChecks: Counter<"trigger" | "result">;
  readonly keyLagFallbacks: Counter<"result">;
  readonly keyLagFallbackRefusals: Counter;
  /** Sampled verdicts asked again of the master, by outcome and by the tier that settled them. */
  readonly shadowValidations: Counter<"outcome" | "tier">;
  /** Sampled verdicts not compared, by why. */
  readonly shadowSkips: Counter<"reason">;
  /** Audit log lines dropped (buffer full, or a failed write). */
  readonly auditDropped: Counter;

  /**
   * Where the state gauges read at scrape time: the configuration in force, whichever that
   * is now (the composition root sets it once; a reload changes what it reads, not it). A
   * configuration replaced by a reload therefore exports nothing of its own. Default:
   * nothing known (no series).
   */
  currentView: () => MetricsView = () => EMPTY_VIEW;
  readonly keyRepositoryKeys: Gauge;
  readonly keyRepositoryReloadFailures: Counter;
  readonly keyRepositoryLastSuccess: Gauge;

  // Per-request counts go through plain numbers, folded in at scrape (see hot-counter.ts).
  private readonly hotRequests = new HotCounter("outcome", "status_class");
  private readonly hotValidations = new HotCounter("source", "result");
  private readonly hotLookups = new HotCounter("tier", "result");

  /** @param registry Default: a new registry with Node's default process metrics. */
  constructor(registry?: Registry) {
    this.registry = registry ?? new Registry();
    if (!registry) collectDefaultMetrics({ register: this.registry, prefix: "keystone_edge_" });
    // Read through `this`: the view may be replaced after the gauges are built.
    const view = (): MetricsView => this.currentView();
    const registers = [this.registry];
    const { hotRequests, hotValidations, hotLookups } = this;
    this.requests = new Counter({
      name: "keystone_edge_requests_total",
      help: "Requests handled, by outcome (valid, invalid, no_token, unavailable, delayed, …) and status class.",
      labelNames: ["outcome", "status_class"],
      registers,
      collect: () => {
        hotRequests.flush();
      },
    });
    hotRequests.bind(this.requests);
    this.validations = new Counter({
      name: "keystone_edge_validations_total",
      help: "Token validations by the tier that settled them and the result.",
      labelNames: ["source", "result"],
      registers,
      collect: () => {
        hotValidations.flush();
      },
    });
    hotValidations.bind(this.validations);
    this.cacheLookups = new Counter({
      name: "keystone_edge_cache_lookups_total",
      help: "Cache lookups per tier, hit or miss.",
      labelNames: ["tier", "result"],
      registers,
      collect: () => {
        hotLookups.flush();
      },
    });
    hotLookups.bind(this.cacheLookups);
    this.keystoneCalls = new Histogram({
      name: "keystone_edge_keystone_call_duration_seconds",
      help: "Calls to Keystone by endpoint host and outcome.",
      labelNames: ["endpoint", "outcome"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.memcachedErrors = new Counter({
      name: "keystone_edge_memcached_errors_total",
      help: "memcached calls and entries that failed: error, timeout, short_circuit (breaker open), overload, auth_failure, malformed, expired.",
      labelNames: ["kind"],
      registers,
    });
    this.revocationMarkers = new Counter({
      name: "keystone_edge_revocation_markers_total",
      help: "Read-your-writes revocation markers in memcached (cache.revocation_markers): read and absent, read and found (a token revoked through an edge's Identity face, refused here), written (a revocation relayed by this edge's face).",
      labelNames: ["event"],
      registers,
    });
    for (const event of ["absent", "found", "written"]) this.revocationMarkers.inc({ event }, 0);
    this.cacheEvictions = new Counter({
      name: "keystone_edge_cache_evictions_total",
      help: "Entries dropped from a cache tier: capacity, expiration, purge.",
      labelNames: ["tier", "reason"],
      registers,
    });
    // Present from the start (an alert on a rate needs the series before the first event).
    for (const reason of ["capacity", "expiration", "purge"]) {
      this.cacheEvictions.inc({ tier: "l1", reason }, 0);
    }
    this.memcachedCalls = new Histogram({
      name: "keystone_edge_memcached_call_duration_seconds",
      help: "memcached calls that went out on the network, by operation and outcome.",
      labelNames: ["op", "outcome"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers,
    });
    this.degraded = new Gauge({
      name: "keystone_edge_degraded_mode",
      aggregator: "max",
      help: "1 while no Keystone answers and known users and scopes are served from stale contexts.",
      registers,
      collect() {
        this.set(view().degradedMode() ? 1 : 0);
      },
    });
    this.revocationEventsHeld = new Gauge({
      name: "keystone_edge_revocation_events",
      aggregator: "max",
      help: "Keystone revocation events held (checked on every cached validation).",
      registers,
      collect: sampled(() => view().revocationEvents()),
    });
    this.revocationEventsApplied = new Counter({
      name: "keystone_edge_revocation_events_applied_total",
      help: "Revocation events fetched from Keystone's feed and applied.",
      registers,
    });
    this.revocationEventsDropped = new Counter({
      name: "keystone_edge_revocation_events_dropped_total",
      help: "Revocation events dropped over keystone.revocation_max_events (cached tokens issued before them are refused): alert on any.",
      registers,
    });
    this.revocationLastSuccess = new Gauge({
      name: "keystone_edge_revocation_feed_last_success_timestamp_seconds",
      aggregator: "min",
      help: "When the revocation feed last answered (Unix time); time() minus this is its lag.",
      registers,
      collect: sampled(() => view().feedLastSuccessSeconds()),
    });
    this.upstreamErrors = new Counter({
      name: "keystone_edge_upstream_errors_total",
      help: "Requests the local service did not answer, by kind: upstream_refused, upstream_timeout, upstream_error, client_aborted.",
      labelNames: ["kind"],
      registers,
    });
    this.cacheEntries = new Gauge({
      name: "keystone_edge_cache_entries",
      aggregator: "sum",
      help: "Entries held in this process per cache tier (l1: tokens, context: user + scope contexts).",
      labelNames: ["tier"],
      registers,
      collect() {
        this.reset();
        for (const [tier, n] of Object.entries(view().entries())) this.set({ tier }, n);
      },
    });
    this.revocationFeedLag = new Gauge({
      name: "keystone_edge_revocation_feed_lag_seconds",
      aggregator: "max",
      help: "Seconds since the revocation feed last answered (absent before it ever did).",
      registers,
      collect: sampled(() => view().feedLagSeconds()),
    });
    this.keyPrimaryAge = new Gauge({
      name: "keystone_edge_key_primary_age_seconds",
      aggregator: "max",
      help: "Age of the primary Fernet key (its file's modification time): rotation is overdue when it only grows.",
      registers,
      collect: sampled(() => view().keyRepository()?.primaryAgeSeconds),
    });
    this.identityRequests = new Counter({
      name: "keystone_edge_identity_requests_total",
      help: "Requests to the regional Keystone face, by route (validate, check, revoke, discovery, relay) and status class.",
      labelNames: ["route", "status_class"],
      registers,
    });
    this.identityRelayInFlight = new Gauge({
      name: "keystone_edge_identity_relay_in_flight",
      aggregator: "sum",
      help: "Requests with Keystone through the Identity face's relay now (at most identity_relay.max_in_flight).",
      registers,
    });
    this.identityRelayBufferedBytes = new Gauge({
      name: "keystone_edge_identity_relay_buffered_bytes",
      aggregator: "sum",
      help: "Request body bytes the Identity face's relay holds now (at most identity_relay.max_buffered_bytes).",
      registers,
    });
    this.identityRelayRejected = new Counter({
      name: "keystone_edge_identity_relay_rejected_total",
      help: "Requests the Identity face's relay refused before Keystone: saturated (503), buffer_full (503), too_large (413).",
      labelNames: ["reason"],
      registers,
    });
    for (const reason of ["saturated", "buffer_full", "too_large"]) {
      this.identityRelayRejected.inc({ reason }, 0);
    }
    this.keyRepositoryHealthy = new Gauge({
      name: "keystone_edge_key_repository_healthy",
      aggregator: "min",
      help: "1 while the Fernet key repository reads cleanly; 0 while re-reads fail and the last good key ring is kept (alert on it).",
      registers,
      collect: sampled(() => {
        const keys = view().keyRepository();
        return keys === undefined ? undefined : keys.healthy ? 1 : 0;
      }),
    });
    this.keyRepositoryKeys = new Gauge({
      name: "keystone_edge_key_repository_keys",
      aggregator: "min",
      help: "Fernet keys in the key ring in use.",
      registers,
      collect: sampled(() => view().keyRepository()?.keys),
    });
    this.keyRepositoryReloadFailures = new Counter({
      name: "keystone_edge_key_repository_reload_failures_total",
      help: "Re-reads of the key repository that failed (half-written, emptied, unreadable); the last good ring was kept.",
      registers,
    });
    this.keyRepositoryLastSuccess = new Gauge({
      name: "keystone_edge_key_repository_last_success_timestamp_seconds",
      aggregator: "min",
      help: "When the key repository was last read cleanly (Unix time).",
      registers,
      collect: sampled(() => view().keyRepository()?.lastSuccessSeconds),
    });
    this.keyRepositoryBehind = new Gauge({
      name: "keystone_edge_key_repository_behind",
      aggregator: "max",
      help: "1 while the key ring is known to lag the master's (a token Keystone issues now does not decrypt here; such tokens are asked of Keystone within the fallback budget); 0 otherwise.",
      registers,
      collect() {
        this.set(view().keysBehind() ? 1 : 0);
      },
    });
    this.keyRepositoryAgreed = new Gauge({
      name: "keystone_edge_key_repository_agreed_timestamp_seconds",
      aggregator: "min",
      help: "When a token Keystone had just issued last decrypted with the local key ring (Unix time; absent before it ever did).",
      registers,
      collect: sampled(() => view().keysAgreedAtSeconds()),
    });
    this.keyLagChecks = new Counter({
      name: "keystone_edge_key_lag_checks_total",
      help: "Checks of the key ring against a token Keystone had just issued, by trigger (start, schedule, reload, undecryptable) and result (in_sync, behind, failed).",
      labelNames: ["trigger", "result"],
      registers,
    });
    for (const trigger of ["start", "schedule", "reload", "undecryptable"]) {
      for (const result of ["in_sync", "behind", "failed"]) {
        this.keyLagChecks.inc({ trigger, result }, 0);
      }
    }
    this.keyLagFallbacks = new Counter({
      name: "keystone_edge_key_lag_fallbacks_total",
      help: "Tokens no local key decrypts asked of Keystone while the key ring was behind, by Keystone's answer (valid, invalid, unavailable).",
      labelNames: ["result"],
      registers,
    });
    for (const result of ["valid", "invalid", "unavailable"])
      this.keyLagFallbacks.inc({ result }, 0);
    this.keyLagFallbackRefusals = new Counter({
      name: "keystone_edge_key_lag_fallback_refusals_total",
      help: "Tokens no local key decrypts refused (401) while the key ring was behind because the fallback budget was spent (fernet.lag_fallback_per_second, lag_fallback_burst).",
      registers,
    });
    this.shadowValidations = new Counter({
      name: "keystone_edge_shadow_validations_total",
      help: "Verdicts the edge reached without Keystone, sampled (shadow_validation.sample_ratio) and asked again of the master: agree, disagree (the edge still differs after its second look; see the log line), skipped (not compared; keystone_edge_shadow_skips_total says why), by the tier that settled them.",
      labelNames: ["outcome", "tier"],
      registers,
    });
    for (const outcome of ["agree", "disagree", "skipped"])
      for (const tier of ["l1", "context", "memcached", "local_reject", "negative", "revocation"])
        this.shadowValidations.inc({ outcome, tier }, 0);
    this.shadowSkips = new Counter({
      name: "keystone_edge_shadow_skips_total",
      help: "Sampled verdicts not compared with the master, by reason: master_degraded (its breaker open, or degraded mode), rate (shadow_validation.max_per_second), busy (max_in_flight), master_unavailable (no answer), pending_full (too many differences awaiting a second look), edge_unavailable (no verdict of the edge's at the second look).",
      labelNames: ["reason"],
      registers,
    });
    for (const reason of [
      "master_degraded",
      "rate",
      "busy",
      "master_unavailable",
      "pending_full",
      "edge_unavailable",
    ])
      this.shadowSkips.inc({ reason }, 0);
    this.auditDropped = new Counter({
      name: "keystone_edge_audit_dropped_total",
      help: "Audit log lines dropped: the write buffer was full (audit_log.max_buffered_bytes) or a write failed. Decisions are never delayed for the audit log.",
      registers,
    });
    this.keystoneBreaker = new Gauge({
      name: "keystone_edge_keystone_breaker_state",
      aggregator: "max",
      help: "1 for the current state of each Keystone endpoint's circuit breaker (closed, open, half-open).",
      labelNames: ["endpoint", "state"],
      registers,
      collect() {
        this.reset();
        for (const { endpoint, state } of view().keystoneBreakers()) {
          for (const s of BREAKER_STATE_KINDS)
            this.set({ endpoint, state: s }, s === state ? 1 : 0);
        }
      },
    });
    this.drillActive = new Gauge({
      name: "keystone_edge_drill_active",
      aggregator: "max",
      help: "1 while a failover drill injects its faults (or watches), by scenario; 0 otherwise.",
      labelNames: ["scenario"],
      registers,
    });
    this.clientRefusals = new Counter({
      name: "keystone_edge_client_refusals_total",
      help: "Requests and connections refused before any validation, by listener (proxy, identity, admin) and reason (header_count, header_size, head_size, url_size, duplicate_host, bad_target, bad_request, method_not_allowed, headers_timeout, body_timeout, request_timeout, host_not_allowed, tls_handshake).",
      labelNames: ["listener", "reason"],
      registers,
    });
    this.tlsCertificateNotAfter = new Gauge({
      name: TLS_NOT_AFTER,
      aggregator: "min",
      help: "When the certificate `listen` and `identity_listen` serve (`tls.certfile`) ends, epoch seconds; absent without `tls`. Renew before it, then SIGHUP.",
      // Registered when set (tlsCertificateNotAfterSeconds).
      registers: [],
    });
    this.keystoneEndpointInsecure = new Gauge({
      name: "keystone_edge_keystone_endpoint_insecure",
      aggregator: "max",
      help: "1 for each Keystone endpoint reached without verified TLS, by reason (plain_http, tls_unverified): tokens cross the network readable or to an unproven peer.",
      labelNames: ["endpoint", "reason"],
      registers,
      collect() {
        this.reset();
        for (const { endpoint, reason } of view().insecureEndpoints()) {
          this.set({ endpoint, reason }, 1);
        }
      },
    });
    this.memcachedBreaker = new Gauge({
      name: "keystone_edge_memcached_breaker_state",
      aggregator: "max",
      help: "1 for the current state of each memcached server's circuit breaker (closed, open, half-open).",
      labelNames: ["server", "state"],
      registers,
    });
  }

  /**
   * The Identity relay's observer (identity/relay.ts): its gauges moved by deltas, so that
   * a core replaced by a reload, still finishing requests, keeps the sums right.
   */
  identityRelayObserver(): {
    inFlight(delta: number): void;
    bufferedBytes(deltaBytes: number): void;
    rejected(reason: string): void;
  } {
    return {
      inFlight: (delta) => {
        this.identityRelayInFlight.inc(delta);
      },
      bufferedBytes: (deltaBytes) => {
        this.identityRelayBufferedBytes.inc(deltaBytes);
      },
      rejected: (reason) => {
        this.identityRelayRejected.inc({ reason });
      },
    };
  }

  /** Counts a finished request. */
  countRequest(outcome: string, status: number): void {
    this.hotRequests.inc(outcome, statusClass(status));
  }

  /** Counts a validation by the tier that settled it. */
  countValidation(source: string, result: string): void {
    this.hotValidations.inc(source, result);
  }

  /** Counts cache lookups of a tier. */
  countCacheLookup(tier: string, result: string, n = 1): void {
    this.hotLookups.inc(tier, result, n);
  }
}

const STATUS_CLASSES = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"] as const;

/** `2xx`, `4xx`, … (no string built per call). */
export function statusClass(status: number): string {
  return STATUS_CLASSES[Math.floor(status / 100)] ?? `${String(Math.floor(status / 100))}xx`;
}
