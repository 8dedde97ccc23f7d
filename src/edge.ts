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
import { IdentityRelay } from "./identity/relay.js";
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
import type { Config } from "./config/schema.js";
import { parseListenAddress } from "./config/schema.js";
import { isIdentityHeader } from "./contract/strip.js";
import { KeyRepository } from "./fernet/key-repository.js";
import { KeystoneEndpoint } from "./keystone/endpoint.js";
import { ServiceToken } from "./keystone/service-token.js";
import { KeystoneValidator } from "./keystone/validate.js";
import { silentLogger, type Logger } from "./log.js";
import { Forwarder } from "./proxy/forward.js";
import { createEdgeServer } from "./proxy/server.js";
import { EndpointProber } from "./keystone/endpoint-probe.js";
import { KeystoneEndpoints, endpointLabel } from "./keystone/endpoint-set.js";
import { RevocationFeed } from "./keystone/revocation-feed.js";
import type { ContextStore } from "./cache/context-store.js";
import { cacheMetricsFor } from "./cache/factory.js";
import { RevocationList, concernsContext } from "./revocation/events.js";
import { ContextCache } from "./validation/context.js";
import { TokenDecoder } from "./token/decoder.js";
import { EdgeAuthenticator } from "./validation/authenticator.js";
import { ValidationPipeline, type ValidationCache } from "./validation/pipeline.js";

/** A cache implementation for the pipeline, with a way to let go of its connections. */
export type CacheFactory = (
  config: Readonly<Config>,
  metrics: EdgeMetrics,
  logger: Logger,
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
  readonly keys: KeyRepository;
  readonly serviceToken: ServiceToken;
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

/** Starts keystone-edge. Refuses to start when the key repository does not load. */
export async function startEdge(
  config: Readonly<Config>,
  deps: EdgeDependencies,
): Promise<RunningEdge> {
  const logger = deps.logger ?? silentLogger;
  const metrics = deps.metrics ?? new EdgeMetrics();
  const keys = await KeyRepository.open({
    directory: config.fernet.key_repository,
    logger,
    onReload: (outcome) => {
      if (outcome.kind === "failed") {
        metrics.keyRepositoryHealthy.set(0);
        metrics.keyRepositoryReloadFailures.inc();
        return;
      }
      metrics.keyRepositoryHealthy.set(1);
      metrics.keyRepositoryLastSuccess.set(outcome.atMs / 1000);
      if (outcome.kind === "changed") metrics.keyRepositoryKeys.set(outcome.ring.size);
    },
  });
  metrics.keyRepositoryHealthy.set(1);
  metrics.keyRepositoryKeys.set(keys.current().size);
  metrics.keyRepositoryLastSuccess.set(Date.now() / 1000);
  const decoder = new TokenDecoder({
    keys,
    authMethods: config.fernet.auth_methods,
    defaultDomainId: config.fernet.default_domain_id,
  });
  const k = config.keystone;
  const endpoints = k.endpoints.map(
    (url) =>
      new KeystoneEndpoint({
        url,
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
      metrics.setKeystoneBreaker(label, state);
    },
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
  const validator = new KeystoneValidator({
    endpoints: guarded,
    requestTimeoutMs: k.request_timeout_ms,
    serviceToken,
    // The Identity face answers with the catalog unless asked not to: fetch it then.
    includeCatalog:
      config.auth_token.include_service_catalog || config.identity_listen !== undefined,
    logger,
    observe: (endpoint, outcome, latencyMs) => {
      metrics.keystoneCalls.observe(
        { endpoint: endpointLabel(endpoint), outcome },
        latencyMs / 1000,
      );
    },
  });
  const cache = deps.cache(config, metrics, logger);
  const revocations = new RevocationList();
  let inDegradedMode = false;
  /** Set by close(): `/readyz` answers 503 while requests in flight finish. */
  let draining = false;
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
  const feed = new RevocationFeed({
    endpoints: guarded,
    serviceToken,
    list: revocations,
    pollIntervalMs: k.revocation_poll_interval_ms,
    logger,
    onEvents: (events) => {
      metrics.revocationEventsApplied.inc(events.length);
      // Cached tokens stay: every cache hit is checked against the list, so a revoked one
      // is refused there with no Keystone call. Contexts go: they answer new tokens, which
      // an event's issued_before does not cover.
      const contextsPurged = contexts?.purge((c) => events.some((e) => concernsContext(e, c))) ?? 0;
      if (contextsPurged > 0) {
        logger.info("contexts purged by revocation events", { contexts: contextsPurged });
      }
    },
    onPoll: (state) => {
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
      if (degraded !== undefined && degraded !== inDegradedMode) {
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
    wwwAuthenticate: `Keystone uri="${k.www_authenticate_uri}"`,
  });
  const server = createEdgeServer({
    authenticator,
    forwarder,
    isIdentityHeader,
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
    feed: () => feed.status(),
  });
  status.start();
  const admin = createAdminServer({
    registry: metrics.registry,
    status: () => status.snapshot(),
    api: new AdminApi({
      secret: config.admin_secret,
      flushCaches: () => ({ l1: cache.clear?.() ?? 0, context: contexts?.clear() ?? 0 }),
      logger,
    }),
    readiness: [
      keysCheck(() => keys.status()),
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
  const identity =
    config.identity_listen === undefined
      ? undefined
      : createIdentityServer({
          tokenApi: new TokenApi({
            validate: (t) => pipeline.validate(t),
            validateAllowingExpired: (t) => pipeline.validateAllowingExpired(t),
            retryAfterSeconds,
          }),
          relay: new IdentityRelay({
            endpoints: guarded,
            requestTimeoutMs: k.request_timeout_ms,
            retryAfterSeconds,
            logger,
          }),
          upstreamRoots: endpoints.map((e) => new URL(e.url).origin + e.rootPath),
          publicRoot: config.identity_public_url,
          logger,
          onRequest: (route, status) => {
            metrics.identityRequests.inc({ route, status_class: statusClass(status) });
          },
        });
  metrics.sources.entries = () => ({
    l1: cache.size ?? 0,
    ...(contexts === undefined ? {} : { context: contexts.size }),
  });
  metrics.sources.feedLagSeconds = () => {
    const state = feed.status();
    const last = state.kind === "starting" ? undefined : state.lastSuccessMs;
    return last === undefined ? undefined : Math.max(0, (Date.now() - last) / 1000);
  };
  metrics.sources.primaryKeyAgeSeconds = () =>
    keys.status().keys.find((key) => key.role === "primary")?.age_seconds;
  const address = await listen(server, config.listen);
  const adminAddress = await listen(admin, config.admin_listen);
  const identityAddress =
    identity === undefined || config.identity_listen === undefined
      ? undefined
      : await listen(identity, config.identity_listen);
  logger.info("keystone-edge listening", {
    listen: `${address.host}:${address.port}`,
    admin: `${adminAddress.host}:${adminAddress.port}`,
    upstream: config.upstream,
    keys: keys.current().size,
    ...(identityAddress === undefined
      ? {}
      : { identity: `${identityAddress.host}:${String(identityAddress.port)}` }),
  });
  return {
    address,
    adminAddress,
    identityAddress,
    metrics,
    keys,
    serviceToken,
    async close(graceMs = 10_000) {
      // /readyz answers 503 from now on, so that load balancers stop sending traffic
      // while requests in flight finish; the admin listener closes last.
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await Promise.race([closed, new Promise((r) => setTimeout(r, graceMs).unref())]);
      server.closeAllConnections();
      admin.closeAllConnections();
      admin.close();
      identity?.closeAllConnections();
      identity?.close();
      status.stop();
      keys.close();
      serviceToken.close();
      await prober.stop();
      await feed.stop();
      await Promise.all([forwarder.close(), guarded.close(), cache.close()]);
    },
  };
}
