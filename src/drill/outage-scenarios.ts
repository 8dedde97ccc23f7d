/**
 * The outage drills: one Keystone endpoint blackholed (master-outage), all of them
 * (keystone-outage), memcached unreachable (memcached-outage) — what each drives and checks
 * while the fault is in.
 */
import { setTimeout as sleep } from "node:timers/promises";

import type { EdgeStatus, ValidationAnswer } from "../protocol/admin.js";
import { Tally } from "./traffic.js";
import {
  driveFor,
  isValid,
  memcachedOf,
  noFailures,
  pick,
  seconds,
  watch,
  type Context,
  type DrillOptions,
  type Outcome,
} from "./scenario-kit.js";

const stateOf = (s: EdgeStatus, endpoint: string): string =>
  s.keystone.endpoints.find((e) => e.endpoint === endpoint)?.state ?? "unknown";

export async function masterOutage(options: DrillOptions, ctx: Context): Promise<Outcome> {
  const target = ctx.drill.endpoints?.[0] ?? "";
  const others = ctx.before.keystone.endpoints.filter((e) => e.endpoint !== target);
  const stateBefore = stateOf(ctx.before, target);
  const maxFailoverMs = options.maxFailoverMs ?? 30_000;
  // With another endpoint to go to, a known token must be answered by Keystone; degraded
  // mode would mean the failover failed. With none, degraded mode is the best there is.
  const expected =
    others.length > 0
      ? (a: ValidationAnswer) => a.result === "valid" && a.source === "keystone"
      : isValid;
  const tally = new Tally();
  const untilMs = ctx.t0 + options.durationMs;
  let openedAtMs: number | undefined;
  await Promise.all([
    driveFor(options, untilMs, {
      next: (i) => ({ token: pick(ctx.known, i), from: "keystone", expected, tally }),
    }),
    watch(options, untilMs, (s, at) => {
      const state = stateOf(s, target);
      if (openedAtMs === undefined && (state === "open" || state === "half-open"))
        openedAtMs = at - ctx.t0;
    }),
  ]);
  const servedByOthers = tally.bySource["valid:keystone"] ?? 0;
  return {
    checks: [
      noFailures(tally, "known tokens validated while Keystone answers come from elsewhere"),
      {
        name: "blackholed endpoint taken out of rotation in time",
        passed: stateBefore === "closed" && openedAtMs !== undefined && openedAtMs <= maxFailoverMs,
        detail:
          stateBefore !== "closed"
            ? `${target} was ${stateBefore} before the drill: nothing to fail over from`
            : openedAtMs === undefined
              ? `${target}'s breaker never opened: every validation kept paying its timeout`
              : `${target}'s breaker open ${String(seconds(openedAtMs))} s after the fault (limit ${String(seconds(maxFailoverMs))} s)`,
      },
      others.length === 0
        ? {
            name: "validated by another endpoint",
            passed: tally.unexpected === 0,
            detail: `${target} is the only endpoint configured: known scopes were served in degraded mode`,
          }
        : {
            name: "validated by another endpoint",
            passed: servedByOthers > 0,
            detail: `${String(servedByOthers)} validations answered by ${others.map((e) => e.endpoint).join(", ")}`,
          },
    ],
    figures: {
      endpoint: target,
      failover_seconds: openedAtMs === undefined ? null : seconds(openedAtMs),
      ...tally.figures(),
    },
  };
}

export async function keystoneOutage(options: DrillOptions, ctx: Context): Promise<Outcome> {
  const knownTally = new Tally();
  const unknownTally = new Tally();
  const untilMs = ctx.t0 + options.durationMs;
  let degradedAtMs: number | undefined;
  await Promise.all([
    driveFor(options, untilMs, {
      next: (i) =>
        // One in five asks as a token of a scope the edge does not know would: Keystone or
        // nothing, which must be a 503 (unavailable), never a 401 or a 200.
        i % 5 === 4
          ? {
              token: pick(ctx.known, i),
              from: "keystone_only",
              expected: (a) => a.result === "unavailable",
              tally: unknownTally,
            }
          : { token: pick(ctx.known, i), from: "keystone", expected: isValid, tally: knownTally },
    }),
    watch(options, untilMs, (s, at) => {
      if (degradedAtMs === undefined && s.keystone.degraded_mode) degradedAtMs = at - ctx.t0;
    }),
  ]);
  return {
    checks: [
      noFailures(knownTally, "known users and scopes served with no Keystone"),
      {
        name: "validations that need Keystone refused as unavailable (503)",
        passed: unknownTally.total > 0 && unknownTally.unexpected === 0,
        detail:
          unknownTally.unexpected === 0
            ? `${String(unknownTally.total)} Keystone-only validations (a token of a scope the edge does not know): all unavailable, which the proxy answers with 503 + Retry-After`
            : `${String(unknownTally.unexpected)} of ${String(unknownTally.total)} were not unavailable: ${unknownTally.samples.join("; ")}`,
      },
      {
        name: "degraded mode reported",
        passed: degradedAtMs !== undefined,
        detail:
          degradedAtMs === undefined
            ? "/status never showed degraded_mode"
            : `/status showed degraded_mode ${String(seconds(degradedAtMs))} s after the fault`,
      },
    ],
    figures: {
      degraded_after_seconds: degradedAtMs === undefined ? null : seconds(degradedAtMs),
      known: knownTally.figures(),
      unknown: unknownTally.figures(),
    },
  };
}

export async function memcachedOutage(options: DrillOptions, ctx: Context): Promise<Outcome> {
  const errorsBefore = memcachedOf(await options.client.status()).errors;
  const tally = new Tally();
  const untilMs = ctx.t0 + options.durationMs;
  const seen = { breakerOpened: false };
  await Promise.all([
    driveFor(options, untilMs, {
      // Past every in-process tier, so that each validation reads memcached (contexts,
      // token entries) as on an edge that just started; one in five re-validated with
      // Keystone, whose answer the edge writes to memcached.
      next: (i) => ({
        token: pick(ctx.known, i),
        from: i % 5 === 4 ? "keystone" : "shared",
        expected: isValid,
        tally,
      }),
    }),
    (async () => {
      while (performance.now() < untilMs && !options.signal.aborted) {
        const { servers } = memcachedOf(await options.client.status());
        if (servers.some((s) => s.state === "open")) seen.breakerOpened = true;
        await sleep(500);
      }
    })(),
  ]);
  const errors = memcachedOf(await options.client.status()).errors - errorsBefore;
  return {
    checks: [
      noFailures(tally, "validations unaffected by memcached's absence"),
      {
        name: "memcached failures contained",
        passed: errors > 0 && seen.breakerOpened,
        detail: `${String(errors)} memcached calls failed; breaker ${seen.breakerOpened ? "opened (calls stopped)" : "never opened"}`,
      },
    ],
    figures: { memcached_errors: errors, breaker_opened: seen.breakerOpened, ...tally.figures() },
  };
}
