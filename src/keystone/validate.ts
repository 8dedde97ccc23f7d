/**
 * Asking Keystone about a token: `GET /v3/auth/tokens`, the last tier.
 *
 * Owns: the call (the edge's service token as `X-Auth-Token`, the subject as
 * `X-Subject-Token`), what each answer means — 200 a context, 404 not valid, 401 our own
 * token went stale (re-authenticate once and ask again), 403 the service user lacks the
 * policy (an operator error: unavailable, logged) — and trying the endpoints in order.
 * Like keystonemiddleware it announces access-rule support
 * (`OpenStack-Identity-Access-Rules: 1`), so Keystone returns application-credential tokens
 * restricted by access rules instead of refusing them, and the edge enforces the rules
 * (see contract/access-rules.ts). `allowExpired` asks with `allow_expired=1` (Keystone
 * honours it within its `allow_expired_window`). Never throws; never logs the subject token.
 */
import { silentLogger, tokenHash, type Logger } from "../log.js";
import { noTracing, type Tracing } from "../tracing.js";
import type { CallOptions, CallOutcome, KeystoneEndpoint } from "./endpoint.js";
import type { KeystoneEndpoints } from "./endpoint-set.js";
import type { ServiceToken } from "./service-token.js";
import type { KeystoneToken } from "../token/body.js";

/** The access-rules version the edge enforces (keystonemiddleware's `ACCESS_RULES_SUPPORT`). */
export const ACCESS_RULES_SUPPORT = "1";

/** What Keystone said about a token. */
export type KeystoneVerdict =
  | { readonly kind: "valid"; readonly token: KeystoneToken; readonly endpoint: string }
  | { readonly kind: "invalid"; readonly endpoint: string }
  | {
      readonly kind: "unavailable";
      readonly reason:
        | "timeout"
        | "connection"
        | "server_error"
        | "forbidden"
        | "no_service_token"
        | "bad_response"
        | "all_endpoints_out";
      readonly detail: string;
    };

/** Per-call observations, for metrics. */
export interface KeystoneCallObserver {
  (
    endpoint: string,
    outcome:
      | "ok"
      | "not_found"
      | "unauthorized"
      | "forbidden"
      | "server_error"
      | "timeout"
      | "connection"
      | "bad_response",
    latencyMs: number,
  ): void;
}

export interface KeystoneValidatorOptions {
  /**
   * The endpoints in order, each behind its breaker (shadow validation passes the master's
   * alone, its breaker shared).
   */
  readonly endpoints: Pick<KeystoneEndpoints, "guards" | "report">;
  readonly serviceToken: ServiceToken;
  /**
   * Deadline of one validation across every endpoint it tries, ms (each call also has the
   * endpoint's own deadline, cut to what is left of this one). Default 5 000.
   */
  readonly requestTimeoutMs?: number;
  /** Ask for the catalog (for `X-Service-Catalog`). Default `true`. */
  readonly includeCatalog?: boolean;
  readonly logger?: Logger;
  readonly observe?: KeystoneCallObserver;
  /**
   * A client span per call, its `traceparent` sent to Keystone (never the tokens in an
   * attribute). Default {@link noTracing}.
   */
  readonly tracing?: Tracing;
}

/** One call to `endpoint`, in a client span when tracing is on. */
export function tracedCall(
  tracing: Tracing,
  endpoint: KeystoneEndpoint,
  call: CallOptions & { readonly headers: Record<string, string> },
): Promise<CallOutcome> {
  if (!tracing.enabled) return endpoint.call(call);
  const query = call.path.indexOf("?");
  const route = query < 0 ? call.path : call.path.slice(0, query);
  return tracing.inSpan(
    `${call.method} ${route}`,
    "client",
    {
      "http.request.method": call.method,
      "server.address": endpoint.name,
      "url.path": route,
      "keystone_edge.endpoint": endpoint.name,
    },
    async (span) => {
      tracing.inject(call.headers);
      const outcome = await endpoint.call(call);
      if (outcome.kind === "response") {
        span.setAttribute("http.response.status_code", outcome.status);
        span.end(outcome.status >= 500 ? `HTTP ${String(outcome.status)}` : undefined);
      } else {
        span.setAttribute("error.type", outcome.reason);
        span.end(`${outcome.reason}: ${outcome.detail}`);
      }
      return outcome;
    },
  );
}

export class KeystoneValidator {
  private readonly logger: Logger;

  constructor(private readonly options: KeystoneValidatorOptions) {
    this.logger = options.logger ?? silentLogger;
  }

  /**
   * @param subject The token to validate.
   * @param allowExpired Ask Keystone to accept an expired token (keystonemiddleware does
   *   for a user token that comes with a service token passing the role check).
   */
  async validate(subject: string, allowExpired = false): Promise<KeystoneVerdict> {
    let service = await this.options.serviceToken.ensure();
    if (service === undefined) {
      return {
        kind: "unavailable",
        reason: "no_service_token",
        detail: "the edge has no service token",
      };
    }
    const deadline = performance.now() + (this.options.requestTimeoutMs ?? 5_000);
    let last: KeystoneVerdict = {
      kind: "unavailable",
      reason: "all_endpoints_out",
      detail: "every Keystone endpoint is out of rotation (failing; probed in the background)",
    };
    const query = [
      ...(this.options.includeCatalog === false ? ["nocatalog"] : []),
      ...(allowExpired ? ["allow_expired=1"] : []),
    ];
    const path = query.length === 0 ? "/auth/tokens" : `/auth/tokens?${query.join("&")}`;
    for (const guard of this.options.endpoints.guards) {
      const endpoint = guard.endpoint;
      for (let attempt = 0; attempt < 2; attempt++) {
        const remainingMs = Math.floor(deadline - performance.now());
        if (remainingMs <= 0) {
          return {
            kind: "unavailable",
            reason: "timeout",
            detail: `no answer within ${String(this.options.requestTimeoutMs ?? 5_000)} ms`,
          };
        }
        const admission = guard.breaker.admit();
        if (admission === undefined) break; // out of rotation: the next endpoint
        const outcome = await tracedCall(this.options.tracing ?? noTracing, endpoint, {
          method: "GET",
          path,
          timeoutMs: Math.min(remainingMs, endpoint.timeoutMs),
          headers: {
            "x-auth-token": service,
            "x-subject-token": subject,
            "openstack-identity-access-rules": ACCESS_RULES_SUPPORT,
          },
        });
        this.options.endpoints.report(guard, admission, outcome);
        const observe = (o: Parameters<KeystoneCallObserver>[1], ms: number): void =>
          this.options.observe?.(endpoint.name, o, ms);
        if (outcome.kind === "failed") {
          observe(outcome.reason === "timeout" ? "timeout" : "connection", outcome.latencyMs);
          last = {
            kind: "unavailable",
            reason: outcome.reason === "timeout" ? "timeout" : "connection",
            detail: `${endpoint.url}: ${outcome.detail}`,
          };
          break;
        }
        const status = outcome.status;
        if (status === 200) {
          const token = parseToken(outcome.body);
          if (!token) {
            observe("bad_response", outcome.latencyMs);
            last = {
              kind: "unavailable",
              reason: "bad_response",
              detail: `${endpoint.url}: unreadable token body`,
            };
            break;
          }
          observe("ok", outcome.latencyMs);
          return { kind: "valid", token, endpoint: endpoint.name };
        }
        if (status === 404) {
          observe("not_found", outcome.latencyMs);
          return { kind: "invalid", endpoint: endpoint.name };
        }
        if (status === 401 && attempt === 0) {
          observe("unauthorized", outcome.latencyMs);
          const renewed = await this.options.serviceToken.rejected(service);
          if (renewed === undefined) {
            return {
              kind: "unavailable",
              reason: "no_service_token",
              detail: "re-authentication failed",
            };
          }
          service = renewed;
          continue; // ask again with the new token
        }
        if (status === 403) {
          observe("forbidden", outcome.latencyMs);
          this.logger.error(
            "Keystone refuses the edge's service user the right to validate tokens",
            {
              endpoint: endpoint.url,
              subject: tokenHash(subject),
            },
          );
          return { kind: "unavailable", reason: "forbidden", detail: `${endpoint.url}: HTTP 403` };
        }
        observe(status >= 500 ? "server_error" : "bad_response", outcome.latencyMs);
        last = {
          kind: "unavailable",
          reason: status >= 500 ? "server_error" : "bad_response",
          detail: `${endpoint.url}: HTTP ${status}`,
        };
        break;
      }
    }
    return last;
  }
}

function parseToken(body: string): KeystoneToken | undefined {
  try {
    const parsed = JSON.parse(body) as { token?: unknown };
    const t = parsed.token;
    if (typeof t !== "object" || t === null) return undefined;
    const token = t as KeystoneToken;
    if (typeof token.user !== "object" || typeof token.expires_at !== "string") return undefined;
    return token;
  } catch {
    return undefined;
  }
}
