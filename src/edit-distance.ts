/**
 * Edit distance between two words: how a mistyped name finds the one meant.
 *
 * Owns: the one distance the "did you mean" hints use — the configuration's unknown
 * options (config/load.ts) and the command line's unknown options and commands
 * (cli/command.ts, cli/main.ts). Each caller keeps its own rule for how near is near.
 */

/** Options of {@link editDistance}. */
export interface EditDistanceOptions {
  /**
   * Count two adjacent characters swapped (`listne` → `listen`) as one edit rather than
   * two (optimal string alignment). Default false (plain Levenshtein).
   */
  readonly transpositions?: boolean;
}

/** The fewest insertions, deletions and substitutions (and swaps, if asked) from a to b. */
export function editDistance(a: string, b: string, options: EditDistanceOptions = {}): number {
  const swaps = options.transpositions ?? false;
  // Three rows of the table: two back (for a swap), the previous one, the current one.
  let beforePrevious: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      let best = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
      if (swaps && i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, (beforePrevious[j - 2] ?? 0) + 1);
      }
      current[j] = best;
    }
    beforePrevious = previous;
    previous = current;
  }
  return previous[b.length] ?? 0;
}
