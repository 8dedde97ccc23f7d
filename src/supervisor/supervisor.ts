/**
 * `serve` with `workers` > 1: the supervisor process.
 *
 * Owns: the worker processes (Node's cluster: the supervisor holds the `listen` and
 * `identity_listen` sockets, the workers accept from them), one per slot — started, and
 * replaced when one dies, after a delay that doubles with each death in a row (500 ms up to
 * 30 s; a worker that lived a minute resets it), each replacement counted; the operator's
 * signals — SIGHUP re-reads the configuration and tells every worker to reload, SIGTERM and
 * SIGINT drain them all and wait; and the admin listener, in this process only
 * (admin-gateway.ts). It serves no request itself.
 */
import cluster, { type Worker } from "node:cluster";
import { availableParallelism } from "node:os";

import { loadConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { silentLogger, type Logger } from "../log.js";
import { isFromWorker, type FromWorker, type ToWorker, type WorkerMetrics } from "./messages.js";
import type { SupervisorMetrics } from "./metrics.js";

/** Where the replacements' delays start and stop, and when a worker counts as stable. */
export interface RestartBackoff {
  /** First delay, ms. Default 500. */
  readonly initialMs?: number;
  /** Longest delay, ms. Default 30 000. */
  readonly maxMs?: number;
  /** A worker that served this long resets the delay, ms. Default 60 000. */
  readonly resetAfterMs?: number;
}

export interface SupervisorOptions {
  readonly configFile: string;
  /** The validated configuration the workers start with. */
  readonly config: Readonly<Config>;
  /** How many workers (`workers`, resolved). */
  readonly workers: number;
  /** On SIGTERM, how long the workers' requests in flight may take, ms. */
  readonly graceMs: number;
  /** The script each worker runs (the CLI's main) and its arguments. */
  readonly exec: string;
  readonly args: readonly string[];
  readonly metrics: SupervisorMetrics;
  /** Default: no logs. */
  readonly logger?: Logger;
  readonly restartBackoff?: RestartBackoff;
}

/** One worker's place: what runs in it now, and its history. */
export interface WorkerSlot {
  /** 1-based, stable across replacements. */
  readonly index: number;
  state: "starting" | "serving" | "waiting" | "stopped";
  worker: Worker | undefined;
  pid: number | undefined;
  /** Its private admin listener, once serving. */
  adminPort: number | undefined;
  startedAtMs: number;
  restarts: number;
  deathsInARow: number;
  timer: NodeJS.Timeout | undefined;
}

/**
 * `workers` as a number of processes: `auto` is one per core this process may run on
 * (`os.availableParallelism()`: its CPU affinity, not a cgroup CPU quota).
 */
export function resolveWorkers(workers: Config["workers"]): number {
  return workers === "auto" ? Math.max(1, availableParallelism()) : workers;
}

/** A worker failed before it ever served: its exit status (2: configuration or keys). */
export class WorkerStartError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
    this.name = "WorkerStartError";
  }
}

export class Supervisor {
  readonly slots: readonly WorkerSlot[];
  private readonly logger: Logger;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly resetAfterMs: number;
  private phase: "starting" | "serving" | "stopping" = "starting";
  private config: Readonly<Config>;
  private nextMetricsId = 0;
  private readonly pendingMetrics = new Map<
    number,
    (m: FromWorker & { kind: "metrics" }) => void
  >();
  private startFailure: ((error: WorkerStartError) => void) | undefined;
  private everyoneServing: (() => void) | undefined;
  private readonly onExitBound = (worker: Worker, code: number, signal: string): void => {
    this.onExit(worker, code, signal);
  };
  private readonly onMessageBound = (worker: Worker, message: unknown): void => {
    this.onMessage(worker, message);
  };

  constructor(private readonly options: SupervisorOptions) {
    this.logger = options.logger ?? silentLogger;
    this.initialMs = options.restartBackoff?.initialMs ?? 500;
    this.maxMs = options.restartBackoff?.maxMs ?? 30_000;
    this.resetAfterMs = options.restartBackoff?.resetAfterMs ?? 60_000;
    this.config = options.config;
    this.slots = Array.from({ length: options.workers }, (_, i) => ({
      index: i + 1,
      state: "waiting" as const,
      worker: undefined,
      pid: undefined,
      adminPort: undefined,
      startedAtMs: 0,
      restarts: 0,
      deathsInARow: 0,
      timer: undefined,
    }));
  }

  /** The configuration in force (the last one the workers were told to reload to). */
  get configuration(): Readonly<Config> {
    return this.config;
  }

  /**
   * Forks every worker and resolves once all serve. Rejects with {@link WorkerStartError}
   * when one exits before serving (the others are stopped): a configuration or key
   * repository that cannot be used fails here, as it would in one process.
   */
  async start(): Promise<void> {
    cluster.setupPrimary({ exec: this.options.exec, args: [...this.options.args] });
    cluster.on("exit", this.onExitBound);
    cluster.on("message", this.onMessageBound);
    const failed = new Promise<never>((_, reject) => {
      this.startFailure = reject;
    });
    const serving = new Promise<void>((resolve) => {
      this.everyoneServing = resolve;
    });
    for (const slot of this.slots) this.fork(slot);
    try {
      await Promise.race([serving, failed]);
    } catch (error) {
      await this.stop(0);
      throw error;
    } finally {
      this.startFailure = undefined;
      this.everyoneServing = undefined;
    }
    this.phase = "serving";
    this.logger.info("workers serving", {
      workers: this.slots.length,
      pids: this.slots.map((s) => s.pid),
    });
  }

  /**
   * SIGHUP: re-reads the configuration file; when it is valid and changes nothing that
   * needs a restart, every serving worker reloads it (each logs its own outcome).
   */
  reload(): void {
    if (this.phase !== "serving") {
      this.logger.info("SIGHUP ignored: not serving");
      return;
    }
    let next: Readonly<Config>;
    try {
      next = loadConfig(this.options.configFile);
    } catch (error) {
      this.logger.error(
        "reload refused: the new configuration is invalid; the running one is kept",
        {
          error: error instanceof Error ? error.message : String(error),
        },
      );
      return;
    }
    for (const option of ["workers", "admin_listen"] as const) {
      if (String(next[option]) !== String(this.config[option])) {
        this.logger.error("reload refused; the running configuration is kept", {
          code: "listen_changed",
          reason: `${option} changed (${String(this.config[option])} → ${String(next[option])}): only with a restart`,
        });
        return;
      }
    }
    this.config = next;
    this.broadcast({ keystoneEdge: 1, kind: "reload" });
    this.logger.info("reload sent to the workers", { workers: this.serving().length });
  }

  /**
   * Drains every worker (each stops accepting and finishes within `graceMs`) and waits
   * for them to exit; what is left after the grace and a margin is killed.
   */
  async stop(graceMs: number = this.options.graceMs): Promise<void> {
    this.phase = "stopping";
    for (const slot of this.slots) {
      if (slot.timer !== undefined) clearTimeout(slot.timer);
      slot.timer = undefined;
    }
    const alive = this.slots.filter((s) => s.worker !== undefined && !s.worker.isDead());
    const exits = alive.map(
      (slot) =>
        new Promise<void>((resolve) => {
          const worker = slot.worker as Worker;
          if (worker.isDead()) resolve();
          else worker.once("exit", () => resolve());
        }),
    );
    for (const slot of alive) this.send(slot, { keystoneEdge: 1, kind: "drain", graceMs });
    const margin = setTimeout(() => {
      for (const slot of alive) slot.worker?.process.kill("SIGKILL");
    }, graceMs + 5_000);
    await Promise.all(exits);
    clearTimeout(margin);
    cluster.off("exit", this.onExitBound);
    cluster.off("message", this.onMessageBound);
    for (const slot of this.slots) slot.state = "stopped";
    this.updateGauge();
  }

  /** The slots serving now. */
  serving(): WorkerSlot[] {
    return this.slots.filter((s) => s.state === "serving" && s.adminPort !== undefined);
  }

  /**
   * Every serving worker's metrics as JSON, for one aggregated scrape; a worker that does
   * not answer within `timeoutMs` is left out of this scrape.
   */
  async collectMetrics(timeoutMs = 2_000): Promise<WorkerMetrics[]> {
    const answers = this.serving().map(
      (slot) =>
        new Promise<WorkerMetrics | undefined>((resolve) => {
          const id = this.nextMetricsId++;
          const timer = setTimeout(() => {
            this.pendingMetrics.delete(id);
            resolve(undefined);
          }, timeoutMs);
          this.pendingMetrics.set(id, (m) => {
            clearTimeout(timer);
            this.pendingMetrics.delete(id);
            resolve({ worker: slot.index, metrics: m.metrics });
          });
          if (!this.send(slot, { keystoneEdge: 1, kind: "metrics", id })) {
            clearTimeout(timer);
            this.pendingMetrics.delete(id);
            resolve(undefined);
          }
        }),
    );
    return (await Promise.all(answers)).filter((m): m is WorkerMetrics => m !== undefined);
  }

  private fork(slot: WorkerSlot): void {
    slot.timer = undefined;
    const worker = cluster.fork({ KEYSTONE_EDGE_WORKER: String(slot.index) });
    // A write to a channel the worker has just closed (it is exiting) is an 'error' on the
    // worker; unheard, it would be an uncaught exception that takes the supervisor down.
    worker.on("error", (error: Error) => {
      this.logger.warn("a worker's IPC channel failed", {
        worker: slot.index,
        error: error.message,
      });
    });
    slot.worker = worker;
    slot.pid = worker.process.pid;
    slot.state = "starting";
    slot.adminPort = undefined;
    slot.startedAtMs = Date.now();
    this.updateGauge();
  }

  private slotOf(worker: Worker): WorkerSlot | undefined {
    return this.slots.find((s) => s.worker === worker);
  }

  private onMessage(worker: Worker, message: unknown): void {
    if (!isFromWorker(message)) return;
    const slot = this.slotOf(worker);
    if (slot === undefined) return;
    switch (message.kind) {
      case "listening":
        slot.adminPort = message.adminPort;
        slot.state = "serving";
        this.updateGauge();
        if (this.phase === "serving") {
          this.logger.info("worker replaced and serving", { worker: slot.index, pid: slot.pid });
        }
        if (this.slots.every((s) => s.state === "serving")) this.everyoneServing?.();
        break;
      case "reloaded":
        if (message.outcome === "refused") {
          this.logger.error("a worker refused the reload; it keeps its configuration", {
            worker: slot.index,
            reason: message.reason,
          });
        }
        break;
      case "metrics":
        this.pendingMetrics.get(message.id)?.(message);
        break;
      case "revocations":
        // The leader's feed learnt this: every other serving worker applies it.
        for (const other of this.serving()) {
          if (other !== slot) {
            this.send(other, { keystoneEdge: 1, kind: "revocations", update: message.update });
          }
        }
        break;
    }
  }

  private onExit(worker: Worker, code: number | null, signal: string | null): void {
    const slot = this.slotOf(worker);
    if (slot === undefined) return;
    const wasServing = slot.state === "serving";
    slot.worker = undefined;
    slot.adminPort = undefined;
    slot.state = "waiting";
    this.updateGauge();
    if (this.phase === "stopping") return;
    if (this.phase === "starting" && !wasServing) {
      this.startFailure?.(
        new WorkerStartError(
          code ?? 1,
          `worker ${String(slot.index)} exited before serving (${signal ?? `status ${String(code)}`})`,
        ),
      );
      return;
    }
    const lived = Date.now() - slot.startedAtMs;
    if (lived >= this.resetAfterMs) slot.deathsInARow = 0;
    const delayMs = Math.min(this.maxMs, this.initialMs * 2 ** slot.deathsInARow);
    slot.deathsInARow++;
    slot.restarts++;
    this.options.metrics.restarts.inc({ reason: signal === null ? "exit" : "signal" });
    this.logger.warn("worker exited; replacing it", {
      worker: slot.index,
      pid: slot.pid,
      ...(signal === null ? { status: code } : { signal }),
      lived_seconds: Math.round(lived / 1000),
      restart_in_ms: delayMs,
    });
    slot.timer = setTimeout(() => {
      if (this.phase !== "stopping") this.fork(slot);
    }, delayMs);
  }

  private send(slot: WorkerSlot, message: ToWorker): boolean {
    const worker = slot.worker;
    if (worker === undefined || !worker.isConnected()) return false;
    try {
      // With a callback, a failed write is reported there rather than as an 'error' event.
      return worker.send(message, () => undefined);
    } catch {
      return false;
    }
  }

  private broadcast(message: ToWorker): void {
    for (const slot of this.serving()) this.send(slot, message);
  }

  private updateGauge(): void {
    const count = (state: WorkerSlot["state"]): number =>
      this.slots.filter((s) => s.state === state).length;
    this.options.metrics.workers.set({ state: "starting" }, count("starting"));
    this.options.metrics.workers.set({ state: "serving" }, count("serving"));
  }
}
