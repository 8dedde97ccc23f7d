import { Counter, Registry } from "prom-client";
import { describe, expect, it } from "vitest";

import { HotCounter } from "../../../src/admin/hot-counter.js";
import { EdgeMetrics, statusClass } from "../../../src/admin/metrics.js";

function counterWith(registry: Registry, hot: HotCounter<"a", "b">): Counter<"a" | "b"> {
  const counter = new Counter({
    name: "t_total",
    help: "t",
    labelNames: ["a", "b"],
    registers: [registry],
    collect: () => {
      hot.flush();
    },
  });
  hot.bind(counter);
  return counter;
}

async function values(counter: Counter): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await counter.get()).values) {
    out[Object.values(v.labels).join("/")] = v.value;
  }
  return out;
}

describe("HotCounter", () => {
  it("folds counts into the prom-client counter when it is read, exactly and only once", async () => {
    const hot = new HotCounter("a", "b");
    const counter = counterWith(new Registry(), hot);
    hot.inc("x", "1");
    hot.inc("x", "1");
    hot.inc("x", "2", 5);
    hot.inc("y", "1");
    expect(await values(counter)).toEqual({ "x/1": 2, "x/2": 5, "y/1": 1 });
    // A second read adds nothing new; later increments arrive on the next read.
    expect(await values(counter)).toEqual({ "x/1": 2, "x/2": 5, "y/1": 1 });
    hot.inc("x", "1", 3);
    expect(await values(counter)).toEqual({ "x/1": 5, "x/2": 5, "y/1": 1 });
  });

  it("shows a new series at zero before the first scrape folds its count", async () => {
    const registry = new Registry();
    const hot = new HotCounter("a", "b");
    counterWith(registry, hot);
    hot.inc("x", "1");
    const text = await registry.metrics();
    expect(text).toContain('t_total{a="x",b="1"} 1');
  });
});

describe("EdgeMetrics counting", () => {
  it("exposes requests, validations and lookups with their labels", async () => {
    const m = new EdgeMetrics(new Registry());
    m.countRequest("valid", 204);
    m.countRequest("valid", 200);
    m.countRequest("invalid", 401);
    m.countValidation("l1", "valid");
    m.countCacheLookup("l1", "hit", 2);
    const text = await m.registry.metrics();
    expect(text).toContain('keystone_edge_requests_total{outcome="valid",status_class="2xx"} 2');
    expect(text).toContain('keystone_edge_requests_total{outcome="invalid",status_class="4xx"} 1');
    expect(text).toContain('keystone_edge_validations_total{source="l1",result="valid"} 1');
    expect(text).toContain('keystone_edge_cache_lookups_total{tier="l1",result="hit"} 2');
  });

  it("names status classes without surprises", () => {
    expect([100, 200, 299, 302, 404, 503].map(statusClass)).toEqual([
      "1xx",
      "2xx",
      "2xx",
      "3xx",
      "4xx",
      "5xx",
    ]);
    expect(statusClass(600)).toBe("6xx");
  });
});
