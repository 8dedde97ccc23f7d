/**
 * Owns: a throwaway, real Prometheus for integration tests (Debian's /usr/bin/prometheus,
 * 2.x), and reading its HTTP API.
 *
 * `startPrometheus()` writes a configuration into a temp dir (`$TMPDIR/keystone-edge-prom-XXXXXX`:
 * scrape and evaluation intervals, static targets, rule files), runs Prometheus there
 * (`--storage.tsdb.path` inside the dir, `--web.listen-address` on a free 127.0.0.1 port),
 * and resolves once `/-/ready` answers 200. `stop()` kills its process group and removes the
 * dir. Prometheus never outlives the test process: it runs in its own process group under
 * `setpriv --pdeathsig KILL`, and the group is SIGKILLed on process exit.
 *
 * {@link rulesWithHoldDuration} rewrites a rule file's `for:` durations (parsed with `yaml`,
 * not by pattern), so alerts whose `for:` is minutes can fire within a test.
 *
 * Only node: built-ins, global fetch and `yaml` are used.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { exited, waitExit } from "./child.js";
import { freePort } from "./net.js";

const PROMETHEUS = "/usr/bin/prometheus";
const SETPRIV = "/usr/bin/setpriv";
const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 3_000;
const API_TIMEOUT_MS = 5_000;

/** A rule file: a path, or a name and its contents (written into the temp dir). */
export type RuleFile = string | { readonly name: string; readonly content: string };

/** Options of {@link startPrometheus}. */
export interface StartPrometheusOptions {
  /** `job_name` of the one scrape job. Default `keystone-edge`. */
  readonly job?: string;
  /** `host:port` of each target. */
  readonly targets: readonly string[];
  /** Default `/metrics`. */
  readonly metricsPath?: string;
  /** `scrape_interval` (and `scrape_timeout`). Default `1s`. */
  readonly scrapeInterval?: string;
  /** `evaluation_interval`. Default `1s`. */
  readonly evaluationInterval?: string;
  /** `rule_files`. Default none. */
  readonly ruleFiles?: readonly RuleFile[];
}

/** One element of an instant vector (`/api/v1/query`). */
export interface PromSample {
  readonly metric: Record<string, string>;
  /** `[unix seconds, "value"]`. */
  readonly value: readonly [number, string];
}

/** An alerting or recording rule as `/api/v1/rules` reports it. */
export interface PromRule {
  readonly name: string;
  readonly type: "alerting" | "recording";
  readonly query: string;
  /** `for:`, seconds (alerting rules). */
  readonly duration?: number;
  readonly health: "ok" | "err" | "unknown";
  readonly lastError?: string;
  readonly lastEvaluation: string;
  /** inactive, pending, firing (alerting rules). */
  readonly state?: string;
  readonly alerts?: readonly PromAlert[];
}

export interface PromRuleGroup {
  readonly name: string;
  readonly file: string;
  readonly rules: readonly PromRule[];
  readonly lastEvaluation: string;
}

/** An active alert (`/api/v1/alerts`, or a rule's `alerts`). */
export interface PromAlert {
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly state: "pending" | "firing";
  readonly activeAt: string;
  readonly value: string;
}

/** A scrape target (`/api/v1/targets`). */
export interface PromTarget {
  readonly labels: Record<string, string>;
  readonly scrapeUrl: string;
  readonly health: "up" | "down" | "unknown";
  readonly lastError: string;
  readonly lastScrape: string;
}

/** A running harness Prometheus. */
export interface PrometheusHandle {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** The temp dir: configuration, rule files written here, TSDB. */
  readonly dir: string;
  /** Absolute paths of the rule files, in the order given. */
  readonly ruleFiles: readonly string[];
  /** The last 8 KB of its log (stderr). */
  log(): string;
  /** `GET /api/v1/<path>`: its `data`; throws when `status` is not `success`. */
  api<T>(path: string, params?: Record<string, string>): Promise<T>;
  /** An instant query (`/api/v1/query`); throws unless the result is a vector. */
  query(expr: string): Promise<PromSample[]>;
  rules(): Promise<PromRuleGroup[]>;
  alerts(): Promise<PromAlert[]>;
  targets(): Promise<PromTarget[]>;
  /** SIGTERM to its process group (SIGKILL after 3 s), then removes {@link dir}. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of live) killGroup(child, "SIGKILL");
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * `text` (a Prometheus rule file) with every alerting rule's `for:` set to `holdDuration`
 * and, when `groupSuffix` is given, every group renamed `<name><suffix>` (so the copy can be
 * loaded beside the original and told apart in `/api/v1/rules`). Nothing else changes.
 */
export function rulesWithHoldDuration(
  text: string,
  holdDuration: string,
  groupSuffix = "",
): string {
  const doc = parse(text) as { groups?: { name: string; rules?: Record<string, unknown>[] }[] };
  if (!Array.isArray(doc.groups)) throw new Error("not a Prometheus rule file: no groups");
  for (const group of doc.groups) {
    group.name = `${group.name}${groupSuffix}`;
    for (const rule of group.rules ?? []) {
      if (typeof rule["alert"] === "string") rule["for"] = holdDuration;
    }
  }
  return stringify(doc);
}

/** Starts a private Prometheus on 127.0.0.1; see the module comment. */
export async function startPrometheus(options: StartPrometheusOptions): Promise<PrometheusHandle> {
  installExitHook();
  const dir = mkdtempSync(join(tmpdir(), "keystone-edge-prom-"));
  try {
    const ruleFiles = (options.ruleFiles ?? []).map((f) => {
      if (typeof f === "string") return f;
      const path = join(dir, f.name);
      writeFileSync(path, f.content);
      return path;
    });
    const interval = options.scrapeInterval ?? "1s";
    const config = {
      global: {
        scrape_interval: interval,
        scrape_timeout: interval,
        evaluation_interval: options.evaluationInterval ?? "1s",
      },
      rule_files: ruleFiles,
      scrape_configs: [
        {
          job_name: options.job ?? "keystone-edge",
          metrics_path: options.metricsPath ?? "/metrics",
          static_configs: [{ targets: [...options.targets] }],
        },
      ],
    };
    const configFile = join(dir, "prometheus.yml");
    writeFileSync(configFile, stringify(config));
    const port = await freePort();
    const url = `http://127.0.0.1:${String(port)}`;
    const args = [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${String(port)}`,
      "--log.level=warn",
    ];
    const [file, argv] = existsSync(SETPRIV)
      ? [SETPRIV, ["--pdeathsig", "KILL", "--", PROMETHEUS, ...args]]
      : [PROMETHEUS, args];
    const child = spawn(file, argv, {
      cwd: dir,
      detached: true, // its own process group: stop() kills the group
      stdio: ["ignore", "ignore", "pipe"],
      env: { PATH: "/usr/bin:/bin", HOME: dir },
    });
    let log = "";
    child.stderr.on("data", (d: Buffer) => {
      log = (log + d.toString("utf8")).slice(-8_000);
    });
    live.add(child);
    child.once("exit", () => live.delete(child));

    const stop = async (): Promise<void> => {
      if (!exited(child)) {
        killGroup(child, "SIGTERM");
        if (!(await waitExit(child, STOP_GRACE_MS))) {
          killGroup(child, "SIGKILL");
          await waitExit(child, STOP_GRACE_MS);
        }
      }
      live.delete(child);
      rmSync(dir, { recursive: true, force: true });
    };

    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (exited(child)) {
        await stop();
        throw new Error(`prometheus exited during startup: ${log.trim()}`);
      }
      const ready = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) }).then(
        async (r) => {
          await r.arrayBuffer();
          return r.status === 200;
        },
        () => false,
      );
      if (ready) break;
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`prometheus not ready within ${READY_TIMEOUT_MS} ms: ${log.trim()}`);
      }
      await sleep(50);
    }

    const api = async <T>(path: string, params: Record<string, string> = {}): Promise<T> => {
      const query = new URLSearchParams(params).toString();
      const res = await fetch(`${url}/api/v1/${path}${query === "" ? "" : `?${query}`}`, {
        signal: AbortSignal.timeout(API_TIMEOUT_MS),
      });
      const body = (await res.json()) as { status: string; data: T; error?: string };
      if (body.status !== "success") {
        throw new Error(`prometheus /api/v1/${path}: ${body.error ?? `HTTP ${res.status}`}`);
      }
      return body.data;
    };

    return {
      url,
      dir,
      ruleFiles,
      log: () => log,
      api,
      async query(expr) {
        const data = await api<{ resultType: string; result: PromSample[] }>("query", {
          query: expr,
        });
        if (data.resultType !== "vector") {
          throw new Error(`${expr}: a ${data.resultType}, not a vector`);
        }
        return data.result;
      },
      async rules() {
        return (await api<{ groups: PromRuleGroup[] }>("rules")).groups;
      },
      async alerts() {
        return (await api<{ alerts: PromAlert[] }>("alerts")).alerts;
      },
      async targets() {
        return (await api<{ activeTargets: PromTarget[] }>("targets")).activeTargets;
      },
      stop,
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
