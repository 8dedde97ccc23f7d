/**
 * The composition root: one running keystone-edge from one validated configuration.
 *
 * Owns: building every part in dependency order (key repository → token decoder → Keystone
 * endpoints, service token, validator → caches → validation pipeline → authenticator →
 * forwarder → listeners), wiring metrics and logs into each, and closing them in reverse.
 * Nothing here runs per request.
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { EdgeMetrics, statusClass } from "./admin/metrics.js";
import { IdentityRelay, validationRotation } from "./identity/relay.js";
import { createIdentityServer } from "./identity/server.js";
import { TokenApi } from "./identity/token-api.js";
import { createAdminServer } from "./admin/admin-server.js";
import { StatusReporter } from "./admin/status.js";
import { AdminApi } from "./admin/admin-api.js";
import {
  keysCheck,
  keystoneCheck,
  revocationFeedCheck,
  serviceTokenCheck,
} from "./admin/readiness.js";
import { systemClock } from "./units.js";
import { EdgeError } from "./errors.js";
import type { Config } from "./config/schema.js";
import { parseListenAddress } from "./config/schema.js";
import { isIdentityHeader } from "./contract/strip.js";
import { KeyRepository, primaryKeyAgeSeconds } from "./fernet/key-repository.js";
import { KeystoneEndpoint } from "./keystone/endpoint.js";
import { ServiceToken } from "./keystone/service-token.js";
import { KeystoneValidator } from "./keystone/validate.js";
import { freshTokenFrom, KeyLagMonitor } from "./keystone/key-lag.js";
import { FallbackBudget } from "./validation/fallback-budget.js";
import { silentLogger, type Logger } from "./log.js";
import { Forwarder } from "./proxy/forward.js";
import { createEdgeServer } from "./proxy/server.js";
import { applyListenerLimits } from "./proxy/client-limits.js";
import { insecureEndpoints, insecureEndpointWarning } from "./config/warnings.js";
import { EndpointProber } from "./keystone/endpoint-probe.js";
import { KeystoneEndpoints } from "./keystone/endpoint-set.js";
import { feedLagSeconds, RevocationFeed } from "./keystone/revocation-feed.js";
import type { ContextStore } from "./cache/context-store.js";
import { cacheMetricsFor } from "./cache/factory.js";
import { RevocationList, concernsAnyContext } from "./revocation/events.js";
import { ContextCache } from "./validation/context.js";
import { TokenDecoder } from "./token/decoder.js";
import { FaultInjector, type DrillState, type Fault } from "./drill/faults.js";
import { DRILL_SCENARIOS } from "./protocol/admin.js";
import type { MemcachedFault } from "./cache/memcached.js";
import { drillKeyView } from "./drill/key-view.js";
import { EdgeAuthenticator } from "./validation/authenticator.js";
import { ValidationPipeline, type ValidationCache } from "./validation/pipeline.js";

/** A cache implementation for the pipeline, with a way to let go of its connections. */
export type CacheFactory = (
  config: Readonly<Config>,
  metrics: EdgeMetrics,
  logger: Logger,
  hooks?: {
    /** A drill's memcached fault, asked before every memcached call. */
    readonly memcachedFault?: () => MemcachedFault;
  },
) => ValidationCache & {
  close(): Promise<void> | void;
  /** Where per-scope contexts are shared between nodes (memcached); none by default. */
  contextStore?(): ContextStore | undefined;
  /** Entries held in process (for `keystone_edge_cache_entries`). */
  readonly size?: number;
  /** Drops the in-process entries (admin API); returns how many there were. */
  clear?(): number;
};

export interface EdgeDependencies {
  readonly logger?: Logger;
  readonly metrics?: EdgeMetrics;
  readonly cache: CacheFactory;
}

export interface RunningEdge {
  /** Where the proxy listens (the OS's port when the config said 0). */
  readonly address: { host: string; port: number };
  readonly adminAddress: { host: string; port: number };
  /** Where the Identity face listens (`identity_listen`); undefined when it is off. */
  readonly identityAddress: { host: string; port: number } | undefined;
  readonly metrics: EdgeMetrics;
  /** The key repository and service token of the configuration in force. */
  readonly keys: KeyRepository;
  readonly serviceToken: ServiceToken;
  /**
   * Applies a new configuration without dropping a connection (SIGHUP): everything is
   * rebuilt from it — keys re-read, endpoints, pools, loops — and new requests meet it
   * while requests in flight finish with the old one. The caches are kept when the cache
   * options are unchanged. Refused, with the old configuration kept, when a listen address
   * changed or the new configuration cannot start (its key repository does not load).
   */
  reload(config: Readonly<Config>): Promise<ReloadOutcome>;
  /** Stops accepting, waits up to `graceMs` for requests in flight, closes everything. */
  close(graceMs?: number): Promise<void>;
}

function listen(server: Server, hostPort: string): Promise<{ host: string; port: number }> {
  const parsed = parseListenAddress(hostPort);
  if (!parsed) throw new Error(`invalid listen address ${hostPort}`);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(parsed.port, parsed.host, () => {
      server.off("error", reject);
      const a = server.address() as AddressInfo;
      resolve({ host: a.address, port: a.port });
    });
  });
}

/** What a reload takes over when the cache options are unchanged: the caches' contents. */
interface SharedState {
  readonly cache: ReturnType<CacheFactory>;
  readonly contexts: ContextCache | undefined;
  readonly revocations: RevocationList;
}

function newSharedState(
  config: Readonly<Config>,
  deps: EdgeDependencies,
  metrics: EdgeMetrics,
  drills: FaultInjector,
): SharedState {
  const logger = deps.logger ?? silentLogger;
  const cache = deps.cache(config, metrics, logger, {
    memcachedFault: () => drills.memcached(),
  });
  const revocations = new RevocationList();
  const contextCacheTime = config.cache.context_cache_time ?? config.cache.token_cache_time;
  const contexts =
    contextCacheTime > 0
      ? new ContextCache({
          contextCacheTimeSeconds: contextCacheTime,
          staleIfErrorSeconds: config.cache.stale_if_error,
          maxEntries: config.cache.lru_max_entries,
          shared: cache.contextStore?.(),
          superseded: (context, learntAtMs) => revocations.supersedes(context, learntAtMs),
          metrics: cacheMetricsFor(metrics),
        })
      : undefined;
  return { cache, contexts, revocations };
}

/** One configuration's edge, listeners aside (they are the running edge's, across reloads). */
interface EdgeCore {
  readonly config: Readonly<Config>;
  readonly includeCatalog: boolean;
  readonly state: SharedState;
  readonly keys: KeyRepository;
  readonly serviceToken: ServiceToken;
  /** Whether the key ring lags the master's (a reload carries its state over). */
  readonly keyLag: KeyLagMonitor;
  /** Not listening: their `request` handlers are moved onto the running edge's listeners. */
  /** The Keystone endpoints and their breakers (a reload carries their states over). */
  readonly endpoints: KeystoneEndpoints;
  readonly proxy: Server;
  readonly admin: Server;
  readonly identity: Server | undefined;
  /** Points the scrape-time gauges at this core. */
  exportSources(): void;
  /** `/readyz` answers 503 from now on. */
  drain(): void;
  /** Replaced by a reload: stops exporting metrics; its requests in flight finish. */
  retire(): void;
  /** Stops the background loops and closes the pools; the caches too unless `keepState`. */
  close(keepState: boolean): Promise<void>;
}

/** How long a core replaced by a reload keeps its pools for requests in flight, ms. */
const RETIRE_AFTER_MS = 30_000;

/** What a reload came to. */
export type ReloadOutcome =
  | { readonly kind: "applied"; readonly caches: "kept" | "rebuilt" }
  | {
      readonly kind: "refused";
      /** `shutting_down`, `listen_changed`, or the code of the error that stopped it. */
      readonly code: string;
      readonly reason: string;
    };

/**
 * Builds everything but the listeners from one configuration: what a reload replaces.
 * `previous`'s caches, contexts and revocation list are taken over when the cache
 * options (and whether catalogs are fetched) are unchanged.
 */
async function buildCore(
  config: Readonly<Config>,
  deps: EdgeDependencies,
  metrics: EdgeMetrics,
  drills: FaultInjector,
  previous: EdgeCore | undefined,
): Promise<EdgeCore> {
  const logger = deps.logger ?? silentLogger;
  /** Set once a reload replaced this core: it exports no metric from then on. */
  let retired = false;
  /** The key lag monitor, built once the service token exists: told of every ring change. */
  const lagHook: { monitor?: KeyLagMonitor } = {};
  const keys = await KeyRepository.open({
    directory: config.fernet.key_repository,
    logger,
    onReload: (outcome) => {
      if (retired) return;
      if (outcome.kind === "failed") {
        metrics.keyRepositoryHealthy.set(0);
        metrics.keyRepositoryReloadFailures.inc();
        return;
      }
      metrics.keyRepositoryHealthy.set(1);
      metrics.keyRepositoryLastSuccess.set(outcome.atMs / 1000);
      if (outcome.kind === "changed") {
        metrics.keyRepositoryKeys.set(outcome.ring.size);
        lagHook.monitor?.ringChanged();
      }
    },
  });
  metrics.keyRepositoryHealthy.set(1);
  metrics.keyRepositoryKeys.set(keys.current().size);
  metrics.keyRepositoryLastSuccess.set(Date.now() / 1000);
  // What validation sees of the ring: all of it, but for a key-lag drill's hidden primary.
  const keyView = drillKeyView(keys, () => drills.keyRing());
  const decoder = new TokenDecoder({
    keys: keyView,
    authMethods: config.fernet.auth_methods,
    defaultDomainId: config.fernet.default_domain_id,
  });
  const k = config.keystone;
  const insecure = insecureEndpoints(config);
  for (const e of insecure) {
    logger.warn(insecureEndpointWarning(e), { endpoint: e.name, reason: e.reason });
  }
  const endpoints = k.endpoints.map(
    ({ name, url }) =>
      new KeystoneEndpoint({
        url,
        name,
        fault: (endpoint) => drills.keystone(endpoint),
        timeoutMs: k.timeout_ms,
        cafile: k.cafile,
        certfile: k.certfile,
        keyfile: k.keyfile,
        insecure: k.insecure,
      }),
  );
  const guarded = new KeystoneEndpoints(endpoints, {
    failureThreshold: k.failure_threshold,
    openDurationMs: k.open_duration_ms,
    logger,
    onBreakerChange: (label, state) => {
      if (!retired) metrics.setKeystoneBreaker(label, state);
    },
    // A reload does not forget an outage: same name and URL, same breaker state.
    initialState: (endpoint) =>
      previous?.endpoints.guards
        .find((g) => g.endpoint.name === endpoint.name && g.endpoint.url === endpoint.url)
        ?.breaker.state(),
  });
  const prober = new EndpointProber(guarded, {
    probeIntervalMs: k.probe_interval_ms,
    timeoutMs: k.timeout_ms,
  });
  prober.start();
  const serviceToken = new ServiceToken({
    auth: k.auth,
    endpoints: () => guarded.preferred(),
    logger,
  });
  void serviceToken.refresh();
  // Started once the pipeline exists: a lag found drops the pipeline's refusals.
  const lag = new KeyLagMonitor({
    keys: keyView,
    issue: freshTokenFrom(serviceToken),
    intervalMs: config.fernet.lag_check_interval_ms,
    undecryptableMinIntervalMs: config.fernet.lag_check_min_interval_ms,
    ...(previous === undefined ? {} : { initialState: previous.keyLag.state() }),
    logger,
    onCheck: (trigger, result) => {
      if (!retired) metrics.keyLagChecks.inc({ trigger, result });
    },
    onChange: (state) => {
      if (state.kind !== "behind") return;
      const dropped = pipeline.keysFellBehind();
      if (dropped > 0) logger.info("refusals of undecryptable tokens dropped", { dropped });
    },
  });
  lagHook.monitor = lag;
  // The Identity face answers with the catalog unless asked not to: fetch it then.
  const includeCatalog =
    config.auth_token.include_service_catalog || config.identity_listen !== undefined;
  const validator = new KeystoneValidator({
    endpoints: guarded,
    requestTimeoutMs: k.request_timeout_ms,
    serviceToken,
    includeCatalog,
    logger,
    observe: (endpoint, outcome, latencyMs) => {
      metrics.keystoneCalls.observe({ endpoint, outcome }, latencyMs / 1000);
    },
  });
  const reuse =
    previous !== undefined &&
    previous.includeCatalog === includeCatalog &&
    JSON.stringify(previous.config.cache) === JSON.stringify(config.cache);
  const state: SharedState = reuse ? previous.state : newSharedState(config, deps, metrics, drills);
  const { cache, contexts, revocations } = state;
  let inDegradedMode = false;
  /** Set by close(): `/readyz` answers 503 while requests in flight finish. */
  let draining = false;
  const feed = new RevocationFeed({
    endpoints: guarded,
    serviceToken,
    list: revocations,
    pollIntervalMs: k.revocation_poll_interval_ms,
    tokenExpirationSeconds: config.fernet.token_expiration,
    allowExpiredWindowSeconds: config.fernet.allow_expired_window,
    contextLifetimeSeconds:
      (config.cache.context_cache_time ?? config.cache.token_cache_time) +
      config.cache.stale_if_error,
    maxEvents: k.revocation_max_events,
    logger,
    onDropped: (events) => {
      if (!retired) metrics.revocationEventsDropped.inc(events);
    },
    onEvents: (events) => {
      if (!retired) metrics.revocationEventsApplied.inc(events.length);
      // Cached tokens stay: every cache hit is checked against the list, so a revoked one
      // is refused there with no Keystone call. Contexts go: they answer new tokens, which
      // an event's issued_before does not cover.
      const contextsPurged = contexts?.purge(concernsAnyContext(events)) ?? 0;
      if (contextsPurged > 0) {
        logger.info("contexts purged by revocation events", { contexts: contextsPurged });
      }
    },
    onPoll: (state) => {
      if (retired) return;
      metrics.revocationEventsHeld.set(revocations.size);
      if (state.kind !== "starting" && state.lastSuccessMs !== undefined) {
        metrics.revocationLastSuccess.set(state.lastSuccessMs / 1000);
      }
    },
  });
  feed.start();
  const pipeline = new ValidationPipeline({
    revocations,
    ...(contexts === undefined ? {} : { contexts }),
    decoder,
    cache,
    keystone: validator,
    tokenCacheTimeSeconds: config.cache.token_cache_time,
    tokenExpirationSeconds: config.fernet.token_expiration,
    keyLag: lag,
    lookAgain: () => keys.recheck(),
    fallbackBudget: new FallbackBudget({
      perSecond: config.fernet.lag_fallback_per_second,
      burst: config.fernet.lag_fallback_burst,
    }),
    onFallback: (result) => {
      if (retired) return;
      if (result === "refused") metrics.keyLagFallbackRefusals.inc();
      else metrics.keyLagFallbacks.inc({ result });
    },
    logger,
    observe: (v) => {
      metrics.countValidation(v.kind === "unavailable" ? "keystone" : v.source, v.kind);
      // Degraded mode, once per transition: entered when a token is served from a stale
      // context because no Keystone answers; left when Keystone answers again.
      const degraded =
        v.kind === "valid" && v.source === "degraded"
          ? true
          : v.kind !== "unavailable" && v.source === "keystone"
            ? false
            : undefined;
      if (degraded !== undefined && degraded !== inDegradedMode && !retired) {
        inDegradedMode = degraded;
        metrics.degraded.set(degraded ? 1 : 0);
        if (degraded) {
          logger.warn("degraded mode: no Keystone answers; serving known users and scopes only");
        } else {
          logger.info("degraded mode over: Keystone answers again");
        }
      }
    },
  });
  lag.start();
  // 503s ask clients back when the breakers next probe Keystone.
  const retryAfterSeconds = k.open_duration_ms / 1000;
  const authenticator = new EdgeAuthenticator({
    validate: (t, peeked) => pipeline.validate(t, peeked),
    validateNow: (t) => pipeline.validateNow(t),
    validateAllowingExpired: (t) => pipeline.validateAllowingExpired(t),
    serviceType: config.auth_token.service_type,
    logger,
    delayAuthDecision: config.auth_token.delay_auth_decision,
    wwwAuthenticateUri: k.www_authenticate_uri,
    retryAfterSeconds,
    includeServiceCatalog: config.auth_token.include_service_catalog,
    serviceTokenRoles: config.auth_token.service_token_roles,
    serviceTokenRolesRequired: config.auth_token.service_token_roles_required,
  });
  const forwarder = new Forwarder({
    upstream: config.upstream,
    connections: config.upstream_max_connections,
    timeoutMs: config.upstream_timeout_ms,
    wwwAuthenticate: `Keystone uri="${k.www_authenticate_uri}"`,
  });
  const server = createEdgeServer({
    authenticator,
    forwarder,
    isIdentityHeader,
    limits: config.client,
    onRefusal: (reason) => {
      metrics.clientRefusals.inc({ listener: "proxy", reason });
    },
    logger,
    onRequestDone: (o) => {
      metrics.countRequest(o.auth, o.status);
      if (o.forward !== "ok" && o.forward !== "not_forwarded") {
        metrics.upstreamErrors.inc({ kind: o.forward });
      }
    },
  });
  const status = new StatusReporter({
    metrics,
    endpoints: () => guarded.guards.map((g) => ({ label: g.label, state: g.breaker.state() })),
    degradedMode: () => inDegradedMode,
    draining: () => draining,
    keys: () => keys.status(),
    keyLag: () => ({ state: lag.state(), lastCheck: lag.lastCheck() }),
    feed: () => feed.status(),
    feedPollIntervalMs: k.revocation_poll_interval_ms,
    memcached: config.cache.memcached_servers.length > 0,
    drill: () => drills.current(),
  });
  status.start();
  const admin = createAdminServer({
    registry: metrics.registry,
    allowedHosts: config.admin_allowed_hosts,
    onHostRefused: () => {
      metrics.clientRefusals.inc({ listener: "admin", reason: "host_not_allowed" });
    },
    status: () => status.snapshot(),
    api: new AdminApi({
      secret: config.admin_secret,
      flushCaches: () => ({ l1: cache.clear?.() ?? 0, context: contexts?.clear() ?? 0 }),
      drills,
      validate: (token, from) => pipeline.validateFrom(token, from),
      logger,
    }),
    readiness: [
      keysCheck(
        () => keys.status(),
        () => lag.state(),
      ),
      serviceTokenCheck(() => serviceToken.snapshot()),
      keystoneCheck(
        () => guarded.guards.map((g) => ({ label: g.label, state: g.breaker.state() })),
        () => inDegradedMode,
        systemClock,
      ),
      revocationFeedCheck(() => feed.status(), systemClock),
      { name: "upstream", check: () => ({ ok: true, detail: config.upstream }) },
      {
        name: "lifecycle",
        check: () =>
          draining
            ? { ok: false, detail: "draining: finishing requests in flight, accepting none" }
            : { ok: true, detail: "serving" },
      },
    ],
  });
  // The relay has pools and limits of its own (identity/relay.ts): a flood on
  // identity_listen never takes a validation's socket, nor reports to its breakers.
  const ir = config.identity_relay;
  const relay =
    config.identity_listen === undefined
      ? undefined
      : new IdentityRelay({
          endpoints: k.endpoints.map(
            ({ name, url }) =>
              new KeystoneEndpoint({
                url,
                name,
                fault: (endpoint) => drills.keystone(endpoint),
                // Its own deadline: issuing a token takes seconds on a busy Keystone.
                timeoutMs: ir.timeout_ms,
                connectTimeoutMs: k.timeout_ms,
                connections: ir.connections,
                cafile: k.cafile,
                certfile: k.certfile,
                keyfile: k.keyfile,
                insecure: k.insecure,
              }),
          ),
          inRotation: validationRotation(guarded),
          requestTimeoutMs: ir.timeout_ms,
          maxInFlight: ir.max_in_flight,
          maxBodyBytes: ir.max_body_bytes,
          maxBufferedBytes: ir.max_buffered_bytes,
          retryAfterSeconds,
          logger,
          observe: metrics.identityRelayObserver(),
        });
  const identity =
    relay === undefined
      ? undefined
      : createIdentityServer({
          tokenApi: new TokenApi({
            validate: (t) => pipeline.validate(t),
            validateAllowingExpired: (t) => pipeline.validateAllowingExpired(t),
            retryAfterSeconds,
          }),
          relay,
          upstreamRoots: endpoints.map((e) => new URL(e.url).origin + e.rootPath),
          publicRoot: config.identity_public_url,
          limits: config.client,
          onRefusal: (reason) => {
            metrics.clientRefusals.inc({ listener: "identity", reason });
          },
          logger,
          onRequest: (route, status) => {
            metrics.identityRequests.inc({ route, status_class: statusClass(status) });
          },
          // Read-your-writes: refused here, and region-wide through memcached's marker,
          // before the client learns the revocation succeeded; the feed is pulled at once.
          onTokenRevoked: async (token) => {
            const revoked = await pipeline.revokeNow(token);
            if (revoked.auditId !== undefined) {
              revocations.add(
                [
                  {
                    auditId: revoked.auditId,
                    issuedBeforeMicros: revoked.untilMs * 1000,
                    revokedAtMicros: Date.now() * 1000,
                  },
                ],
                { local: true },
              );
            }
            void feed.pollNow();
          },
        });
  return {
    config,
    includeCatalog,
    state,
    keys,
    serviceToken,
    keyLag: lag,
    endpoints: guarded,
    proxy: server,
    admin,
    identity,
    exportSources() {
      metrics.sources.entries = () => ({
        l1: cache.size ?? 0,
        ...(contexts === undefined ? {} : { context: contexts.size }),
      });
      metrics.sources.feedLagSeconds = () => feedLagSeconds(feed.status(), Date.now());
      metrics.sources.primaryKeyAgeSeconds = () => primaryKeyAgeSeconds(keys.status());
      metrics.sources.keysBehind = () => lag.state().kind === "behind";
      metrics.sources.keysAgreedAtSeconds = () => {
        const at = lag.lastAgreedAtMs();
        return at === undefined ? undefined : at / 1000;
      };
      metrics.degraded.set(0);
      metrics.keystoneEndpointInsecure.reset();
      for (const e of insecure) {
        metrics.keystoneEndpointInsecure.set({ endpoint: e.name, reason: e.reason }, 1);
      }
      metrics.keystoneBreaker.reset();
      for (const g of guarded.guards) metrics.setKeystoneBreaker(g.label, g.breaker.state().kind);
    },
    drain() {
      draining = true;
    },
    retire() {
      // Its loops stop now (the new core runs its own); its pools and service token stay
      // for the requests still in flight until close().
      retired = true;
      status.stop();
      keys.close();
      void lag.stop();
      void prober.stop();
      void feed.stop();
    },
    async close(keepState) {
      retired = true;
      status.stop();
      keys.close();
      serviceToken.close();
      await lag.stop();
      await prober.stop();
      await feed.stop();
      await Promise.all([
        forwarder.close(),
        guarded.close(),
        relay?.close(),
        keepState ? undefined : state.cache.close(),
      ]);
      if (!keepState) state.contexts?.close();
    },
  };
}

/** Starts keystone-edge. Refuses to start when the key repository does not load. */
export async function startEdge(
  config: Readonly<Config>,
  deps: EdgeDependencies,
): Promise<RunningEdge> {
  const logger = deps.logger ?? silentLogger;
  const metrics = deps.metrics ?? new EdgeMetrics();
  // The drill under way belongs to the running edge, not to one configuration.
  /** The core in force, for the drills' hooks (they exist before the first core). */
  const inForce: { core?: EdgeCore } = {};
  /** The fault of the drill last reported, to tell a key-lag drill's end. */
  let drillFault: Fault["kind"] = "none";
  const drills = new FaultInjector({
    endpoints: config.keystone.endpoints.map((e) => e.name),
    memcached: config.cache.memcached_servers.length > 0,
    keyCount: () => inForce.core?.keys.current().size ?? 0,
    logger,
    onChange: (state) => {
      exportDrill(state);
      const fault = state.kind === "active" ? state.drill.fault.kind : "none";
      // A key-lag drill's end is the region's sync arriving: the ring in view changed, so
      // the lag monitor checks again at once, as after a reload of the repository.
      if (drillFault === "primary_key_hidden" && fault !== "primary_key_hidden") {
        inForce.core?.keyLag.ringChanged();
      }
      drillFault = fault;
    },
  });
  function exportDrill(state: DrillState): void {
    for (const scenario of DRILL_SCENARIOS) {
      const active = state.kind === "active" && state.drill.scenario === scenario;
      metrics.drillActive.set({ scenario }, active ? 1 : 0);
    }
  }
  exportDrill(drills.current());
  let core = await buildCore(config, deps, metrics, drills, undefined);
  inForce.core = core;
  core.exportSources();
  // The listeners are the first core's servers for good; later cores' handlers move onto them.
  const server = core.proxy;
  const admin = core.admin;
  const identity = core.identity;
  const address = await listen(server, config.listen);
  const adminAddress = await listen(admin, config.admin_listen);
  const identityAddress =
    identity === undefined || config.identity_listen === undefined
      ? undefined
      : await listen(identity, config.identity_listen);
  logger.info("keystone-edge listening", {
    listen: `${address.host}:${String(address.port)}`,
    admin: `${adminAddress.host}:${String(adminAddress.port)}`,
    upstream: config.upstream,
    keys: core.keys.current().size,
    ...(identityAddress === undefined
      ? {}
      : { identity: `${identityAddress.host}:${String(identityAddress.port)}` }),
  });
  let reloading: Promise<ReloadOutcome> | undefined;
  /** Set by close(); read across awaits, hence a field. */
  const lifecycle = { closing: false };
  const isClosing = (): boolean => lifecycle.closing;
  /** Cores replaced by reloads whose requests in flight may still be finishing. */
  const retiring = new Set<EdgeCore>();

  async function reload(next: Readonly<Config>): Promise<ReloadOutcome> {
    const shuttingDown: ReloadOutcome = {
      kind: "refused",
      code: "shutting_down",
      reason: "the edge is shutting down",
    };
    if (isClosing()) return shuttingDown;
    const old = core;
    for (const option of ["listen", "admin_listen", "identity_listen"] as const) {
      if (next[option] !== old.config[option]) {
        return {
          kind: "refused",
          code: "listen_changed",
          reason: `${option} changed (${String(old.config[option])} → ${String(next[option])}): listeners move only with a restart`,
        };
      }
    }
    let fresh: EdgeCore;
    try {
      fresh = await buildCore(next, deps, metrics, drills, old);
    } catch (error) {
      return {
        kind: "refused",
        code: error instanceof EdgeError ? error.code : "cannot_start",
        reason: error instanceof Error ? error.message : String(error),
      };
    }
    // The new core validates only with a service token of its own: get it before traffic.
    const ready = await Promise.race([
      fresh.serviceToken.ensure().then(
        () => true,
        () => false,
      ),
      new Promise<false>((r) =>
        setTimeout(() => r(false), next.keystone.request_timeout_ms).unref(),
      ),
    ]);
    if (!ready)
      logger.warn("reload: no service token yet for the new configuration; applying it anyway");
    if (isClosing()) {
      // SIGTERM came while the new core was being built: it never serves.
      await fresh.close(fresh.state === old.state);
      return shuttingDown;
    }
    // From here on every new request, on new and kept-alive connections alike, meets the
    // new configuration; requests already in their handlers finish with the old one.
    for (const [live, replacement] of [
      [server, fresh.proxy],
      [admin, fresh.admin],
      [identity, fresh.identity],
    ] as const) {
      if (live === undefined || replacement === undefined) continue;
      live.removeAllListeners("request");
      if (live !== admin) applyListenerLimits(live, next.client);
      for (const handler of replacement.listeners("request")) {
        live.on("request", handler as (...args: unknown[]) => void);
      }
    }
    core = fresh;
    inForce.core = fresh;
    fresh.exportSources();
    drills.reconfigure({
      endpoints: next.keystone.endpoints.map((e) => e.name),
      memcached: next.cache.memcached_servers.length > 0,
    });
    const kept = fresh.state === old.state;
    old.retire();
    // The old core's pools serve requests still in flight: closed once they are done
    // (requests past the longest deadline are the forwarder's and the client's business).
    retiring.add(old);
    setTimeout(() => {
      if (retiring.delete(old)) {
        old.close(kept).catch((error: unknown) => {
          logger.error("closing the replaced configuration failed", { error: String(error) });
        });
      }
    }, RETIRE_AFTER_MS).unref();
    logger.info("configuration reloaded", {
      caches: kept ? "kept" : "rebuilt",
      keys: fresh.keys.current().size,
      endpoints: next.keystone.endpoints.map((e) => e.name),
    });
    return { kind: "applied", caches: kept ? "kept" : "rebuilt" };
  }

  return {
    address,
    adminAddress,
    identityAddress,
    metrics,
    get keys() {
      return core.keys;
    },
    get serviceToken() {
      return core.serviceToken;
    },
    reload(next) {
      // One at a time: a second SIGHUP waits for the first.
      const run = (reloading ?? Promise.resolve()).then(() => reload(next));
      reloading = run.catch((error: unknown): ReloadOutcome => ({
        kind: "refused",
        code: "internal",
        reason: String(error),
      }));
      return run;
    },
    async close(graceMs = 10_000) {
      lifecycle.closing = true;
      // A reload under way either finished (its core is current and drains below) or saw
      // `closing` and closed its own core.
      await reloading;
      // /readyz answers 503 from now on, so that load balancers stop sending traffic
      // while requests in flight finish; the admin listener closes last.
      core.drain();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await Promise.race([closed, new Promise((r) => setTimeout(r, graceMs).unref())]);
      server.closeAllConnections();
      admin.closeAllConnections();
      admin.close();
      identity?.closeAllConnections();
      identity?.close();
      drills.close();
      const old = [...retiring];
      retiring.clear();
      await Promise.all(old.map((c) => c.close(c.state === core.state)));
      await core.close(false);
    },
  };
}
