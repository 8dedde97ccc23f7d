/**
 * The metrics the edge exports are exactly those docs/metrics.md lists, with the documented
 * type and label names; the process metrics come on top, with the prefix.
 */
import { readFileSync } from "node:fs";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";

import { EdgeMetrics } from "../../../src/admin/metrics.js";
import { SupervisorMetrics } from "../../../src/supervisor/metrics.js";

interface Documented {
  readonly type: string;
  readonly labels: readonly string[];
}

function documented(): Map<string, Documented> {
  const text = readFileSync(new URL("../../../docs/metrics.md", import.meta.url), "utf8");
  const rows = new Map<string, Documented>();
  for (const line of text.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    const name = /^`(keystone_edge_[a-z0-9_]+)`$/.exec(cells[1] ?? "")?.[1];
    if (name === undefined) continue;
    // label names are the backticked words of the labels cell that are followed by " ("
    const labels = [...(cells[3] ?? "").matchAll(/`([a-z_]+)` \(/g)].map((m) => m[1] ?? "");
    rows.set(name, { type: cells[2] ?? "", labels });
  }
  return rows;
}

describe("metrics", () => {
  it("every exported metric is documented with its type and labels, and nothing else is", async () => {
    // The edge's, and the supervisor's own (with `workers` > 1) in the same scrape.
    const edge = new EdgeMetrics(new Registry());
    edge.tlsCertificateNotAfterSeconds = 1_900_000_000; // exported only with `tls`
    const registries = [edge.registry, new SupervisorMetrics().registry];
    const exported = new Map<string, Documented>();
    for (const registry of registries) {
      for (const m of await registry.getMetricsAsJSON()) {
        const single = registry.getSingleMetric(m.name) as unknown as {
          labelNames?: readonly string[];
        };
        expect(exported.has(m.name), m.name).toBe(false);
        exported.set(m.name, { type: String(m.type), labels: [...(single.labelNames ?? [])] });
      }
    }
    expect(exported.size).toBeGreaterThan(15);
    expect(Object.fromEntries(exported)).toEqual(Object.fromEntries(documented()));
  });

  it("Node's process metrics come with the prefix, event-loop lag among them", async () => {
    const metrics = new EdgeMetrics();
    const names = (await metrics.registry.getMetricsAsJSON()).map((m) => m.name);
    expect(names).toContain("keystone_edge_nodejs_eventloop_lag_seconds");
    expect(names).toContain("keystone_edge_process_resident_memory_bytes");
    expect(names.every((n) => n.startsWith("keystone_edge_"))).toBe(true);
  });
});

describe("the served certificate's end", () => {
  it("has no sample without tls (a bare gauge would say 0: an end long past, and the alert would fire)", async () => {
    const metrics = new EdgeMetrics(new Registry());
    const series = (text: string): string[] =>
      text
        .split("\n")
        .filter((l) => l.startsWith("keystone_edge_tls_certificate_not_after_timestamp_seconds"));
    expect(series(await metrics.registry.metrics())).toEqual([]);
    metrics.tlsCertificateNotAfterSeconds = 1_900_000_000;
    expect(series(await metrics.registry.metrics())).toEqual([
      "keystone_edge_tls_certificate_not_after_timestamp_seconds 1900000000",
    ]);
  });
});
