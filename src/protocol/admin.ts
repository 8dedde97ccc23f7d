/**
 * The admin listener's JSON contract: what `/status` and the admin API say, and what the
 * drill client reads.
 *
 * Owns: every document that crosses the admin listener — the status, the drill start,
 * stop and validation answers, the error body — and the names both sides share (drill
 * scenarios, the tiers a drill may validate from). The server (admin/) builds these
 * documents; the client (drill/) reads them; neither defines its own copy. Snake case:
 * they leave the process. Fields an older edge may lack are optional, so that a drill
 * client reads the edge it talks to, whatever its version.
 *
 * States named here are the kinds of the parts that own them (breaker.ts,
 * keystone/revocation-feed.ts, keystone/key-lag.ts): a new state there is a new value here.
 */
import type { BreakerState } from "../breaker.js";
import type { KeyLagCheck, KeyLagState } from "../keystone/key-lag.js";
import type { FeedState } from "../keystone/revocation-feed.js";

// ---------------------------------------------------------------------------------------
// drills

/** The drills `keystone-edge drill` runs (`POST /drill/start?scenario=`). */
export const DRILL_SCENARIOS = [
  "master-outage",
  "keystone-outage",
  "memcached-outage",
  "key-rotation",
  "revocation",
  "key-lag",
] as const;
export type DrillScenario = (typeof DRILL_SCENARIOS)[number];

/** Whether `text` names a drill scenario. */
export function isDrillScenario(text: string): text is DrillScenario {
  return (DRILL_SCENARIOS as readonly string[]).includes(text);
}

/** Longest a drill may last, seconds: a forgotten one cannot outlive an hour. */
export const MAX_DRILL_SECONDS = 3_600;

/** What a drill injects (`none`: a watch-only drill). */
export type FaultKind = "none" | "keystone_blackhole" | "memcached_outage" | "primary_key_hidden";

/**
 * Where a drill's validation starts (`POST /drill/validate?from=`), from the top of the
 * pipeline down (validation/pipeline.ts `validateFrom`).
 */
export const DRILL_TIERS = [
  "cache",
  "decrypt",
  "unseen",
  "shared",
  "keystone",
  "keystone_only",
] as const;
export type DrillTier = (typeof DRILL_TIERS)[number];

/** Whether `text` names a drill tier. */
export function isDrillTier(text: string): text is DrillTier {
  return (DRILL_TIERS as readonly string[]).includes(text);
}

/** A drill as the admin API, `/status` and log lines show it: times in ISO 8601. */
export interface DrillDescription {
  readonly id: string;
  readonly scenario: DrillScenario;
  readonly fault: FaultKind;
  /** The blackholed endpoints' names (`keystone_blackhole` only). */
  readonly endpoints?: readonly string[];
  readonly started_at: string;
  readonly expires_at: string;
}

/** `POST /drill/start` → 201. */
export interface DrillStartAnswer {
  readonly drill: DrillDescription;
}

/** `POST /drill/stop` → 200: the drill released, null when none was under way. */
export interface DrillStopAnswer {
  readonly stopped: DrillDescription | null;
}

/** `POST /drill/validate` → 200: the verdict's kind, who settled it, how long it took. */
export type ValidationAnswer =
  | { readonly result: "valid"; readonly source: string; readonly latency_ms: number }
  | {
      readonly result: "invalid";
      readonly source: string;
      readonly code: string;
      readonly latency_ms: number;
    }
  | { readonly result: "unavailable"; readonly reason: string; readonly latency_ms: number };

/** `POST /cache/flush` → 200: entries dropped per in-process tier. */
export interface CacheFlushAnswer {
  readonly flushed: Readonly<Record<string, number>>;
}

/** Why a drill could not start: the `code` of its 400/409 answer. */
export type DrillRefusalCode =
  "busy" | "unknown_endpoint" | "no_memcached" | "single_key" | "bad_duration";

/** The stable codes of the admin API's error answers. */
export type AdminErrorCode =
  | "admin_api_off"
  | "not_available"
  | "unauthorized"
  | "method_not_allowed"
  | "unknown_scenario"
  | "bad_tier"
  | "no_token"
  | "internal"
  | DrillRefusalCode;

/** Every error answer of the admin API: a stable code, a message for people, details. */
export interface AdminErrorBody {
  readonly code: AdminErrorCode;
  readonly error: string;
  /** `busy`: the drill under way. */
  readonly drill?: DrillDescription;
  /** `unknown_endpoint`: the configured endpoints' names. */
  readonly endpoints?: readonly string[];
}

// ---------------------------------------------------------------------------------------
// status

/** One worker process of a supervised edge (`workers` > 1), as `/status` lists it. */
export interface WorkerStatus {
  /** 1-based, stable across replacements. */
  readonly worker: number;
  readonly pid: number | null;
  /** `waiting`: between a death and its replacement. */
  readonly state: "starting" | "serving" | "waiting" | "stopped";
  readonly started_at: string | null;
  /** How often this worker's place was refilled. */
  readonly restarts: number;
}

/** The document `GET /status` answers (documented field by field in docs/operations.md). */
export interface EdgeStatus {
  /**
   * With `workers` > 1: every worker; the rest of the document is one serving worker's
   * (each has its own caches and breakers). Absent with one process.
   */
  readonly workers?: readonly WorkerStatus[];
  readonly status: "ok" | "degraded" | "draining";
  readonly uptime_seconds: number;
  /** Per window (`1m`, `5m`, `15m`), per tier: hits / lookups, null without lookups. */
  readonly hit_rates: Readonly<Record<string, Readonly<Record<string, number | null>>>>;
  /** Per window: validations settled without a Keystone call / all validations. */
  readonly keystone_offload: Readonly<Record<string, number | null>>;
  readonly keystone: {
    readonly degraded_mode: boolean;
    readonly endpoints: readonly {
      readonly endpoint: string;
      readonly state: BreakerState["kind"];
      readonly open_for_seconds?: number;
    }[];
  };
  /** The shared tier; null when no memcached is configured. Optional for older edges. */
  readonly memcached?: MemcachedStatus | null;
  readonly keys: {
    readonly healthy: boolean;
    readonly count: number;
    readonly primary_index: number;
    readonly primary_age_seconds: number | null;
    /**
     * When the key ring in force was loaded (start-up, or the last re-read that found the
     * repository changed: a rotation arriving). ISO 8601.
     */
    readonly last_reload: string;
    /**
     * When the repository was last read (changed or not: every poll and file event). ISO
     * 8601. Optional for older edges.
     */
    readonly last_checked?: string;
    /** Whether the ring decrypts what the master issues now. Optional for older edges. */
    readonly lag?: KeyLagStatus;
  };
  readonly revocation_feed: {
    readonly state: FeedState["kind"];
    readonly lag_seconds: number | null;
    readonly events: number;
    /** How often the feed is polled: a revoked token is refused within about this. */
    readonly poll_interval_seconds: number | null;
  };
  /** The drill under way; null when none. */
  readonly drill: DrillDescription | null;
}

/** The memcached part of `/status`: each server's breaker and the failures since start. */
export interface MemcachedStatus {
  readonly servers: readonly {
    readonly server: string;
    readonly state: BreakerState["kind"];
  }[];
  /** memcached calls failed since start, all kinds (`keystone_edge_memcached_errors_total`). */
  readonly errors: number;
}

/** The key lag part of `/status`. */
export interface KeyLagStatus {
  readonly state: KeyLagState["kind"];
  /** When the state began (ISO 8601); null while unknown. */
  readonly since: string | null;
  /** When a token Keystone had just issued last decrypted locally; null: never. */
  readonly last_agreed: string | null;
  /** The last check; null before the first has finished. */
  readonly last_check: {
    readonly at: string;
    readonly trigger: KeyLagCheck["trigger"];
    readonly result: KeyLagCheck["result"];
    readonly error?: string;
  } | null;
  /**
   * Tokens no local key decrypted, asked of Keystone while the ring was behind, by result,
   * since start; `refused`: turned away because the fallback budget was spent. Optional
   * for older edges.
   */
  readonly fallbacks?: {
    readonly valid: number;
    readonly invalid: number;
    readonly unavailable: number;
    readonly refused: number;
  };
}
