/**
 * Times given on the command line.
 *
 * Owns: the one way every command reads a time argument (`--grace`, `--duration`,
 * `--max-failover`, …): `500ms`, `10s`, `5m`, `1h` or a bare number of seconds, checked
 * against a range, and the one message a bad one gets.
 */
import { UsageError } from "../errors.js";

/** What a time argument looks like, for messages ("--grace needs a value (…)"). */
export const DURATION_EXAMPLE = "a time such as 10s, 2m or 500ms";

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** Default {@link DurationRange.max}: a day, well under what a Node timer honours (24.8 days). */
export const MAX_DURATION_MS = 86_400_000;

/** Longest argument echoed back in a message; a longer one is only measured. */
const MAX_ECHOED_CHARS = 32;

/** The range a time argument must fall in. */
export interface DurationRange {
  /**
   * Least accepted time, ms, inclusive. Default: none, but zero is refused (the time must
   * be above 0); give `0` to accept zero (e.g. `serve --grace 0`: no grace).
   */
  readonly min?: number;
  /** Most accepted time, ms, inclusive. Default {@link MAX_DURATION_MS} (a day). */
  readonly max?: number;
}

/** `ms` the way an operator would write it: `500ms`, `10s`, `1.5s`, `2m`, `1h`. */
export function formatDuration(ms: number): string {
  for (const unit of ["h", "m", "s"] as const) {
    const size = UNIT_MS[unit] ?? 1;
    if (ms >= size && ms % size === 0) return `${String(ms / size)}${unit}`;
  }
  return ms >= 1_000 ? `${String(ms / 1_000)}s` : `${String(ms)}ms`;
}

/** The argument as a message may show it: short ones as given, long ones only measured. */
function shown(text: string): string {
  return text.length <= MAX_ECHOED_CHARS && /^[\x21-\x7e]*$/.test(text)
    ? text
    : `a value of ${String(text.length)} characters (not shown)`;
}

/**
 * Reads a time argument: `500ms`, `10s`, `5m`, `1h`, or a bare number of seconds (`10`,
 * `0.5`); decimals allowed, units in lower case. Rounds to whole milliseconds.
 *
 * @param text the argument as given
 * @param option the option's name for messages, e.g. `--grace`
 * @returns milliseconds
 * @throws UsageError `--grace: expected a time such as 10s, 2m or 500ms, got -1`, or the
 *   range it misses (`--grace: must be above 0, got 0`, `… must be at most 1h, got 2h`).
 */
export function parseDurationArgument(
  text: string,
  option: string,
  range: DurationRange = {},
): number {
  const match = /^(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)?$/.exec(text.trim());
  if (match?.[1] === undefined) {
    throw new UsageError(`${option}: expected ${DURATION_EXAMPLE}, got ${shown(text)}`);
  }
  const ms = Math.round(Number(match[1]) * (UNIT_MS[match[2] ?? "s"] ?? 1_000));
  const max = range.max ?? MAX_DURATION_MS;
  const given = shown(text.trim());
  if (range.min === undefined ? ms <= 0 : ms < range.min) {
    throw new UsageError(
      range.min === undefined || range.min <= 0
        ? `${option}: must be above 0, got ${given}`
        : `${option}: must be at least ${formatDuration(range.min)}, got ${given}`,
    );
  }
  if (ms > max) {
    throw new UsageError(`${option}: must be at most ${formatDuration(max)}, got ${given}`);
  }
  return ms;
}
