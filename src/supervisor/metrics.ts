/**
 * The supervisor's own series, beside the workers' aggregated ones in the one scrape.
 *
 * Owns: how many workers serve or are starting, and how often one had to be replaced
 * (labels bounded: two states, two reasons). Exported only with `workers` > 1.
 */
import { Counter, Gauge, Registry } from "prom-client";

/** Why a worker was replaced: it exited with a status, or a signal killed it. */
export type RestartReason = "exit" | "signal";

export class SupervisorMetrics {
  readonly registry: Registry;
  readonly workers: Gauge<"state">;
  readonly restarts: Counter<"reason">;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    this.workers = new Gauge({
      name: "keystone_edge_workers",
      help: "Worker processes by state (starting, serving), with `workers` > 1: fewer serving than configured means one is being replaced.",
      labelNames: ["state"],
      registers: [registry],
    });
    this.restarts = new Counter({
      name: "keystone_edge_worker_restarts_total",
      help: "Worker processes the supervisor replaced, by reason (exit: it exited on its own; signal: it was killed).",
      labelNames: ["reason"],
      registers: [registry],
    });
    for (const state of ["starting", "serving"]) this.workers.set({ state }, 0);
    for (const reason of ["exit", "signal"]) this.restarts.inc({ reason }, 0);
  }
}
