/**
 * `keystone-edge drill SCENARIO`: rehearse a failure against a running edge.
 *
 * Owns: the command line of a drill — arguments, reading the secret and token files,
 * SIGINT/SIGTERM (the faults are released before exiting), printing the report (a table,
 * or `--json`) and the exit status: 0 the region behaved, 5 it did not, 6 the drill could
 * not run, 2 usage, 130 interrupted. The scenarios themselves are drill/scenarios.ts.
 */
import { readFileSync } from "node:fs";

import { AdminClient } from "../drill/admin-client.js";
import {
  DRILL_SCENARIOS,
  isDrillScenario,
  MAX_DRILL_SECONDS,
  type DrillScenario,
} from "../protocol/admin.js";
import { renderReport } from "../drill/report.js";
import { runDrill } from "../drill/scenarios.js";
import { EdgeError, ExitStatus, exitStatusFor, UsageError } from "../errors.js";
import { ADMIN_URL_EXAMPLE, parseAdminUrl } from "./admin-url.js";
import { errorLines, parseCommandArgs, type Command } from "./command.js";
import { DURATION_EXAMPLE, parseDurationArgument } from "./duration.js";

const help = `Usage: keystone-edge drill SCENARIO --admin URL --secret-file FILE --token-file FILE [options]

Rehearses a failure against a running keystone-edge and prints a report. The fault is
injected inside the edge (real Keystone and memcached are never touched), ends by itself
after --duration even if this command dies, and is released at once on Ctrl-C.
Traffic is validations through the edge's admin API (POST /drill/validate) with the
tokens of --token-file: the edge validates them exactly as it would a request's.

Scenarios:
  master-outage     blackhole one Keystone endpoint (--endpoint, default the first):
                    known tokens keep validating, answered by another endpoint; the
                    endpoint leaves rotation within --max-failover; it comes back after
                    the release
  keystone-outage   blackhole every endpoint: known users and scopes still served
                    (degraded mode reported), unknown ones refused with 503, recovery
  memcached-outage  make memcached unreachable: no validation fails, the edge stops
                    calling it (breaker), recovery
  key-rotation      no fault: watches the key ring while you rotate keys, checks that
                    tokens keep validating and the rotation is seen
  revocation        revokes --revoke-token-file's token at --keystone and checks that the
                    edge refuses it within its revocation poll interval (+2 s)
  key-lag           hides the primary key from the edge's view of its key repository (a
                    region whose copy missed the master's last rotations): known users
                    notice nothing; tokens as just issued are refused by every local key,
                    the edge finds its ring behind within --max-detection and serves them
                    through Keystone (--fresh-rate a second); in sync again after the
                    release. Give tokens issued since the last rotation.

Options:
  --admin URL              the edge's admin listener, e.g. http://127.0.0.1:9464
  --secret-file FILE       file holding the edge's admin_secret
  --duration TIME          how long the fault lasts: 60s (default), 2m, 500ms, 1h (at
                           most), or a number of seconds
  --token-file FILE        tokens to drive traffic with, one per line (# comments);
                           required, but for revocation
  --endpoint NAME          master-outage: the Keystone endpoint to blackhole
  --max-failover TIME      master-outage: longest acceptable time until the blackholed
                           endpoint leaves rotation (default 30s)
  --max-detection TIME     key-lag: longest acceptable time until the edge knows its key
                           ring is behind (default 15s)
  --fresh-rate N           key-lag: tokens a second validated as just issued, each a
                           Keystone call while behind; keep it under
                           fernet.lag_fallback_per_second (default 2)
  --concurrency N          validations in flight at once (default 4)
  --recovery-timeout TIME  longest wait for recovery after the release (default 30s)
  --revoke-token-file FILE revocation: a token the drill may revoke (it revokes itself)
  --keystone URL           revocation: Keystone's Identity v3 URL to revoke it at
  --json                   print the report as JSON
  -h, --help               show this help

Exit status: 0 the region behaved; 5 it did not (the report says which check failed);
6 the drill could not run (edge unreachable, secret refused, no valid token); 2 usage;
130 interrupted (faults released).
`;

/** Scenarios that validate tokens and so need `--token-file` (revocation brings its own). */
function needsTokens(scenario: DrillScenario): boolean {
  return scenario !== "revocation";
}

/** Longest positional argument echoed back: scenario names are short words, tokens are not. */
const MAX_ECHOED_CHARS = 32;

/** A positional argument as a message may show it: a short plain word, quoted; else its size. */
function shownWord(word: string): string {
  return word.length <= MAX_ECHOED_CHARS && /^[A-Za-z0-9._:-]+$/.test(word)
    ? `"${word}"`
    : `(not shown: ${String(word.length)} characters)`;
}

/** A unit written as a word of its own (`--duration 5 minutes`), as the suffix it means. */
function unitSuffix(word: string): string | undefined {
  const w = word.toLowerCase();
  if (/^(ms|msecs?|millis|milliseconds?)$/.test(w)) return "ms";
  if (/^(s|secs?|seconds?)$/.test(w)) return "s";
  if (/^(m|mins?|minutes?)$/.test(w)) return "m";
  if (/^(h|hrs?|hours?)$/.test(w)) return "h";
  return undefined;
}

/** The options that take a time. */
const TIME_OPTIONS = ["--duration", "--max-failover", "--max-detection", "--recovery-timeout"];

/**
 * For a positional argument that is a time's unit written apart (`--duration 5 minutes`),
 * the one word meant (`--duration 5m`); undefined for any other.
 */
function timeMeant(args: readonly string[], word: string): string | undefined {
  const unit = unitSuffix(word);
  const at = args.indexOf(word);
  if (unit === undefined || at < 1) return undefined;
  const before = args[at - 1] ?? "";
  const inline = /^(--[a-z-]+)=(\d+(?:\.\d+)?)$/.exec(before);
  const [option, number] = inline ? [inline[1], inline[2]] : [args[at - 2], before];
  return option !== undefined && TIME_OPTIONS.includes(option) && /^\d+(\.\d+)?$/.test(number ?? "")
    ? `${option} ${number ?? ""}${unit}`
    : undefined;
}

/**
 * The SCENARIO of the positional arguments, or a usage error saying what is wrong with
 * them: none, an unknown scenario (echoed with the list), or an extra argument after it —
 * with, for `--duration 5 minutes`, the hint `--duration 5m`.
 */
function scenarioOf(args: readonly string[], positionals: readonly string[]): DrillScenario {
  const list = DRILL_SCENARIOS.join(", ");
  const scenario = positionals.find(isDrillScenario);
  const extra =
    positionals.find((p) => p !== scenario) ?? (positionals.length > 1 ? scenario : undefined);
  const meant = extra === undefined ? undefined : timeMeant(args, extra);
  if (extra !== undefined && (scenario !== undefined || meant !== undefined)) {
    throw new UsageError(
      `unexpected extra argument ${shownWord(extra)}` +
        (scenario === undefined ? "" : ` after SCENARIO ${scenario}`) +
        (meant === undefined ? "" : ` (a time is one word: ${meant})`),
    );
  }
  if (scenario !== undefined) return scenario;
  const [first] = positionals;
  throw new UsageError(
    first === undefined
      ? `give a SCENARIO: ${list}`
      : `unknown scenario ${shownWord(first)} (scenarios: ${list})`,
  );
}

function readSecretFile(path: string, option: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (error) {
    throw new UsageError(
      `${option}: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
}

/** Tokens of a file: one per line; blank lines and `#` comments skipped. */
function readTokens(path: string, option: string): string[] {
  return readSecretFile(path, option)
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

export const drill: Command = {
  path: ["drill"],
  summary: "rehearse a failover against a running edge and report how the region behaved",
  help,
  async run(args, io) {
    const controller = new AbortController();
    const interrupt = (): void => {
      io.stderr("keystone-edge drill: interrupted: releasing the faults\n");
      controller.abort();
    };
    const time = { type: "string", value: DURATION_EXAMPLE } as const;
    try {
      const parsed = parseCommandArgs(
        args,
        {
          admin: { type: "string", value: "a URL such as http://127.0.0.1:9464" },
          "secret-file": { type: "string", value: "a FILE holding the admin secret" },
          duration: time,
          "token-file": { type: "string", value: "a FILE of tokens, one per line" },
          endpoint: { type: "string", value: "a Keystone endpoint's NAME" },
          "max-failover": time,
          "max-detection": time,
          "fresh-rate": { type: "string", value: "a number of tokens a second" },
          concurrency: { type: "string", value: "a number from 1 to 256" },
          "recovery-timeout": time,
          "revoke-token-file": { type: "string", value: "a FILE holding one token" },
          keystone: { type: "string", value: "Keystone's Identity v3 URL" },
          json: { type: "boolean" },
        },
        true,
      );
      if (parsed.kind === "help") {
        io.stdout(help);
        return ExitStatus.ok;
      }
      const v = parsed.values;
      const scenario = scenarioOf(args, parsed.positionals);
      const str = (name: string): string | undefined =>
        typeof v[name] === "string" ? v[name] : undefined;
      const adminText = str("admin");
      const secretFile = str("secret-file");
      if (adminText === undefined) {
        throw new UsageError(
          `--admin URL is required: the edge's admin listener, e.g. ${ADMIN_URL_EXAMPLE}`,
        );
      }
      const admin = parseAdminUrl(adminText);
      if (secretFile === undefined) {
        throw new UsageError("--secret-file FILE is required: the edge's admin_secret");
      }
      const tokenFile = str("token-file");
      if (tokenFile === undefined && needsTokens(scenario)) {
        throw new UsageError("--token-file FILE is required: tokens to drive traffic with");
      }
      const durationMs = parseDurationArgument(str("duration") ?? "60s", "--duration", {
        max: MAX_DRILL_SECONDS * 1000,
      });
      const concurrency = Number(str("concurrency") ?? "4");
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) {
        throw new UsageError("--concurrency must be an integer from 1 to 256");
      }
      const recoveryTimeoutMs = parseDurationArgument(
        str("recovery-timeout") ?? "30s",
        "--recovery-timeout",
      );
      const maxFailoverMs = parseDurationArgument(str("max-failover") ?? "30s", "--max-failover");
      const maxDetectionMs = parseDurationArgument(
        str("max-detection") ?? "15s",
        "--max-detection",
      );
      const freshPerSecond = Number(str("fresh-rate") ?? "2");
      if (!Number.isFinite(freshPerSecond) || freshPerSecond <= 0 || freshPerSecond > 1000) {
        throw new UsageError("--fresh-rate must be a number above 0 and at most 1000");
      }
      const tokens = tokenFile === undefined ? [] : readTokens(tokenFile, "--token-file");
      if (tokens.length === 0 && needsTokens(scenario)) {
        throw new UsageError(
          "--token-file holds no token: give tokens to drive traffic with, one per line (# comments)",
        );
      }
      const revokeFile = str("revoke-token-file");
      const keystone = str("keystone");
      if (scenario === "revocation" && (revokeFile === undefined || keystone === undefined)) {
        throw new UsageError("revocation needs --revoke-token-file FILE and --keystone URL");
      }
      const revokeToken =
        revokeFile === undefined ? undefined : readTokens(revokeFile, "--revoke-token-file")[0];
      if (revokeFile !== undefined && revokeToken === undefined) {
        throw new UsageError("--revoke-token-file holds no token");
      }
      const endpoint = str("endpoint");
      process.on("SIGINT", interrupt);
      process.on("SIGTERM", interrupt);
      const report = await runDrill({
        client: new AdminClient({
          baseUrl: admin,
          secret: readSecretFile(secretFile, "--secret-file"),
        }),
        scenario,
        durationMs,
        tokens,
        concurrency,
        recoveryTimeoutMs,
        maxFailoverMs,
        maxDetectionMs,
        freshPerSecond,
        signal: controller.signal,
        progress: (line) => {
          io.stderr(`${line}\n`);
        },
        ...(endpoint === undefined ? {} : { endpoint }),
        ...(revokeToken === undefined || keystone === undefined
          ? {}
          : { revoke: { token: revokeToken, keystoneUrl: keystone } }),
      });
      io.stdout(v["json"] === true ? JSON.stringify(report, null, 2) + "\n" : renderReport(report));
      return report.interrupted
        ? ExitStatus.interrupted
        : report.passed
          ? ExitStatus.ok
          : ExitStatus.drillFailed;
    } catch (error) {
      if (error instanceof EdgeError) {
        io.stderr(errorLines(drill.path, error, help));
        return exitStatusFor(error);
      }
      throw error;
    } finally {
      process.off("SIGINT", interrupt);
      process.off("SIGTERM", interrupt);
    }
  },
};
