/**
 * One scrape for several workers: the edge's series of two workers, aggregated as the
 * supervisor's admin gateway aggregates them (prom-client's `AggregatorRegistry`, each
 * metric by its declared aggregator), say what an operator and the shipped alerts expect
 * of one host.
 */
import { readFileSync } from "node:fs";
import { AggregatorRegistry, Registry } from "prom-client";
import { describe, expect, it } from "vitest";

import { EdgeMetrics, type MetricsView } from "../../../src/admin/metrics.js";

function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("aggregating the workers' metrics", () => {
  it("sums counts and sizes, takes the max of states and the min of health and freshness", async () => {
    const one = new EdgeMetrics(new Registry());
    const two = new EdgeMetrics(new Registry());
    // What each worker's core knows at scrape time (edge/core.ts builds the real view).
    const view = (worker: {
      entries: number;
      breaker: "closed" | "open";
      degraded: boolean;
      healthy: boolean;
    }): MetricsView => ({
      entries: () => ({ l1: worker.entries }),
      feedLagSeconds: () => undefined,
      feedLastSuccessSeconds: () => undefined,
      revocationEvents: () => 12,
      keyRepository: () => ({
        healthy: worker.healthy,
        keys: 3,
        lastSuccessSeconds: 1_700_000_000,
        primaryAgeSeconds: 60,
      }),
      keysBehind: () => false,
      keysAgreedAtSeconds: () => undefined,
      degradedMode: () => worker.degraded,
      keystoneBreakers: () => [{ endpoint: "regional", state: worker.breaker }],
      insecureEndpoints: () => [],
    });
    one.currentView = () =>
      view({ entries: 1_000, breaker: "closed", degraded: false, healthy: true });
    two.currentView = () => view({ entries: 500, breaker: "open", degraded: true, healthy: false });
    one.upstreamErrors.inc({ kind: "upstream_timeout" }, 3);
    two.upstreamErrors.inc({ kind: "upstream_timeout" }, 4);
    one.tlsCertificateNotAfterSeconds = 2_000_000_000;
    two.tlsCertificateNotAfterSeconds = 1_900_000_000;
    one.drillActive.set({ scenario: "master-outage" }, 0);
    two.drillActive.set({ scenario: "master-outage" }, 1);

    const text = await AggregatorRegistry.aggregate([
      await one.registry.getMetricsAsJSON(),
      await two.registry.getMetricsAsJSON(),
    ]).metrics();
    expect(sample(text, 'keystone_edge_upstream_errors_total{kind="upstream_timeout"}')).toBe(7);
    expect(sample(text, 'keystone_edge_cache_entries{tier="l1"}')).toBe(1_500);
    // A state is 1 when any worker is in it: the breaker alert fires for the host.
    expect(
      sample(text, 'keystone_edge_keystone_breaker_state{endpoint="regional",state="open"}'),
    ).toBe(1);
    expect(
      sample(text, 'keystone_edge_keystone_breaker_state{endpoint="regional",state="closed"}'),
    ).toBe(1);
    expect(sample(text, 'keystone_edge_drill_active{scenario="master-outage"}')).toBe(1);
    expect(sample(text, "keystone_edge_degraded_mode")).toBe(1);
    expect(sample(text, "keystone_edge_revocation_events")).toBe(12);
    expect(sample(text, "keystone_edge_key_repository_healthy")).toBe(0);
    // Health and freshness: the worst worker's.
    expect(sample(text, "keystone_edge_tls_certificate_not_after_timestamp_seconds")).toBe(
      1_900_000_000,
    );
  });

  it("every gauge of the edge declares its aggregator (prom-client's default would sum states)", () => {
    const source = readFileSync(new URL("../../../src/admin/metrics.ts", import.meta.url), "utf8");
    const gauges = source.split("new Gauge(").slice(1);
    expect(gauges.length).toBeGreaterThan(15);
    for (const block of gauges) {
      const body = block.slice(0, block.indexOf("});"));
      const name = /name: "([a-z_]+)"/.exec(body)?.[1];
      expect(body, name).toMatch(/\n\s*aggregator: "(sum|max|min)",/);
    }
  });
});
