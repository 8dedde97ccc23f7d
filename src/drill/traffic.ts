/**
 * A drill's traffic: validations through the edge's admin API, and what they came to.
 *
 * Owns: driving `concurrency` loops of validations until a deadline or an abort, and
 * tallying them — per result, per tier that settled them, latencies, and the answers that
 * were not what the region should give. Which answer is expected is the scenario's call.
 */
import type { DrillTier, ValidationAnswer } from "../protocol/admin.js";
import { detailOf, type AdminClient } from "./admin-client.js";

/** One validation to make. */
export interface Shot {
  readonly token: string;
  readonly from: DrillTier;
  /** Whether an answer is what the region should give. */
  readonly expected: (answer: ValidationAnswer) => boolean;
  /** Where the answer is counted. */
  readonly tally: Tally;
}

/** The tally of a run of traffic. */
export class Tally {
  total = 0;
  unexpected = 0;
  readonly byResult: Record<string, number> = {};
  readonly bySource: Record<string, number> = {};
  readonly latenciesMs: number[] = [];
  /** A few unexpected answers, for the report (never a token). */
  readonly samples: string[] = [];

  record(answer: ValidationAnswer, expected: boolean): void {
    this.total++;
    this.byResult[answer.result] = (this.byResult[answer.result] ?? 0) + 1;
    const key = `${answer.result}:${answer.result === "invalid" ? answer.source : detailOf(answer)}`;
    this.bySource[key] = (this.bySource[key] ?? 0) + 1;
    this.latenciesMs.push(answer.latency_ms);
    if (!expected) {
      this.unexpected++;
      if (this.samples.length < 5) {
        this.samples.push(
          `${answer.result} (${detailOf(answer)}) after ${answer.latency_ms.toFixed(0)} ms`,
        );
      }
    }
  }

  /** The `q` quantile of the latencies (0–1), ms; null without any. */
  quantileMs(q: number): number | null {
    if (this.latenciesMs.length === 0) return null;
    const sorted = [...this.latenciesMs].sort((a, b) => a - b);
    const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
    return Math.round((sorted[index] ?? 0) * 10) / 10;
  }

  /** The figures of the report. */
  figures(): Record<string, unknown> {
    return {
      validations: this.total,
      unexpected: this.unexpected,
      by_result: this.byResult,
      by_source: this.bySource,
      latency_ms: {
        p50: this.quantileMs(0.5),
        p99: this.quantileMs(0.99),
        max: this.quantileMs(1),
      },
    };
  }
}

/**
 * Runs `concurrency` loops, each taking the next shot from `next`, until `untilMs`
 * (performance.now() time) or `signal` aborts. An admin call that fails outright (the
 * edge itself unreachable) ends the run by rejecting.
 */
export async function drive(options: {
  readonly client: AdminClient;
  readonly next: (i: number) => Shot;
  readonly concurrency: number;
  readonly untilMs: number;
  readonly signal: AbortSignal;
}): Promise<void> {
  let i = 0;
  const loop = async (): Promise<void> => {
    while (performance.now() < options.untilMs && !options.signal.aborted) {
      const shot = options.next(i++);
      const answer = await options.client.validate(shot.token, shot.from);
      shot.tally.record(answer, shot.expected(answer));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, loop));
}
