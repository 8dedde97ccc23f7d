/**
 * The supervisor's own series, beside the workers' aggregated ones in the one scrape.
 *
 * Owns: how many workers serve or are starting, how often one had to be replaced, and a
 * few figures per worker taken from each worker's registry at the scrape (requests,
 * event-loop lag, memory, cached entries: enough to see one worker overloaded, stuck or
 * growing). Labels bounded: two states, two reasons, `worker` 1…N. Exported only with
 * `workers` > 1.
 */
import { Counter, Gauge, Registry } from "prom-client";

import type { MetricsJson, WorkerMetrics } from "./messages.js";

function total(metrics: MetricsJson, name: string): number | undefined {
  const metric = metrics.find((m) => m.name === name);
  if (metric === undefined) return undefined;
  return metric.values.reduce((sum, v) => sum + v.value, 0);
}

export class SupervisorMetrics {
  readonly registry: Registry;
  readonly workers: Gauge<"state">;
  readonly restarts: Counter<"reason">;
  readonly workerRequests: Counter<"worker">;
  readonly workerLoopLag: Gauge<"worker">;
  readonly workerMemory: Gauge<"worker">;
  readonly workerCacheEntries: Gauge<"worker">;

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
    this.workerRequests = new Counter({
      name: "keystone_edge_worker_requests_total",
      help: "Requests through the proxy, per worker (its keystone_edge_requests_total): how evenly the cluster spreads connections.",
      labelNames: ["worker"],
      registers: [registry],
    });
    this.workerLoopLag = new Gauge({
      name: "keystone_edge_worker_eventloop_lag_p99_seconds",
      help: "Each worker's event-loop lag, p99: one stuck or overloaded worker shows here while the host's average looks fine.",
      labelNames: ["worker"],
      registers: [registry],
    });
    this.workerMemory = new Gauge({
      name: "keystone_edge_worker_resident_memory_bytes",
      help: "Each worker's resident memory (its caches are its own).",
      labelNames: ["worker"],
      registers: [registry],
    });
    this.workerCacheEntries = new Gauge({
      name: "keystone_edge_worker_cache_entries",
      help: "Entries in each worker's in-process caches (tokens and contexts).",
      labelNames: ["worker"],
      registers: [registry],
    });
    for (const state of ["starting", "serving"]) this.workers.set({ state }, 0);
    for (const reason of ["exit", "signal"]) this.restarts.inc({ reason }, 0);
  }

  /** Sets the per-worker series from the workers' registries of this scrape. */
  observeWorkers(figures: readonly WorkerMetrics[]): void {
    for (const m of [
      this.workerRequests,
      this.workerLoopLag,
      this.workerMemory,
      this.workerCacheEntries,
    ]) {
      m.reset();
    }
    for (const { worker, metrics } of figures) {
      const labels = { worker: String(worker) };
      const requests = total(metrics, "keystone_edge_requests_total");
      if (requests !== undefined) this.workerRequests.inc(labels, requests);
      const lag = total(metrics, "keystone_edge_nodejs_eventloop_lag_p99_seconds");
      if (lag !== undefined) this.workerLoopLag.set(labels, lag);
      const rss = total(metrics, "keystone_edge_process_resident_memory_bytes");
      if (rss !== undefined) this.workerMemory.set(labels, rss);
      const entries = total(metrics, "keystone_edge_cache_entries");
      if (entries !== undefined) this.workerCacheEntries.set(labels, entries);
    }
  }
}
