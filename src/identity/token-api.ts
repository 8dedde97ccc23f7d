/**
 * `GET` and `HEAD /v3/auth/tokens`, answered by the edge itself.
 *
 * Owns: the regional Keystone face's token validation — the same statuses, headers and
 * body Keystone gives, from the edge's own tiers (in-process cache, local decryption,
 * per-scope contexts, memcached; Keystone only when they cannot answer), so services that
 * keep keystonemiddleware validate against the region instead of the master. In
 * Keystone's order:
 *
 * 1. the caller's `X-Auth-Token` must be valid: else 401 (`WWW-Authenticate` names the
 *    edge);
 * 2. the subject (`X-Subject-Token`) must be valid — past its expiry only with
 *    `allow_expired`, which goes to Keystone so that its `allow_expired_window` decides;
 *    a token of an application credential with access rules only for a caller that
 *    declares access-rules support (`OpenStack-Identity-Access-Rules` ≥ 1.0), as Keystone
 *    requires: else 404;
 * 3. the caller must be allowed to (policy.ts): else 403;
 * 4. 200 with `{"token": …}` (the catalog unless `nocatalog`), `X-Subject-Token` echoed;
 *    HEAD the same without the body.
 *
 * No Keystone answering and no tier knowing a token: 503 with `Retry-After` (Keystone
 * itself would be the one down). Tokens are never logged or echoed in error bodies.
 */
import { retryAfterValue } from "../contract/responses.js";
import type { KeystoneToken } from "../token/body.js";
import type { Verdict } from "../validation/pipeline.js";
import { mayInspectToken, type TokenApiAction } from "./policy.js";

/** An answer of the Identity face: status, headers in order, body (none for HEAD). */
export interface IdentityResponse {
  readonly status: number;
  readonly headers: readonly (readonly [string, string])[];
  readonly body: string;
  /** The subject token's verdict, once it was validated (for the audit log; never sent). */
  readonly subject?: Verdict;
}

/** What a token request brings. */
export interface TokenApiRequest {
  readonly method: "GET" | "HEAD";
  readonly authToken: string | undefined;
  readonly subjectToken: string | undefined;
  /** The query string's parameters. */
  readonly query: URLSearchParams;
  /** `OpenStack-Identity-Access-Rules`. */
  readonly accessRulesVersion: string | undefined;
  /** The edge's Identity URL as this client reaches it, for `WWW-Authenticate`. */
  readonly publicUrl: string;
}

/** Options of {@link TokenApi}. */
export interface TokenApiOptions {
  readonly validate: (token: string) => Promise<Verdict>;
  readonly validateAllowingExpired: (token: string) => Promise<Verdict>;
  /** `Retry-After` of a 503, seconds. Default 5. */
  readonly retryAfterSeconds?: number;
}

/** Keystone's minimum `OpenStack-Identity-Access-Rules` version. */
const ACCESS_RULES_MIN_VERSION = 1.0;

/** Keystone's error body: `{"error": {"code", "message", "title"}}`. */
export function keystoneError(status: number, title: string, message: string): string {
  return JSON.stringify({ error: { code: status, message, title } });
}

/** `allow_expired` as oslo's `bool_from_string` reads it. */
function truthy(value: string | null): boolean {
  return value !== null && ["1", "t", "true", "on", "y", "yes"].includes(value.toLowerCase());
}

export class TokenApi {
  private readonly retryAfter: string;

  constructor(private readonly options: TokenApiOptions) {
    this.retryAfter = retryAfterValue(options.retryAfterSeconds);
  }

  async answer(request: TokenApiRequest): Promise<IdentityResponse> {
    const action: TokenApiAction = request.method === "HEAD" ? "check" : "validate";
    const caller =
      request.authToken === undefined || request.authToken === ""
        ? undefined
        : await this.options.validate(request.authToken);
    if (caller?.kind === "unavailable") return this.unavailable(request);
    if (caller?.kind !== "valid") return this.unauthorized(request);

    const subjectToken = request.subjectToken;
    if (subjectToken === undefined || subjectToken === "") return this.notFound(request);
    const subject = truthy(request.query.get("allow_expired"))
      ? await this.options.validateAllowingExpired(subjectToken)
      : await this.options.validate(subjectToken);
    return { ...this.judge(request, action, caller.token, subject), subject };
  }

  /** The answer once both tokens are validated. */
  private judge(
    request: TokenApiRequest,
    action: TokenApiAction,
    caller: KeystoneToken,
    subject: Verdict,
  ): IdentityResponse {
    if (subject.kind === "unavailable") return this.unavailable(request);
    if (subject.kind !== "valid") return this.notFound(request);
    if (hasAccessRules(subject.token)) {
      const version = Number.parseFloat(request.accessRulesVersion ?? "");
      if (!(version >= ACCESS_RULES_MIN_VERSION)) return this.notFound(request);
    }
    if (!mayInspectToken(action, caller, subject.token)) {
      return this.respond(
        request,
        403,
        keystoneError(
          403,
          "Forbidden",
          `You are not authorized to perform the requested action: identity:${action === "check" ? "check_token" : "validate_token"}.`,
        ),
      );
    }
    const body = JSON.stringify({
      token: withoutCatalogIf(request.query.has("nocatalog"), subject.token),
    });
    return this.respond(request, 200, body, [["X-Subject-Token", request.subjectToken ?? ""]]);
  }

  private unauthorized(request: TokenApiRequest): IdentityResponse {
    return this.respond(
      request,
      401,
      keystoneError(401, "Unauthorized", "The request you have made requires authentication."),
      [["WWW-Authenticate", `Keystone uri="${request.publicUrl}"`]],
    );
  }

  private notFound(request: TokenApiRequest): IdentityResponse {
    return this.respond(request, 404, keystoneError(404, "Not Found", "Failed to validate token"));
  }

  private unavailable(request: TokenApiRequest): IdentityResponse {
    return this.respond(
      request,
      503,
      keystoneError(
        503,
        "Service Unavailable",
        "The token cannot be validated now: no Keystone endpoint answers.",
      ),
      [["Retry-After", this.retryAfter]],
    );
  }

  private respond(
    request: TokenApiRequest,
    status: number,
    body: string,
    extra: readonly (readonly [string, string])[] = [],
  ): IdentityResponse {
    return {
      status,
      headers: [
        ["Content-Type", "application/json"],
        ["Content-Length", String(Buffer.byteLength(body))],
        ["Vary", "X-Auth-Token"],
        ...extra,
      ],
      body: request.method === "HEAD" ? "" : body,
    };
  }
}

/** Whether the token's application credential carries access rules (Keystone renders them). */
function hasAccessRules(token: KeystoneToken): boolean {
  const appCred = token.application_credential;
  if (typeof appCred !== "object" || appCred === null) return false;
  const rules = (appCred as { access_rules?: unknown }).access_rules;
  return rules !== undefined && rules !== null;
}

function withoutCatalogIf(drop: boolean, token: KeystoneToken): KeystoneToken {
  if (!drop || token.catalog === undefined) return token;
  const { catalog: _catalog, ...rest } = token;
  return rest;
}
