/**
 * Keystone's revocation feed: a background loop.
 *
 * Owns: polling `GET /v3/OS-REVOKE/events?since=…` every `pollIntervalMs` through the
 * endpoints in order (breakers respected), applying what is new to the {@link RevocationList}
 * (incrementally: a poll costs its own events, not the list's size) and telling the caller
 * (which purges cached entries). `since` trails the newest `revoked_at` seen by `overlapMs`,
 * so an event committed late with an earlier `revoked_at` is still fetched (duplicates are
 * ignored). Keystone answers `revoked_at > since` only, so events it prunes are simply not
 * listed again: events never un-happen, and the list forgets them on its own clock, once no
 * token they could revoke is acceptable (revocation/retention), and holds at most
 * `maxEvents` (beyond, the oldest are dropped and older tokens refused: see
 * `RevocationList.capAt`). The feed's freshness (last success) is reported, so a stale feed
 * is visible; a failed poll keeps everything held. The timer does not keep the process alive.
 */
import { silentLogger, type Logger } from "../log.js";
import { parseEvent, type RevocationEvent } from "../revocation/event.js";
import type { OverflowState, RevocationList } from "../revocation/list.js";
import {
  DEFAULT_MAX_REVOCATION_EVENTS,
  retentionCutoffMicros,
  type RetentionOptions,
} from "../revocation/retention.js";
import { systemClock, type Clock } from "../units.js";
import type { KeystoneEndpoints } from "./endpoint-set.js";
import type { ServiceToken } from "./service-token.js";

import { DEFAULT_REVOCATION_POLL_INTERVAL_MS } from "../config/defaults.js";

/**
 * Events parsed and applied in one go before the feed yields to the event loop (a few ms
 * of work: see `npm run bench:revocation`).
 */
export const APPLY_SLICE_EVENTS = 2_000;

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

/**
 * What one feed learnt from a poll, for feeds in other processes of the host to apply
 * (`workers` > 1): the events that were new to it, and its state after the poll.
 */
export interface FeedUpdate {
  readonly events: readonly RevocationEvent[];
  readonly state: FeedState;
  /**
   * Set on a feed's first poll: it lists every event Keystone holds, which the followers
   * have (or lack only since they last heard): each polls once itself instead of receiving
   * them all over IPC.
   */
  readonly resync?: boolean;
  /**
   * Events a worker made itself (a token revoked through its Identity face, ahead of
   * Keystone's own event): applied as local (they do not move where the feed asks from),
   * the receiver's state untouched.
   */
  readonly local?: boolean;
}

/**
 * Options of {@link RevocationFeed}. The retention options (`tokenExpirationSeconds`,
 * `allowExpiredWindowSeconds`, `contextLifetimeSeconds`) are revocation/retention's.
 */
export interface RevocationFeedOptions extends RetentionOptions {
  readonly endpoints: KeystoneEndpoints;
  readonly serviceToken: ServiceToken;
  readonly list: RevocationList;
  /** Time between polls, ms. Default {@link DEFAULT_REVOCATION_POLL_INTERVAL_MS}. */
  readonly pollIntervalMs?: number;
  /** How far `since` trails the newest event held, ms. Default 60 000. */
  readonly overlapMs?: number;
  /**
   * Most events held; beyond, the oldest are dropped and tokens issued before them refused.
   * Default {@link DEFAULT_MAX_REVOCATION_EVENTS}.
   */
  readonly maxEvents?: number;
  /** Called with the events a poll added (purge caches). Must not throw. */
  readonly onEvents?: (events: readonly RevocationEvent[]) => void;
  /** Called when a poll dropped events at the cap, with how many (count, alert). */
  readonly onDropped?: (events: number, overflow: OverflowState) => void;
  /** Called after every poll. */
  readonly onPoll?: (state: FeedState) => void;
  /**
   * `poll` (default): polls at start and every `pollIntervalMs`. `follow`: polls at start
   * and when asked (`pollNow`), and otherwise applies what another feed of the host shares
   * ({@link RevocationFeed.receive}): one feed per host asks Keystone, not one per worker.
   */
  readonly mode?: "poll" | "follow";
  /** Called after every poll with what it learnt, for the followers. Must not throw. */
  readonly onShare?: (update: FeedUpdate) => void;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

function isoMicros(micros: number): string {
  return new Date(Math.floor(micros / 1000)).toISOString();
}

export class RevocationFeed {
  private state: FeedState = { kind: "starting" };
  private started = false;
  /** Whether a poll of this feed ever succeeded (its first one lists every event). */
  private answered = false;
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

  /** Polls now, then every interval (idempotent); a follower polls once. */
  start(): void {
    if (this.timer !== undefined || this.started) return;
    this.started = true;
    void this.pollNow();
    if (this.options.mode === "follow") return;
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

  /**
   * Applies what the polling feed of the host shared (a follower): its new events, as a
   * poll of our own would, and its state (when it last heard from Keystone, or why not).
   * Never rejects.
   */
  async receive(update: FeedUpdate): Promise<void> {
    if (update.resync === true) {
      await this.pollNow();
      return;
    }
    const added: RevocationEvent[] = [];
    const events = update.events;
    const local = update.local === true;
    for (let start = 0; start < events.length; start += APPLY_SLICE_EVENTS) {
      if (start > 0) await new Promise((resolve) => setImmediate(resolve));
      const slice = events.slice(start, start + APPLY_SLICE_EVENTS);
      for (const event of this.options.list.add(slice, { local })) added.push(event);
    }
    this.forget(this.clock.nowMs());
    if (added.length > 0) {
      try {
        this.options.onEvents?.(added);
      } catch {
        // a hook must not stop the feed
      }
    }
    const size = this.options.list.size;
    if (local) {
      if (this.state.kind !== "starting") this.state = { ...this.state, events: size };
      return;
    }
    this.state = update.state.kind === "starting" ? this.state : { ...update.state, events: size };
    try {
      this.options.onPoll?.(this.state);
    } catch {
      // a hook must not stop the feed
    }
  }

  private async poll(): Promise<void> {
    const list = this.options.list;
    const latest = list.latestRevokedAtMicros();
    const path =
      latest === undefined
        ? "/OS-REVOKE/events"
        : `/OS-REVOKE/events?since=${encodeURIComponent(isoMicros(latest - (this.options.overlapMs ?? 60_000) * 1000))}`;
    const listed = await this.fetchEvents(path);
    const result = typeof listed === "string" ? listed : await this.apply(listed);
    const now = this.clock.nowMs();
    this.forget(now);
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
      // Until a poll succeeded, this feed's list is not the followers' to copy: they poll.
      const first = typeof result !== "string" && !this.answered;
      if (typeof result !== "string") this.answered = true;
      this.options.onShare?.(
        first || typeof result === "string"
          ? { events: [], state: this.state, ...(first ? { resync: true } : {}) }
          : { events: result, state: this.state },
      );
    } catch {
      // a hook must not stop the feed
    }
    try {
      this.options.onPoll?.(this.state);
    } catch {
      // a hook must not stop the feed
    }
  }

  /**
   * Parses and applies `listed` in slices of {@link APPLY_SLICE_EVENTS}, yielding to the
   * event loop between them: a first poll after a start may list every event Keystone
   * holds, and requests must not wait for all of it. Returns the events that were new.
   */
  private async apply(listed: readonly unknown[]): Promise<RevocationEvent[]> {
    const added: RevocationEvent[] = [];
    for (let start = 0; start < listed.length; start += APPLY_SLICE_EVENTS) {
      if (start > 0) await new Promise((resolve) => setImmediate(resolve));
      const parsed: RevocationEvent[] = [];
      for (const raw of listed.slice(start, start + APPLY_SLICE_EVENTS)) {
        const event = parseEvent(raw);
        if (event !== undefined) parsed.push(event);
      }
      for (const event of this.options.list.add(parsed)) added.push(event);
    }
    return added;
  }

  /**
   * Prunes what no acceptable token can be older than, then holds the list to its cap. Runs
   * after every poll, answered or not: retention depends on the clock, not on the feed.
   */
  private forget(nowMs: number): void {
    const list = this.options.list;
    const wasOverflowed = list.overflow().kind === "overflowed";
    const pruned = list.prune(retentionCutoffMicros(nowMs, this.options));
    if (pruned > 0) this.logger.debug("revocation events past retention pruned", { pruned });
    const maxEvents = this.options.maxEvents ?? DEFAULT_MAX_REVOCATION_EVENTS;
    const dropped = list.capAt(maxEvents);
    const overflow = list.overflow();
    if (dropped > 0 && overflow.kind === "overflowed") {
      this.logger.warn(
        "revocation events over the cap: the oldest dropped, tokens issued at or before them are refused from the caches",
        {
          dropped,
          held: list.size,
          maxEvents,
          refusedIssuedAtOrBefore: isoMicros(overflow.issuedBeforeMicros),
        },
      );
      try {
        this.options.onDropped?.(dropped, overflow);
      } catch {
        // a hook must not stop the feed
      }
    } else if (wasOverflowed && overflow.kind === "within_cap") {
      this.logger.info(
        "revocation events dropped at the cap are past retention: no token refused for them",
        {},
      );
    }
  }

  /** The new events, or why there are none. */
  private async fetchEvents(path: string): Promise<unknown[] | string> {
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
        return body.events as unknown[];
      } catch {
        return `${guard.label}: unreadable events list`;
      }
    }
    return why;
  }
}
