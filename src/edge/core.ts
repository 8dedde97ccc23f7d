/**
 * One configuration's edge, listeners aside: what a reload builds fresh and replaces.
 *
 * Owns: building every part of one configuration in dependency order (key repository →
 * token decoder → Keystone endpoints and their breakers, service token, key lag monitor,
 * validator → caches → revocation feed → validation pipeline → authenticator → forwarder
 * → the three request handlers), the view the metrics read while it is in force, and its
 * end: retired (its loops stop; requests in flight finish on its pools) and closed. What a
 * reload carries over — caches, revocation list (carry-over.ts), breaker and key lag
 * states — is taken from the core it replaces. Nothing here runs per request.
 */
import type { EdgeMetrics, MetricsView } from "../admin/metrics.js";
import type { StatusReporter } from "../admin/status.js";
import { contextCacheTimeSeconds, shadowConfirmAfterMs } from "../config/derived.js";
import type { Config } from "../config/schema.js";
import { insecureEndpoints, insecureEndpointWarning } from "../config/warnings.js";
import { isIdentityHeader } from "../contract/strip.js";
import type { FaultInjector } from "../drill/faults.js";
import { drillKeyView } from "../drill/key-view.js";
import { KeyRepository, primaryKeyAgeSeconds } from "../fernet/key-repository.js";
import { KeystoneEndpoint } from "../keystone/endpoint.js";
import { EndpointProber } from "../keystone/endpoint-probe.js";
import { KeystoneEndpoints } from "../keystone/endpoint-set.js";
import { freshTokenFrom, KeyLagMonitor } from "../keystone/key-lag.js";
import { feedLagSeconds, RevocationFeed, type FeedUpdate } from "../keystone/revocation-feed.js";
import { ServiceToken } from "../keystone/service-token.js";
import { KeystoneValidator } from "../keystone/validate.js";
import { silentLogger, type Logger } from "../log.js";
import { Forwarder } from "../proxy/forward.js";
import { createEdgeHandler } from "../proxy/server.js";
import { concernsAnyContext } from "../revocation/matching.js";
import { TokenDecoder } from "../token/decoder.js";
import { EdgeAuthenticator } from "../validation/authenticator.js";
import { DegradedMode } from "../validation/degraded-mode.js";
import { FallbackBudget } from "../validation/fallback-budget.js";
import { ValidationPipeline } from "../validation/pipeline.js";
import { ShadowValidation } from "../validation/shadow.js";
import { buildAdminFace } from "./admin-face.js";
import { openAuditTrail } from "./audit-trail.js";
import { hostname } from "node:os";
import { noTracing, type Tracing } from "../tracing.js";
import { createOtelTracing } from "../tracing/otel-tracing.js";
import type { CacheFactory } from "./cache-factory.js";
import { stateFor, type SharedState, type StateOrigin } from "./carry-over.js";
import { buildIdentityFace } from "./identity-face.js";
import type { Handlers } from "./listeners.js";

/**
 * How a worker shares the Keystone-facing loops with the other workers of its host
 * (`workers` > 1): the leader polls the revocation feed and runs the scheduled key lag
 * check, and publishes what each poll learnt; followers apply it and ask Keystone only at
 * start and on their own triggers. Every worker publishes the revocations it makes itself
 * (a token revoked through its Identity face), so that the others refuse it at once too.
 */
export interface LoopSharing {
  readonly role: "leader" | "follower";
  readonly publish: (update: FeedUpdate) => void;
}

/** What every core is built with: the running edge's, across reloads. */
export interface CoreContext {
  readonly metrics: EdgeMetrics;
  readonly cache: CacheFactory;
  readonly drills: FaultInjector;
  readonly logger?: Logger;
  /** Absent with one process: every loop runs here. */
  readonly loops?: LoopSharing;
}

/** One configuration's edge. */
export interface EdgeCore extends StateOrigin {
  readonly keys: KeyRepository;
  readonly serviceToken: ServiceToken;
  /** Whether the key ring lags the master's (a reload carries its state over). */
  readonly keyLag: KeyLagMonitor;
  /** The Keystone endpoints and their breakers (a reload carries their states over). */
  readonly endpoints: KeystoneEndpoints;
  /** What the listeners call while this core is in force. */
  readonly handlers: Handlers;
  /** What the state gauges read while this core is in force. */
  readonly view: MetricsView;
  /** The revocation feed (a follower's receives what the leader shares). */
  readonly feed: RevocationFeed;
  /** `/readyz` answers 503 from now on. */
  drain(): void;
  /** Replaced by a reload: its loops stop; its requests in flight finish on its pools. */
  retire(): void;
  /** Stops the loops and closes the pools; the caches too unless `keepState`. */
  close(keepState: boolean): Promise<void>;
}

/**
 * Builds everything but the listeners from one configuration. `previous` is the core a
 * reload replaces: its caches and revocation list are taken over when they may be
 * (carry-over.ts), and its breaker and key lag states always.
 */
export async function buildCore(
  config: Readonly<Config>,
  context: CoreContext,
  previous: EdgeCore | undefined,
): Promise<EdgeCore> {
  const { metrics, drills } = context;
  const logger = context.logger ?? silentLogger;
  // First: a path that cannot be written stops the start (or the reload) before any loop runs.
  const audit = await openAuditTrail(config, metrics, logger);
  const tracing = tracingFor(config, logger);
  /** The key lag monitor, built once the service token exists: told of every ring change. */
  const lagHook: { monitor?: KeyLagMonitor } = {};
  const keys = await KeyRepository.open({
    directory: config.fernet.key_repository,
    logger,
    onReload: (outcome) => {
      if (outcome.kind === "failed") metrics.keyRepositoryReloadFailures.inc();
      else if (outcome.kind === "changed") lagHook.monitor?.ringChanged();
    },
  }).catch(async (error: unknown) => {
    await audit?.close();
    throw error;
  });
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
  const endpoints = new KeystoneEndpoints(
    k.endpoints.map(
      ({ name, url }) =>
        new KeystoneEndpoint({
          url,
          name,
          fault: (endpoint) => drills.keystone(endpoint),
          timeoutMs: k.timeout_ms,
          connections: k.connections,
          cafile: k.cafile,
          certfile: k.certfile,
          keyfile: k.keyfile,
          insecure: k.insecure,
        }),
    ),
    {
      failureThreshold: k.failure_threshold,
      openDurationMs: k.open_duration_ms,
      logger,
      // A reload does not forget an outage: same name and URL, same breaker state.
      initialState: (endpoint) =>
        previous?.endpoints.guards
          .find((g) => g.endpoint.name === endpoint.name && g.endpoint.url === endpoint.url)
          ?.breaker.state(),
    },
  );
  const prober = new EndpointProber(endpoints, {
    probeIntervalMs: k.probe_interval_ms,
    timeoutMs: k.timeout_ms,
  });
  prober.start();
  const serviceToken = new ServiceToken({
    auth: k.auth,
    endpoints: () => endpoints.preferred(),
    logger,
  });
  void serviceToken.refresh();
  // Started once the pipeline exists: a lag found drops the pipeline's refusals.
  const lag = new KeyLagMonitor({
    keys: keyView,
    issue: freshTokenFrom(serviceToken),
    intervalMs: config.fernet.lag_check_interval_ms,
    scheduled: context.loops?.role !== "follower",
    undecryptableMinIntervalMs: config.fernet.lag_check_min_interval_ms,
    ...(previous === undefined ? {} : { initialState: previous.keyLag.state() }),
    logger,
    onCheck: (trigger, result) => {
      metrics.keyLagChecks.inc({ trigger, result });
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
    endpoints,
    requestTimeoutMs: k.request_timeout_ms,
    serviceToken,
    includeCatalog,
    logger,
    tracing,
    observe: (endpoint, outcome, latencyMs) => {
      metrics.keystoneCalls.observe({ endpoint, outcome }, latencyMs / 1000);
    },
  });
  const state: SharedState = stateFor(config, includeCatalog, previous, { ...context, logger });
  const { cache, contexts, revocations } = state;
  /** Set by drain(): `/readyz` answers 503 while requests in flight finish. */
  let draining = false;
  const feed = new RevocationFeed({
    endpoints,
    serviceToken,
    list: revocations,
    pollIntervalMs: k.revocation_poll_interval_ms,
    tokenExpirationSeconds: config.fernet.token_expiration,
    allowExpiredWindowSeconds: config.fernet.allow_expired_window,
    contextLifetimeSeconds: contextCacheTimeSeconds(config) + config.cache.stale_if_error,
    maxEvents: k.revocation_max_events,
    logger,
    mode: context.loops?.role === "follower" ? "follow" : "poll",
    ...(context.loops?.role === "leader" ? { onShare: context.loops.publish } : {}),
    onDropped: (events) => {
      metrics.revocationEventsDropped.inc(events);
    },
    onEvents: (events) => {
      metrics.revocationEventsApplied.inc(events.length);
      // Cached tokens stay: every cache hit is checked against the list, so a revoked one
      // is refused there with no Keystone call. Contexts go: they answer new tokens, which
      // an event's issued_before does not cover.
      const contextsPurged = contexts?.purge(concernsAnyContext(events)) ?? 0;
      if (contextsPurged > 0) {
        logger.info("contexts purged by revocation events", { contexts: contextsPurged });
      }
    },
  });
  feed.start();
  const degraded = new DegradedMode({ logger });
  const shadow = shadowValidation(config, {
    endpoints,
    serviceToken,
    degraded,
    recheck: (token) => pipeline.recheck(token),
    metrics,
    logger,
  });
  const pipeline = new ValidationPipeline({
    ...(shadow === undefined ? {} : { shadow }),
    tracing,
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
      if (result === "refused") metrics.keyLagFallbackRefusals.inc();
      else metrics.keyLagFallbacks.inc({ result });
    },
    logger,
    observe: (v) => {
      metrics.countValidation(v.kind === "unavailable" ? "keystone" : v.source, v.kind);
      degraded.observe(v);
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
  const proxy = createEdgeHandler({
    authenticator,
    forwarder,
    isIdentityHeader,
    limits: config.client,
    tracing,
    onRefusal: (reason) => {
      metrics.clientRefusals.inc({ listener: "proxy", reason });
    },
    logger,
    onRequestDone: (o) => {
      metrics.countRequest(o.auth, o.status);
      audit?.proxy(o);
      if (o.forward !== "ok" && o.forward !== "not_forwarded") {
        metrics.upstreamErrors.inc({ kind: o.forward });
      }
    },
  });
  const admin = buildAdminFace({
    config,
    metrics,
    logger,
    drills,
    keys,
    keyLag: lag,
    endpoints,
    serviceToken,
    feed,
    state,
    pipeline,
    degraded,
    draining: () => draining,
  });
  const identity = buildIdentityFace({
    config,
    metrics,
    logger,
    drills,
    endpoints,
    pipeline,
    revocations,
    feed,
    retryAfterSeconds,
    ...(audit === undefined ? {} : { audit }),
    ...(context.loops === undefined ? {} : { shareRevocations: context.loops.publish }),
  });
  const status: StatusReporter = admin.status;
  const view: MetricsView = {
    entries: () => ({
      l1: cache.size ?? 0,
      ...(contexts === undefined ? {} : { context: contexts.size }),
    }),
    feedLagSeconds: () => feedLagSeconds(feed.status(), Date.now()),
    feedLastSuccessSeconds: () => {
      const s = feed.status();
      return s.kind === "starting" || s.lastSuccessMs === undefined
        ? undefined
        : s.lastSuccessMs / 1000;
    },
    revocationEvents: () => revocations.size,
    keyRepository: () => {
      const s = keys.status();
      return {
        healthy: s.last_reload.result === "ok",
        keys: s.key_count,
        lastSuccessSeconds: keys.lastSuccessMs() / 1000,
        primaryAgeSeconds: primaryKeyAgeSeconds(s),
      };
    },
    keysBehind: () => lag.state().kind === "behind",
    keysAgreedAtSeconds: () => {
      const at = lag.lastAgreedAtMs();
      return at === undefined ? undefined : at / 1000;
    },
    degradedMode: () => degraded.active,
    keystoneBreakers: () =>
      endpoints.guards.map((g) => ({ endpoint: g.label, state: g.breaker.state().kind })),
    insecureEndpoints: () => insecure.map((e) => ({ endpoint: e.name, reason: e.reason })),
  };
  return {
    config,
    includeCatalog,
    state,
    keys,
    serviceToken,
    keyLag: lag,
    endpoints,
    handlers: { proxy, admin: admin.handler, identity: identity?.handler },
    view,
    feed,
    drain() {
      draining = true;
    },
    retire() {
      // Its loops stop now (the new core runs its own); its pools and service token stay
      // for the requests still in flight until close().
      status.stop();
      shadow?.stop();
      keys.close();
      void lag.stop();
      void prober.stop();
      void feed.stop();
    },
    async close(keepState) {
      status.stop();
      shadow?.stop();
      keys.close();
      serviceToken.close();
      await lag.stop();
      await prober.stop();
      await feed.stop();
      await Promise.all([
        forwarder.close(),
        endpoints.close(),
        identity?.relay.close(),
        audit?.close(),
        tracing.shutdown(),
        keepState ? undefined : state.cache.close(),
      ]);
      if (!keepState) state.contexts?.close();
    },
  };
}

/**
 * Shadow validation for `config`, asking the master (the last of `keystone.endpoints`)
 * alone, through its pool and breaker; undefined when `sample_ratio` is 0.
 */
function shadowValidation(
  config: Readonly<Config>,
  parts: {
    readonly endpoints: KeystoneEndpoints;
    readonly serviceToken: ServiceToken;
    readonly degraded: DegradedMode;
    readonly recheck: (token: string) => ReturnType<ValidationPipeline["recheck"]>;
    readonly metrics: EdgeMetrics;
    readonly logger: Logger;
  },
): ShadowValidation | undefined {
  const s = config.shadow_validation;
  const master = parts.endpoints.guards.at(-1);
  if (s.sample_ratio === 0 || master === undefined) return undefined;
  const { metrics } = parts;
  const validator = new KeystoneValidator({
    endpoints: {
      guards: [master],
      report: (guard, admission, outcome) => {
        parts.endpoints.report(guard, admission, outcome);
      },
    },
    serviceToken: parts.serviceToken,
    requestTimeoutMs: config.keystone.timeout_ms,
    includeCatalog: false,
    logger: parts.logger,
    observe: (endpoint, outcome, latencyMs) => {
      metrics.keystoneCalls.observe({ endpoint, outcome }, latencyMs / 1000);
    },
  });
  return new ShadowValidation({
    master: validator,
    masterHealthy: () => master.breaker.state().kind === "closed" && !parts.degraded.active,
    recheck: parts.recheck,
    sampleRatio: s.sample_ratio,
    maxPerSecond: s.max_per_second,
    maxInFlight: s.max_in_flight,
    confirmAfterMs: shadowConfirmAfterMs(config),
    logger: parts.logger,
    onOutcome: (outcome, tier, skip) => {
      metrics.shadowValidations.inc({ outcome, tier });
      if (skip !== undefined) metrics.shadowSkips.inc({ reason: skip });
    },
  });
}

/** OpenTelemetry tracing for `config`, or {@link noTracing} when `tracing.otlp_endpoint` is unset. */
function tracingFor(config: Readonly<Config>, logger: Logger): Tracing {
  const t = config.tracing;
  if (t.otlp_endpoint === undefined) return noTracing;
  return createOtelTracing({
    otlpEndpoint: t.otlp_endpoint,
    sampleRatio: t.sample_ratio,
    serviceName: t.service_name,
    instanceId: `${hostname()}/${String(process.pid)}`,
    logger,
  });
}
