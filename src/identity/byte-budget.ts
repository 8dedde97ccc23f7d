/**
 * A budget of bytes shared by concurrent holders (the relay's buffered request bodies).
 *
 * Owns: the sum of the bytes reserved, never above `maxBytes`. A holder opens a
 * {@link Reservation}, grows it before it buffers (a refused growth leaves it as it was:
 * the holder must not buffer those bytes) and releases it when done, in every path — the
 * release is idempotent and a released reservation grows no more.
 */

/** One holder's share of the budget. */
export interface Reservation {
  /** Bytes held now (0 once released). */
  readonly bytes: number;
  /**
   * Grows the reservation to `totalBytes` (nothing to do when it holds that many already).
   * `false` when the budget cannot spare them, or the reservation was released.
   */
  ensure(totalBytes: number): boolean;
  /** Gives every byte back; later calls do nothing. */
  release(): void;
}

/** Options of {@link ByteBudget}. */
export interface ByteBudgetOptions {
  /** Bytes reserved at most, across all reservations: a positive integer. */
  readonly maxBytes: number;
  /** Called with each change of the bytes reserved, + or − (metrics). Must not throw. */
  readonly onChange?: (deltaBytes: number) => void;
}

type ReservationState =
  { readonly kind: "held"; readonly bytes: number } | { readonly kind: "released" };

export class ByteBudget {
  readonly maxBytes: number;
  private used = 0;

  constructor(private readonly options: ByteBudgetOptions) {
    if (!Number.isSafeInteger(options.maxBytes) || options.maxBytes < 1) {
      throw new RangeError("maxBytes must be a positive integer");
    }
    this.maxBytes = options.maxBytes;
  }

  /** Bytes reserved now, across all reservations. */
  get usedBytes(): number {
    return this.used;
  }

  /** A new, empty reservation. */
  open(): Reservation {
    let state: ReservationState = { kind: "held", bytes: 0 };
    const change = (delta: number): void => {
      this.used += delta;
      if (delta !== 0) this.options.onChange?.(delta);
    };
    return {
      get bytes() {
        return state.kind === "held" ? state.bytes : 0;
      },
      ensure: (totalBytes) => {
        if (state.kind === "released") return false;
        const more = totalBytes - state.bytes;
        if (more <= 0) return true;
        if (this.used + more > this.maxBytes) return false;
        state = { kind: "held", bytes: totalBytes };
        change(more);
        return true;
      },
      release: () => {
        if (state.kind === "released") return;
        const bytes = state.bytes;
        state = { kind: "released" };
        change(-bytes);
      },
    };
  }
}
