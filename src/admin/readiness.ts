/**
 * What `/readyz` reports, part by part.
 *
 * Owns: turning the state of each background part into one readiness check. A check is
 * `ok: false` only when the edge cannot do its job and a load balancer should send the
 * traffic elsewhere (no key ring, no service token ever obtained). A part that is failing
 * while the edge still serves — a Keystone endpoint out of rotation, degraded mode, a
 * revocation feed that stopped answering, a key repository that cannot be re-read or that
 * lags the master's (new tokens are then asked of Keystone, within a budget) — is
 * `ok: true, degraded: true` with the detail an operator needs: taking every edge of a
 * region out of rotation because the master is down would turn a Keystone outage into a
 * region outage, which is the one thing the edge exists to prevent.
 */
import type { BreakerState } from "../breaker.js";
import type { KeyRepositoryStatus } from "../fernet/key-repository.js";
import type { FeedState } from "../keystone/revocation-feed.js";
import type { KeyLagState } from "../keystone/key-lag.js";
import type { ServiceTokenState } from "../keystone/service-token.js";
import { systemClock, type Clock } from "../units.js";

/** One named readiness condition. */
export interface ReadinessCheck {
  readonly name: string;
  readonly check: () => ReadinessResult;
}

/** The result of one check. */
export interface ReadinessResult {
  /** false: the edge cannot serve; `/readyz` answers 503. */
  readonly ok: boolean;
  /** true: serving, but something an operator must look at (alerts key on it). */
  readonly degraded?: boolean;
  readonly detail?: string;
}

const ago = (clock: Clock, ms: number): string =>
  `${String(Math.max(0, Math.round((clock.nowMs() - ms) / 1000)))} s ago`;

/**
 * The key ring: not ready without keys; degraded while re-reads fail (the last good ring is
 * kept) or while the ring is known to lag the master's (`lag`, keystone/key-lag.ts: tokens
 * issued since the master's last rotations do not decrypt here and are asked of Keystone,
 * within the fallback budget, until the copy is synced).
 */
export function keysCheck(
  status: () => KeyRepositoryStatus,
  lag?: () => KeyLagState,
): ReadinessCheck {
  return {
    name: "keys",
    check: () => {
      const s = status();
      const keys = `${String(s.key_count)} keys, primary ${String(s.primary_index)}`;
      const parts: string[] = [];
      let degraded = false;
      if (s.last_reload.result === "failing") {
        const error = s.last_reload.error?.code ?? "unreadable";
        degraded = true;
        parts.push(
          `re-reads failing since ${s.last_reload.failing_since ?? s.last_reload.at} (${error}); keeping ${keys}`,
        );
      } else {
        parts.push(keys);
      }
      const l = lag?.();
      if (l?.kind === "behind") {
        degraded = true;
        const agreed =
          l.lastAgreedAtMs === undefined
            ? "never agreed since start"
            : `last agreed ${new Date(l.lastAgreedAtMs).toISOString()}`;
        parts.push(
          `behind the master since ${new Date(l.sinceMs).toISOString()} (${agreed}): tokens Keystone issues now do not decrypt here and are asked of Keystone; sync the key repository`,
        );
      }
      const detail = parts.join("; ");
      return degraded ? { ok: s.key_count > 0, degraded, detail } : { ok: s.key_count > 0, detail };
    },
  };
}

/**
 * The edge's own Keystone token: not ready until one was first obtained; one lost later (a
 * changed service password, Keystone unreachable at renewal) is degraded, not unready: the
 * edge still serves everything its tiers know, and taking every edge of a region out of
 * rotation for it would turn a credentials problem into a region outage.
 */
export function serviceTokenCheck(
  snapshot: () => ServiceTokenState,
  clock: Clock = systemClock,
): ReadinessCheck {
  return {
    name: "service_token",
    check: () => {
      const s = snapshot();
      if (s.kind === "valid") return { ok: true };
      if (s.lastObtainedAtMs === undefined) return { ok: false, detail: s.lastError ?? "not yet" };
      return {
        ok: true,
        degraded: true,
        detail: `lost (${s.lastError ?? "unknown error"}); last obtained ${ago(clock, s.lastObtainedAtMs)}; Keystone-only validations answer 503`,
      };
    },
  };
}

/** The Keystone endpoints' breakers and degraded mode. */
export function keystoneCheck(
  endpoints: () => readonly { readonly label: string; readonly state: BreakerState }[],
  inDegradedMode: () => boolean,
  clock: Clock,
): ReadinessCheck {
  return {
    name: "keystone",
    check: () => {
      const list = endpoints();
      const parts = list.map(({ label, state }) =>
        state.kind === "open"
          ? `${label} open since ${ago(clock, state.sinceMs)}`
          : `${label} ${state.kind}`,
      );
      const degradedMode = inDegradedMode();
      if (degradedMode) parts.push("degraded mode: no Keystone answers, known scopes served");
      return {
        ok: true,
        degraded: degradedMode || list.some((e) => e.state.kind !== "closed"),
        detail: parts.join("; "),
      };
    },
  };
}

/** The revocation feed: degraded while it fails (revoked tokens could be served from cache). */
export function revocationFeedCheck(state: () => FeedState, clock: Clock): ReadinessCheck {
  return {
    name: "revocation_feed",
    check: () => {
      const s = state();
      switch (s.kind) {
        case "starting":
          return { ok: true, detail: "first poll under way" };
        case "fresh":
          return {
            ok: true,
            detail: `last answer ${ago(clock, s.lastSuccessMs)}, ${String(s.events)} events held`,
          };
        case "stale":
          return {
            ok: true,
            degraded: true,
            detail:
              `stale: ${s.error}; ` +
              (s.lastSuccessMs === undefined
                ? "no answer yet"
                : `last answer ${ago(clock, s.lastSuccessMs)}`),
          };
      }
    },
  };
}
