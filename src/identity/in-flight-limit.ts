/**
 * A cap on concurrent work, with no queue.
 *
 * Owns: how many of `max` slots are taken. {@link InFlightLimit.tryAcquire} takes one or
 * answers `undefined` at once — nothing ever waits here, the caller refuses the work — and
 * a slot's release is idempotent, so every exit path may release it without counting twice.
 */

/** A taken slot. */
export interface Slot {
  /** Gives the slot back; later calls do nothing. */
  release(): void;
}

/** Options of {@link InFlightLimit}. */
export interface InFlightLimitOptions {
  /** Slots at most: a positive integer. */
  readonly max: number;
  /** Called with +1 on each acquisition and −1 on each release (metrics). Must not throw. */
  readonly onChange?: (delta: 1 | -1) => void;
}

export class InFlightLimit {
  readonly max: number;
  private taken = 0;

  constructor(private readonly options: InFlightLimitOptions) {
    if (!Number.isSafeInteger(options.max) || options.max < 1) {
      throw new RangeError("max must be a positive integer");
    }
    this.max = options.max;
  }

  /** Slots taken now. */
  get inFlight(): number {
    return this.taken;
  }

  /** A slot, or `undefined` when all are taken (no waiting). */
  tryAcquire(): Slot | undefined {
    if (this.taken >= this.max) return undefined;
    this.taken++;
    this.options.onChange?.(1);
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.taken--;
        this.options.onChange?.(-1);
      },
    };
  }
}
