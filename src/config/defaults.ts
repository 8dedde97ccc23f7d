/**
 * Defaults shared by the configuration schema and the code that runs without one.
 *
 * Owns: each default that both `config/schema.ts` (what an absent option means) and a
 * part's own option (what a caller that passes nothing gets: tests, benchmarks, tools)
 * state — written once here, so the two can never disagree. Defaults only the schema
 * knows stay in the schema.
 */

/** `cache.token_cache_time`: longest a validated token is cached, seconds. */
export const DEFAULT_TOKEN_CACHE_TIME_SECONDS = 300;
/** `cache.lru_max_entries`: entries of the in-process cache (and of the context cache). */
export const DEFAULT_L1_MAX_ENTRIES = 100_000;
/** `cache.stale_if_error`: degraded mode's reach past `context_cache_time`, seconds. */
export const DEFAULT_STALE_IF_ERROR_SECONDS = 900;
/** `keystone.revocation_poll_interval_ms`: how often the revocation feed is polled. */
export const DEFAULT_REVOCATION_POLL_INTERVAL_MS = 10_000;
/** `shadow_validation.sample_ratio`: fraction of the edge's own verdicts asked again of the master. */
export const DEFAULT_SHADOW_SAMPLE_RATIO = 0.001;
/** `shadow_validation.max_per_second`: shadow validations started per second at most, per process. */
export const DEFAULT_SHADOW_MAX_PER_SECOND = 5;
/** `shadow_validation.max_in_flight`: shadow validations waiting for the master at once. */
export const DEFAULT_SHADOW_MAX_IN_FLIGHT = 4;
/**
 * The configuration file every command reads when `--config` is not given, and the path the
 * container image, the systemd unit, the Kubernetes examples and the docs all use.
 */
export const DEFAULT_CONFIG_PATH = "/etc/keystone-edge/config.yaml";
