/**
 * The budget of Keystone calls for tokens no local key decrypts, while the region's key
 * copy lags the master (see keystone/key-lag.ts).
 *
 * Owns: one token bucket. It holds at most `burst` calls and refills at `perSecond`; a
 * fallback takes one or is refused. It bounds what a flood of forged tokens, each distinct
 * and each well-formed, can cost the master while the edge cannot tell them from new valid
 * tokens. Time comes from an injectable clock; no timer.
 */
import { systemClock, type Clock } from "../units.js";

/** Default refill rate, fallbacks per second (`fernet.lag_fallback_per_second`). */
export const DEFAULT_FALLBACK_PER_SECOND = 20;
/** Default bucket size, fallbacks (`fernet.lag_fallback_burst`). */
export const DEFAULT_FALLBACK_BURST = 100;

/** Options of {@link FallbackBudget}. */
export interface FallbackBudgetOptions {
  /** Fallbacks added per second; 0 refills nothing. Default {@link DEFAULT_FALLBACK_PER_SECOND}. */
  readonly perSecond?: number;
  /** Most fallbacks held (and the bucket's content at start); 0 refuses every fallback. Default {@link DEFAULT_FALLBACK_BURST}. */
  readonly burst?: number;
  /** Default: the wall clock. */
  readonly clock?: Clock;
}

/** A token bucket. */
export class FallbackBudget {
  private readonly perMs: number;
  private readonly burst: number;
  private readonly clock: Clock;
  private tokens: number;
  private refilledAtMs: number;

  constructor(options: FallbackBudgetOptions = {}) {
    const perSecond = options.perSecond ?? DEFAULT_FALLBACK_PER_SECOND;
    const burst = options.burst ?? DEFAULT_FALLBACK_BURST;
    if (!(perSecond >= 0) || !Number.isFinite(perSecond)) {
      throw new RangeError("perSecond must be ≥ 0 and finite");
    }
    if (!(burst >= 0) || !Number.isFinite(burst)) {
      throw new RangeError("burst must be ≥ 0 and finite");
    }
    this.perMs = perSecond / 1000;
    this.burst = burst;
    this.clock = options.clock ?? systemClock;
    this.tokens = burst;
    this.refilledAtMs = this.clock.nowMs();
  }

  /** Takes one fallback from the bucket: false when it is empty (the fallback is refused). */
  take(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Fallbacks that could be taken now (whole ones). */
  get available(): number {
    this.refill();
    return Math.floor(this.tokens);
  }

  private refill(): void {
    const now = this.clock.nowMs();
    const elapsed = now - this.refilledAtMs;
    // A clock that steps back refills nothing (and does not drain the bucket either).
    if (elapsed > 0) this.tokens = Math.min(this.burst, this.tokens + elapsed * this.perMs);
    this.refilledAtMs = now;
  }
}
