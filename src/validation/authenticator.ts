/**
 * From validation verdicts to what happens to the request, as keystonemiddleware's
 * `AuthProtocol.process_request` decides it.
 *
 * Owns: validating the user token (`X-Auth-Token`, else `X-Storage-Token`) and the service
 * token (`X-Service-Token`) — in parallel — then: Keystone unreachable for either → 503
 * (webob's body, per `Accept`); not authenticated → 401 with `WWW-Authenticate`, or, under
 * `delay_auth_decision`, forward marked `Invalid`; authenticated → forward with exactly the
 * headers keystonemiddleware sets. Header lists are built once per validated token and
 * reused for every request that presents it.
 */
import {
  INVALID,
  injectHeaders,
  prepareToken,
  type InjectOptions,
  type PreparedToken,
  type TokenState,
} from "../contract/inject.js";
import { serviceUnavailableResponse, unauthorizedResponse } from "../contract/responses.js";
import type { KeystoneToken } from "../keystone/token-body.js";
import type { AuthDecision, RequestAuthenticator, RequestInfo } from "../proxy/server.js";
import type { Verdict } from "./pipeline.js";

export interface AuthenticatorOptions extends InjectOptions {
  readonly validate: (token: string) => Promise<Verdict>;
  /** The verdict at once when the in-process cache has it (the hot path); optional. */
  readonly validateNow?: (token: string) => Verdict | undefined;
  /** `delay_auth_decision`. */
  readonly delayAuthDecision: boolean;
  /** `www_authenticate_uri`. */
  readonly wwwAuthenticateUri: string;
}

export class EdgeAuthenticator implements RequestAuthenticator {
  /** Header lists per validated token object; cache hits return the same object. */
  private readonly prepared = new WeakMap<KeystoneToken, PreparedToken>();
  private readonly unauthorized;

  constructor(private readonly options: AuthenticatorOptions) {
    this.unauthorized = unauthorizedResponse(options.wwwAuthenticateUri);
  }

  authenticate(
    userToken: string | undefined,
    serviceToken: string | undefined,
    request: RequestInfo,
  ): Promise<AuthDecision> {
    // Hot path: both tokens (or the one there is) known to the in-process cache.
    const now = this.options.validateNow;
    if (now) {
      const user = userToken === undefined ? undefined : now(userToken);
      const service = serviceToken === undefined ? undefined : now(serviceToken);
      if ((userToken === undefined || user) && (serviceToken === undefined || service)) {
        return Promise.resolve(this.decide(userToken, user, service, request));
      }
    }
    return this.authenticateSlowly(userToken, serviceToken, request);
  }

  private async authenticateSlowly(
    userToken: string | undefined,
    serviceToken: string | undefined,
    request: RequestInfo,
  ): Promise<AuthDecision> {
    const [user, service] = await Promise.all([
      userToken === undefined ? undefined : this.options.validate(userToken),
      serviceToken === undefined ? undefined : this.options.validate(serviceToken),
    ]);
    return this.decide(userToken, user, service, request);
  }

  private decide(
    userToken: string | undefined,
    user: Verdict | undefined,
    service: Verdict | undefined,
    request: RequestInfo,
  ): AuthDecision {
    if (user?.kind === "unavailable" || service?.kind === "unavailable") {
      const r = serviceUnavailableResponse(request.accept);
      return {
        kind: "respond",
        status: r.status,
        headers: r.headers,
        body: r.body,
        outcome: "unavailable",
      };
    }
    const result = injectHeaders(this.state(user), this.state(service), this.options);
    const outcome =
      userToken === undefined ? "no_token" : user?.kind === "valid" ? "valid" : "invalid";
    if (!result.authenticated && !this.options.delayAuthDecision) {
      const r = this.unauthorized;
      return {
        kind: "respond",
        status: r.status,
        headers: r.headers,
        body: r.body,
        outcome: outcome === "valid" ? "invalid_service_token" : outcome,
      };
    }
    return {
      kind: "forward",
      headers: result.headers,
      outcome: result.authenticated ? outcome : `delayed_${outcome}`,
    };
  }

  private state(verdict: Verdict | undefined): TokenState {
    if (verdict === undefined) return null;
    if (verdict.kind !== "valid") return INVALID;
    let p = this.prepared.get(verdict.token);
    if (!p) {
      p = prepareToken(verdict.token, this.options.includeServiceCatalog);
      this.prepared.set(verdict.token, p);
    }
    return p;
  }
}
