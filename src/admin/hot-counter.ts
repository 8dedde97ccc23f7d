/**
 * Counters for the request path: a plain number per label pair, folded into prom-client
 * when Prometheus scrapes.
 *
 * Owns: the per-request cost of counting. prom-client hashes and validates the label set on
 * every `inc`, bound children included (`labels(…).inc` re-hashes): about 2 µs a call, paid
 * several times per request. Here a request increments a number in a cell found by two Map
 * reads (no string built); the counter's `collect` hook, which prom-client runs before every
 * read of the metric, adds what accumulated since the last scrape. Totals are exact; a
 * scrape sees every increment made before it started.
 */
import type { Counter } from "prom-client";

interface Cell {
  pending: number;
  readonly labels: Readonly<Record<string, string>>;
}

/** A two-label counter for hot paths. Create it, then pass `flush` as the counter's `collect`. */
export class HotCounter<A extends string, B extends string> {
  private readonly cells = new Map<string, Map<string, Cell>>();
  private counter: Counter<A | B> | undefined;

  /**
   * @param first The first label's name.
   * @param second The second label's name.
   */
  constructor(
    private readonly first: A,
    private readonly second: B,
  ) {}

  /** Binds the prom-client counter that receives the counts (call once, after creating it). */
  bind(counter: Counter<A | B>): void {
    this.counter = counter;
  }

  /** Adds `n` (default 1) to the series `{first: a, second: b}`. */
  inc(a: string, b: string, n = 1): void {
    let row = this.cells.get(a);
    if (row === undefined) {
      row = new Map();
      this.cells.set(a, row);
    }
    let cell = row.get(b);
    if (cell === undefined) {
      cell = { pending: 0, labels: { [this.first]: a, [this.second]: b } };
      row.set(b, cell);
      // Make the series visible at 0 right away, as prom-client's own inc would.
      this.counter?.inc(cell.labels as Partial<Record<A | B, string>>, 0);
    }
    cell.pending += n;
  }

  /** Moves the pending counts into the prom-client counter (its `collect` hook). */
  flush(): void {
    const counter = this.counter;
    if (counter === undefined) return;
    for (const row of this.cells.values()) {
      for (const cell of row.values()) {
        if (cell.pending === 0) continue;
        counter.inc(cell.labels as Partial<Record<A | B, string>>, cell.pending);
        cell.pending = 0;
      }
    }
  }
}
