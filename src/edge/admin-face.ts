/**
 * The admin listener's side of one configuration: its status, readiness and admin API.
 *
 * Owns: wiring the parts of a configuration into the admin handler — `/status` (a
 * reporter sampling the counters), `/readyz` (one check per part), the admin API (cache
 * flush, drills, a drill's validation from a chosen tier) — and the reporter's lifetime.
 */
import type { RequestListener } from "node:http";

import { AdminApi } from "../admin/admin-api.js";
import { createAdminHandler } from "../admin/admin-server.js";
import type { EdgeMetrics } from "../admin/metrics.js";
import {
  keysCheck,
  keystoneCheck,
  revocationFeedCheck,
  serviceTokenCheck,
} from "../admin/readiness.js";
import { StatusReporter } from "../admin/status.js";
import type { Config } from "../config/schema.js";
import type { FaultInjector } from "../drill/faults.js";
import type { KeyRepository } from "../fernet/key-repository.js";
import type { KeystoneEndpoints } from "../keystone/endpoint-set.js";
import type { KeyLagMonitor } from "../keystone/key-lag.js";
import type { RevocationFeed } from "../keystone/revocation-feed.js";
import type { ServiceToken } from "../keystone/service-token.js";
import type { Logger } from "../log.js";
import { systemClock } from "../units.js";
import type { DegradedMode } from "../validation/degraded-mode.js";
import type { ValidationPipeline } from "../validation/pipeline.js";
import type { SharedState } from "./carry-over.js";

/** The parts of one configuration the admin listener reports on and acts on. */
export interface AdminParts {
  readonly config: Readonly<Config>;
  readonly metrics: EdgeMetrics;
  readonly logger: Logger;
  readonly drills: FaultInjector;
  readonly keys: KeyRepository;
  readonly keyLag: KeyLagMonitor;
  readonly endpoints: KeystoneEndpoints;
  readonly serviceToken: ServiceToken;
  readonly feed: RevocationFeed;
  readonly state: SharedState;
  readonly pipeline: ValidationPipeline;
  readonly degraded: DegradedMode;
  /** Whether the edge is draining (SIGTERM): `/readyz` answers 503. */
  readonly draining: () => boolean;
}

/** One configuration's admin handler and the status reporter behind it (started). */
export function buildAdminFace(parts: AdminParts): {
  readonly handler: RequestListener;
  readonly status: StatusReporter;
} {
  const { config, metrics, keys, keyLag, endpoints, feed, state } = parts;
  const breakers = () =>
    endpoints.guards.map((g) => ({ label: g.label, state: g.breaker.state() }));
  const status = new StatusReporter({
    metrics,
    endpoints: breakers,
    degradedMode: () => parts.degraded.active,
    draining: parts.draining,
    keys: () => keys.status(),
    keyLag: () => ({ state: keyLag.state(), lastCheck: keyLag.lastCheck() }),
    feed: () => feed.status(),
    feedPollIntervalMs: config.keystone.revocation_poll_interval_ms,
    memcached: config.cache.memcached_servers.length > 0,
    drill: () => parts.drills.current(),
  });
  status.start();
  const handler = createAdminHandler({
    registry: metrics.registry,
    allowedHosts: config.admin_allowed_hosts,
    onHostRefused: () => {
      metrics.clientRefusals.inc({ listener: "admin", reason: "host_not_allowed" });
    },
    status: () => status.snapshot(),
    api: new AdminApi({
      secret: config.admin_secret,
      flushCaches: () => ({
        l1: state.cache.clear?.() ?? 0,
        context: state.contexts?.clear() ?? 0,
      }),
      drills: parts.drills,
      validate: (token, from) => parts.pipeline.validateFrom(token, from),
      logger: parts.logger,
    }),
    readiness: [
      keysCheck(
        () => keys.status(),
        () => keyLag.state(),
      ),
      serviceTokenCheck(() => parts.serviceToken.snapshot()),
      keystoneCheck(breakers, () => parts.degraded.active, systemClock),
      revocationFeedCheck(() => feed.status(), systemClock),
      { name: "upstream", check: () => ({ ok: true, detail: config.upstream }) },
      {
        name: "lifecycle",
        check: () =>
          parts.draining()
            ? { ok: false, detail: "draining: finishing requests in flight, accepting none" }
            : { ok: true, detail: "serving" },
      },
    ],
  });
  return { handler, status };
}
