/**
 * The failover drills: what each one injects, drives and checks.
 *
 * Owns: running one scenario against a running edge through its admin listener — learn
 * which supplied tokens the edge knows, inject the scenario's fault (faults.ts, inside the
 * edge, expiring by itself), drive validations and watch `/status`, release the fault
 * (always, even when the run fails or is interrupted), watch the recovery — and judging
 * the region: a {@link DrillReport} of named checks, each passed or not, with figures.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";

import { DrillError } from "../errors.js";
import { detailOf, type AdminClient } from "./admin-client.js";
import type {
  DrillDescription,
  DrillScenario,
  EdgeStatus,
  MemcachedStatus,
  ValidationAnswer,
} from "../protocol/admin.js";
import { drive, Tally, type Shot } from "./traffic.js";

/** One judged property of the region. */
export interface Check {
  readonly name: string;
  readonly passed: boolean;
  readonly detail: string;
}

/** What a drill came to; `--json` prints it as is. */
export interface DrillReport {
  readonly scenario: DrillScenario;
  readonly passed: boolean;
  /** The run was cut short (SIGINT/SIGTERM); its faults were released. */
  readonly interrupted: boolean;
  readonly started_at: string;
  readonly duration_seconds: number;
  readonly drill: DrillDescription | null;
  readonly checks: readonly Check[];
  readonly figures: Readonly<Record<string, unknown>>;
}

/** What a drill is run with. */
export interface DrillOptions {
  readonly client: AdminClient;
  readonly scenario: DrillScenario;
  /** How long the fault is injected (and traffic driven), ms. */
  readonly durationMs: number;
  /** Tokens to drive traffic with (`--token-file`). */
  readonly tokens: readonly string[];
  /** Validations in flight at once. Default 4. */
  readonly concurrency?: number;
  /** `master-outage`: the endpoint to blackhole. Default the first configured. */
  readonly endpoint?: string;
  /** `revocation`: the token the drill revokes (with itself) at `keystoneUrl` (Identity v3). */
  readonly revoke?: { readonly token: string; readonly keystoneUrl: string };
  /** `master-outage`: longest acceptable time until the endpoint leaves rotation, ms. Default 30 000. */
  readonly maxFailoverMs?: number;
  /** `key-lag`: longest acceptable time until the edge knows its ring is behind, ms. Default 15 000. */
  readonly maxDetectionMs?: number;
  /**
   * `key-lag`: validations per second of tokens as just issued (each a Keystone fallback
   * while the ring is behind). Keep it under `fernet.lag_fallback_per_second` with room
   * for the region's own new tokens. Default 2.
   */
  readonly freshPerSecond?: number;
  /** Longest wait for the region to recover after the release, ms. Default 30 000. */
  readonly recoveryTimeoutMs?: number;
  /** Aborts the run (SIGINT): faults are released and the report says `interrupted`. */
  readonly signal: AbortSignal;
  /** Progress lines for people (stderr). */
  readonly progress?: (line: string) => void;
}

const WATCH_INTERVAL_MS = 200;
const isValid = (a: ValidationAnswer): boolean => a.result === "valid";
const seconds = (ms: number): number => Math.round(ms / 100) / 10;

/** Runs a drill; rejects with a {@link DrillError} when it cannot run at all. */
export async function runDrill(options: DrillOptions): Promise<DrillReport> {
  const progress = options.progress ?? (() => undefined);
  const before = await options.client.status();
  const known = await knownTokens(options, progress);
  const startedAt = new Date();
  if (options.signal.aborted) {
    return {
      scenario: options.scenario,
      passed: false,
      interrupted: true,
      started_at: startedAt.toISOString(),
      duration_seconds: 0,
      drill: null,
      checks: [],
      figures: {},
    };
  }
  const drill = await options.client.start(
    options.scenario,
    Math.max(1, Math.ceil(options.durationMs / 1000)),
    options.endpoint,
  );
  progress(
    `drill ${drill.scenario} started: fault ${drill.fault}${
      drill.endpoints === undefined ? "" : ` (${drill.endpoints.join(", ")})`
    }, ends by itself at ${drill.expires_at}`,
  );
  const t0 = performance.now();
  // The scenario's loops stop together: on Ctrl-C, or when one of them loses the edge.
  const inner = new AbortController();
  const within: DrillOptions = {
    ...options,
    signal: AbortSignal.any([options.signal, inner.signal]),
  };
  let outcome: Outcome;
  try {
    outcome = await scenarioBody(within, { drill, known, before, t0 }).catch((error: unknown) => {
      inner.abort();
      if (!(error instanceof DrillError) || error.code !== "admin_unreachable") throw error;
      // The edge stopped answering its admin listener during the drill: that is a verdict.
      return {
        checks: [
          { name: "edge answered throughout the drill", passed: false, detail: error.message },
        ],
        figures: {},
      };
    });
  } finally {
    await options.client.stop(drill.id).catch(() => undefined);
    progress(`drill ${drill.scenario}: faults released`);
  }
  // Read through a function: the signal changes across awaits.
  const aborted = (): boolean => options.signal.aborted;
  if (!aborted() && !inner.signal.aborted) {
    const recovery = await recover(options, drill, known);
    if (recovery !== undefined) outcome.checks.push(recovery.check);
    if (recovery?.seconds !== undefined) outcome.figures["recovery_seconds"] = recovery.seconds;
  }
  const interrupted = aborted();
  return {
    scenario: options.scenario,
    passed: !interrupted && outcome.checks.every((c) => c.passed),
    interrupted,
    started_at: startedAt.toISOString(),
    duration_seconds: seconds(performance.now() - t0),
    drill,
    checks: outcome.checks,
    figures: outcome.figures,
  };
}

/** The supplied tokens the edge validates now: the drill's "known" users and scopes. */
async function knownTokens(
  options: DrillOptions,
  progress: (line: string) => void,
): Promise<readonly string[]> {
  const needsTokens = options.scenario !== "revocation";
  const known: string[] = [];
  const others: string[] = [];
  for (const token of options.tokens) {
    const answer = await options.client.validate(token, "cache");
    if (answer.result === "valid") known.push(token);
    else others.push(`${answer.result} (${detailOf(answer)})`);
  }
  progress(
    `${String(known.length)} of ${String(options.tokens.length)} tokens valid at the edge` +
      (others.length === 0 ? "" : `; the others: ${[...new Set(others)].join(", ")}`),
  );
  if (needsTokens && known.length === 0) {
    throw new DrillError(
      "no_known_tokens",
      options.tokens.length === 0
        ? `${options.scenario} drives traffic: give tokens with --token-file`
        : "none of the tokens given is valid at the edge: nothing to drill with",
    );
  }
  return known;
}

interface Context {
  readonly drill: DrillDescription;
  readonly known: readonly string[];
  readonly before: EdgeStatus;
  readonly t0: number;
}

type Outcome = { checks: Check[]; figures: Record<string, unknown> };

function scenarioBody(options: DrillOptions, ctx: Context): Promise<Outcome> {
  switch (options.scenario) {
    case "master-outage":
      return masterOutage(options, ctx);
    case "keystone-outage":
      return keystoneOutage(options, ctx);
    case "memcached-outage":
      return memcachedOutage(options, ctx);
    case "key-rotation":
      return keyRotation(options, ctx);
    case "revocation":
      return revocation(options, ctx);
    case "key-lag":
      return keyLag(options, ctx);
  }
}

/** Polls `/status` every 200 ms until `untilMs` or an abort. */
async function watch(
  options: DrillOptions,
  untilMs: number,
  onStatus: (status: EdgeStatus, atMs: number) => void,
): Promise<void> {
  while (performance.now() < untilMs && !options.signal.aborted) {
    onStatus(await options.client.status(), performance.now());
    await sleep(WATCH_INTERVAL_MS);
  }
}

/** The scenario's traffic: `--concurrency` loops until `untilMs` or Ctrl-C. */
function driveFor(
  options: DrillOptions,
  untilMs: number,
  plan: { readonly next: (i: number) => Shot } & Partial<{ readonly concurrency: number }>,
): Promise<void> {
  return drive({
    client: options.client,
    concurrency: plan.concurrency ?? options.concurrency ?? 4,
    untilMs,
    signal: options.signal,
    next: plan.next,
  });
}

const stateOf = (s: EdgeStatus, endpoint: string): string =>
  s.keystone.endpoints.find((e) => e.endpoint === endpoint)?.state ?? "unknown";

async function masterOutage(options: DrillOptions, ctx: Context): Promise<Outcome> {
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

async function keystoneOutage(options: DrillOptions, ctx: Context): Promise<Outcome> {
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

async function memcachedOutage(options: DrillOptions, ctx: Context): Promise<Outcome> {
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

async function keyRotation(options: DrillOptions, ctx: Context): Promise<Outcome> {
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

async function revocation(options: DrillOptions, ctx: Context): Promise<Outcome> {
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

/** memcached's part of `/status`; an edge without one cannot run a memcached drill. */
function memcachedOf(status: EdgeStatus): MemcachedStatus {
  if (status.memcached === undefined || status.memcached === null) {
    throw new DrillError(
      "admin_refused",
      "/status shows no memcached: none is configured, or this edge predates the memcached part of /status",
    );
  }
  return status.memcached;
}

/** The key lag fallbacks by result and the budget refusals, as `/status` counts them. */
async function fallbackCounts(client: AdminClient): Promise<Record<string, number>> {
  const fallbacks = (await client.status()).keys.lag?.fallbacks;
  if (fallbacks === undefined) {
    throw new DrillError(
      "admin_refused",
      "/status has no key lag fallbacks: this edge predates the key-lag drill",
    );
  }
  return { ...fallbacks };
}

/**
 * The region's copy of the key repository lags: the primary key is hidden from the edge's
 * view (the master encrypts with a key this region never received). Users the region
 * knows must notice nothing; tokens as issued a moment ago fail every local key, the edge
 * must find out (time to detection) and serve them through Keystone (fallback success);
 * after the release — the sync arriving — it must be back in sync (recovery).
 */
async function keyLag(options: DrillOptions, ctx: Context): Promise<Outcome> {
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

/** After the release: the region back to normal, within the recovery timeout. */
async function recover(
  options: DrillOptions,
  drill: DrillDescription,
  known: readonly string[],
): Promise<{ check: Check; seconds?: number } | undefined> {
  const timeoutMs = options.recoveryTimeoutMs ?? 30_000;
  const started = performance.now();
  const deadline = started + timeoutMs;
  let ready: () => Promise<boolean>;
  let what: string;
  switch (drill.fault) {
    case "keystone_blackhole": {
      const token = known[0] ?? "";
      what = "every endpoint back in rotation and Keystone validating again";
      ready = async () => {
        const s = await options.client.status();
        if (s.keystone.endpoints.some((e) => e.state !== "closed")) return false;
        return (await options.client.validate(token, "keystone_only")).result === "valid";
      };
      break;
    }
    case "memcached_outage": {
      const token = known[0] ?? "";
      what = "memcached breaker closed again";
      ready = async () => {
        // The breaker probes on a call: a re-validation writes to memcached.
        await options.client.validate(token, "keystone");
        const { servers } = memcachedOf(await options.client.status());
        return servers.every((s) => s.state === "closed");
      };
      break;
    }
    case "primary_key_hidden": {
      const token = known[0] ?? "";
      what = "the key ring in sync with the master again and new tokens decrypted here";
      ready = async () => {
        // The release re-checks the ring at once (as a sync's reload does).
        if ((await options.client.status()).keys.lag?.state !== "in_sync") return false;
        const total = async () =>
          Object.values(await fallbackCounts(options.client)).reduce((a, b) => a + b, 0);
        const before = await total();
        const answer = await options.client.validate(token, "unseen");
        return answer.result === "valid" && (await total()) === before;
      };
      break;
    }
    default:
      return undefined;
  }
  while (performance.now() < deadline && !options.signal.aborted) {
    if (await ready()) {
      const s = seconds(performance.now() - started);
      return {
        check: {
          name: "recovered after release",
          passed: true,
          detail: `${what} ${String(s)} s after the release`,
        },
        seconds: s,
      };
    }
    await sleep(250);
  }
  return {
    check: {
      name: "recovered after release",
      passed: false,
      detail: `not ${what} within ${String(seconds(timeoutMs))} s of the release`,
    },
  };
}

function noFailures(tally: Tally, name: string): Check {
  return {
    name,
    passed: tally.total > 0 && tally.unexpected === 0,
    detail:
      tally.total === 0
        ? "no validation was made"
        : tally.unexpected === 0
          ? `${String(tally.total)} validations, none failed (p99 ${String(tally.quantileMs(0.99))} ms)`
          : `${String(tally.unexpected)} of ${String(tally.total)} failed: ${tally.samples.join("; ")}`,
  };
}

function pick(tokens: readonly string[], i: number): string {
  return tokens[i % tokens.length] ?? "";
}
