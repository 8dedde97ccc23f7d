/**
 * Configurations that are valid but unsafe: what start-up and `check-config` warn about.
 *
 * Owns: the list of Keystone endpoints reached without verified TLS — plain `http://`
 * (tokens and the service user's password cross the network readable) or
 * `keystone.insecure: true` (any peer can pose as Keystone and vouch for any token). They
 * are allowed, for labs and for a Keystone on the same host, but never quietly: the daemon
 * logs each at start-up and exports `keystone_edge_keystone_endpoint_insecure`.
 */
import type { Config } from "./schema.js";

/** Why an endpoint's transport is not trustworthy. */
export type InsecureReason = "plain_http" | "tls_unverified";

/** One Keystone endpoint reached without verified TLS. */
export interface InsecureEndpoint {
  readonly name: string;
  readonly reason: InsecureReason;
}

/** The Keystone endpoints reached without verified TLS, in configured order. */
export function insecureEndpoints(config: Readonly<Config>): readonly InsecureEndpoint[] {
  return config.keystone.endpoints.flatMap(({ name, url }): InsecureEndpoint[] =>
    url.startsWith("http:")
      ? [{ name, reason: "plain_http" }]
      : config.keystone.insecure
        ? [{ name, reason: "tls_unverified" }]
        : [],
  );
}

/** The operator-facing sentence for one insecure endpoint. */
export function insecureEndpointWarning(endpoint: InsecureEndpoint): string {
  return endpoint.reason === "plain_http"
    ? `keystone.endpoints: ${endpoint.name} is plain HTTP: tokens and the service password cross the network readable`
    : `keystone.insecure: ${endpoint.name} is reached without verifying its certificate: any peer can pose as Keystone`;
}
