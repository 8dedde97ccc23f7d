/**
 * `GET /status`: the edge's state in one JSON document, for people (the status page) and
 * scripts.
 *
 * Owns: what the status says and the sampling behind its rates. Every
 * `sampleIntervalMs` (default 10 s) the cache-lookup and validation counters are read
 * (prom-client's own values: the same numbers `/metrics` shows); hit rates per tier and
 * the share of validations settled without Keystone are the differences over the last 1,
 * 5 and 15 minutes (or since start, when younger). Breaker states, degraded mode, the key
 * ring and whether it lags the master's, the revocation feed and the lifecycle are read
 * live. No token, user or project is ever part of it.
 */
import { BREAKER_STATE_KINDS, type BreakerState } from "../breaker.js";
import { primaryKeyAgeSeconds, type KeyRepositoryStatus } from "../fernet/key-repository.js";
import { feedLagSeconds, type FeedState } from "../keystone/revocation-feed.js";
import type { KeyLagCheck, KeyLagState } from "../keystone/key-lag.js";
import { describe as describeDrill, type DrillState } from "../drill/faults.js";
import type { EdgeStatus, KeyLagStatus, MemcachedStatus } from "../protocol/admin.js";
import { systemClock, type Clock } from "../units.js";
import type { EdgeMetrics } from "./metrics.js";

/** Windows the rates are given over, minutes. */
export const STATUS_WINDOWS_MIN = [1, 5, 15] as const;
const LONGEST_WINDOW_MIN = 15;

/** Where the status reads the edge's parts. */
export interface StatusSources {
  readonly metrics: EdgeMetrics;
  readonly endpoints: () => readonly { readonly label: string; readonly state: BreakerState }[];
  readonly degradedMode: () => boolean;
  readonly draining: () => boolean;
  readonly keys: () => KeyRepositoryStatus;
  /** The key lag monitor's state and last check. Default: never checked (unknown). */
  readonly keyLag?: () => {
    readonly state: KeyLagState;
    readonly lastCheck: KeyLagCheck | undefined;
  };
  readonly feed: () => FeedState;
  /** Whether memcached is configured (its breakers and errors are read from the metrics). */
  readonly memcached?: boolean;
  /** `keystone.revocation_poll_interval_ms`. Default: unknown (null in the status). */
  readonly feedPollIntervalMs?: number;
  /** The drill under way. Default: none ever. */
  readonly drill?: () => DrillState;
  /** Time source. Default the system clock. */
  readonly clock?: Clock;
  /** Time between samples of the counters, ms. Default 10 000. */
  readonly sampleIntervalMs?: number;
}

interface Sample {
  readonly atMs: number;
  /** tier → result → count */
  readonly lookups: ReadonlyMap<string, ReadonlyMap<string, number>>;
  /** validations settled without Keystone, and all. */
  readonly local: number;
  readonly total: number;
}

const KEYSTONE_SOURCES = new Set(["keystone"]);

export class StatusReporter {
  private readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly clock: Clock;
  private readonly startedMs: number;
  private readonly intervalMs: number;

  constructor(private readonly sources: StatusSources) {
    this.clock = sources.clock ?? systemClock;
    this.startedMs = this.clock.nowMs();
    this.intervalMs = sources.sampleIntervalMs ?? 10_000;
  }

  /** Takes a first sample now, then one every interval (idempotent). */
  start(): void {
    if (this.timer !== undefined) return;
    void this.sample().then((s) => this.keep(s));
    this.timer = setInterval(() => {
      void this.sample().then((s) => this.keep(s));
    }, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  async snapshot(): Promise<EdgeStatus> {
    const now = await this.sample();
    const nowMs = now.atMs;
    const hitRates: Record<string, Record<string, number | null>> = {};
    const offload: Record<string, number | null> = {};
    for (const minutes of STATUS_WINDOWS_MIN) {
      const base = this.baseline(nowMs - minutes * 60_000);
      const window = `${String(minutes)}m`;
      const rates: Record<string, number | null> = {};
      for (const [tier, results] of now.lookups) {
        const before = base?.lookups.get(tier);
        let hits = 0;
        let all = 0;
        for (const [result, n] of results) {
          const d = n - (before?.get(result) ?? 0);
          all += d;
          if (result !== "miss") hits += d;
        }
        rates[tier] = all > 0 ? hits / all : null;
      }
      hitRates[window] = rates;
      const total = now.total - (base?.total ?? 0);
      offload[window] = total > 0 ? (now.local - (base?.local ?? 0)) / total : null;
    }
    const degradedMode = this.sources.degradedMode();
    const endpoints = this.sources.endpoints().map(({ label, state }) => ({
      endpoint: label,
      state: state.kind,
      ...(state.kind === "open"
        ? { open_for_seconds: Math.max(0, Math.round((nowMs - state.sinceMs) / 1000)) }
        : {}),
    }));
    const keys = this.sources.keys();
    const feed = this.sources.feed();
    const feedLag = feedLagSeconds(feed, nowMs);
    const drill = this.sources.drill?.();
    const primaryAge = primaryKeyAgeSeconds(keys);
    const keysHealthy = keys.last_reload.result === "ok";
    const lag = {
      ...keyLagStatus(this.sources.keyLag?.()),
      fallbacks: await this.fallbacks(),
    };
    const memcached = this.sources.memcached === true ? await this.memcached() : null;
    const anyOpen = endpoints.some((e) => e.state !== "closed");
    return {
      status: this.sources.draining()
        ? "draining"
        : degradedMode || anyOpen || !keysHealthy || lag.state === "behind" || feed.kind === "stale"
          ? "degraded"
          : "ok",
      uptime_seconds: Math.round((nowMs - this.startedMs) / 1000),
      hit_rates: hitRates,
      keystone_offload: offload,
      keystone: { degraded_mode: degradedMode, endpoints },
      memcached,
      keys: {
        healthy: keysHealthy,
        count: keys.key_count,
        primary_index: keys.primary_index,
        primary_age_seconds: primaryAge ?? null,
        last_reload: keys.loaded_at,
        last_checked: keys.last_reload.at,
        lag,
      },
      revocation_feed: {
        state: feed.kind,
        lag_seconds: feedLag === undefined ? null : Math.round(feedLag),
        events: feed.kind === "starting" ? 0 : feed.events,
        poll_interval_seconds:
          this.sources.feedPollIntervalMs === undefined
            ? null
            : this.sources.feedPollIntervalMs / 1000,
      },
      drill: drill?.kind === "active" ? describeDrill(drill.drill) : null,
    };
  }

  /** memcached's breakers and failures, as `/metrics` shows them. */
  private async memcached(): Promise<MemcachedStatus> {
    const m = this.sources.metrics;
    const servers: MemcachedStatus["servers"][number][] = [];
    for (const v of (await m.memcachedBreaker.get()).values) {
      const state = BREAKER_STATE_KINDS.find((k) => k === v.labels["state"]);
      if (v.value === 1 && state !== undefined)
        servers.push({ server: String(v.labels["server"]), state });
    }
    const errors = (await m.memcachedErrors.get()).values.reduce((n, v) => n + v.value, 0);
    return { servers, errors };
  }

  /** The key lag fallbacks since start, by result. */
  private async fallbacks(): Promise<NonNullable<KeyLagStatus["fallbacks"]>> {
    const m = this.sources.metrics;
    const by = (await m.keyLagFallbacks.get()).values;
    const count = (result: string): number =>
      by.filter((v) => v.labels["result"] === result).reduce((n, v) => n + v.value, 0);
    const refused = (await m.keyLagFallbackRefusals.get()).values.reduce((n, v) => n + v.value, 0);
    return {
      valid: count("valid"),
      invalid: count("invalid"),
      unavailable: count("unavailable"),
      refused,
    };
  }

  /** The newest sample at or before `atMs`, else the oldest kept (the window since start). */
  private baseline(atMs: number): Sample | undefined {
    let found: Sample | undefined;
    for (const s of this.samples) {
      if (s.atMs <= atMs) found = s;
      else break;
    }
    return found ?? this.samples[0];
  }

  private keep(sample: Sample): void {
    this.samples.push(sample);
    const horizon = sample.atMs - (LONGEST_WINDOW_MIN + 1) * 60_000;
    while (this.samples.length > 1 && (this.samples[1]?.atMs ?? Infinity) <= horizon) {
      this.samples.shift();
    }
  }

  private async sample(): Promise<Sample> {
    const atMs = this.clock.nowMs();
    const lookups = new Map<string, Map<string, number>>();
    for (const v of (await this.sources.metrics.cacheLookups.get()).values) {
      const tier = String(v.labels["tier"]);
      const result = String(v.labels["result"]);
      let row = lookups.get(tier);
      if (row === undefined) {
        row = new Map();
        lookups.set(tier, row);
      }
      row.set(result, (row.get(result) ?? 0) + v.value);
    }
    let local = 0;
    let total = 0;
    for (const v of (await this.sources.metrics.validations.get()).values) {
      if (v.labels["result"] === "unavailable") continue;
      total += v.value;
      if (!KEYSTONE_SOURCES.has(String(v.labels["source"]))) local += v.value;
    }
    return { atMs, lookups, local, total };
  }
}

const isoOrNull = (ms: number | undefined): string | null =>
  ms === undefined ? null : new Date(ms).toISOString();

/** The key lag monitor's view as `/status` shows it. */
export function keyLagStatus(
  lag: { readonly state: KeyLagState; readonly lastCheck: KeyLagCheck | undefined } | undefined,
): KeyLagStatus {
  const state: KeyLagState = lag?.state ?? { kind: "unknown" };
  const check = lag?.lastCheck;
  return {
    state: state.kind,
    since: state.kind === "unknown" ? null : isoOrNull(state.sinceMs),
    last_agreed: isoOrNull(
      state.kind === "in_sync"
        ? state.agreedAtMs
        : state.kind === "behind"
          ? state.lastAgreedAtMs
          : undefined,
    ),
    last_check:
      check === undefined
        ? null
        : {
            at: new Date(check.atMs).toISOString(),
            trigger: check.trigger,
            result: check.result,
            ...(check.error === undefined ? {} : { error: check.error }),
          },
  };
}
