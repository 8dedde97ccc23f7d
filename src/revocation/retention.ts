/**
 * How long a revocation event can matter, and how many the edge holds.
 *
 * Owns: the retention rule (an event is kept while a token it could revoke, or a context it
 * could supersede, may still be accepted) and the defaults of the options it reads, which
 * mirror Keystone's names. The revocation feed applies it on its injected clock.
 *
 * Why this bound is exact: an event revokes only tokens issued at or before its
 * `issued_before`; a token lives at most `[token] expiration` after issue and, through
 * `allow_expired` (service tokens), is honoured up to `[token] allow_expired_window` past
 * expiry. So once `issued_before` < now − (expiration + allow_expired_window), no token the
 * event revokes is acceptable any more. Contexts (user + scope, validation/context) answer
 * new tokens for up to `context_cache_time` + `stale_if_error` after they were learnt and
 * are checked against events revoked after that (`supersedes`): events are kept that long
 * too when it is longer. Keystone itself prunes much earlier (`revoked_at` older than
 * expiration + `[revoke] expiration_buffer`, 1.5 h by default), so the edge, having seen
 * events live, is the stricter of the two for expired tokens.
 */

/** Keystone's `[token] expiration` default, s. */
export const DEFAULT_TOKEN_EXPIRATION_SECONDS = 3_600;
/** Keystone's `[token] allow_expired_window` default, s (48 h). */
export const DEFAULT_ALLOW_EXPIRED_WINDOW_SECONDS = 172_800;
/**
 * Added to the retention, s: room for the edge's clock to run ahead of Keystone's (events
 * and tokens carry Keystone's times, the cutoff is computed on the edge's clock), and for
 * a token's `expiration` to be rounded up.
 */
export const RETENTION_CLOCK_SKEW_MARGIN_SECONDS = 300;
/**
 * Default cap on the events held (see `RevocationList.capAt` for what happens beyond it).
 * About 35 MB of heap per 100 000 events (`npm run bench:revocation`), so ~350 MB at the
 * cap: far above a healthy region (thousands to tens of thousands of events over 49 h),
 * reached only under a flood of revocations.
 */
export const DEFAULT_MAX_REVOCATION_EVENTS = 1_000_000;

/** What the retention depends on. */
export interface RetentionOptions {
  /** Keystone's `[token] expiration`, s. Default {@link DEFAULT_TOKEN_EXPIRATION_SECONDS}. */
  readonly tokenExpirationSeconds?: number;
  /**
   * Keystone's `[token] allow_expired_window`, s. Default
   * {@link DEFAULT_ALLOW_EXPIRED_WINDOW_SECONDS}.
   */
  readonly allowExpiredWindowSeconds?: number;
  /**
   * Longest a context may answer after it was learnt, s (`context_cache_time` +
   * `stale_if_error`). Default 0 (no context cache).
   */
  readonly contextLifetimeSeconds?: number;
}

/** How long an event is kept after its `issued_before`, s (clock-skew margin included). */
export function retentionSeconds(options: RetentionOptions = {}): number {
  const tokens =
    (options.tokenExpirationSeconds ?? DEFAULT_TOKEN_EXPIRATION_SECONDS) +
    (options.allowExpiredWindowSeconds ?? DEFAULT_ALLOW_EXPIRED_WINDOW_SECONDS);
  return (
    Math.max(tokens, options.contextLifetimeSeconds ?? 0) + RETENTION_CLOCK_SKEW_MARGIN_SECONDS
  );
}

/** Events whose `issued_before` is before this (epoch µs) can be pruned at `nowMs`. */
export function retentionCutoffMicros(nowMs: number, options: RetentionOptions = {}): number {
  return (nowMs - retentionSeconds(options) * 1000) * 1000;
}
