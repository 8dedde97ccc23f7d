/**
 * The configured Keystone endpoints, in order, each behind a circuit breaker.
 *
 * Owns: which endpoints a call may try now and what a call's outcome does to an endpoint's
 * breaker. Region-local Keystone first, master last: callers walk {@link KeystoneEndpoints.guards}
 * in order, ask each breaker for admission, and report the outcome. A timeout, a refused or
 * reset connection, or a 5xx counts against the endpoint; any other answer (even 401/403/404)
 * shows it alive. An open breaker is never probed by a request: the background loop of
 * endpoint-probe.ts does that. Transitions are logged once each and reported to metrics.
 */
import { CircuitBreaker, type Admission, type BreakerState } from "../breaker.js";
import { silentLogger, type Logger } from "../log.js";
import { systemClock, type Clock } from "../units.js";
import type { CallOutcome, KeystoneEndpoint } from "./endpoint.js";

/** Default consecutive failures (timeouts, connection errors, 5xx) that open an endpoint. */
export const DEFAULT_ENDPOINT_FAILURE_THRESHOLD = 3;
/** Default time an opened endpoint is left alone before the first background probe, ms. */
export const DEFAULT_ENDPOINT_OPEN_DURATION_MS = 5_000;

/** One endpoint and its breaker. */
export interface GuardedEndpoint {
  readonly endpoint: KeystoneEndpoint;
  readonly breaker: CircuitBreaker;
  /** A bounded metric label: the endpoint's configured name (default `host:port`). */
  readonly label: string;
}

/** Options of {@link KeystoneEndpoints}. */
export interface KeystoneEndpointsOptions {
  /** Consecutive failures that open an endpoint. Default {@link DEFAULT_ENDPOINT_FAILURE_THRESHOLD}. */
  readonly failureThreshold?: number;
  /** Time before the first probe of an opened endpoint, ms. Default {@link DEFAULT_ENDPOINT_OPEN_DURATION_MS}. */
  readonly openDurationMs?: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Called on every breaker transition (metrics). Must not throw. */
  readonly onBreakerChange?: (label: string, state: BreakerState["kind"]) => void;
  /**
   * Where an endpoint's breaker starts: a reload passes what the replaced configuration
   * knew of an endpoint with the same name and URL, so an outage is not forgotten.
   * Default: closed.
   */
  readonly initialState?: (endpoint: KeystoneEndpoint) => BreakerState | undefined;
}

/** Whether an outcome shows the endpoint failing (as opposed to answering). */
/** What a breaker needs to know of a call (a {@link CallOutcome} or a relay's). */
export type OutcomeSummary =
  | Pick<Extract<CallOutcome, { readonly kind: "failed" }>, "kind" | "reason">
  | { readonly kind: "response"; readonly status: number };

function isEndpointFailure(outcome: OutcomeSummary): boolean {
  return outcome.kind === "failed" ? outcome.reason !== "aborted" : outcome.status >= 500;
}

export class KeystoneEndpoints {
  readonly guards: readonly GuardedEndpoint[];

  constructor(endpoints: readonly KeystoneEndpoint[], options: KeystoneEndpointsOptions = {}) {
    const logger = options.logger ?? silentLogger;
    this.guards = endpoints.map((endpoint) => {
      const label = endpoint.name;
      const initial = options.initialState?.(endpoint);
      const breaker = new CircuitBreaker({
        ...(initial === undefined ? {} : { initial }),
        failureThreshold: options.failureThreshold ?? DEFAULT_ENDPOINT_FAILURE_THRESHOLD,
        cooldownMs: options.openDurationMs ?? DEFAULT_ENDPOINT_OPEN_DURATION_MS,
        clock: options.clock ?? systemClock,
        probe: "background",
        onTransition: (from, to, cause) => {
          if (to.kind === "open" && from.kind === "closed") {
            logger.warn("Keystone endpoint failing: taken out of rotation", {
              endpoint: label,
              cause,
            });
          } else if (to.kind === "closed") {
            logger.info("Keystone endpoint answering again: back in rotation", {
              endpoint: label,
            });
          }
          options.onBreakerChange?.(label, to.kind);
        },
      });
      return { endpoint, breaker, label };
    });
    for (const g of this.guards) options.onBreakerChange?.(g.label, g.breaker.state().kind);
  }

  /** Endpoints in configured order, those whose breaker is closed first (for the service token). */
  preferred(): readonly KeystoneEndpoint[] {
    const closed = this.guards.filter((g) => g.breaker.state().kind === "closed");
    const others = this.guards.filter((g) => g.breaker.state().kind !== "closed");
    return [...closed, ...others].map((g) => g.endpoint);
  }

  /** Reports a call's outcome to the endpoint's breaker. */
  report(guard: GuardedEndpoint, admission: Admission, outcome: OutcomeSummary): void {
    if (isEndpointFailure(outcome)) {
      guard.breaker.failure(
        admission,
        outcome.kind === "failed" ? outcome.reason : `HTTP ${String(outcome.status)}`,
      );
    } else {
      guard.breaker.success(admission);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.guards.map((g) => g.endpoint.close()));
  }
}
