/**
 * From validation verdicts to what happens to the request, as keystonemiddleware's
 * `AuthProtocol.process_request` decides it.
 *
 * Owns: validating the user token (`X-Auth-Token`, else `X-Storage-Token`) and the service
 * token (`X-Service-Token`) — in parallel — then: Keystone unreachable for either → 503
 * (webob's body, per `Accept`); not authenticated → 401 with `WWW-Authenticate`, or, under
 * `delay_auth_decision`, forward marked `Invalid`; authenticated → forward with exactly the
 * headers keystonemiddleware sets. Header lists are built once per validated token and
 * reused for every request that presents it. Also as keystonemiddleware: an empty token
 * header counts as no token; an expired user token is accepted when a service token that
 * passes the role check comes with it (`allow_expired`); a user token whose application
 * credential carries access rules is refused for a request no rule allows.
 */
import {
  INVALID,
  PreparedToken,
  injectHeaders,
  serviceTokenRolesMatch,
  type InjectOptions,
  type TokenState,
} from "../contract/inject.js";
import { checkAccessRules } from "../contract/access-rules.js";
import {
  retryAfterValue,
  serviceUnavailableResponse,
  unauthorizedResponse,
} from "../contract/responses.js";
import { silentLogger, tokenHash, type Logger } from "../log.js";
import type { AuthDecision, RequestAuthenticator, RequestInfo, TokenOutcome } from "./decision.js";
import type { Verdict } from "./pipeline.js";
import { PreparedTokens } from "./prepared-tokens.js";

export interface AuthenticatorOptions extends InjectOptions {
  /** `peeked`: `validateNow` was asked first and had nothing (see the pipeline). */
  readonly validate: (token: string, peeked?: boolean) => Promise<Verdict>;
  /** The verdict at once when the in-process cache has it (the hot path); optional. */
  readonly validateNow?: (token: string) => Verdict | undefined;
  /**
   * Validation that accepts an expired token (keystonemiddleware's `allow_expired`). Default:
   * none, and an expired user token is refused whatever service token comes with it.
   */
  readonly validateAllowingExpired?: (token: string) => Promise<Verdict>;
  /** `service_type`: the service's catalog type, for access rules. Default none. */
  readonly serviceType?: string | undefined;
  /** Default: silent. */
  readonly logger?: Logger;
  /** `delay_auth_decision`. */
  readonly delayAuthDecision: boolean;
  /** `www_authenticate_uri`. */
  readonly wwwAuthenticateUri: string;
  /**
   * `Retry-After` of the 503 sent when no Keystone answers, seconds (keystonemiddleware
   * sends none; clients and load balancers that honour it back off instead of hammering).
   * Default 5; the edge passes its breakers' open duration, when the next probe is due.
   */
  readonly retryAfterSeconds?: number;
}

export class EdgeAuthenticator implements RequestAuthenticator {
  /** Header lists per validated token object; cache hits return the same object. */
  private readonly prepared: PreparedTokens;
  private readonly unauthorized;
  private readonly logger: Logger;
  private warnedNoServiceType = false;
  private readonly retryAfter: string;

  constructor(private readonly options: AuthenticatorOptions) {
    this.unauthorized = unauthorizedResponse(options.wwwAuthenticateUri);
    this.logger = options.logger ?? silentLogger;
    this.retryAfter = retryAfterValue(options.retryAfterSeconds);
    this.prepared = new PreparedTokens(options.includeServiceCatalog);
  }

  authenticate(
    userHeader: string | undefined,
    serviceHeader: string | undefined,
    request: RequestInfo,
  ): Promise<AuthDecision> {
    // An empty header is no token (keystonemiddleware tests the header's truthiness).
    const userToken = userHeader === "" ? undefined : userHeader;
    const serviceToken = serviceHeader === "" ? undefined : serviceHeader;
    // Hot path: both tokens (or the one there is) known to the in-process cache.
    const now = this.options.validateNow;
    if (now) {
      const user = userToken === undefined ? undefined : now(userToken);
      const service = serviceToken === undefined ? undefined : now(serviceToken);
      if (
        (userToken === undefined || user) &&
        (serviceToken === undefined || service) &&
        !this.mayAllowExpired(user, service)
      ) {
        return Promise.resolve(this.decide(userToken, serviceToken, user, service, request));
      }
      // What the in-process cache settled stands; the rest goes the slow way, each token
      // looked up (and counted) once.
      return this.authenticateSlowly(userToken, serviceToken, request, { user, service });
    }
    return this.authenticateSlowly(userToken, serviceToken, request, undefined);
  }

  private async authenticateSlowly(
    userToken: string | undefined,
    serviceToken: string | undefined,
    request: RequestInfo,
    known:
      { readonly user: Verdict | undefined; readonly service: Verdict | undefined } | undefined,
  ): Promise<AuthDecision> {
    const peeked = known !== undefined;
    const [first, service] = await Promise.all([
      userToken === undefined
        ? undefined
        : (known?.user ?? this.options.validate(userToken, peeked)),
      serviceToken === undefined
        ? undefined
        : (known?.service ?? this.options.validate(serviceToken, peeked)),
    ]);
    let user = first;
    const allowingExpired = this.options.validateAllowingExpired;
    if (userToken !== undefined && allowingExpired && this.mayAllowExpired(user, service)) {
      user = await allowingExpired(userToken);
    }
    return this.decide(userToken, serviceToken, user, service, request);
  }

  /**
   * keystonemiddleware validates the user token with `allow_expired` when the service token
   * is valid and passes the role check (whether or not `service_token_roles_required`).
   */
  private mayAllowExpired(user: Verdict | undefined, service: Verdict | undefined): boolean {
    return (
      this.options.validateAllowingExpired !== undefined &&
      user?.kind === "invalid" &&
      user.code === "expired" &&
      service?.kind === "valid" &&
      serviceTokenRolesMatch(service.token, this.options.serviceTokenRoles)
    );
  }

  private decide(
    userToken: string | undefined,
    serviceToken: string | undefined,
    user: Verdict | undefined,
    service: Verdict | undefined,
    request: RequestInfo,
  ): AuthDecision {
    if (user?.kind === "unavailable" || service?.kind === "unavailable") {
      const r = serviceUnavailableResponse(request.accept);
      return {
        kind: "respond",
        status: r.status,
        headers: [...r.headers, ["Retry-After", this.retryAfter]],
        body: r.body,
        outcome: "unavailable",
        user,
      };
    }
    let userState = this.state(user);
    if (userState instanceof PreparedToken && userState.accessRestriction !== undefined) {
      const refusal = checkAccessRules(
        userState.accessRestriction,
        { method: request.method, url: request.url, hasServiceToken: serviceToken !== undefined },
        this.options.serviceType,
      );
      if (refusal !== undefined) {
        if (refusal === "no_service_type" && !this.warnedNoServiceType) {
          this.warnedNoServiceType = true;
          this.logger.warn(
            "a token restricted by access rules was refused: set auth_token.service_type so they can be honoured",
          );
        }
        this.logger.debug("user token refused by its application credential's access rules", {
          token: userToken === undefined ? undefined : tokenHash(userToken),
          reason: refusal,
        });
        userState = INVALID;
      }
    }
    const result = injectHeaders(userState, this.state(service), this.options);
    const outcome: TokenOutcome =
      userToken === undefined
        ? "no_token"
        : userState instanceof PreparedToken
          ? "valid"
          : userState === INVALID && user?.kind === "valid"
            ? "access_rules"
            : "invalid";
    if (!result.authenticated && !this.options.delayAuthDecision) {
      const r = this.unauthorized;
      return {
        kind: "respond",
        status: r.status,
        headers: r.headers,
        body: r.body,
        outcome: outcome === "valid" ? "invalid_service_token" : outcome,
        user,
      };
    }
    return {
      kind: "forward",
      headers: result.headers,
      outcome: result.authenticated ? outcome : `delayed_${outcome}`,
      user,
    };
  }

  private state(verdict: Verdict | undefined): TokenState {
    if (verdict === undefined) return null;
    if (verdict.kind !== "valid") return INVALID;
    return this.prepared.of(verdict.token);
  }
}
