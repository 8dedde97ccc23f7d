/**
 * The key-lag drill: the region's copy of the key repository behind the master's (the
 * primary key hidden from the edge's view) — detection, Keystone fallback for new tokens,
 * known users untouched.
 */
import { setTimeout as sleep } from "node:timers/promises";

import { Tally } from "./traffic.js";
import {
  driveFor,
  fallbackCounts,
  isValid,
  noFailures,
  pick,
  seconds,
  watch,
  type Context,
  type DrillOptions,
  type Outcome,
} from "./scenario-kit.js";

/**
 * The region's copy of the key repository lags: the primary key is hidden from the edge's
 * view (the master encrypts with a key this region never received). Users the region
 * knows must notice nothing; tokens as issued a moment ago fail every local key, the edge
 * must find out (time to detection) and serve them through Keystone (fallback success);
 * after the release — the sync arriving — it must be back in sync (recovery).
 */
export async function keyLag(options: DrillOptions, ctx: Context): Promise<Outcome> {
  const lagBefore = ctx.before.keys.lag;
  const maxDetectionMs = options.maxDetectionMs ?? 15_000;
  const perSecond = options.freshPerSecond ?? 2;
  const countsBefore = await fallbackCounts(options.client);
  const known = new Tally();
  const fresh = new Tally();
  // Shots sent before the edge was seen behind: the first may be refused as forged when
  // the last lag check was too recent to run another (fernet.lag_check_min_interval_ms).
  const early = new Tally();
  const untilMs = ctx.t0 + options.durationMs;
  let detectedAtMs: number | undefined;
  let lastCheck: unknown = null;
  await Promise.all([
    driveFor(options, untilMs, {
      // The region's known users: the request path, answered from the caches as before.
      next: (i) => ({ token: pick(ctx.known, i), from: "cache", expected: isValid, tally: known }),
    }),
    (async () => {
      // Tokens as issued a moment ago, paced: each one a fallback while the ring is behind.
      const periodMs = 1000 / perSecond;
      let dueMs = performance.now();
      for (let i = 0; performance.now() < untilMs && !options.signal.aborted; i++) {
        const tally = detectedAtMs === undefined ? early : fresh;
        const answer = await options.client.validate(pick(ctx.known, i), "unseen");
        tally.record(answer, isValid(answer));
        dueMs += periodMs;
        const waitMs = Math.min(dueMs, untilMs) - performance.now();
        if (waitMs > 0) await sleep(waitMs);
      }
    })(),
    watch(options, untilMs, (s, at) => {
      if (detectedAtMs === undefined && s.keys.lag?.state === "behind") {
        detectedAtMs = at - ctx.t0;
        lastCheck = s.keys.lag.last_check;
        options.progress?.(
          `the edge knows its key ring is behind (${String(seconds(detectedAtMs))} s after the fault)`,
        );
      }
    }),
  ]);
  const countsAfter = await fallbackCounts(options.client);
  const fallbacks: Record<string, number> = {};
  for (const [k, v] of Object.entries(countsAfter)) fallbacks[k] = v - (countsBefore[k] ?? 0);
  const servedByFallback = fallbacks["valid"] ?? 0;
  const refusedForBudget = fallbacks["refused"] ?? 0;
  return {
    checks: [
      {
        name: "region in sync before the drill",
        passed: lagBefore?.state === "in_sync",
        detail:
          lagBefore === undefined
            ? "this edge does not report key lag in /status (an older version?)"
            : lagBefore.state === "in_sync"
              ? `in sync since ${lagBefore.since ?? "?"}`
              : `the key ring was ${lagBefore.state} already: the drill cannot tell what it caused`,
      },
      {
        name: "lag detected in time",
        passed: detectedAtMs !== undefined && detectedAtMs <= maxDetectionMs,
        detail:
          detectedAtMs === undefined
            ? "/status never showed the key ring behind: were the tokens issued with the current primary key? (a token issued before the last rotation still decrypts; the scheduled check, fernet.lag_check_interval_ms, finds the lag anyway)"
            : `behind ${String(seconds(detectedAtMs))} s after the fault (limit ${String(seconds(maxDetectionMs))} s); ${String(early.total - (early.byResult["valid"] ?? 0))} of ${String(early.total)} new tokens refused before`,
      },
      {
        name: "new tokens served through Keystone while behind",
        passed:
          fresh.total > 0 &&
          fresh.unexpected === 0 &&
          servedByFallback > 0 &&
          refusedForBudget === 0,
        detail:
          fresh.total === 0
            ? "no new token was validated after the detection"
            : fresh.unexpected > 0
              ? `${String(fresh.unexpected)} of ${String(fresh.total)} refused: ${fresh.samples.join("; ")}`
              : refusedForBudget > 0
                ? `${String(refusedForBudget)} refused for want of fallback budget (fernet.lag_fallback_per_second; lower --fresh-rate, or the region's own new tokens spent it)`
                : servedByFallback === 0
                  ? "none was asked of Keystone: the hidden key did not sign these tokens"
                  : `${String(fresh.total)} validations, all valid; ${String(servedByFallback)} Keystone fallbacks (p99 ${String(fresh.quantileMs(0.99))} ms)`,
      },
      noFailures(known, "known users unaffected"),
    ],
    figures: {
      detection_seconds: detectedAtMs === undefined ? null : seconds(detectedAtMs),
      detecting_check: lastCheck,
      fallbacks,
      new_tokens_before_detection: early.figures(),
      new_tokens: fresh.figures(),
      known: known.figures(),
    },
  };
}
