/**
 * The failover drills: what each one injects, drives and checks.
 *
 * Owns: running one scenario against a running edge through its admin listener — learn
 * which supplied tokens the edge knows, inject the scenario's fault (faults.ts, inside the
 * edge, expiring by itself), drive validations and watch `/status`, release the fault
 * (always, even when the run fails or is interrupted), watch the recovery — and judging
 * the region: a {@link DrillReport} of named checks, each passed or not, with figures.
 */

import { DrillError } from "../errors.js";
import { detailOf } from "./admin-client.js";
import type { DrillDescription, DrillScenario } from "../protocol/admin.js";
import {
  seconds,
  type Check,
  type Context,
  type DrillOptions,
  type Outcome,
} from "./scenario-kit.js";
import { keystoneOutage, masterOutage, memcachedOutage } from "./outage-scenarios.js";
import { keyRotation, revocation } from "./watch-scenarios.js";
import { keyLag } from "./key-lag-scenario.js";
import { recover } from "./recovery.js";

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
