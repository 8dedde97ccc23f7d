/**
 * One worker process of `serve` with `workers` > 1.
 *
 * Owns: running a whole edge in a cluster worker — the proxy and Identity listeners shared
 * with the other workers through the cluster (the supervisor holds the sockets), its own
 * in-process caches, its own admin listener on a private loopback port that only the
 * supervisor's admin gateway talks to — and obeying the supervisor: reload (re-read the
 * configuration file, as SIGHUP does for a single process), drain (stop accepting, finish
 * requests in flight, exit), metrics (its registry as JSON); and its part in the host's
 * Keystone-facing loops (the leader polls the revocation feed for all and publishes what it
 * learns, the others apply it: core.ts `LoopSharing`). It leaves when the supervisor
 * is gone (the IPC channel closes), and drains on SIGTERM/SIGINT of its own (systemd
 * signals the whole control group). SIGHUP is the supervisor's: ignored here.
 */
import { loadConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { createCacheFactory } from "../edge/cache-factory.js";
import { startEdge, type RunningEdge } from "../edge/running-edge.js";
import type { Logger } from "../log.js";
import { isToWorker, type FromWorker, type ToWorker } from "./messages.js";

/** The worker's view of the configuration: its admin listener private, on loopback. */
function workerConfig(config: Readonly<Config>): Readonly<Config> {
  return { ...config, admin_listen: "127.0.0.1:0" };
}

export interface WorkerOptions {
  readonly configFile: string;
  /**
   * The leader (worker 1) polls the revocation feed and runs the scheduled key lag check
   * for the host; the others follow what it shares.
   */
  readonly role: "leader" | "follower";
  readonly logger: Logger;
  /** How long requests in flight may take when draining, ms. */
  readonly graceMs: number;
  /** Sends to the supervisor (`process.send`). */
  readonly send: (message: FromWorker) => void;
}

/**
 * Starts the worker's edge and serves until drained; resolves once it is closed. Rejects
 * when the edge cannot start (the supervisor sees the exit status).
 */
export async function runWorker(options: WorkerOptions): Promise<void> {
  const { logger, send } = options;
  const edge: RunningEdge = await startEdge(workerConfig(loadConfig(options.configFile)), {
    logger,
    cache: createCacheFactory(),
    loops: {
      role: options.role,
      // The leader's polls, and anyone's revocation made through its Identity face.
      publish: (update) => {
        send({ keystoneEdge: 1, kind: "revocations", update });
      },
    },
  });
  let closing: Promise<void> | undefined;
  let closed = (): void => undefined;
  const stopped = new Promise<void>((resolve) => (closed = resolve));
  const drain = (graceMs: number): Promise<void> => {
    if (closing === undefined) {
      logger.info("worker draining", { grace_seconds: graceMs / 1000 });
      closing = edge.close(graceMs).then(closed);
    }
    return closing;
  };

  const reload = async (): Promise<void> => {
    let next: Readonly<Config>;
    try {
      next = workerConfig(loadConfig(options.configFile));
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      send({ keystoneEdge: 1, kind: "reloaded", outcome: "refused", reason });
      return;
    }
    const outcome = await edge.reload(next);
    if (outcome.kind === "refused") {
      logger.error("reload refused; the running configuration is kept", {
        code: outcome.code,
        reason: outcome.reason,
      });
      send({ keystoneEdge: 1, kind: "reloaded", outcome: "refused", reason: outcome.reason });
    } else {
      send({ keystoneEdge: 1, kind: "reloaded", outcome: "applied" });
    }
  };

  const onMessage = (message: unknown): void => {
    if (!isToWorker(message)) return;
    const m: ToWorker = message;
    switch (m.kind) {
      case "reload":
        void reload();
        break;
      case "drain":
        void drain(m.graceMs);
        break;
      case "revocations":
        void edge.receiveRevocations(m.update);
        break;
      case "metrics":
        edge.metrics.registry.getMetricsAsJSON().then(
          (metrics) => {
            send({ keystoneEdge: 1, kind: "metrics", id: m.id, metrics });
          },
          () => {
            send({ keystoneEdge: 1, kind: "metrics", id: m.id, metrics: [] });
          },
        );
        break;
    }
  };
  const onSignal = (): void => {
    void drain(options.graceMs);
  };
  const ignore = (): void => undefined;
  process.on("message", onMessage);
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  process.on("SIGHUP", ignore);
  // The supervisor is gone (killed, crashed): no one will route to us or restart us.
  process.once("disconnect", onSignal);
  send({ keystoneEdge: 1, kind: "listening", adminPort: edge.adminAddress.port });
  // What the leader shared between our own first poll and now was not sent to us (we were
  // not serving yet): one poll catches up, the leader's updates follow from here.
  if (options.role === "follower") void edge.pollRevocationsNow();
  try {
    await stopped;
  } finally {
    process.off("message", onMessage);
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    process.off("SIGHUP", ignore);
    process.off("disconnect", onSignal);
  }
}
