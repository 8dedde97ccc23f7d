/**
 * What the supervisor and its worker processes tell each other over the cluster's IPC
 * channel.
 *
 * Owns: the message shapes, both ways, and telling ours from anything else on the channel
 * (every message carries `keystoneEdge: 1`). Worker → supervisor: listening (with the
 * port of its private admin listener), a reload's outcome, a metrics answer. Supervisor →
 * worker: reload (re-read the configuration file), drain (stop accepting, finish, exit),
 * metrics (send the registry as JSON, for one aggregated scrape). Both ways: revocations —
 * what the leader worker's revocation feed learnt, relayed by the supervisor to the other
 * workers (one feed per host asks Keystone).
 */
import type { MetricObjectWithValues, MetricValue } from "prom-client";

import type { FeedUpdate } from "../keystone/revocation-feed.js";

/** Supervisor → worker. */
export type ToWorker =
  | { readonly keystoneEdge: 1; readonly kind: "reload" }
  | { readonly keystoneEdge: 1; readonly kind: "drain"; readonly graceMs: number }
  | { readonly keystoneEdge: 1; readonly kind: "metrics"; readonly id: number }
  | { readonly keystoneEdge: 1; readonly kind: "revocations"; readonly update: FeedUpdate };

/** One registry's metrics as `Registry#getMetricsAsJSON()` gives them. */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** One worker's registry, as it answered a scrape. */
export interface WorkerMetrics {
  /** Its slot, 1…N. */
  readonly worker: number;
  readonly metrics: MetricsJson;
}

/** Worker → supervisor. */
export type FromWorker =
  | {
      readonly keystoneEdge: 1;
      readonly kind: "listening";
      /** Its private admin listener, on 127.0.0.1. */
      readonly adminPort: number;
    }
  | {
      readonly keystoneEdge: 1;
      readonly kind: "reloaded";
      readonly outcome: "applied" | "refused";
      readonly reason?: string;
    }
  | {
      readonly keystoneEdge: 1;
      readonly kind: "metrics";
      readonly id: number;
      readonly metrics: MetricsJson;
    }
  | { readonly keystoneEdge: 1; readonly kind: "revocations"; readonly update: FeedUpdate };

function tagged(message: unknown): message is { keystoneEdge: 1; kind: unknown } {
  return (
    typeof message === "object" &&
    message !== null &&
    (message as { keystoneEdge?: unknown }).keystoneEdge === 1
  );
}

/** Whether `message` is one of ours, sent by a worker. */
export function isFromWorker(message: unknown): message is FromWorker {
  if (!tagged(message)) return false;
  const kind = message.kind;
  return (
    kind === "listening" || kind === "reloaded" || kind === "metrics" || kind === "revocations"
  );
}

/** Whether `message` is one of ours, sent by the supervisor. */
export function isToWorker(message: unknown): message is ToWorker {
  if (!tagged(message)) return false;
  const kind = message.kind;
  return kind === "reload" || kind === "drain" || kind === "metrics" || kind === "revocations";
}
