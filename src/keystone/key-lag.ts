/**
 * Whether the region's key ring can decrypt what Keystone issues now: a background loop.
 *
 * Owns: the lag state — unknown, in sync (since when, last agreed), behind (since when,
 * last agreed) — and the checks that move it. A check obtains a fresh token from Keystone
 * (the edge authenticates as its service user: a token issued now is signed with the
 * master's primary key of the moment; the edge's long-lived service token may predate a
 * rotation and prove nothing) and tries its HMAC against every key of the current ring. A
 * match: in sync. None: behind — tokens issued since the master's last rotations do not
 * decrypt here (rotation ran twice before the copy reached this region). Keystone
 * unreachable, or an answer that is not a Fernet token: the check failed and the state
 * stays what it was.
 *
 * Checks run at start, every `intervalMs`, right after a reload that changed the ring
 * (`ringChanged()`), and — at most once per `undecryptableMinIntervalMs` — when a
 * well-formed token fails every local key (`undecryptable()`). That last trigger is
 * ignored while behind (it is what behind predicts; a ring change or the schedule clears
 * it) and waits `intervalMs` after a failed check, so a service user Keystone refuses is
 * not made to log in once per forged token. One check at a time; a ring change during a
 * check queues one more after it. Never throws into the loop; never logs a token.
 */
import { TokenError } from "../errors.js";
import { openEnvelope, tokenBytes } from "../fernet/envelope.js";
import type { KeyRing, KeyRingSource } from "../fernet/key-ring.js";
import { silentLogger, type LogFields, type Logger } from "../log.js";
import { systemClock, type Clock } from "../units.js";
import type { ServiceTokenState } from "./service-token.js";

/** Default period of the scheduled check, ms (`fernet.lag_check_interval_ms`). */
export const DEFAULT_LAG_CHECK_INTERVAL_MS = 60_000;
/** Default least time between checks triggered by undecryptable tokens, ms (`fernet.lag_check_min_interval_ms`). */
export const DEFAULT_LAG_CHECK_MIN_INTERVAL_MS = 5_000;

/** Where the region's key ring stands against the master's. */
export type KeyLagState =
  | { readonly kind: "unknown" }
  | {
      readonly kind: "in_sync";
      /** When this run of agreement began (epoch ms). */
      readonly sinceMs: number;
      /** When a fresh Keystone token last decrypted locally (epoch ms). */
      readonly agreedAtMs: number;
    }
  | {
      readonly kind: "behind";
      /** When the lag was first seen (epoch ms). */
      readonly sinceMs: number;
      /** When a fresh Keystone token last decrypted locally; absent: never, for this edge. */
      readonly lastAgreedAtMs?: number;
    };

/** What made a check run. */
export const KEY_LAG_TRIGGERS = ["start", "schedule", "reload", "undecryptable"] as const;
export type KeyLagTrigger = (typeof KEY_LAG_TRIGGERS)[number];

/** What a check found. `failed`: no fresh token to judge by; the state is kept. */
export const KEY_LAG_RESULTS = ["in_sync", "behind", "failed"] as const;
export type KeyLagResult = (typeof KEY_LAG_RESULTS)[number];

/** A token Keystone issued for this check, or why there is none. */
export type FreshToken =
  | { readonly kind: "issued"; readonly token: string }
  | { readonly kind: "failed"; readonly reason: string };

/** The last check, for `/status`. */
export interface KeyLagCheck {
  readonly atMs: number;
  readonly trigger: KeyLagTrigger;
  readonly result: KeyLagResult;
  /** Why a failed check failed. */
  readonly error?: string;
}

/** Options of {@link KeyLagMonitor}. */
export interface KeyLagOptions {
  /** The region's key ring (the key repository). */
  readonly keys: KeyRingSource;
  /**
   * Obtains a token Keystone issues now (see {@link freshTokenFrom}). May reject; a
   * rejection is a failed check.
   */
  readonly issue: () => Promise<FreshToken>;
  /** Period of the scheduled check, ms. Default {@link DEFAULT_LAG_CHECK_INTERVAL_MS}. */
  readonly intervalMs?: number;
  /**
   * Whether checks also run every `intervalMs`. Default true; false for a worker whose
   * host's scheduled check runs elsewhere (`workers` > 1): it still checks at start, on a
   * ring change and on an undecryptable token, which is when its own ring matters.
   */
  readonly scheduled?: boolean;
  /**
   * Least time since the last check before an undecryptable token triggers another, ms.
   * Default {@link DEFAULT_LAG_CHECK_MIN_INTERVAL_MS}.
   */
  readonly undecryptableMinIntervalMs?: number;
  /** The state to start from (a configuration reload carries it over). Default unknown. */
  readonly initialState?: KeyLagState;
  /** Default: the wall clock. */
  readonly clock?: Clock;
  /** Default: silent. */
  readonly logger?: Logger;
  /** After every check (metrics hook here). Must not throw; a throw is contained. */
  readonly onCheck?: (trigger: KeyLagTrigger, result: KeyLagResult, state: KeyLagState) => void;
  /** On every change of kind (unknown → in sync → behind …). A throw is contained. */
  readonly onChange?: (state: KeyLagState, previous: KeyLagState) => void;
}

/** The ring's verdict on a token: verified by some key (HMAC), by none, or not Fernet at all. */
export function ringVerifies(token: string, ring: KeyRing): "verified" | "no_key" | "not_fernet" {
  const bytes = tokenBytes(token);
  if (bytes instanceof TokenError) return "not_fernet";
  const opened = openEnvelope(bytes, ring.keys);
  // Past the HMAC, a failure (padding, timestamp) is the token's, not the ring's.
  return opened instanceof TokenError && opened.code === "bad_signature" ? "no_key" : "verified";
}

/**
 * A fresh token from the edge's service token loop (keystone/service-token.ts): with a
 * token in hand, a re-authentication now (its answer replaces the edge's token, a renewal
 * come early); without one, the authentication `ensure()` runs or joins, which respects
 * the loop's back-off after refused credentials. A token obtained before this call began
 * proves nothing about the master's keys now: that is a failed check.
 */
export function freshTokenFrom(
  serviceToken: {
    snapshot(): ServiceTokenState;
    refresh(): Promise<ServiceTokenState>;
    ensure(): Promise<string | undefined>;
  },
  clock: Clock = systemClock,
): () => Promise<FreshToken> {
  return async () => {
    const beforeMs = clock.nowMs();
    if (serviceToken.snapshot().kind !== "valid") {
      const token = await serviceToken.ensure();
      if (token !== undefined) return { kind: "issued", token };
      const s = serviceToken.snapshot();
      return {
        kind: "failed",
        reason: s.kind === "none" ? (s.lastError ?? "no service token") : "no service token",
      };
    }
    const s = await serviceToken.refresh();
    if (s.kind === "valid" && s.obtainedAtMs >= beforeMs) return { kind: "issued", token: s.token };
    return {
      kind: "failed",
      reason:
        s.kind === "none"
          ? (s.lastError ?? "authentication failed")
          : "authentication failed; the service token in hand predates the check",
    };
  };
}

const iso = (ms: number | undefined): string | undefined =>
  ms === undefined ? undefined : new Date(ms).toISOString();

export class KeyLagMonitor {
  private current: KeyLagState;
  /** When a fresh token last decrypted locally, whatever the state since. */
  private agreedAtMs: number | undefined;
  private last: KeyLagCheck | undefined;
  private running: Promise<KeyLagResult> | undefined;
  /** A ring change arrived during a check: one more check after it. */
  private queued: KeyLagTrigger | undefined;
  private lastStartedAtMs = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private stopped = false;
  private readonly intervalMs: number;
  private readonly minIntervalMs: number;
  private readonly clock: Clock;
  private readonly logger: Logger;

  constructor(private readonly options: KeyLagOptions) {
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.intervalMs = options.intervalMs ?? DEFAULT_LAG_CHECK_INTERVAL_MS;
    this.minIntervalMs = options.undecryptableMinIntervalMs ?? DEFAULT_LAG_CHECK_MIN_INTERVAL_MS;
    if (!(this.intervalMs > 0) || !(this.minIntervalMs >= 0)) {
      throw new RangeError("intervalMs must be > 0 and undecryptableMinIntervalMs ≥ 0");
    }
    this.current = options.initialState ?? { kind: "unknown" };
    const initial = this.current;
    this.agreedAtMs =
      initial.kind === "in_sync"
        ? initial.agreedAtMs
        : initial.kind === "behind"
          ? initial.lastAgreedAtMs
          : undefined;
  }

  /** Checks now, then every `intervalMs` (idempotent). */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    void this.run("start");
    if (this.options.scheduled === false) return;
    this.timer = setInterval(() => void this.run("schedule"), this.intervalMs);
    this.timer.unref();
  }

  /** Where the ring stands. */
  state(): KeyLagState {
    return this.current;
  }

  /** When a fresh Keystone token last decrypted locally (epoch ms); undefined: never. */
  lastAgreedAtMs(): number | undefined {
    return this.agreedAtMs;
  }

  /** The last check done, if any. */
  lastCheck(): KeyLagCheck | undefined {
    return this.last;
  }

  /**
   * The key repository swapped in a new ring: check now (or right after a check under way).
   * Before `start()` (whose own check comes next) and after `stop()`, nothing.
   */
  ringChanged(): void {
    if (!this.started || this.stopped) return;
    void this.run("reload", true);
  }

  /**
   * A well-formed token failed every local key: check, unless behind already, or the last
   * check started less than `undecryptableMinIntervalMs` ago (`intervalMs` after a failed
   * one); nothing before `start()` or after `stop()`. Returns the check under way (started
   * now or earlier) so that the caller may wait for it before calling the token forged —
   * the first new tokens after a rotation the region missed are then served, not refused
   * until a check notices — or undefined when no check is running. Synchronous and cheap:
   * the request path calls it.
   */
  undecryptable(): Promise<KeyLagResult> | undefined {
    if (!this.started || this.stopped) return undefined;
    if (this.current.kind === "behind") return undefined;
    if (this.running !== undefined) return this.running;
    const gapMs =
      this.last?.result === "failed"
        ? Math.max(this.intervalMs, this.minIntervalMs)
        : this.minIntervalMs;
    if (this.clock.nowMs() - this.lastStartedAtMs < gapMs) return undefined;
    return this.run("undecryptable");
  }

  /** Runs a check now, or joins the one under way. Never rejects. */
  check(trigger: KeyLagTrigger): Promise<KeyLagResult> {
    return this.run(trigger);
  }

  /** Stops the schedule and the triggers; resolves when a check under way has settled. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.queued = undefined;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private run(trigger: KeyLagTrigger, queue = false): Promise<KeyLagResult> {
    if (this.running !== undefined) {
      if (queue && !this.stopped) this.queued = trigger;
      return this.running;
    }
    if (this.stopped) return Promise.resolve("failed");
    this.lastStartedAtMs = this.clock.nowMs();
    const run = this.checkOnce(trigger).finally(() => {
      this.running = undefined;
      const next = this.queued;
      this.queued = undefined;
      if (next !== undefined && !this.stopped) void this.run(next);
    });
    this.running = run;
    return run;
  }

  private async checkOnce(trigger: KeyLagTrigger): Promise<KeyLagResult> {
    let fresh: FreshToken;
    try {
      fresh = await this.options.issue();
    } catch (error) {
      fresh = { kind: "failed", reason: String(error) };
    }
    if (this.stopped) return "failed";
    const atMs = this.clock.nowMs();
    const ring = this.options.keys.current();
    let result: KeyLagResult;
    let error: string | undefined;
    if (fresh.kind === "failed") {
      result = "failed";
      error = fresh.reason;
    } else {
      const verdict = ringVerifies(fresh.token, ring);
      result = verdict === "verified" ? "in_sync" : verdict === "no_key" ? "behind" : "failed";
      if (verdict === "not_fernet") error = "Keystone issued a token that is not a Fernet token";
    }
    const previousCheck = this.last;
    this.last = error === undefined ? { atMs, trigger, result } : { atMs, trigger, result, error };
    const previous = this.current;
    if (result === "in_sync") {
      this.agreedAtMs = atMs;
      this.current =
        previous.kind === "in_sync"
          ? { ...previous, agreedAtMs: atMs }
          : { kind: "in_sync", sinceMs: atMs, agreedAtMs: atMs };
    } else if (result === "behind" && previous.kind !== "behind") {
      this.current =
        this.agreedAtMs === undefined
          ? { kind: "behind", sinceMs: atMs }
          : { kind: "behind", sinceMs: atMs, lastAgreedAtMs: this.agreedAtMs };
    }
    const state = this.current;
    if (result === "failed" && previousCheck?.result !== "failed") {
      this.safeLog("warn", "key lag check failed; keeping the last known state", {
        trigger,
        error: error ?? "unknown",
        state: state.kind,
      });
    }
    if (state.kind !== previous.kind) {
      if (state.kind === "behind") {
        this.safeLog(
          "warn",
          "key ring behind Keystone: tokens issued now do not decrypt here; asking Keystone for them (within the fallback budget) until the key repository is synced",
          {
            trigger,
            keys: ring.size,
            primary_index: ring.primary.index,
            ...(this.agreedAtMs === undefined ? {} : { last_agreed: iso(this.agreedAtMs) }),
          },
        );
      } else if (state.kind === "in_sync") {
        this.safeLog(
          "info",
          previous.kind === "behind"
            ? "key ring back in sync with Keystone: new tokens decrypt locally again"
            : "key ring in sync with Keystone",
          {
            trigger,
            keys: ring.size,
            primary_index: ring.primary.index,
            ...(previous.kind === "behind"
              ? { behind_seconds: Math.max(0, Math.round((atMs - previous.sinceMs) / 1000)) }
              : {}),
          },
        );
      }
      this.safely(() => this.options.onChange?.(state, previous), "onChange");
    }
    this.safely(() => this.options.onCheck?.(trigger, result, state), "onCheck");
    return result;
  }

  private safely(hook: () => void, name: string): void {
    try {
      hook();
    } catch (error) {
      this.safeLog("error", `key lag ${name} hook threw`, { error: String(error) });
    }
  }

  /** Logging must never take the loop down. */
  private safeLog(level: "info" | "warn" | "error", message: string, fields: LogFields): void {
    try {
      this.logger[level](message, fields);
    } catch {
      // Nothing sensible is left to do.
    }
  }
}
