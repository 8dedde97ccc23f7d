/**
 * What validation decides for one request, as the listener in front of the service asks
 * for it.
 *
 * Owns: the decision types between the proxy and the authenticator — what the proxy tells
 * the authenticator of a request besides its tokens ({@link RequestInfo}), what comes back
 * ({@link AuthDecision}) and the outcome codes requests are counted by. The proxy
 * (proxy/server.ts) depends on these; validation never depends on the proxy.
 */
import type { Verdict } from "./pipeline.js";

/** How a request's user token was settled, before `delay_auth_decision` is applied. */
export type TokenOutcome = "valid" | "invalid" | "no_token" | "access_rules";

/**
 * How a request was settled, the `outcome` label of `keystone_edge_requests_total`:
 * a token outcome; the user token valid but the service token not
 * (`invalid_service_token`); no Keystone to ask (`unavailable`); under
 * `delay_auth_decision`, forwarded unauthenticated (`delayed_` + the token outcome); or
 * refused by the client limits before any validation (`refused`).
 */
export type AuthOutcome =
  TokenOutcome | "invalid_service_token" | "unavailable" | `delayed_${TokenOutcome}` | "refused";

/** What the authenticator decided for one request. */
export type AuthDecision =
  | {
      readonly kind: "forward";
      /** Identity headers to add, `[name, value]`. */
      readonly headers: readonly (readonly [string, string])[];
      /** For metrics and logs: how the user token was settled. */
      readonly outcome: AuthOutcome;
      /** The user token's verdict, when there was a user token (the audit log's). */
      readonly user?: Verdict | undefined;
    }
  | {
      readonly kind: "respond";
      readonly status: number;
      readonly headers: readonly (readonly [string, string])[];
      readonly body: string;
      readonly outcome: AuthOutcome;
      readonly user?: Verdict | undefined;
    };

/** What the authenticator sees of a request besides its tokens. */
export interface RequestInfo {
  /** The `Accept` header: error bodies follow it, as webob's do. */
  readonly accept: string | undefined;
  /** The method, e.g. `GET` (access rules name methods). */
  readonly method: string;
  /**
   * The origin-form request target, e.g. `/v2.1/servers?all_tenants=1` (access rules name
   * paths): exactly what the service receives.
   */
  readonly url: string;
}

/** Settles a request's tokens. Must not throw; a throw is answered 500. */
export interface RequestAuthenticator {
  authenticate(
    userToken: string | undefined,
    serviceToken: string | undefined,
    request: RequestInfo,
  ): Promise<AuthDecision>;
}
