/**
 * The watch-only drills: a key rotation done by the operator during the drill
 * (key-rotation), and a token revoked at Keystone by the drill (revocation) — nothing is
 * injected; what the region does is watched and checked.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";

import { DrillError } from "../errors.js";
import type { ValidationAnswer } from "../protocol/admin.js";
import { drive, Tally } from "./traffic.js";
import {
  driveFor,
  isValid,
  noFailures,
  pick,
  seconds,
  watch,
  type Check,
  type Context,
  type DrillOptions,
  type Outcome,
} from "./scenario-kit.js";

export async function keyRotation(options: DrillOptions, ctx: Context): Promise<Outcome> {
  const tally = new Tally();
  const untilMs = ctx.t0 + options.durationMs;
  const first = ctx.before.keys;
  const changes: { at_seconds: number; primary_index: number; keys: number }[] = [];
  let last = { primary: first.primary_index, count: first.count };
  let unhealthy = 0;
  options.progress?.(
    `watching the key ring (primary ${String(first.primary_index)}, ${String(first.count)} keys): rotate now`,
  );
  await Promise.all([
    driveFor(options, untilMs, {
      // Past the in-process token cache: every validation decrypts with the ring in use.
      next: (i) => ({ token: pick(ctx.known, i), from: "decrypt", expected: isValid, tally }),
    }),
    watch(options, untilMs, (s, at) => {
      if (!s.keys.healthy) unhealthy++;
      if (s.keys.primary_index !== last.primary || s.keys.count !== last.count) {
        last = { primary: s.keys.primary_index, count: s.keys.count };
        changes.push({
          at_seconds: seconds(at - ctx.t0),
          primary_index: s.keys.primary_index,
          keys: s.keys.count,
        });
        options.progress?.(
          `key ring changed: primary ${String(s.keys.primary_index)}, ${String(s.keys.count)} keys`,
        );
      }
    }),
  ]);
  const rotated = changes.some((c) => c.primary_index !== first.primary_index);
  return {
    checks: [
      noFailures(tally, "tokens kept validating through the rotation"),
      {
        name: "rotation seen",
        passed: rotated,
        detail: rotated
          ? `primary key ${String(first.primary_index)} → ${String(last.primary)}`
          : "the primary key did not change: rotate (keystone-manage fernet_rotate, then sync the region's copy) while the drill runs",
      },
      {
        name: "key repository read cleanly throughout",
        passed: unhealthy === 0,
        detail:
          unhealthy === 0
            ? "every re-read succeeded"
            : `${String(unhealthy)} status samples showed a failing re-read (half-written copy?)`,
      },
    ],
    figures: { ring_changes: changes, ...tally.figures() },
  };
}

export async function revocation(options: DrillOptions, ctx: Context): Promise<Outcome> {
  const revoke = options.revoke;
  if (revoke === undefined) {
    throw new DrillError("drill_usage", "revocation needs --revoke-token-file and --keystone");
  }
  const first = await options.client.validate(revoke.token, "cache");
  if (first.result !== "valid") {
    throw new DrillError(
      "no_known_tokens",
      `the token to revoke is not valid at the edge (${first.result}): give a fresh one`,
    );
  }
  // The other tokens must stay valid: the one revoked is not among them.
  const bystanders = ctx.known.filter((t) => t !== revoke.token);
  const withinS = ctx.before.revocation_feed.poll_interval_seconds ?? 10;
  const limitMs = (withinS + 2) * 1000;
  const url = new URL(revoke.keystoneUrl.replace(/\/+$/, "") + "/auth/tokens");
  const response = await request(url, {
    method: "DELETE",
    headers: { "x-auth-token": revoke.token, "x-subject-token": revoke.token },
    signal: AbortSignal.timeout(10_000),
  }).catch((error: unknown) => {
    throw new DrillError(
      "keystone_refused",
      `cannot reach Keystone at ${url.origin}: ${error instanceof Error ? error.message : String(error)}`,
    );
  });
  await response.body.dump();
  if (response.statusCode !== 204) {
    throw new DrillError(
      "keystone_refused",
      `Keystone answered the revocation with HTTP ${String(response.statusCode)}`,
    );
  }
  const revokedAt = performance.now();
  options.progress?.(`token revoked at Keystone; waiting for the edge to refuse it`);
  // Watch at least as long as the limit, whatever --duration says.
  const untilMs = Math.max(ctx.t0 + options.durationMs, revokedAt + limitMs + 1_000);
  const others = new Tally();
  let refused: Extract<ValidationAnswer, { result: "invalid" }> | undefined;
  let refusedAfterMs: number | undefined;
  const stop = new AbortController();
  const signal = AbortSignal.any([options.signal, stop.signal]);
  await Promise.all([
    bystanders.length === 0
      ? Promise.resolve()
      : drive({
          client: options.client,
          concurrency: 1,
          untilMs,
          signal,
          next: (i) => ({
            token: pick(bystanders, i),
            from: "cache",
            expected: isValid,
            tally: others,
          }),
        }),
    (async () => {
      while (performance.now() < untilMs && !signal.aborted) {
        const answer = await options.client.validate(revoke.token, "cache");
        // Refused means refused: an unavailable answer (Keystone unreachable) is not.
        if (answer.result === "invalid") {
          refused = answer;
          refusedAfterMs = performance.now() - revokedAt;
          stop.abort();
          return;
        }
        await sleep(100);
      }
    })(),
  ]);
  const checks: Check[] = [
    {
      name: "revoked token refused in time",
      passed: refusedAfterMs !== undefined && refusedAfterMs <= limitMs,
      detail:
        refusedAfterMs === undefined
          ? `still accepted ${String(seconds(performance.now() - revokedAt))} s after the revocation`
          : `refused (${refused?.code ?? "?"}) ${String(seconds(refusedAfterMs))} s after the revocation; limit ${String(withinS)} s poll interval + 2 s`,
    },
  ];
  if (bystanders.length > 0) checks.push(noFailures(others, "other tokens unaffected"));
  return {
    checks,
    figures: {
      refused_after_seconds: refusedAfterMs === undefined ? null : seconds(refusedAfterMs),
      refusal: refused?.code ?? null,
      poll_interval_seconds: withinS,
      others: others.figures(),
    },
  };
}
