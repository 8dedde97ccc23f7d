/**
 * Defaults taken from another option.
 *
 * Owns: the options whose default is not a constant but follows another option (the
 * schema says so in their `absent`), computed in one place for the code that runs with
 * them (edge/core.ts, edge/carry-over.ts) and for `check-config`, which shows them.
 */
import type { Config } from "./schema.js";

/** `cache.context_cache_time`, seconds: `cache.token_cache_time` when left out. */
export function contextCacheTimeSeconds(config: Readonly<Config>): number {
  return config.cache.context_cache_time ?? config.cache.token_cache_time;
}

/**
 * `shadow_validation.confirm_after_ms`: twice `keystone.revocation_poll_interval_ms` when
 * left out (a revocation then had two polls to arrive before a difference counts).
 */
export function shadowConfirmAfterMs(config: Readonly<Config>): number {
  return (
    config.shadow_validation.confirm_after_ms ?? 2 * config.keystone.revocation_poll_interval_ms
  );
}

/** An option whose default is not a constant: what it comes to in a config, and why. */
export interface DerivedDefault {
  readonly path: readonly string[];
  readonly value: unknown;
  /** Where the value comes from, e.g. `cache.token_cache_time`. */
  readonly from: string;
}

/**
 * The options a config leaves out whose default is taken from another option:
 * `cache.context_cache_time`, `shadow_validation.confirm_after_ms`. The rest of the
 * defaults are in the config itself.
 */
export function derivedDefaults(config: Readonly<Config>): readonly DerivedDefault[] {
  const derived: DerivedDefault[] = [];
  if (config.cache.context_cache_time === undefined) {
    derived.push({
      path: ["cache", "context_cache_time"],
      value: contextCacheTimeSeconds(config),
      from: "cache.token_cache_time",
    });
  }
  if (config.shadow_validation.confirm_after_ms === undefined) {
    derived.push({
      path: ["shadow_validation", "confirm_after_ms"],
      value: shadowConfirmAfterMs(config),
      from: "twice keystone.revocation_poll_interval_ms",
    });
  }
  return derived;
}
