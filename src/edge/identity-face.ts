/**
 * The regional Keystone face of one configuration (`identity_listen`).
 *
 * Owns: wiring the Identity handler — token validation through the configuration's
 * pipeline, the relay to the Keystone endpoints over pools and limits of its own (a flood
 * on `identity_listen` never takes a validation's socket, nor reports to its breakers),
 * and read-your-writes revocation (refused here and region-wide through memcached's
 * marker before the client learns the revocation succeeded; the feed pulled at once).
 */
import type { RequestListener } from "node:http";

import { statusClass, type EdgeMetrics } from "../admin/metrics.js";
import type { Config } from "../config/schema.js";
import type { FaultInjector } from "../drill/faults.js";
import { IdentityRelay, validationRotation } from "../identity/relay.js";
import { createIdentityHandler } from "../identity/server.js";
import { TokenApi } from "../identity/token-api.js";
import type { TokenDecision } from "../identity/server.js";
import type { AuditTrail } from "./audit-trail.js";
import { KeystoneEndpoint } from "../keystone/endpoint.js";
import type { KeystoneEndpoints } from "../keystone/endpoint-set.js";
import type { FeedUpdate, RevocationFeed } from "../keystone/revocation-feed.js";
import type { Logger } from "../log.js";
import type { RevocationList } from "../revocation/list.js";
import type { ValidationPipeline } from "../validation/pipeline.js";

/** The parts of one configuration the Identity face answers from. */
export interface IdentityParts {
  readonly config: Readonly<Config>;
  readonly metrics: EdgeMetrics;
  readonly logger: Logger;
  readonly drills: FaultInjector;
  /** The validation endpoints: the relay follows their rotation, never reports to them. */
  readonly endpoints: KeystoneEndpoints;
  readonly pipeline: ValidationPipeline;
  readonly revocations: RevocationList;
  readonly feed: RevocationFeed;
  /**
   * With `workers` > 1: tells the other workers of a revocation made here (the supervisor
   * relays it), so read-your-writes holds whichever worker the client reaches next.
   */
  readonly shareRevocations?: (update: FeedUpdate) => void;
  /** Seconds a 503 asks the client to wait. */
  readonly retryAfterSeconds: number;
  /** The audit log, when on. */
  readonly audit?: AuditTrail;
}

/** The Identity handler and its relay (to close); undefined without `identity_listen`. */
export function buildIdentityFace(
  parts: IdentityParts,
): { readonly handler: RequestListener; readonly relay: IdentityRelay } | undefined {
  const { config, metrics, pipeline } = parts;
  if (config.identity_listen === undefined) return undefined;
  const k = config.keystone;
  const ir = config.identity_relay;
  const relay = new IdentityRelay({
    endpoints: k.endpoints.map(
      ({ name, url }) =>
        new KeystoneEndpoint({
          url,
          name,
          fault: (endpoint) => parts.drills.keystone(endpoint),
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
    inRotation: validationRotation(parts.endpoints),
    requestTimeoutMs: ir.timeout_ms,
    maxInFlight: ir.max_in_flight,
    maxBodyBytes: ir.max_body_bytes,
    maxBufferedBytes: ir.max_buffered_bytes,
    retryAfterSeconds: parts.retryAfterSeconds,
    logger: parts.logger,
    observe: metrics.identityRelayObserver(),
  });
  const handler = createIdentityHandler({
    tokenApi: new TokenApi({
      validate: (t) => pipeline.validate(t),
      validateAllowingExpired: (t) => pipeline.validateAllowingExpired(t),
      retryAfterSeconds: parts.retryAfterSeconds,
    }),
    relay,
    upstreamRoots: parts.endpoints.guards.map(
      (g) => new URL(g.endpoint.url).origin + g.endpoint.rootPath,
    ),
    publicRoot: config.identity_public_url,
    limits: config.client,
    onRefusal: (reason) => {
      metrics.clientRefusals.inc({ listener: "identity", reason });
    },
    logger: parts.logger,
    onRequest: (route, status) => {
      metrics.identityRequests.inc({ route, status_class: statusClass(status) });
    },
    ...(parts.audit === undefined
      ? {}
      : { onTokenDecision: (d: TokenDecision) => parts.audit?.identity(d) }),
    onTokenRevoked: async (token) => {
      const revoked = await pipeline.revokeNow(token);
      if (revoked.auditId !== undefined) {
        const events = [
          {
            auditId: revoked.auditId,
            issuedBeforeMicros: revoked.untilMs * 1000,
            revokedAtMicros: Date.now() * 1000,
          },
        ];
        parts.revocations.add(events, { local: true });
        parts.shareRevocations?.({ events, state: parts.feed.status(), local: true });
      }
      void parts.feed.pollNow();
    },
  });
  return { handler, relay };
}
