/**
 * A circuit breaker for one remote server (a memcached server, a Keystone endpoint).
 *
 * Owns: the decision whether a call may go out. Closed: every call goes, and
 * `failureThreshold` consecutive failures open it. Open: no call goes until `cooldownMs` has
 * passed; then one probe goes (half-open) and every other call is refused meanwhile. The
 * probe's success closes the breaker, its failure opens it again. Who probes: with
 * `probe: "request"` (default) the first ordinary call after the cooldown is the probe;
 * with `probe: "background"` ordinary calls never are (no request waits on a dead server)
 * and a background loop calls {@link CircuitBreaker.admitProbe}.
 * Outcomes of calls admitted before the latest transition are ignored (a late failure from
 * before a recovery does not re-open it, a late success does not close it). Time comes from
 * the injected clock.
 */
import { systemClock, type Clock } from "./units.js";

/** Default consecutive failures that open the breaker. */
export const DEFAULT_FAILURE_THRESHOLD = 5;
/** Default time the breaker stays open before a probe, ms. */
export const DEFAULT_COOLDOWN_MS = 5_000;

/** The breaker's state names, as metrics and `/status` label them. */
export const BREAKER_STATE_KINDS = ["closed", "open", "half-open"] as const;

/** Where the breaker stands. */
export type BreakerState =
  | { readonly kind: "closed"; readonly failures: number }
  | { readonly kind: "open"; readonly sinceMs: number; readonly untilMs: number }
  | { readonly kind: "half-open" };

/** A call the breaker let through; report its outcome with the same object. */
export interface Admission {
  /** Transitions so far when admitted: outcomes of older admissions are ignored. */
  readonly epoch: number;
  /** This call is the half-open probe. */
  readonly probe: boolean;
}

/** Options of {@link CircuitBreaker}. */
export interface BreakerOptions {
  /** Consecutive failures that open the breaker. Default {@link DEFAULT_FAILURE_THRESHOLD}. */
  readonly failureThreshold?: number;
  /** How long the breaker stays open before one probe, ms. Default {@link DEFAULT_COOLDOWN_MS}. */
  readonly cooldownMs?: number;
  /** Time source. Default the system clock. */
  readonly clock?: Clock;
  /** Who probes after the cooldown: the next ordinary call, or a background loop. Default `request`. */
  readonly probe?: "request" | "background";
  /**
   * Called on each transition, with the failure that caused it when there is one. Must not
   * throw (a throw is swallowed).
   */
  readonly onTransition?: (from: BreakerState, to: BreakerState, cause?: string) => void;
  /**
   * Where the breaker starts (a reload carrying over what the old one knew). A half-open
   * state starts open with its cooldown over: the next probe decides. Default closed.
   */
  readonly initial?: BreakerState;
}

const CLOSED_CLEAN: BreakerState = Object.freeze({ kind: "closed", failures: 0 });
const HALF_OPEN: BreakerState = Object.freeze({ kind: "half-open" });

export class CircuitBreaker {
  private current: BreakerState = CLOSED_CLEAN;
  private epoch = 0;
  private readonly failureThreshold: number;
  private readonly cooldownMs: number;
  private readonly clock: Clock;

  constructor(private readonly options: BreakerOptions = {}) {
    this.failureThreshold = options.failureThreshold ?? DEFAULT_FAILURE_THRESHOLD;
    this.cooldownMs = options.cooldownMs ?? DEFAULT_COOLDOWN_MS;
    if (!Number.isSafeInteger(this.failureThreshold) || this.failureThreshold < 1) {
      throw new RangeError("failureThreshold must be a positive integer");
    }
    if (!Number.isFinite(this.cooldownMs) || this.cooldownMs < 0) {
      throw new RangeError("cooldownMs must be ≥ 0");
    }
    this.clock = options.clock ?? systemClock;
    const initial = options.initial;
    if (initial !== undefined) {
      const nowMs = this.clock.nowMs();
      this.current =
        initial.kind === "half-open" ? { kind: "open", sinceMs: nowMs, untilMs: nowMs } : initial;
    }
  }

  /** The state now. An open breaker whose cooldown is over stays `open` until the next call. */
  state(): BreakerState {
    return this.current;
  }

  /** Lets a call through (returns its admission) or refuses it (undefined). */
  admit(): Admission | undefined {
    const state = this.current;
    switch (state.kind) {
      case "closed":
        return { epoch: this.epoch, probe: false };
      case "half-open":
        return undefined;
      case "open":
        if (this.options.probe === "background" || this.clock.nowMs() < state.untilMs) {
          return undefined;
        }
        this.move(HALF_OPEN);
        return { epoch: this.epoch, probe: true };
    }
  }

  /**
   * The probe's admission when the breaker is open and its cooldown is over (it turns
   * half-open), else undefined: what a background probe loop asks before each probe.
   */
  admitProbe(): Admission | undefined {
    const state = this.current;
    if (state.kind !== "open" || this.clock.nowMs() < state.untilMs) return undefined;
    this.move(HALF_OPEN);
    return { epoch: this.epoch, probe: true };
  }

  /** The admitted call succeeded. */
  success(admission: Admission): void {
    if (admission.epoch !== this.epoch) return;
    const state = this.current;
    if (state.kind === "half-open") this.move(CLOSED_CLEAN);
    else if (state.kind === "closed" && state.failures !== 0) this.current = CLOSED_CLEAN;
  }

  /** The admitted call failed (`cause`: a short description, never data). */
  failure(admission: Admission, cause: string): void {
    if (admission.epoch !== this.epoch) return;
    const state = this.current;
    if (state.kind === "half-open") {
      this.open(cause);
    } else if (state.kind === "closed") {
      const failures = state.failures + 1;
      if (failures >= this.failureThreshold) this.open(cause);
      else this.current = { kind: "closed", failures };
    }
  }

  private open(cause: string): void {
    const now = this.clock.nowMs();
    this.move({ kind: "open", sinceMs: now, untilMs: now + this.cooldownMs }, cause);
  }

  private move(to: BreakerState, cause?: string): void {
    const from = this.current;
    this.current = to;
    this.epoch++;
    try {
      if (cause === undefined) this.options.onTransition?.(from, to);
      else this.options.onTransition?.(from, to, cause);
    } catch {
      // a hook must not break the breaker
    }
  }
}
