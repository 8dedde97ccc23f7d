/**
 * keystone-edge running: one process from one validated configuration, reloadable.
 *
 * Owns: the lifecycle — the first core (core.ts) built, the listeners opened onto
 * whichever core is in force (listeners.ts), a reload (SIGHUP) building a new core and
 * switching to it between two requests, the replaced core retired and closed once its
 * requests in flight are done, and the orderly close (SIGTERM). The drills and the metrics
 * belong to the running edge, not to one configuration: a drill under way survives a
 * reload (re-fitted to the new endpoints), and the metrics' state gauges read the core in
 * force.
 */
import { EdgeMetrics } from "../admin/metrics.js";
import type { Config } from "../config/schema.js";
import { FaultInjector, type DrillState, type Fault } from "../drill/faults.js";
import { EdgeError } from "../errors.js";
import type { KeyRepository } from "../fernet/key-repository.js";
import type { ServiceToken } from "../keystone/service-token.js";
import { silentLogger, type Logger } from "../log.js";
import { DRILL_SCENARIOS } from "../protocol/admin.js";
import { loadListenerTls, type ListenerTlsMaterial } from "../proxy/tls.js";
import type { CacheFactory } from "./cache-factory.js";
import { buildCore, type EdgeCore, type LoopSharing } from "./core.js";
import type { FeedUpdate } from "../keystone/revocation-feed.js";
import { LISTEN_OPTIONS, Listeners, type BoundAddress } from "./listeners.js";

export type { CacheFactory } from "./cache-factory.js";

export interface EdgeDependencies {
  /** Default: no logs. */
  readonly logger?: Logger;
  /** Default: a new registry with Node's default process metrics. */
  readonly metrics?: EdgeMetrics;
  /** The caches of each configuration (cache-factory.ts `createCacheFactory()` in `serve`). */
  readonly cache: CacheFactory;
  /** A worker's part in its host's Keystone-facing loops; absent: all run here. */
  readonly loops?: LoopSharing;
}

export interface RunningEdge {
  /** Where the proxy listens (the OS's port when the config said 0). */
  readonly address: BoundAddress;
  readonly adminAddress: BoundAddress;
  /** Where the Identity face listens (`identity_listen`); undefined when it is off. */
  readonly identityAddress: BoundAddress | undefined;
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
  /**
   * A follower worker: applies what the leader's revocation feed learnt (core.ts
   * `LoopSharing`) to the configuration in force. Never rejects.
   */
  receiveRevocations(update: FeedUpdate): Promise<void>;
  /** Polls the revocation feed once now (a follower catching up). Never rejects. */
  pollRevocationsNow(): Promise<void>;
  /** Stops accepting, waits up to `graceMs` (default 10 000) for requests in flight, closes everything. */
  close(graceMs?: number): Promise<void>;
}

/** What a reload came to. */
export type ReloadOutcome =
  | { readonly kind: "applied"; readonly caches: "kept" | "rebuilt" }
  | {
      readonly kind: "refused";
      /** `shutting_down`, `listen_changed`, or the code of the error that stopped it. */
      readonly code: string;
      readonly reason: string;
    };

/** How long a core replaced by a reload keeps its pools for requests in flight, ms. */
const RETIRE_AFTER_MS = 30_000;

/**
 * Starts keystone-edge: builds the configuration's core, then binds the listeners.
 * Refuses to start (rejects with the {@link EdgeError} that says why) when a listener
 * cannot be opened or the key repository does not load.
 */
export async function startEdge(
  config: Readonly<Config>,
  deps: EdgeDependencies,
): Promise<RunningEdge> {
  const logger = deps.logger ?? silentLogger;
  const metrics = deps.metrics ?? new EdgeMetrics();
  // Checked before anything starts: a bad certificate is a configuration error (exit 2).
  const tls = config.tls === undefined ? undefined : loadListenerTls(config.tls);
  /** The core in force; set before any listener or drill hook can ask for it. */
  let core: EdgeCore | undefined;
  const inForce = (): EdgeCore => {
    if (core === undefined) throw new Error("no configuration in force yet");
    return core;
  };
  const drills = drillsFor(config, metrics, logger, () => core);
  const context = {
    metrics,
    cache: deps.cache,
    drills,
    logger,
    ...(deps.loops === undefined ? {} : { loops: deps.loops }),
  };
  // The core first, then the listeners: a listener (in a worker, a share of the cluster's)
  // takes connections only once it can serve them. `serve` binds each address for a
  // moment before anything starts (checkListenable), so a taken port costs no Keystone call.
  core = await buildCore(config, context, undefined);
  metrics.currentView = () => inForce().view;
  let listeners: Listeners;
  try {
    listeners = await Listeners.open(config, () => inForce().handlers, metrics, tls);
  } catch (error) {
    drills.close();
    await core.close(false);
    throw error;
  }
  logger.info("keystone-edge listening", {
    listen: `${listeners.address.host}:${String(listeners.address.port)}`,
    admin: `${listeners.adminAddress.host}:${String(listeners.adminAddress.port)}`,
    upstream: config.upstream,
    keys: core.keys.current().size,
    ...(listeners.identityAddress === undefined
      ? {}
      : {
          identity: `${listeners.identityAddress.host}:${String(listeners.identityAddress.port)}`,
        }),
  });
  if (tls !== undefined) announceTls(tls, metrics, logger, "serving HTTPS");
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
    const old = inForce();
    for (const option of LISTEN_OPTIONS) {
      if (next[option] !== old.config[option]) {
        return {
          kind: "refused",
          code: "listen_changed",
          reason: `${option} changed (${String(old.config[option])} → ${String(next[option])}): listeners move only with a restart`,
        };
      }
    }
    const tlsChange = tlsRestartNeeded(old.config, next);
    if (tlsChange !== undefined) {
      return { kind: "refused", code: "listen_changed", reason: tlsChange };
    }
    // Re-read on every reload: SIGHUP after renewing a certificate is how it is picked up.
    let nextTls: ListenerTlsMaterial | undefined;
    try {
      nextTls = next.tls === undefined ? undefined : loadListenerTls(next.tls);
    } catch (error) {
      return {
        kind: "refused",
        code: error instanceof EdgeError ? error.code : "cannot_start",
        reason: error instanceof Error ? error.message : String(error),
      };
    }
    let fresh: EdgeCore;
    try {
      fresh = await buildCore(next, context, old);
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
    listeners.applyLimits(next);
    if (nextTls !== undefined) {
      listeners.applyTls(nextTls);
      announceTls(nextTls, metrics, logger, "reload: TLS certificate re-read");
    }
    core = fresh;
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
    address: listeners.address,
    adminAddress: listeners.adminAddress,
    identityAddress: listeners.identityAddress,
    metrics,
    get keys() {
      return inForce().keys;
    },
    get serviceToken() {
      return inForce().serviceToken;
    },
    receiveRevocations(update) {
      return inForce().feed.receive(update);
    },
    pollRevocationsNow() {
      return inForce().feed.pollNow();
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
      const last = inForce();
      last.drain();
      await listeners.close(graceMs);
      drills.close();
      const old = [...retiring];
      retiring.clear();
      await Promise.all(old.map((c) => c.close(c.state === last.state)));
      await last.close(false);
    },
  };
}

/**
 * Why `next` cannot be applied without a restart as far as TLS goes (turned on or off,
 * client certificates turned on or off: the listeners were built for one or the other), or
 * undefined when it can.
 */
function tlsRestartNeeded(old: Readonly<Config>, next: Readonly<Config>): string | undefined {
  if ((old.tls === undefined) !== (next.tls === undefined)) {
    return `tls turned ${next.tls === undefined ? "off" : "on"}: listeners change protocol only with a restart`;
  }
  const before = old.tls?.client_cafile ?? null;
  const after = next.tls?.client_cafile ?? null;
  if ((before === null) !== (after === null)) {
    return `tls.client_cafile turned ${after === null ? "off" : "on"}: client certificates are asked for or not only from a restart`;
  }
  return undefined;
}

/** Logs the served certificate (and its warnings) and exports its end. */
function announceTls(
  tls: ListenerTlsMaterial,
  metrics: EdgeMetrics,
  logger: Logger,
  message: string,
): void {
  const c = tls.certificate;
  metrics.tlsCertificateNotAfterSeconds = Math.floor(c.notAfterMs / 1000);
  logger.info(message, {
    subject: c.subject,
    issuer: c.issuer,
    ...(c.subjectAltName === undefined ? {} : { subject_alt_name: c.subjectAltName }),
    not_after: new Date(c.notAfterMs).toISOString(),
    sha256: c.fingerprint256,
    client_certificates: tls.clientCertificates,
    ...(tls.clientCertificates === "required" ? { client_cas: tls.clientCaCount } : {}),
  });
  for (const warning of tls.warnings) logger.warn(`tls: ${warning}`);
}

/**
 * The running edge's drills: a fault injector over the first configuration's endpoints,
 * its state exported per scenario, and a key-lag drill's end told to the lag monitor of
 * the core in force (its sync arriving: the ring in view changed).
 */
function drillsFor(
  config: Readonly<Config>,
  metrics: EdgeMetrics,
  logger: Logger,
  current: () => EdgeCore | undefined,
): FaultInjector {
  /** The fault of the drill last reported, to tell a key-lag drill's end. */
  let lastFault: Fault["kind"] = "none";
  const exportDrill = (state: DrillState): void => {
    for (const scenario of DRILL_SCENARIOS) {
      const active = state.kind === "active" && state.drill.scenario === scenario;
      metrics.drillActive.set({ scenario }, active ? 1 : 0);
    }
  };
  const drills = new FaultInjector({
    endpoints: config.keystone.endpoints.map((e) => e.name),
    memcached: config.cache.memcached_servers.length > 0,
    keyCount: () => current()?.keys.current().size ?? 0,
    logger,
    onChange: (state) => {
      exportDrill(state);
      const fault = state.kind === "active" ? state.drill.fault.kind : "none";
      if (lastFault === "primary_key_hidden" && fault !== "primary_key_hidden") {
        current()?.keyLag.ringChanged();
      }
      lastFault = fault;
    },
  });
  exportDrill(drills.current());
  return drills;
}
