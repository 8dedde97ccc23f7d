/**
 * Sweeping expired entries out of an in-process cache, unread.
 *
 * Owns: the expiry times of a cache's entries in a heap, and a periodic sweep that pops the
 * ones whose time has come — at most `SWEEP_BATCH` a tick, so one tick's work follows what
 * expired, never the cache's size — and asks the cache to drop each entry if it is still
 * the one that expired (a key may since hold a newer, longer-lived entry). Without it, an
 * lru-cache keeps an expired entry until it is read again or pushed out by the size bound:
 * a region's stream of tokens and scopes seen once would fill the cache to its bound and
 * hold that memory for good. lru-cache's own `purgeStale()` walks every entry (≈50 ms for
 * 100,000 here: a stall on the loop), and its `ttlAutopurge` timers skip an entry whose
 * timer fires when its age equals its TTL exactly, which under load left a tenth behind.
 */
import { MinHeap } from "../min-heap.js";
import type { Clock } from "../units.js";

/** Default period of the sweep, ms. */
export const DEFAULT_SWEEP_INTERVAL_MS = 1_000;
/** Expiry times looked at per sweep at most: bounds one tick's work (≈1 ms). */
export const SWEEP_BATCH = 10_000;

/** Options of {@link ExpirySweep}. */
export interface ExpirySweepOptions {
  readonly clock: Clock;
  /**
   * Drops `key` if its entry's time is over at `nowMs`; returns whether it dropped one.
   * Called once per expiry time that came due.
   */
  readonly expire: (key: string, nowMs: number) => boolean;
  /** How often to sweep, ms; 0: never by a timer (call `sweep()`). Default {@link DEFAULT_SWEEP_INTERVAL_MS}. */
  readonly intervalMs?: number;
}

export class ExpirySweep {
  private readonly due = new MinHeap<string>();
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: ExpirySweepOptions) {
    const intervalMs = options.intervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    if (intervalMs > 0) {
      this.timer = setInterval(() => this.sweep(), intervalMs);
      this.timer.unref();
    }
  }

  /** Remembers that `key`'s entry expires at `atMs`. */
  track(key: string, atMs: number): void {
    this.due.push(atMs, key);
  }

  /**
   * Drops entries whose time has come, looking at `limit` expiry times at most.
   * @returns how many entries were dropped.
   */
  sweep(limit = SWEEP_BATCH): number {
    const now = this.options.clock.nowMs();
    let dropped = 0;
    for (let looked = 0; looked < limit; looked++) {
      const at = this.due.peekKey();
      if (at === undefined || at > now) break;
      if (this.options.expire(this.due.pop() as string, now)) dropped++;
    }
    return dropped;
  }

  /** Expiry times held (entries replaced or dropped since are counted until they come due). */
  get size(): number {
    return this.due.size;
  }

  /** Stops the timer. */
  close(): void {
    clearInterval(this.timer);
  }
}
