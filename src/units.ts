/**
 * Units carried in types.
 *
 * Owns: the branded number types that keep seconds, milliseconds and microseconds apart,
 * and the injectable clock every piece of TTL or expiry logic reads instead of `Date.now()`.
 */

/** Integer microseconds since the Unix epoch (UTC); exact below 2^53 (year 2255). */
export type EpochMicros = number & { readonly __unit: "epoch-micros" };
/** Milliseconds since the Unix epoch, as `Date.now()` returns. */
export type EpochMillis = number & { readonly __unit: "epoch-millis" };

/** A source of the current time. Inject a fake one in tests. */
export interface Clock {
  /** Milliseconds since the epoch. */
  nowMs(): EpochMillis;
}

/** The wall clock. */
export const systemClock: Clock = { nowMs: () => Date.now() as EpochMillis };

/** A clock that always answers `ms`. */
export function fixedClock(ms: number): Clock {
  return { nowMs: () => ms as EpochMillis };
}
