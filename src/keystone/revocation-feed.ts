/**
 * Keystone's revocation feed: a background loop.
 *
 * Owns: polling `GET /v3/OS-REVOKE/events?since=…` every `pollIntervalMs` through the
 * endpoints in order (breakers respected), adding what is new to the {@link RevocationList}
 * and telling the caller (which purges cached entries). `since` trails the newest event held
 * by `overlapMs`, so an event committed late with an earlier `revoked_at` is still fetched
 * (duplicates are ignored). Events are dropped once no live token can be older than them.
 * The feed's freshness (last success) is reported, so a stale feed is visible; a failed poll
 * keeps everything held. The timer does not keep the process alive.
 */
import { silentLogger, type Logger } from "../log.js";
import { parseEvent, type RevocationEvent, type RevocationList } from "../revocation/events.js";
import { systemClock, type Clock } from "../units.js";
import type { KeystoneEndpoints } from "./endpoint-set.js";
import type { ServiceToken } from "./service-token.js";

/** Default time between polls, ms. */
export const DEFAULT_REVOCATION_POLL_INTERVAL_MS = 10_000;

/** Where the feed stands. */
export type FeedState =
  | { readonly kind: "starting" }
  | { readonly kind: "fresh"; readonly lastSuccessMs: number; readonly events: number }
  | {
      readonly kind: "stale";
      readonly lastSuccessMs: number | undefined;
      readonly error: string;
      readonly events: number;
    };

/** Seconds since the feed last answered, at `nowMs`; undefined before it ever did. */
export function feedLagSeconds(state: FeedState, nowMs: number): number | undefined {
  const last = state.kind === "starting" ? undefined : state.lastSuccessMs;
  return last === undefined ? undefined : Math.max(0, (nowMs - last) / 1000);
}

/** Options of {@link RevocationFeed}. */
export interface RevocationFeedOptions {
  readonly endpoints: KeystoneEndpoints;
  readonly serviceToken: ServiceToken;
  readonly list: RevocationList;
  /** Time between polls, ms. Default {@link DEFAULT_REVOCATION_POLL_INTERVAL_MS}. */
  readonly pollIntervalMs?: number;
  /** How far `since` trails the newest event held, ms. Default 60 000. */
  readonly overlapMs?: number;
  /**
   * Longest a token lives, seconds: events older than that are dropped. Default 172 800
   * (Keystone's default `allow_expired_window`, 48 h, which bounds any token still honoured).
   */
  readonly maxTokenLifetimeSeconds?: number;
  /** Called with the events a poll added (purge caches). Must not throw. */
  readonly onEvents?: (events: readonly RevocationEvent[]) => void;
  /** Called after every poll. */
  readonly onPoll?: (state: FeedState) => void;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

function isoMicros(micros: number): string {
  return new Date(Math.floor(micros / 1000)).toISOString();
}

export class RevocationFeed {
  private state: FeedState = { kind: "starting" };
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly clock: Clock;
  private readonly logger: Logger;

  constructor(private readonly options: RevocationFeedOptions) {
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
  }

  /** The feed's state now. */
  status(): FeedState {
    return this.state;
  }

  /** Polls now, then every interval (idempotent). */
  start(): void {
    if (this.timer !== undefined) return;
    void this.pollNow();
    this.timer = setInterval(() => {
      void this.pollNow();
    }, this.options.pollIntervalMs ?? DEFAULT_REVOCATION_POLL_INTERVAL_MS);
    this.timer.unref();
  }

  /** One poll (a poll already running is awaited, not doubled). Never rejects. */
  pollNow(): Promise<void> {
    this.running ??= this.poll().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private async poll(): Promise<void> {
    const list = this.options.list;
    const latest = list.latestRevokedAtMicros();
    const path =
      latest === undefined
        ? "/OS-REVOKE/events"
        : `/OS-REVOKE/events?since=${encodeURIComponent(isoMicros(latest - (this.options.overlapMs ?? 60_000) * 1000))}`;
    const result = await this.fetchEvents(path);
    const now = this.clock.nowMs();
    const previous = this.state;
    if (typeof result === "string") {
      const error = result;
      const lastSuccessMs =
        previous.kind === "fresh" || previous.kind === "stale" ? previous.lastSuccessMs : undefined;
      this.state = { kind: "stale", lastSuccessMs, error, events: list.size };
      if (previous.kind !== "stale") {
        this.logger.warn(
          "revocation feed failing: revoked tokens may be served from cache until it recovers",
          {
            error,
          },
        );
      }
    } else {
      const maxLifetimeMicros = (this.options.maxTokenLifetimeSeconds ?? 172_800) * 1e6;
      list.prune(now * 1000 - maxLifetimeMicros);
      if (result.length > 0) {
        this.logger.info("revocation events applied", { events: result.length, held: list.size });
        try {
          this.options.onEvents?.(result);
        } catch {
          // a hook must not stop the feed
        }
      }
      if (previous.kind === "stale") this.logger.info("revocation feed recovered", {});
      this.state = { kind: "fresh", lastSuccessMs: now, events: list.size };
    }
    try {
      this.options.onPoll?.(this.state);
    } catch {
      // a hook must not stop the feed
    }
  }

  /** The new events, or why there are none. */
  private async fetchEvents(path: string): Promise<RevocationEvent[] | string> {
    const service = await this.options.serviceToken.ensure();
    if (service === undefined) return "no service token";
    let why = "every Keystone endpoint is out of rotation";
    for (const guard of this.options.endpoints.guards) {
      const admission = guard.breaker.admit();
      if (admission === undefined) continue;
      const outcome = await guard.endpoint.call({
        method: "GET",
        path,
        headers: { "x-auth-token": service },
      });
      this.options.endpoints.report(guard, admission, outcome);
      if (outcome.kind === "failed") {
        why = `${guard.label}: ${outcome.reason}`;
        continue;
      }
      if (outcome.status === 401) {
        await this.options.serviceToken.rejected(service);
        return `${guard.label}: HTTP 401 (service token renewed)`;
      }
      if (outcome.status !== 200) {
        why = `${guard.label}: HTTP ${String(outcome.status)}`;
        if (outcome.status === 403) return why; // policy: no other endpoint will differ
        continue;
      }
      try {
        const body = JSON.parse(outcome.body) as { events?: unknown };
        if (!Array.isArray(body.events)) return `${guard.label}: no events list`;
        const parsed = body.events
          .map(parseEvent)
          .filter((e): e is RevocationEvent => e !== undefined);
        return this.options.list.add(parsed);
      } catch {
        return `${guard.label}: unreadable events list`;
      }
    }
    return why;
  }
}
