/**
 * `keystone-edge serve`: run the edge.
 *
 * Owns: the process lifecycle — load and validate the configuration once, start, log as
 * JSON; on SIGHUP re-read and validate the file and apply it without dropping a
 * connection (an invalid one is refused, logged, and the running one kept); on
 * SIGTERM/SIGINT stop accepting, let requests in flight finish (up to `--grace`), close
 * everything and exit 0. A configuration or key repository that cannot be
 * used stops start-up with exit 2 and a message naming the option or file. With `workers`
 * above 1 this process becomes the supervisor (supervisor/) and the same command, run by
 * the cluster in each worker process, serves.
 */
import cluster from "node:cluster";
import { fileURLToPath } from "node:url";

import { createCacheFactory } from "../edge/cache-factory.js";
import { DEFAULT_CONFIG_PATH } from "../config/defaults.js";
import { loadConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { parseListenAddress } from "../config/schema.js";
import { checkListenable, listenError } from "../edge/listeners.js";
import { startEdge, type RunningEdge } from "../edge/running-edge.js";
import { EdgeError, ExitStatus, exitStatusFor, UsageError } from "../errors.js";
import { jsonLogger, type Logger, type LogLevel } from "../log.js";
import { createAdminGateway } from "../supervisor/admin-gateway.js";
import { SupervisorMetrics } from "../supervisor/metrics.js";
import { resolveWorkers, Supervisor, WorkerStartError } from "../supervisor/supervisor.js";
import { runWorker } from "../supervisor/worker.js";
import { errorLines, parseCommandArgs, type Command } from "./command.js";
import { DURATION_EXAMPLE, parseDurationArgument } from "./duration.js";

/** The script each worker process runs: this CLI. */
const MAIN = fileURLToPath(new URL("./main.js", import.meta.url));

const help = `Usage: keystone-edge serve [--config FILE] [--log-level LEVEL] [--grace TIME]

Runs keystone-edge: validates every request's X-Auth-Token / X-Service-Token (in-process
cache, local Fernet decryption, memcached, then Keystone) and forwards it to the upstream
service with the headers keystonemiddleware's auth_token would set. Metrics, /healthz and
/readyz are on admin_listen. Logs are JSON lines on stdout.

With workers: N (or auto) in the configuration, this process supervises N worker
processes that share listen and identity_listen, replaces one that dies, and holds the
admin listener for all of them (one /metrics scrape, /status listing every worker).

Signals: SIGHUP re-reads the configuration and the key repository and applies them
without dropping connections (an invalid configuration, a changed listen address or a
key repository that does not load is refused and logged; the running configuration
stays; with workers, in every worker). SIGTERM/SIGINT: stop accepting, finish requests in
flight (--grace), exit 0.

Options:
  --config FILE        the YAML configuration (see docs/configuration.md); default
                       /etc/keystone-edge/config.yaml
  --log-level LEVEL    debug, info, warn or error (default info)
  --grace TIME         on SIGTERM, how long requests in flight may take: 20s, 1m, or
                       seconds (default 10s)
  -h, --help           show this help

Exit status: 0 after a clean shutdown; 2 when the edge cannot start as configured: the
configuration, a secret, the key repository or the audit log cannot be used, or a
listener cannot be opened (a port in use, below 1024 without the capability); one line
on stderr names the option and the cause. 1: an internal error (a bug: please report it).
`;

export const serve: Command = {
  path: ["serve"],
  summary: "run the edge in front of one OpenStack service",
  help,
  async run(args, io) {
    const parsed = (() => {
      try {
        return parseCommandArgs(
          args,
          {
            config: { type: "string" },
            "log-level": { type: "string" },
            grace: { type: "string", value: DURATION_EXAMPLE },
          },
          false,
        );
      } catch (error) {
        return error as EdgeError;
      }
    })();
    if (parsed instanceof EdgeError) {
      io.stderr(errorLines(serve.path, parsed, help));
      return exitStatusFor(parsed);
    }
    if (parsed.kind === "help") {
      io.stdout(help);
      return ExitStatus.ok;
    }
    const level = parsed.values["log-level"] ?? "info";
    const graceText = parsed.values.grace ?? "10";
    const file = parsed.values.config ?? DEFAULT_CONFIG_PATH;
    try {
      if (typeof file !== "string") throw new UsageError("--config takes a FILE");
      if (typeof level !== "string" || !["debug", "info", "warn", "error"].includes(level)) {
        throw new UsageError("--log-level must be debug, info, warn or error");
      }
      const graceMs = parseDurationArgument(String(graceText), "--grace", { min: 0 });
      const grace = graceMs / 1000;
      if (cluster.isWorker) {
        const worker = Number(process.env["KEYSTONE_EDGE_WORKER"] ?? "0");
        const logger = jsonLogger({ level: level as LogLevel, fields: { worker } });
        try {
          await runWorker({
            configFile: file,
            role: worker === 1 ? "leader" : "follower",
            logger,
            graceMs,
            // With a callback, a channel already closed (the supervisor is gone, or this
            // worker is leaving) is reported there, not as an uncaught 'error' event.
            send: (message) => process.send?.(message, undefined, undefined, () => undefined),
          });
        } finally {
          // The IPC channel would keep this process alive after its edge is closed. Through
          // the cluster's worker: a bare process.disconnect() makes it exit 0 at once, and
          // the supervisor must see this process's own status (2: configuration or keys).
          if (process.connected) cluster.worker?.disconnect();
        }
        logger.info("stopped");
        return ExitStatus.ok;
      }
      const logger = jsonLogger({ level: level as LogLevel });
      const first = loadConfig(file);
      const workers = resolveWorkers(first.workers);
      if (workers > 1) {
        return await supervise({
          file,
          config: first,
          workers,
          graceMs,
          logger,
          args: ["serve", ...args],
        });
      }
      // SIGHUP's default action kills the process: it is handled from the start. Before the
      // edge is up a reload waits for it; while shutting down it is ignored.
      const state: { phase: "starting" | "serving" | "stopping"; reloadPending: boolean } = {
        phase: "starting",
        reloadPending: false,
      };
      let edge: RunningEdge | undefined;
      const reload = (): void => {
        if (state.phase === "stopping" || edge === undefined) {
          if (state.phase === "starting") state.reloadPending = true;
          else logger.info("SIGHUP ignored: shutting down");
          return;
        }
        let next;
        try {
          next = loadConfig(file);
        } catch (error) {
          logger.error(
            "reload refused: the new configuration is invalid; the running one is kept",
            {
              error: error instanceof Error ? error.message : String(error),
            },
          );
          return;
        }
        void edge.reload(next).then((outcome) => {
          if (outcome.kind === "refused") {
            logger.error("reload refused; the running configuration is kept", {
              code: outcome.code,
              reason: outcome.reason,
            });
          }
        });
      };
      process.on("SIGHUP", reload);
      try {
        // A taken port: one line, before any Keystone or memcached call.
        await checkListenable(first);
        edge = await startEdge(first, { logger, cache: createCacheFactory() });
        state.phase = "serving";
        if (state.reloadPending) reload();
        const running = edge;
        await new Promise<void>((resolve) => {
          const stop = (signal: NodeJS.Signals): void => {
            logger.info("shutting down", { signal, grace_seconds: grace });
            state.phase = "stopping";
            process.off("SIGTERM", stop);
            process.off("SIGINT", stop);
            void running.close(graceMs).then(resolve);
          };
          process.on("SIGTERM", stop);
          process.on("SIGINT", stop);
        });
      } finally {
        process.off("SIGHUP", reload);
      }
      logger.info("stopped");
      return ExitStatus.ok;
    } catch (error) {
      if (error instanceof EdgeError) {
        io.stderr(errorLines(serve.path, error, help));
        return exitStatusFor(error);
      }
      throw error;
    }
  },
};

/**
 * `workers` > 1: this process supervises the workers and holds the admin listener; it
 * returns once SIGTERM/SIGINT drained them all.
 */
async function supervise(options: {
  readonly file: string;
  readonly config: Readonly<Config>;
  readonly workers: number;
  readonly graceMs: number;
  readonly logger: Logger;
  readonly args: readonly string[];
}): Promise<number> {
  const { logger } = options;
  // A taken port: one line from this process, before any worker is forked.
  await checkListenable(options.config);
  const metrics = new SupervisorMetrics();
  const supervisor = new Supervisor({
    configFile: options.file,
    config: options.config,
    workers: options.workers,
    graceMs: options.graceMs,
    exec: MAIN,
    args: options.args,
    metrics,
    logger,
  });
  /** Read across awaits (a SIGHUP during start-up waits for it), hence fields. */
  const phase = { started: false, reloadPending: false };
  const reload = (): void => {
    if (phase.started) supervisor.reload();
    else phase.reloadPending = true;
  };
  process.on("SIGHUP", reload);
  try {
    try {
      await supervisor.start();
    } catch (error) {
      if (error instanceof WorkerStartError) {
        logger.error("keystone-edge did not start", { error: error.message });
        return error.exitCode === ExitStatus.usage ? ExitStatus.usage : ExitStatus.internal;
      }
      throw error;
    }
    const gateway = createAdminGateway({
      supervisor,
      metrics,
      allowedHosts: () => supervisor.configuration.admin_allowed_hosts,
    });
    const admin = parseListenAddress(options.config.admin_listen);
    if (admin === undefined) throw new UsageError("admin_listen: not host:port");
    try {
      await new Promise<void>((resolve, reject) => {
        gateway.once("error", (error) => {
          reject(listenError("admin_listen", options.config.admin_listen, error));
        });
        gateway.listen(admin.port, admin.host, () => {
          gateway.off("error", reject);
          resolve();
        });
      });
    } catch (error) {
      await supervisor.stop(0);
      throw error;
    }
    phase.started = true;
    logger.info("keystone-edge supervising", {
      workers: options.workers,
      listen: options.config.listen,
      admin: options.config.admin_listen,
    });
    if (phase.reloadPending) supervisor.reload();
    await new Promise<void>((resolve) => {
      const stop = (signal: NodeJS.Signals): void => {
        logger.info("shutting down", { signal, grace_seconds: options.graceMs / 1000 });
        process.off("SIGTERM", stop);
        process.off("SIGINT", stop);
        void supervisor.stop().then(() => {
          gateway.closeAllConnections();
          gateway.close(() => resolve());
        });
      };
      process.on("SIGTERM", stop);
      process.on("SIGINT", stop);
    });
    logger.info("stopped");
    return ExitStatus.ok;
  } finally {
    process.off("SIGHUP", reload);
  }
}
