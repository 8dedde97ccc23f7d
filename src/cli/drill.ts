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
import { DRILL_SCENARIOS, isDrillScenario, MAX_DRILL_SECONDS } from "../protocol/admin.js";
import { renderReport } from "../drill/report.js";
import { runDrill } from "../drill/scenarios.js";
import { EdgeError, ExitStatus, exitStatusFor, UsageError } from "../errors.js";
import { parseCommandArgs, type Command } from "./command.js";

const help = `Usage: keystone-edge drill SCENARIO --admin URL --secret-file FILE [options]

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
  --duration TIME          how long the fault lasts: 60s (default), 2m, 500ms, or seconds
  --token-file FILE        tokens to drive traffic with, one per line (# comments)
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

/** `60s`, `2m`, `500ms`, `1h` or a bare number of seconds, as ms. */
export function parseDuration(text: string, option: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (match?.[1] === undefined) {
    throw new UsageError(`${option} must be a time such as 60s, 2m or 500ms`);
  }
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] ?? "s"] ?? 1000;
  const ms = Number(match[1]) * unit;
  if (!(ms > 0)) throw new UsageError(`${option} must be above 0`);
  return ms;
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
    try {
      const parsed = parseCommandArgs(
        args,
        {
          admin: { type: "string" },
          "secret-file": { type: "string" },
          duration: { type: "string" },
          "token-file": { type: "string" },
          endpoint: { type: "string" },
          "max-failover": { type: "string" },
          "max-detection": { type: "string" },
          "fresh-rate": { type: "string" },
          concurrency: { type: "string" },
          "recovery-timeout": { type: "string" },
          "revoke-token-file": { type: "string" },
          keystone: { type: "string" },
          json: { type: "boolean" },
        },
        true,
      );
      if (parsed.kind === "help") {
        io.stdout(help);
        return ExitStatus.ok;
      }
      const v = parsed.values;
      const scenario = parsed.positionals[0] ?? "";
      if (parsed.positionals.length !== 1 || !isDrillScenario(scenario)) {
        throw new UsageError(`give one SCENARIO: ${DRILL_SCENARIOS.join(", ")}`);
      }
      const str = (name: string): string | undefined =>
        typeof v[name] === "string" ? v[name] : undefined;
      const admin = str("admin");
      const secretFile = str("secret-file");
      if (admin === undefined) throw new UsageError("--admin URL is required");
      if (!URL.canParse(admin)) throw new UsageError("--admin must be a URL");
      if (secretFile === undefined) throw new UsageError("--secret-file FILE is required");
      const durationMs = parseDuration(str("duration") ?? "60s", "--duration");
      if (durationMs > MAX_DRILL_SECONDS * 1000) {
        throw new UsageError(`--duration must be at most ${String(MAX_DRILL_SECONDS)} s`);
      }
      const concurrency = Number(str("concurrency") ?? "4");
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) {
        throw new UsageError("--concurrency must be an integer from 1 to 256");
      }
      const recoveryTimeoutMs = parseDuration(
        str("recovery-timeout") ?? "30s",
        "--recovery-timeout",
      );
      const maxFailoverMs = parseDuration(str("max-failover") ?? "30s", "--max-failover");
      const maxDetectionMs = parseDuration(str("max-detection") ?? "15s", "--max-detection");
      const freshPerSecond = Number(str("fresh-rate") ?? "2");
      if (!Number.isFinite(freshPerSecond) || freshPerSecond <= 0 || freshPerSecond > 1000) {
        throw new UsageError("--fresh-rate must be a number above 0 and at most 1000");
      }
      const tokenFile = str("token-file");
      const tokens = tokenFile === undefined ? [] : readTokens(tokenFile, "--token-file");
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
        io.stderr(`keystone-edge drill: ${error.message}\n`);
        return exitStatusFor(error);
      }
      throw error;
    } finally {
      process.off("SIGINT", interrupt);
      process.off("SIGTERM", interrupt);
    }
  },
};
